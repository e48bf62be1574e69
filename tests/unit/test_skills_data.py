"""The five skills as data: Agent Skills validity, and the facts of each requirement text
(seed) carried into the machine contract (skill_info.yaml): actions, data sources, error
patterns, metrics, checkpoint rules, carried keys.

Seed rows and sample log lines below are transcribed from the five requirement texts
(shared/seeds/*.txt) and docs/tao-contract.md §3.5 / §4.5; they are the expectations.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taoskills import paths
from taoskills.bank.catalog import BODY_MAX_LINES, Catalog
from taoskills.bank.skill_info import CheckpointRule, SkillInfo
from taoskills.errors import NotFound
from taoskills.specs.dotted import has_dotted, split_dotted

SKILLS = ["tao-train-nvdinov2", "tao-train-dino", "tao-train-mask-auto-encoder", "tao-train-grounding-dino", "tao-run-automl"]
MODELS = SKILLS[:4]
OFF_PHRASES = ["turn off AutoML", "disable AutoML", "no HPO", "plain training"]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    Catalog.clear_cache()
    return Catalog.load(strict=False)


def _agentskills() -> list[str]:
    exe = shutil.which("agentskills") or str(Path(sys.executable).with_name("agentskills"))
    if not Path(exe).exists():
        pytest.fail("the skills-ref CLI 'agentskills' is not installed (pip install skills-ref)")
    return [exe]


# --- Agent Skills format -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SKILLS)
def test_agentskills_validate_passes(name):
    folder = paths.skills_dir() / name
    proc = subprocess.run(_agentskills() + ["validate", str(folder)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid skill" in proc.stdout


@pytest.mark.parametrize("name", SKILLS)
def test_frontmatter_and_body_budget(cat, name):
    skill = cat.get(name)
    assert len(skill.body.splitlines()) < BODY_MAX_LINES
    desc = skill.frontmatter["description"]
    assert len(desc) <= 1024 and "<" not in desc and ">" not in desc
    meta = skill.frontmatter["metadata"]
    assert meta["author"] == "tao-skills" and re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    if skill.kind == "model":
        assert meta["network_arch"] == skill.info.network_arch
        assert meta["automl_enabled"] == str(skill.info.automl_enabled).lower() == "true"


@pytest.mark.parametrize("name", SKILLS)
def test_description_carries_the_seed_trigger_phrases(cat, name):
    seed_triggers = {
        "tao-train-nvdinov2": [
            "train NVDINOv2",
            "self-supervised ViT pretraining",
            "DINOv2 backbone",
            "visual representation learning",
        ],
        "tao-train-dino": ["train DINO", "DETR object detection", "TAO 2D detection", "DINO with distillation"],
        "tao-train-grounding-dino": [
            "train Grounding DINO",
            "open-vocabulary detection",
            "text-prompted detector",
            "language-guided object detection",
        ],
        "tao-train-mask-auto-encoder": [
            "pretrain MAE",
            "self-supervised vision pretraining",
            "Masked Autoencoder",
            "Mask Auto-Encoder",
            "MAE fine-tune",
        ],
        "tao-run-automl": ["run AutoML", "hyperparameter search", "HPO"],
    }[name]
    desc = cat.get(name).frontmatter["description"]
    for phrase in seed_triggers:
        assert phrase in desc, phrase


@pytest.mark.parametrize("name", MODELS)
def test_train_action_policy_is_stated(cat, name):
    body = cat.get(name).body
    assert "## Train Action Policy" in body
    for phrase in OFF_PHRASES + ["tao-run-automl", "schemas/train.schema.json", "references/spec_template_train.yaml"]:
        assert phrase in body, phrase


def test_automl_contract(cat):
    info = cat.get("tao-run-automl").info
    assert info.kind == "application" and info.automl is not None
    assert info.automl.default_algorithm == "bayesian"
    assert {"bayesian", "hyperband", "bohb", "asha", "pbt", "dehb"} <= set(info.automl.algorithms)
    assert set(OFF_PHRASES) <= set(info.automl.policy_off_phrases)
    assert info.automl.policy_values == ["on", "off", "auto"]
    assert info.automl.requires == ["schemas/train.schema.json", "references/spec_template_train.yaml"]


# --- actions --------------------------------------------------------------------------------

EXPECTED_ACTIONS = {
    "tao-train-nvdinov2": ["train", "inference", "export", "deploy_gen_trt_engine"],
    "tao-train-dino": [
        "train",
        "evaluate",
        "inference",
        "export",
        "distill",
        "quantize",
        "deploy_gen_trt_engine",
        "deploy_evaluate",
        "deploy_inference",
    ],
    "tao-train-grounding-dino": [
        "train",
        "evaluate",
        "inference",
        "export",
        "quantize",
        "deploy_gen_trt_engine",
        "deploy_evaluate",
        "deploy_inference",
    ],
    "tao-train-mask-auto-encoder": ["train", "evaluate", "inference", "export", "deploy_gen_trt_engine"],
}


@pytest.mark.parametrize("name", MODELS)
def test_actions_commands_and_file_names(cat, name):
    info = cat.get(name).info
    assert list(info.actions) == EXPECTED_ACTIONS[name]
    assert info.images["train"] == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert info.images["deploy"] == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy"
    for action, spec in info.actions.items():
        deploy = action.startswith("deploy_")
        assert spec.container == ("deploy" if deploy else "train")
        tao_action = action.removeprefix("deploy_")
        assert spec.command == f"{info.network_arch} {tao_action} -e {{config_path}}"
        assert spec.spec_template == f"spec_template_{action}.yaml"
        assert spec.schema_file == f"{action}.schema.json"
        assert spec.spec_params.get("results_dir") == "output_dir"
        assert spec.outputs["results_dir"].type == "folder"


def test_nvdinov2_has_no_evaluate_or_distill(cat):
    skill = cat.get("nvdinov2")
    for missing in ("evaluate", "distill"):
        with pytest.raises(NotFound):
            skill.action(missing)


# --- data sources: every row of the seed tables ----------------------------------------------
# (action, spec key, role, fallback role or None, files in the dataset root, list?)
SEED_ROWS = {
    "tao-train-nvdinov2": [
        ("inference", "dataset.test_dataset.images_dir", "inference_dataset", None, ["images_test.tar.gz"], False),
        ("train", "dataset.train_dataset.images_dir", "train_datasets", None, ["images_train.tar.gz"], False),
    ],
    "tao-train-mask-auto-encoder": [
        ("train", "dataset.train_data_sources", "train_datasets", None, ["images_train.tar.gz"], False),
        ("train", "dataset.val_data_sources", "eval_dataset", None, ["images_val.tar.gz"], False),
        ("evaluate", "dataset.val_data_sources", "eval_dataset", None, ["images_val.tar.gz"], False),
        ("inference", "dataset.test_data_sources", "inference_dataset", None, ["images_test.tar.gz"], False),
    ],
    "tao-train-grounding-dino": [
        ("evaluate", "dataset.test_data_sources", "eval_dataset", None, ["images.tar.gz", "annotations.json"], False),
        ("inference", "dataset.infer_data_sources.image_dir", "inference_dataset", None, ["images.tar.gz"], True),
        (
            "quantize",
            "dataset.train_data_sources",
            "train_datasets",
            None,
            ["images.tar.gz", "annotations_odvg.jsonl", "annotations_odvg_labelmap.json"],
            True,
        ),
        ("quantize", "dataset.val_data_sources", "eval_dataset", None, ["images.tar.gz", "annotations.json"], False),
        (
            "quantize",
            "dataset.quant_calibration_data_sources",
            "calibration_dataset",
            "eval_dataset",
            ["images.tar.gz", "annotations.json"],
            False,
        ),
        (
            "train",
            "dataset.train_data_sources",
            "train_datasets",
            None,
            ["images.tar.gz", "annotations_odvg.jsonl", "annotations_odvg_labelmap.json"],
            True,
        ),
        ("train", "dataset.val_data_sources", "eval_dataset", None, ["images.tar.gz", "annotations.json"], False),
    ],
    # DINO's seed defers its table to TAO Core dino.config.json + the standard artifact rule
    # (images.tar.gz + annotations.json; validation always, reusing train when needed).
    "tao-train-dino": [
        ("train", "dataset.train_data_sources", "train_datasets", None, ["images.tar.gz", "annotations.json"], True),
        ("train", "dataset.val_data_sources", "eval_dataset", "train_datasets", ["images.tar.gz", "annotations.json"], True),
        ("evaluate", "dataset.test_data_sources", "eval_dataset", None, ["images.tar.gz", "annotations.json"], False),
        ("inference", "dataset.infer_data_sources.image_dir", "inference_dataset", None, ["images.tar.gz"], True),
        ("inference", "dataset.infer_data_sources.classmap", "inference_dataset", None, ["label_map.txt"], False),
        (
            "deploy_gen_trt_engine",
            "gen_trt_engine.tensorrt.calibration.cal_image_dir",
            "calibration_dataset",
            None,
            ["images.tar.gz"],
            True,
        ),
    ],
}


def _rows():
    for name, rows in SEED_ROWS.items():
        for row in rows:
            yield pytest.param(name, *row, id=f"{name}:{row[0]}:{row[1]}")


@pytest.mark.parametrize("name,action,key,role,fallback,files,is_list", list(_rows()))
def test_seed_data_source_rows(cat, name, action, key, role, fallback, files, is_list):
    sources = cat.get(name).action(action).data_sources
    mine = {k: v for k, v in sources.items() if k == key or k.startswith(key + ".") or k.startswith(key + "[")}
    assert mine, f"{name} {action}: no data source under {key}"
    for f in files:
        hits = [(k, v) for k, v in mine.items() if v.path == f]
        assert hits, f"{name} {action} {key}: {f} missing"
        for k, v in hits:
            assert v.source == role and v.fallback == fallback, (k, v)
            if f.endswith(".tar.gz"):
                assert v.runtime == "extracted_folder", k
    if is_list:
        assert any("[0]" in k or v.list for k, v in mine.items())
    else:
        assert not any(v.list for v in mine.values())


def test_gdino_captions_are_a_required_inference_key(cat):
    gdino = cat.get("grounding_dino")
    for action in ("inference", "deploy_inference"):
        assert "dataset.infer_data_sources.captions" in gdino.action(action).required_keys
    assert gdino.info.shorthand["captions"] == "dataset.infer_data_sources.captions"


def test_optional_sources(cat):
    # MAE pretraining needs no eval data; DINO validation is never optional (reuses train).
    assert cat.get("mae").action("train").data_sources["dataset.val_data_sources"].optional
    dino_val = cat.get("dino").action("train").data_sources["dataset.val_data_sources[0].image_dir"]
    assert not dino_val.optional and dino_val.fallback == "train_datasets"


# --- error patterns: every seed error is an entry, found by its log line ----------------------
# (skill, expected id, action, a representative log excerpt)
SEED_ERRORS = [
    ("tao-train-nvdinov2", "cuda_oom", "train", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    (
        "tao-train-nvdinov2",
        "unexpected_lightning_keys_inference",
        "inference",
        'RuntimeError: Error(s) in loading state_dict: Unexpected key(s) in state_dict: "state_dict", "optimizer_states", "lr_schedulers".',
    ),
    (
        "tao-train-nvdinov2",
        "unexpected_lightning_keys_export",
        "export",
        'RuntimeError: Error(s) in loading state_dict: Unexpected key(s) in state_dict: "state_dict", "optimizer_states".',
    ),
    (
        "tao-train-nvdinov2",
        "trt_engine_to_pyt_inference",
        "inference",
        "Loading checkpoint /results/e1/gen_trt_engine/nvdinov2.engine\n_pickle.UnpicklingError: invalid load key, 'f'.",
    ),
    (
        "tao-train-nvdinov2",
        "distill_not_available",
        "train",
        "nvdinov2: error: argument subtask: invalid choice: 'distill' (choose from 'default_specs', 'export', 'inference', 'train')",
    ),
    (
        "tao-train-nvdinov2",
        "automl_metric_not_found",
        "train",
        "MetricExtractorError: metric 'val_loss' not found in the job logs",
    ),
    ("tao-train-nvdinov2", "slow_convergence", "train", "WARNING: train_loss not decreasing after 10 epochs"),
    ("tao-train-nvdinov2", "persistent_workers_zero", "train", "ValueError: persistent_workers option needs num_workers > 0"),
    ("tao-train-dino", "cuda_oom", "train", "RuntimeError: CUDA out of memory. Tried to allocate 1.2 GiB"),
    ("tao-train-dino", "num_select_too_large", "train", "AssertionError: num_select (300) must be < num_queries * num_classes"),
    (
        "tao-train-dino",
        "spec_merge_error",
        "train",
        "Error merging 'spec.yaml' with schema\nKey 'num_epochs' not in 'ExperimentConfig'",
    ),
    (
        "tao-train-dino",
        "dataset_smaller_than_batch",
        "train",
        "ValueError: num_samples should be a positive integer value, but got num_samples=0",
    ),
    (
        "tao-train-dino",
        "interm_indices_mismatch",
        "train",
        "AssertionError: len(return_interm_indices) must match num_feature_levels",
    ),
    (
        "tao-train-dino",
        "images_not_found",
        "train",
        "FileNotFoundError: [Errno 2] No such file or directory: '/data/images/000123.jpg'",
    ),
    (
        "tao-train-dino",
        "val_data_missing",
        "train",
        "FileNotFoundError: [Errno 2] No such file or directory: '/workspace/dataset/annotations.json'",
    ),
    (
        "tao-train-dino",
        "device_side_assert",
        "train",
        "RuntimeError: CUDA error: device-side assert triggered\n[rank1] NCCL error in ProcessGroupNCCL.cpp",
    ),
    (
        "tao-train-dino",
        "s3_inputs_not_downloaded",
        "train",
        "FileNotFoundError: [Errno 2] No such file or directory: 's3://bucket/data/train/annotations.json'",
    ),
    (
        "tao-train-dino",
        "checkpoint_not_found",
        "evaluate",
        "FileNotFoundError: [Errno 2] No such file or directory: '/results/j1/dino_model_latest.pth'",
    ),
    ("tao-train-dino", "pyt_gen_trt_engine_rejected", "export", "dino: error: invalid choice: 'gen_trt_engine'"),
    (
        "tao-train-dino",
        "trt_eval_index_error",
        "deploy_evaluate",
        "IndexError: index 150 is out of bounds for axis 0 with size 100",
    ),
    ("tao-train-grounding-dino", "cuda_oom", "train", "torch.cuda.OutOfMemoryError: CUDA out of memory."),
    (
        "tao-train-grounding-dino",
        "val_category_ids",
        "train",
        "ValueError: category_id must start from 0 to compute the validation loss",
    ),
    (
        "tao-train-grounding-dino",
        "text_encoder_load",
        "train",
        "OSError: We couldn't connect to 'https://huggingface.co' to load this file; bert-base-uncased is not a local folder",
    ),
    (
        "tao-train-grounding-dino",
        "quantize_pyt_checkpoint_blocked",
        "quantize",
        "File \"post_process.py\", line 40, in forward\nTypeError: 'NoneType' object is not iterable (cap_lists)",
    ),
    (
        "tao-train-grounding-dino",
        "quantize_pyt_checkpoint_blocked",
        "quantize",
        "ModuleNotFoundError: No module named 'modelopt.onnx.quantization'",
    ),
    (
        "tao-train-grounding-dino",
        "mat1_mat2_text_len",
        "inference",
        'File "post_process.py", line 88\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (900x256 and 128x256)',
    ),
    (
        "tao-train-grounding-dino",
        "criterion_index_out_of_bounds",
        "train",
        'File "/opt/nvidia_tao_pytorch/cv/grounding_dino/model/criterion.py", line 120, in loss_labels\n'
        "IndexError: index 5 is out of bounds for dimension 0 with size 3",
    ),
    (
        "tao-train-grounding-dino",
        "archive_as_image_dir",
        "train",
        "NotADirectoryError: [Errno 20] Not a directory: '/data/train/images.tar.gz/000001.jpg'",
    ),
    (
        "tao-train-mask-auto-encoder",
        "stage_mismatch",
        "train",
        "WARNING: train.pretrained_model_path not set; training from scratch",
    ),
    (
        "tao-train-mask-auto-encoder",
        "pretrain_checkpoint_inference",
        "inference",
        'File "mae/pl_data_module.py", line 80, in predict_dataloader\n    raise NotImplementedError',
    ),
    ("tao-train-mask-auto-encoder", "num_classes_mismatch", "train", "IndexError: Target 10 is out of bounds."),
    (
        "tao-train-mask-auto-encoder",
        "zero_sample_dataloader",
        "train",
        "ValueError: num_samples should be a positive integer value, but got num_samples=0",
    ),
    ("tao-train-mask-auto-encoder", "unknown_dataset_key_workers", "train", "Key 'workers' not in 'MAEDatasetConfig'"),
    ("tao-train-mask-auto-encoder", "unsupported_arch", "train", "RuntimeError: Unknown model (vit_tiny_patch16)"),
]
GENERIC_ERRORS = [
    ("nccl_error", "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error"),
    ("no_gpu", "RuntimeError: No CUDA GPUs are available"),
    ("killed_by_signal", "train.py FAILED: exitcode: -9 (killed by signal 9)"),
]


def first_match(info: SkillInfo, log: str, action: str) -> str | None:
    """List order is precedence; entries restricted by ``actions`` apply only to those actions."""
    for pattern in info.error_patterns:
        if pattern.actions and action not in pattern.actions:
            continue
        if re.search(pattern.regex, log):
            return pattern.id
    return None


@pytest.mark.parametrize("name,expected,action,log", SEED_ERRORS, ids=[f"{e[0]}:{e[1]}" for e in SEED_ERRORS])
def test_seed_error_patterns_match(cat, name, expected, action, log):
    info = cat.get(name).info
    ids = [p.id for p in info.error_patterns]
    assert expected in ids
    assert first_match(info, log, action) == expected


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("expected,log", GENERIC_ERRORS)
def test_generic_infrastructure_patterns(cat, name, expected, log):
    info = cat.get(name).info
    assert first_match(info, log, "train") == expected
    assert next(p for p in info.error_patterns if p.id == expected).fault == "infrastructure"


@pytest.mark.parametrize("name", SKILLS)
def test_error_pattern_ids_unique_and_documented(cat, name):
    skill = cat.get(name)
    ids = [p.id for p in skill.info.error_patterns]
    assert len(ids) == len(set(ids))
    docs = skill.body + skill.read_text("references/troubleshooting.md")
    for pid in ids:
        assert pid in docs, f"{name}: error pattern {pid} is not documented"


def test_automl_error_patterns(cat):
    info = cat.get("automl").info
    assert first_match(info, "MetricExtractorError: 3 consecutive recommendations without metric", "train") == "metric_not_found"
    assert first_match(info, "ValueError: No default specs found for network dino", "train") == "no_default_specs"


# --- metrics ----------------------------------------------------------------------------------


def test_metric_contracts(cat):
    nv = cat.get("nvdinov2").info.metric_for({})
    assert (nv.name, nv.direction, nv.aliases) == ("train_loss", "minimize", ["train_loss_epoch"])
    for name in ("dino", "grounding_dino"):
        m = cat.get(name).info.metric_for({})
        assert (m.name, m.direction) == ("val_mAP50", "maximize")
    mae = cat.get("mae").info
    assert mae.metrics[0].when == {"train.stage": "finetune"}
    assert mae.metric_for({"train": {"stage": "finetune"}}).name == "ACC_all"
    assert mae.metric_for({"train": {"stage": "finetune"}}).direction == "maximize"
    assert mae.metric_for({"train": {"stage": "pretrain"}}).name == "train_loss"


# --- checkpoint rules ----------------------------------------------------------------------------


def pick(rule: CheckpointRule, files: list[str]) -> str | None:
    """Reference reading of CheckpointRule: first glob with a non-avoided match, newest name wins."""
    for glob in rule.prefer:
        hits = [f for f in files if fnmatch.fnmatch(f, glob) and not any(fnmatch.fnmatch(f, a) for a in rule.avoid)]
        hits = [f for f in hits if rule.allow_latest or "_latest" not in f]
        if hits:
            return sorted(hits)[-1]
    return None


NV_FILES = [
    "model_epoch_009.pth",
    "student_epoch_009.pth",
    "teacher_epoch_009.pth",
    "student_epoch_004.pth",
    "nvdinov2_model_latest.pth",
]
STEP_FILES = [
    "model_epoch_000_step_00025.pth",
    "model_epoch_001_step_00050.pth",
    "dino_model_latest.pth",
    "gdino_model_latest.pth",
    "convnextv2_atto_latest.pth",
    "status.json",
]


def test_nvdinov2_checkpoint_rules(cat):
    skill = cat.get("nvdinov2")
    for action in ("inference", "export"):
        assert pick(skill.action(action).checkpoint, NV_FILES) == "student_epoch_009.pth"
    assert pick(skill.action("train").resume, NV_FILES) == "model_epoch_009.pth"
    assert pick(skill.action("inference").checkpoint, ["model_epoch_009.pth", "nvdinov2_model_latest.pth"]) is None
    rule = skill.action("deploy_gen_trt_engine").checkpoint
    assert rule.from_action == "export" and pick(rule, ["nvdinov2.onnx", "status.json"]) == "nvdinov2.onnx"
    assert skill.info.latest_checkpoint_alias == "nvdinov2_model_latest.pth"


@pytest.mark.parametrize(
    "name,alias", [("dino", "dino_model_latest.pth"), ("grounding_dino", "gdino_model_latest.pth"), ("mae", "*_latest.pth")]
)
def test_epoch_step_checkpoint_rules(cat, name, alias):
    skill = cat.get(name)
    assert skill.info.latest_checkpoint_alias == alias
    for action, spec in skill.info.actions.items():
        if spec.parent_action == "train":
            assert spec.checkpoint.from_action == "train"
            assert pick(spec.checkpoint, STEP_FILES) == "model_epoch_001_step_00050.pth", action
        elif spec.parent_action == "export":
            assert spec.checkpoint.prefer == ["*.onnx"]
        elif spec.parent_action == "deploy_gen_trt_engine":
            assert spec.checkpoint.from_action == "gen_trt_engine" and "*.engine" in spec.checkpoint.prefer
    assert pick(skill.action("train").resume, STEP_FILES) == "model_epoch_001_step_00050.pth"


# --- carried and dropped keys -------------------------------------------------------------------

CARRY = {
    "tao-train-nvdinov2": [
        "model.backbone.teacher_type",
        "model.backbone.student_type",
        "model.backbone.img_size",
        "model.backbone.patch_size",
        "model.backbone.num_register_tokens",
        "train.use_custom_attention",
    ],
    "tao-train-dino": [
        "model.backbone",
        "model.num_queries",
        "model.num_select",
        "model.num_feature_levels",
        "model.dropout_ratio",
        "dataset.num_classes",
    ],
    "tao-train-grounding-dino": [
        "model.backbone",
        "model.num_queries",
        "model.num_select",
        "model.num_feature_levels",
        "model.max_text_len",
    ],
    "tao-train-mask-auto-encoder": ["train.stage", "model.arch", "model.num_classes", "dataset.augmentation.input_size"],
}


@pytest.mark.parametrize("name", MODELS)
def test_carry_from_parent(cat, name):
    skill = cat.get(name)
    for action in ("inference", "export"):
        assert set(CARRY[name]) <= set(skill.action(action).carry_from_parent), action
    train = skill.action("train")
    if name == "tao-train-mask-auto-encoder":  # finetune from a pretrain job: its structure, not its stage or classes
        assert train.parent_when == {"train.stage": "pretrain"} and train.checkpoint is not None
        assert train.carry_from_parent == ["model.arch", "dataset.augmentation.input_size"]
    else:
        assert not train.carry_from_parent


@pytest.mark.parametrize("name", ["tao-train-dino", "tao-train-grounding-dino"])
def test_drop_keys_anchor_c16(cat, name):
    skill = cat.get(name)
    for action in ("evaluate", "inference", "export", "deploy_gen_trt_engine"):
        assert skill.action(action).drop_keys == ["model.pretrained_backbone_path", "train.resume_training_checkpoint_path"]
    assert not skill.action("train").drop_keys


# --- cross-check against the generated templates (when the generator has run) -----------------------


def _schema_has(schema: dict, key: str) -> bool:
    """Key path exists in a TAO-dialect schema (list/collection nodes are opaque: accept below them)."""
    node = schema
    for part in split_dotted(key):
        if isinstance(part, int):
            continue
        props = node.get("properties")
        if not props:
            return node.get("type") in ("list", "collection", "array", "object") and node is not schema
        if part not in props:
            return False
        node = props[part]
    return True


def _action_keys(spec) -> set[str]:
    keys = set(spec.inputs) | set(spec.outputs) | set(spec.data_sources) | set(spec.spec_params)
    keys |= set(spec.carry_from_parent) | set(spec.required_keys)
    return keys


@pytest.mark.parametrize("name", MODELS)
def test_every_contract_key_exists_in_its_template(cat, name):
    skill = cat.get(name)
    checked = 0
    for action, spec in skill.info.actions.items():
        if not (skill.dir / "references" / spec.spec_template).is_file():
            continue
        template = skill.template(action)
        schema = skill.schema(action) if (skill.dir / "schemas" / spec.schema_file).is_file() else {}
        for key in sorted(_action_keys(spec)):
            assert has_dotted(template, key) or _schema_has(schema, key), (
                f"{name} {action}: {key} in neither {spec.spec_template} nor {spec.schema_file}"
            )
        checked += 1
    train_template = skill.dir / "references" / "spec_template_train.yaml"
    if train_template.is_file():
        for key in skill.info.smoke_overrides:
            assert has_dotted(skill.template("train"), key), f"smoke override {key}"
        for short, key in skill.info.shorthand.items():
            # in a template, or in a schema (TAO's default may be null: GDINO infer_data_sources)
            assert any(has_dotted(skill.template(a), key) or _schema_has(skill.schema(a), key) for a in skill.info.actions), short
    assert checked == len(skill.info.actions)


@pytest.mark.parametrize("name", MODELS)
def test_multi_gpu_and_hardware(cat, name):
    info = cat.get(name).info
    assert info.multi_gpu.launcher == "lightning"
    assert info.multi_gpu.keys["num_gpus"] == info.gpu_spec_key == "train.num_gpus"
    assert info.multi_gpu.keys["gpu_ids"] == "train.gpu_ids"
    assert info.multi_gpu.keys["num_nodes"] == info.node_spec_key == "train.num_nodes"
    expected = {
        "tao-train-nvdinov2": (4, 8, 40),
        "tao-train-dino": (1, 4, 24),
        "tao-train-grounding-dino": (1, 4, 24),
        "tao-train-mask-auto-encoder": (2, 8, 24),
    }[name]
    hw = info.hardware
    assert (hw.min_gpus, hw.recommended_gpus, hw.min_gpu_memory_gb) == expected


def test_nvdinov2_smoke_profile_is_the_seed_profile(cat):
    assert cat.get("nvdinov2").info.smoke_overrides == {
        "wandb.enable": False,
        "model.backbone.teacher_type": "vit_s",
        "model.backbone.student_type": "vit_s",
        "model.backbone.img_size": 224,
        "dataset.batch_size": 8,
        "dataset.workers": 2,
        "train.num_epochs": 1,
        "train.checkpoint_interval": 1,
        "train.num_prototypes": 1024,
        "train.precision": "32-true",
        "train.use_custom_attention": False,
        "train.num_gpus": 1,
    }


def test_hardware_minimums_per_action(cat):
    from taoskills.bank.skill_info import hardware_minimums

    dino = cat.get("tao-train-dino").info
    train = hardware_minimums(dino, "train")
    assert (train.min_gpus, train.recommended_gpus, train.min_gpu_memory_gb) == (1, 4, 24)  # seed: 1 min, 4 rec, 24GB+
    assert train.multi_gpu_keys["num_gpus"] == "train.num_gpus" and "WORLD_SIZE" in train.env
    infer = hardware_minimums(dino, "deploy_inference")
    assert (infer.min_gpus, infer.min_gpu_memory_gb, infer.multi_gpu_keys) == (1, 0, {})
    mae = hardware_minimums(cat.get("tao-train-mask-auto-encoder").info, "train")
    assert mae.min_gpus == 2
    with pytest.raises(ValueError):
        hardware_minimums(dino, "retrain")


def test_gpu_spec_key_must_agree_with_multi_gpu_keys(cat):
    from pydantic import ValidationError

    data = cat.get("tao-train-dino").info.model_dump()
    data["gpu_spec_key"] = "train.gpus"
    with pytest.raises(ValidationError, match="multi_gpu.keys.num_gpus"):
        SkillInfo.model_validate(data)
