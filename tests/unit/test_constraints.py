"""taoskills.specs.constraints: each rule fires on a violating spec and stays quiet on the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taoskills.specs.constraints import check_constraints, packaged_schema

REPO = Path(__file__).resolve().parents[2]
ARCH_SKILL = {
    "nvdinov2": "tao-train-nvdinov2",
    "dino": "tao-train-dino",
    "grounding_dino": "tao-train-grounding-dino",
    "mae": "tao-train-mask-auto-encoder",
}


def template(arch: str, key: str) -> dict:
    folder = REPO / "skills" / ARCH_SKILL[arch]
    entry = json.loads((folder / "schemas/manifest.json").read_text())["actions"][key]
    return yaml.safe_load((folder / entry["spec_template"]).read_text())


def fields(issues, code=None):
    return {i.field for i in issues if code is None or i.code == code}


def run(arch, action, spec):
    return check_constraints(arch, action, spec)


@pytest.mark.parametrize("arch", list(ARCH_SKILL))
def test_defaults_raise_no_constraint_errors(arch):
    manifest = json.loads((REPO / "skills" / ARCH_SKILL[arch] / "schemas/manifest.json").read_text())
    for key in manifest["actions"]:
        assert fields(run(arch, key, template(arch, key)), "constraint") == set(), key
        assert fields(run(arch, key, {}), "constraint") == set(), key


def test_packaged_schema_is_found_by_network():
    assert packaged_schema("dino", "train")["x_tao_schema"]["network_arch"] == "dino"
    assert packaged_schema("dino", "evaluate", "deploy")["x_tao_schema"]["container"] == "deploy"
    assert packaged_schema("nvdinov2", "evaluate") is None


@pytest.mark.parametrize("arch", ["dino", "grounding_dino"])
def test_c1_num_select_vs_num_queries(arch):
    assert "model.num_select" in fields(run(arch, "train", {"model": {"num_select": 400, "num_queries": 300}}), "constraint")
    assert fields(run(arch, "train", {"model": {"num_select": 300, "num_queries": 300}}), "constraint") == set()


def test_c1_num_select_vs_queries_times_classes():
    spec = {"model": {"num_select": 10, "num_queries": 10}, "dataset": {"num_classes": 1}}
    (issue,) = [i for i in run("dino", "train", spec) if i.code == "constraint"]
    assert issue.field == "model.num_select" and "num_queries*num_classes" in issue.reason
    spec["dataset"]["num_classes"] = 2
    assert fields(run("dino", "train", spec), "constraint") == set()


@pytest.mark.parametrize("arch", ["dino", "grounding_dino"])
def test_c2_interm_indices_length(arch):
    assert "model.return_interm_indices" in fields(run(arch, "train", {"model": {"return_interm_indices": [1, 2, 3]}}))
    ok = {"model": {"return_interm_indices": [1, 2, 3], "num_feature_levels": 3}}
    assert fields(run(arch, "train", ok), "constraint") == set()


def test_c5_crop_max_above_min_via_schema_math_cond():
    spec = {"dataset": {"augmentation": {"train_random_crop_min": 600, "train_random_crop_max": 600}}}
    (issue,) = [i for i in run("dino", "train", spec) if i.code == "constraint"]
    assert issue.field == "dataset.augmentation.train_random_crop_max"
    assert "depends_on" in issue.reason
    spec["dataset"]["augmentation"]["train_random_crop_max"] = 601
    assert fields(run("dino", "train", spec), "constraint") == set()


@pytest.mark.parametrize("arch", list(ARCH_SKILL))
def test_c6_intervals_within_epochs(arch):
    spec = {"train": {"num_epochs": 2, "checkpoint_interval": 3, "validation_interval": 5}}
    assert fields(run(arch, "train", spec), "constraint") == {"train.checkpoint_interval", "train.validation_interval"}
    spec["train"]["checkpoint_interval_unit"] = "step"
    assert fields(run(arch, "train", spec), "constraint") == {"train.validation_interval"}
    assert fields(run(arch, "evaluate", {"train": {"num_epochs": 2, "validation_interval": 5}}), "constraint") == set()


def test_c7_gpu_count():
    assert fields(run("nvdinov2", "train", {"train": {"num_gpus": 2}}), "constraint") == {"train.num_gpus"}
    assert fields(run("nvdinov2", "train", {"train": {"num_gpus": 2, "gpu_ids": [0, 1]}}), "constraint") == set()
    assert fields(run("dino", "evaluate", {"evaluate": {"num_gpus": 1, "gpu_ids": [0, 1]}}), "constraint") == {
        "evaluate.num_gpus"
    }


@pytest.mark.parametrize(
    "arch,key,value",
    [
        ("dino", "train.optim.lr", 0.0),
        ("dino", "model.fix_refpoints_hw", 0),
        ("grounding_dino", "model.focal_gamma", 0.0),
        ("mae", "train.optim.warmup_epochs", -1),
        ("mae", "train.optim.gamma", -0.5),
    ],
)
def test_c8_math_cond_from_schema(arch, key, value):
    head, _, leaf = key.rpartition(".")
    spec: dict = {}
    node = spec
    for part in head.split("."):
        node = node.setdefault(part, {})
    node[leaf] = value
    (issue,) = [i for i in run(arch, "train", spec) if i.code == "constraint"]
    assert issue.field == key and "math_cond" in issue.reason


def test_c9_schedule_warnings():
    issues = run("dino", "train", {"train": {"num_epochs": 50, "optim": {"lr_steps": [40]}}})
    assert fields(issues) == set()
    issues = run("dino", "train", {"train": {"num_epochs": 50, "optim": {"lr_scheduler": "StepLR", "lr_step_size": 60}}})
    assert fields(issues, "warning") == {"train.optim.lr_step_size"} and fields(issues, "constraint") == set()
    issues = run("mae", "train", {"train": {"num_epochs": 5, "optim": {"milestones": [3], "warmup_epochs": 5}}})
    assert fields(issues, "warning") == {"train.optim.warmup_epochs"}
    assert fields(run("grounding_dino", "train", {}), "warning") == set()  # lr_steps [10] with 10 epochs


def test_c9_dino_defaults_warn_lr_never_drops():
    (issue,) = run("dino", "train", template("dino", "train"))
    assert issue.code == "warning" and issue.field == "train.optim.lr_steps"


def test_c10_nvdinov2_patch_grid():
    spec = {"model": {"backbone": {"img_size": 518, "patch_size": 16}}}
    (issue,) = run("nvdinov2", "train", spec)
    assert issue.field == "model.backbone.img_size" and "multiple" in issue.reason
    assert run("nvdinov2", "train", {"model": {"backbone": {"img_size": 224, "patch_size": 16}}}) == []
    assert fields(run("nvdinov2", "train", {"model": {"backbone": {"img_size": 300}}})) == {"model.backbone.img_size"}


def test_c11_mae_stage_and_classes():
    assert fields(run("mae", "inference", {"train": {"stage": "finetune"}})) == set()
    assert fields(run("mae", "inference", {"train": {"stage": "pretrain"}}), "warning") == {"train.stage"}
    assert fields(run("mae", "train", {"train": {"stage": "finetune"}}), "warning") >= {"model.num_classes"}
    spec = {"train": {"num_epochs": 100, "stage": "finetune"}, "model": {"num_classes": 10}}
    assert run("mae", "train", spec) == []
    spec = {"train": {"num_epochs": 100}, "dataset": {"augmentation": {"input_size": 256}}}
    assert fields(run("mae", "train", spec), "warning") == {"dataset.augmentation.input_size"}


def test_c12_gdino_text_len():
    assert fields(run("grounding_dino", "train", {"model": {"max_text_len": 128}}), "warning") == {"model.max_text_len"}
    assert run("grounding_dino", "train", {"model": {"max_text_len": 256}}) == []


@pytest.mark.parametrize(
    "arch,spec,field",
    [
        (
            "dino",
            {"dataset": {"train_data_sources": [{"image_dir": "/d/images.tar.gz", "json_file": "/d/a.json"}]}},
            "dataset.train_data_sources[0].image_dir",
        ),
        (
            "dino",
            {"dataset": {"infer_data_sources": {"image_dir": ["/d/ok", "/d/more.zip"]}}},
            "dataset.infer_data_sources.image_dir[1]",
        ),
        ("nvdinov2", {"dataset": {"train_dataset": {"images_dir": "/d/images_train.tgz"}}}, "dataset.train_dataset.images_dir"),
        ("mae", {"dataset": {"train_data_sources": "/d/images_train.tar"}}, "dataset.train_data_sources"),
    ],
)
def test_c13_archives_are_errors(arch, spec, field):
    issues = run(arch, "train", spec)
    (issue,) = [i for i in issues if i.code == "constraint"]
    assert issue.field == field
    assert "extracted folder" in issue.fix


def test_c13_folders_pass():
    spec = {"dataset": {"train_dataset": {"images_dir": "/d/images_train"}}}
    assert run("nvdinov2", "train", spec) == []


def test_c14_export_and_engine_batches():
    assert fields(run("mae", "export", {"export": {"batch_size": 0}}), "constraint") == {"export.batch_size"}
    assert fields(run("mae", "export", {"export": {"batch_size": -1}})) == set()
    assert fields(run("dino", "export", {"export": {"input_channel": 2}}), "constraint") == {"export.input_channel"}
    trt = {"gen_trt_engine": {"tensorrt": {"min_batch_size": 1, "opt_batch_size": 8, "max_batch_size": 4}}}
    assert fields(run("dino", "deploy_gen_trt_engine", trt), "constraint") == {"gen_trt_engine.tensorrt.opt_batch_size"}
    trt["gen_trt_engine"]["tensorrt"]["max_batch_size"] = 8
    assert run("dino", "deploy_gen_trt_engine", trt) == []


def test_c15_dino_sampler():
    spec = {"dataset": {"train_sampler": "uniform_sampler"}}
    assert fields(run("dino", "train", spec), "warning") >= {"dataset.train_sampler"}
    spec["dataset"]["dataset_type"] = "default"
    assert "dataset.train_sampler" not in fields(run("dino", "train", spec))


def test_c16_training_paths_in_evaluate():
    spec = {"model": {"pretrained_backbone_path": "/p/backbone.pth"}, "train": {"resume_training_checkpoint_path": ""}}
    assert fields(run("dino", "evaluate", spec), "warning") == {"model.pretrained_backbone_path"}
    assert fields(run("dino", "train", spec)) == {"train.optim.lr_steps"}  # only the C9 default warning


def test_values_tao_resolves_later_are_skipped():
    spec = {"model": {"num_select": "${oc.env:SEL,300}", "num_queries": "???"}}
    assert run("dino", "evaluate", spec) == []


def test_c17_gdino_captions_must_name_classes():
    key = "dataset.infer_data_sources.captions"
    assert run("grounding_dino", "inference", {"dataset": {"infer_data_sources": {"captions": ["car", "person"]}}}) == []
    assert fields(run("grounding_dino", "inference", {"dataset": {"infer_data_sources": {"captions": []}}}), "constraint") == {
        key
    }
    issues = run("grounding_dino", "inference", {"dataset": {"infer_data_sources": {"captions": ["car", " "]}}})
    assert fields(issues, "constraint") == {f"{key}[1]"} and issues[0].fix


def test_c13_remote_archives_are_left_to_the_platform():
    spec = {"dataset": {"train_data_sources": [{"image_dir": "s3://b/d/images.tar.gz", "json_file": "s3://b/d/a.json"}]}}
    assert fields(run("dino", "train", spec), "constraint") == set()
