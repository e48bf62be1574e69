"""Spec builder: every skill x action renders a spec that validates and that TAO Core's own
ExperimentConfig accepts (OmegaConf structured merge — how a TAO container reads a spec),
with and without shorthand overrides; plus parent-job inference and data-source rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from taoskills.bank.catalog import Catalog
from taoskills.errors import NotFound, SpecError
from taoskills.specs import validator
from taoskills.specs.builder import ENCRYPTION_KEY_REF, ParentJob, build_spec
from taoskills.specs.dotted import get_dotted

CATALOG = Catalog.load()
MODEL_SKILLS = sorted(n for n, s in CATALOG.skills.items() if s.info.kind == "model")
CASES = [(n, a) for n in MODEL_SKILLS for a in CATALOG.get(n).info.actions]

# A plausible value for each shorthand key's type (the spec builder does not care; the
# validator and TAO Core do).
SHORTHAND_VALUES = {"num_epochs": 3, "batch_size": 2, "learning_rate": 1e-4, "workers": 2}
# Values for required keys nothing else fills (the caller must give them).
REQUIRED_VALUES = {"dataset.infer_data_sources.captions": ["car", "person"]}


def _dataset_roots(tmp_path: Path, act) -> dict[str, str]:
    """One root per dataset role, holding an extracted folder for every archive the action names."""
    roots: dict[str, str] = {}
    for ds in act.data_sources.values():
        for role in filter(None, (ds.source, ds.fallback)):
            root = tmp_path / "data" / role
            target = root / ds.path
            if ds.runtime == "extracted_folder":
                name = target.name
                for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                (target.parent / name).mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            roots[role] = str(root)
    return roots


def _parent_for(tmp_path: Path, skill, action: str) -> ParentJob | None:
    act = skill.action(action)
    if act.checkpoint is None:
        return None
    parent_results = tmp_path / "parent" / "results"
    folder = parent_results / act.checkpoint.from_action
    folder.mkdir(parents=True, exist_ok=True)
    for pattern in act.checkpoint.prefer:
        name = pattern.replace("*", "000", 1).replace("*", "_step_00010") if "*" in pattern else pattern
        if not Path(name).suffix:
            name += ".pth"
        (folder / name).write_bytes(b"x")
    parent_spec = skill.template(act.parent_action) if act.parent_action else {}
    return ParentJob(job_id="job-parent", spec=parent_spec, results_dir=parent_results, action=act.parent_action or "train")


@pytest.mark.parametrize("shorthand", [False, True], ids=["plain", "shorthand"])
@pytest.mark.parametrize("skill_name,action", CASES)
def test_every_built_spec_validates_and_loads_into_tao_core(tmp_path, skill_name, action, shorthand):
    from taocore_helpers import load_into_experiment_config

    skill = CATALOG.get(skill_name)
    act = skill.action(action)
    short = {k: v for k, v in SHORTHAND_VALUES.items() if k in skill.info.shorthand} if shorthand else None
    built = build_spec(
        skill,
        action,
        results_dir=tmp_path / "results",
        data_sources=_dataset_roots(tmp_path, act),
        parent=_parent_for(tmp_path, skill, action),
        shorthand=short,
        overrides={k: v for k, v in REQUIRED_VALUES.items() if k in act.required_keys},
    )
    spec = built.spec
    assert spec["results_dir"] == str(tmp_path / "results")
    if "encryption_key" in act.spec_params:
        assert spec["encryption_key"] == ENCRYPTION_KEY_REF
    for key in short or {}:
        assert get_dotted(spec, skill.info.shorthand[key]) == SHORTHAND_VALUES[key]
    for key, fn in act.spec_params.items():
        if fn == "parent_model":
            assert Path(get_dotted(spec, key)).exists(), key
    issues = [
        i
        for i in validator.validate_spec(skill.schema(action), spec, network_arch=skill.info.network_arch, action=action)
        if i.code != "warning"
    ]
    assert issues == [], [str(i) for i in issues]
    load_into_experiment_config(skill.info.network_arch, spec)


def test_parent_job_carries_structure_and_picks_student_checkpoint(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    train_dir = tmp_path / "parent" / "results" / "train"
    train_dir.mkdir(parents=True)
    for name in (
        "model_epoch_001_step_00008.pth",
        "student_epoch_000_step_00004.pth",
        "student_epoch_001_step_00008.pth",
        "teacher_epoch_001_step_00008.pth",
    ):
        (train_dir / name).write_bytes(b"x")
    (train_dir / "nvdinov2_model_latest.pth").symlink_to(train_dir / "model_epoch_001_step_00008.pth")
    parent_spec = copy.deepcopy(skill.template("train"))
    parent_spec["model"]["backbone"]["teacher_type"] = "vit_s"
    parent_spec["model"]["backbone"]["student_type"] = "vit_s"
    parent_spec["model"]["backbone"]["img_size"] = 224
    parent = ParentJob("job-p", parent_spec, tmp_path / "parent" / "results", "train")
    built = build_spec(skill, "export", results_dir=tmp_path / "r", parent=parent)
    assert built.spec["export"]["checkpoint"] == str(train_dir / "student_epoch_001_step_00008.pth")
    assert built.spec["export"]["onnx_file"] == str(tmp_path / "r" / "export" / "nvdinov2.onnx")
    assert built.spec["model"]["backbone"]["student_type"] == "vit_s"
    assert built.spec["model"]["backbone"]["img_size"] == 224
    assert built.inferred["export.checkpoint"]["fn"] == "parent_model"


def test_explicit_value_beats_inference(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    built = build_spec(skill, "export", results_dir=tmp_path / "r", overrides={"export.checkpoint": "/m/student.pth"})
    assert built.spec["export"]["checkpoint"] == "/m/student.pth"
    assert "export.checkpoint" not in built.inferred


def test_export_without_parent_is_a_clear_error(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    with pytest.raises(SpecError) as exc:
        build_spec(skill, "export", results_dir=tmp_path / "r")
    assert exc.value.field == "export.checkpoint"
    assert "parent_job_id" in exc.value.fix


def test_parent_without_student_checkpoint_names_what_is_there(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    train_dir = tmp_path / "p" / "train"
    train_dir.mkdir(parents=True)
    (train_dir / "model_epoch_000_step_00004.pth").write_bytes(b"x")
    (train_dir / "nvdinov2_model_latest.pth").symlink_to(train_dir / "model_epoch_000_step_00004.pth")
    with pytest.raises(NotFound) as exc:
        build_spec(
            skill,
            "inference",
            results_dir=tmp_path / "r",
            parent=ParentJob("job-p", {}, tmp_path / "p", "train"),
            overrides={"dataset.test_dataset.images_dir": str(tmp_path)},
        )
    assert "model_epoch_000_step_00004.pth" in str(exc.value)


def test_unknown_shorthand_and_section_get_did_you_mean(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    with pytest.raises(SpecError) as exc:
        build_spec(
            skill,
            "train",
            results_dir=tmp_path,
            shorthand={"num_epoch": 2},
            overrides={"dataset.train_dataset.images_dir": str(tmp_path)},
        )
    assert "num_epochs" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        build_spec(
            skill,
            "train",
            results_dir=tmp_path,
            overrides={"trian.num_epochs": 2, "dataset.train_dataset.images_dir": str(tmp_path)},
        )
    assert exc.value.field == "trian.num_epochs" and "train" in exc.value.fix


def test_missing_mandatory_data_source(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    with pytest.raises(SpecError) as exc:
        build_spec(skill, "train", results_dir=tmp_path)
    assert exc.value.field == "dataset.train_dataset.images_dir"
    assert "train_datasets" in exc.value.fix


def test_archive_data_source_is_staged_to_a_folder(tmp_path):
    import tarfile

    skill = CATALOG.get("tao-train-nvdinov2")
    root = tmp_path / "train"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0fake")
    root.mkdir()
    with tarfile.open(root / "images_train.tar.gz", "w:gz") as tar:
        tar.add(src / "a.jpg", arcname="a.jpg")
    built = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources={"train_datasets": str(root)})
    folder = Path(built.spec["dataset"]["train_dataset"]["images_dir"])
    assert folder.is_dir() and (folder / "a.jpg").exists()
    assert built.staged["dataset.train_dataset.images_dir"]["extracted"] is True


def test_num_gpus_sets_matching_gpu_ids_unless_given(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    ds = {"dataset.train_dataset.images_dir": str(tmp_path)}
    built = build_spec(skill, "train", results_dir=tmp_path / "r", overrides={**ds, "train.num_gpus": 4})
    assert built.spec["train"]["gpu_ids"] == [0, 1, 2, 3]
    built = build_spec(skill, "train", results_dir=tmp_path / "r", overrides={**ds, "train.num_gpus": 2, "train.gpu_ids": [2, 3]})
    assert built.spec["train"]["gpu_ids"] == [2, 3]


def test_resume_model_and_ptm_if_no_resume_model(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    ds = {"dataset.train_dataset.images_dir": str(tmp_path)}
    old = tmp_path / "old" / "train"
    old.mkdir(parents=True)
    for name in ("model_epoch_000_step_00004.pth", "model_epoch_001_step_00008.pth", "student_epoch_001_step_00008.pth"):
        (old / name).write_bytes(b"x")
    (old / "nvdinov2_model_latest.pth").symlink_to(old / "model_epoch_001_step_00008.pth")
    built = build_spec(
        skill,
        "train",
        results_dir=tmp_path / "r",
        overrides=ds,
        resume_from=tmp_path / "old",
        pretrained_model="/ptm/student.pth",
    )
    assert built.spec["train"]["resume_training_checkpoint_path"] == str(old / "model_epoch_001_step_00008.pth")
    assert built.spec["train"]["pretrained_model_path"] == ""  # a resume checkpoint exists: no PTM
    fresh = build_spec(skill, "train", results_dir=tmp_path / "r", overrides=ds, pretrained_model="/ptm/student.pth")
    assert fresh.spec["train"]["pretrained_model_path"] == "/ptm/student.pth"
    assert fresh.spec["train"]["resume_training_checkpoint_path"] == ""


# --- the skill_info contract, executed ------------------------------------------------------


def _train_parent(tmp_path: Path, skill, spec: dict) -> ParentJob:
    folder = tmp_path / "parent" / "results" / "train"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model_epoch_000_step_00010.pth", "student_epoch_000_step_00010.pth"):
        (folder / name).write_bytes(b"x")
    return ParentJob("job-train", spec, folder.parent, "train")


def test_required_keys_are_enforced_at_build(tmp_path):
    skill = CATALOG.get("tao-train-grounding-dino")
    act = skill.action("inference")
    kwargs = dict(
        results_dir=tmp_path / "r", data_sources=_dataset_roots(tmp_path, act), parent=_parent_for(tmp_path, skill, "inference")
    )
    with pytest.raises(SpecError) as exc:
        build_spec(skill, "inference", **kwargs)
    assert exc.value.field == "dataset.infer_data_sources.captions"
    assert [i.code for i in exc.value.issues] == ["missing"] and exc.value.fix
    built = build_spec(skill, "inference", shorthand={"captions": ["car"]}, **kwargs)
    assert built.spec["dataset"]["infer_data_sources"]["captions"] == ["car"]


@pytest.mark.parametrize("skill_name", ["tao-train-dino", "tao-train-grounding-dino"])
def test_backbone_and_full_model_weights_are_separate_inputs(tmp_path, skill_name):
    skill = CATALOG.get(skill_name)
    roots = _dataset_roots(tmp_path, skill.action("train"))
    full = build_spec(skill, "train", results_dir=tmp_path / "a", data_sources=roots, pretrained_model="/w/model.pth").spec
    assert full["train"]["pretrained_model_path"] == "/w/model.pth"
    assert full["model"]["pretrained_backbone_path"] in (None, "")
    back = build_spec(skill, "train", results_dir=tmp_path / "b", data_sources=roots, pretrained_backbone="/w/backbone.pth").spec
    assert back["model"]["pretrained_backbone_path"] == "/w/backbone.pth"
    assert back["train"]["pretrained_model_path"] in (None, "")


def test_pretrained_backbone_where_the_action_has_no_backbone_key_is_refused(tmp_path):
    skill = CATALOG.get("tao-train-nvdinov2")
    roots = _dataset_roots(tmp_path, skill.action("train"))
    with pytest.raises(SpecError) as exc:
        build_spec(skill, "train", results_dir=tmp_path / "r", data_sources=roots, pretrained_backbone="/w/b.pth")
    assert exc.value.field == "pretrained_backbone"


def test_s3_roots_survive_the_builder(tmp_path):
    skill = CATALOG.get("tao-train-dino")
    roots = {"train_datasets": "s3://bucket/data/train", "eval_dataset": "s3://bucket/data/val/"}
    spec = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources=roots).spec
    src = spec["dataset"]["train_data_sources"][0]
    assert src["image_dir"].startswith("s3://bucket/data/train/") and src["json_file"].startswith("s3://bucket/data/train/")
    assert spec["dataset"]["val_data_sources"][0]["image_dir"].startswith("s3://bucket/data/val/")
    issues = validator.validate_spec(skill.schema("train"), spec, network_arch="dino", action="train")
    assert [i for i in issues if i.code != "warning"] == []


def test_mae_export_carries_the_model_input_size(tmp_path):
    skill = CATALOG.get("tao-train-mask-auto-encoder")
    assert skill.template("export")["export"]["input_width"] == 960  # TAO's export default
    parent_spec = copy.deepcopy(skill.template("train"))
    parent_spec["dataset"]["augmentation"]["input_size"] = 224
    built = build_spec(skill, "export", results_dir=tmp_path / "r", parent=_train_parent(tmp_path, skill, parent_spec))
    assert built.spec["export"]["input_width"] == built.spec["export"]["input_height"] == 224
    assert any("export.input_width" in n and "dataset.augmentation.input_size" in n for n in built.notes)


def test_dino_distill_teacher_structure_comes_from_the_parent_train_job(tmp_path):
    skill = CATALOG.get("tao-train-dino")
    parent_spec = copy.deepcopy(skill.template("train"))
    parent_spec["model"].update({"backbone": "fan_small", "num_queries": 900, "num_select": 100})
    parent_spec["dataset"]["num_classes"] = 5
    act = skill.action("distill")
    built = build_spec(
        skill,
        "distill",
        results_dir=tmp_path / "r",
        data_sources=_dataset_roots(tmp_path, act),
        parent=_train_parent(tmp_path, skill, parent_spec),
    )
    teacher = built.spec["distill"]["teacher"]
    assert (teacher["backbone"], teacher["num_queries"], teacher["num_select"]) == ("fan_small", 900, 100)
    assert built.spec["dataset"]["num_classes"] == 5
    assert built.spec["distill"]["pretrained_teacher_model_path"].endswith("model_epoch_000_step_00010.pth")
    issues = validator.validate_spec(skill.schema("distill"), built.spec, network_arch="dino", action="distill")
    assert [i for i in issues if i.code != "warning"] == []


def test_dino_smoke_profile_carries_the_seed_class_count(tmp_path):
    skill = CATALOG.get("tao-train-dino")
    roots = _dataset_roots(tmp_path, skill.action("train"))
    spec = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources=roots, profile="smoke").spec
    assert spec["dataset"]["num_classes"] == 5


def test_mae_template_milestones_fit_num_epochs(tmp_path):
    skill = CATALOG.get("tao-train-mask-auto-encoder")
    roots = _dataset_roots(tmp_path, skill.action("train"))
    assert skill.template("train")["train"]["optim"]["milestones"] == [88, 96]  # TAO Core's default, 10 epochs
    built = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources=roots)
    ms, epochs = built.spec["train"]["optim"]["milestones"], built.spec["train"]["num_epochs"]
    assert ms and max(ms) <= epochs and ms == sorted(ms)
    issues = validator.validate_spec(skill.schema("train"), built.spec, network_arch="mae", action="train")
    assert "train.optim.milestones" not in {i.field for i in issues}
    kept = build_spec(skill, "train", results_dir=tmp_path / "k", data_sources=roots, overrides={"train.optim.milestones": [50]})
    assert kept.spec["train"]["optim"]["milestones"] == [50]  # the caller's value is never changed


@pytest.mark.parametrize("skill_name", ["tao-train-dino", "tao-train-grounding-dino"])
@pytest.mark.parametrize("dtype", ["fp16", "fp32", "FP16"])
def test_trt_data_type_shorthand_in_lower_case_validates(tmp_path, skill_name, dtype):
    skill = CATALOG.get(skill_name)
    built = build_spec(
        skill,
        "deploy_gen_trt_engine",
        results_dir=tmp_path / "r",
        parent=_parent_for(tmp_path, skill, "deploy_gen_trt_engine"),
        shorthand={"trt_data_type": dtype},
    )
    assert built.spec["gen_trt_engine"]["tensorrt"]["data_type"] == dtype
    issues = validator.validate_spec(
        skill.schema("deploy_gen_trt_engine"), built.spec, network_arch=skill.info.network_arch, action="deploy_gen_trt_engine"
    )
    assert [i for i in issues if i.code != "warning"] == []


def test_cli_pretrained_backbone_flag_reaches_the_builder(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from taoskills.surfaces.cli import app

    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    skill = CATALOG.get("tao-train-dino")
    roots = _dataset_roots(tmp_path, skill.action("train"))
    data = [f"--data={role}={root}" for role, root in roots.items()]
    args = [
        "spec",
        "build",
        "tao-train-dino",
        "train",
        *data,
        "--pretrained-backbone",
        "/w/fan.pth",
        "--pretrained",
        "/w/dino.pth",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    spec = json.loads(res.stdout)["spec"]
    assert spec["model"]["pretrained_backbone_path"] == "/w/fan.pth"
    assert spec["train"]["pretrained_model_path"] == "/w/dino.pth"


def test_folder_of_photos_given_directly_as_the_dataset_role(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    skill = CATALOG.get("tao-train-nvdinov2")
    photos = tmp_path / "myphotos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0fake")
    built = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources={"train_datasets": str(photos)})
    assert built.spec["dataset"]["train_dataset"]["images_dir"] == str(photos)


def test_zip_archive_with_the_same_stem_is_found_and_staged_in_the_cache(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    skill = CATALOG.get("tao-train-nvdinov2")
    root = tmp_path / "train"
    root.mkdir()
    with zipfile.ZipFile(root / "images_train.zip", "w") as z:
        z.writestr("a.jpg", b"\xff\xd8\xff\xe0fake")
    built = build_spec(skill, "train", results_dir=tmp_path / "r", data_sources={"train_datasets": str(root)})
    folder = Path(built.spec["dataset"]["train_dataset"]["images_dir"])
    assert (folder / "a.jpg").exists()
    assert (tmp_path / "home") in folder.parents  # extracted into the staging cache, not beside the archive
    assert not (root / "images_train").exists()


def test_dino_image_sizes_are_carried_down_the_whole_chain(tmp_path):
    """train -> evaluate/inference/export/quantize take the train job's input size and normalisation
    (dataset.augmentation sizes, mean/std); export -> gen_trt_engine -> TensorRT evaluate/inference keep
    them (the engine's H x W is the ONNX input's, which TensorRT reads from the graph)."""
    skill = CATALOG.get("tao-train-dino")
    train_spec = copy.deepcopy(skill.template("train"))
    aug = {"scales": [96, 128], "random_resize_max_size": 160, "test_random_resize": 128, "fixed_random_crop": 128}
    aug |= {"fixed_padding": False, "pad_size_divisor": 32, "input_mean": [0.5] * 3, "input_std": [0.25] * 3}
    train_spec["dataset"]["augmentation"].update(aug)
    train_spec["model"].update(num_queries=50, num_select=50)
    parent = _train_parent(tmp_path, skill, train_spec)
    children = {}
    for action in ("evaluate", "inference", "export", "quantize"):
        act = skill.action(action)
        extra = {"quantize.model_path": str(tmp_path / "dino.onnx")} if action == "quantize" else {}
        built = build_spec(
            skill,
            action,
            results_dir=tmp_path / action,
            data_sources=_dataset_roots(tmp_path, act),
            parent=parent,
            overrides=extra,
            stage=False,
        )
        assert {k: built.spec["dataset"]["augmentation"][k] for k in aug} == aug, action
        assert built.spec["model"]["num_queries"] == 50
        assert any("dataset.augmentation.test_random_resize=128" in n for n in built.notes), action
        issues = validator.validate_spec(skill.schema(action), built.spec, network_arch="dino", action=action)
        assert [i for i in issues if i.code != "warning"] == [], action
        children[action] = built.spec
    assert children["export"]["export"]["input_width"] == 640  # TAO's DINO export default stays unless set

    spec, job = children["export"], "export"
    for action in ("deploy_gen_trt_engine", "deploy_evaluate", "deploy_inference"):
        act = skill.action(action)
        folder = tmp_path / f"{job}_job" / act.checkpoint.from_action
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ("dino.onnx" if job == "export" else "dino.engine")).write_bytes(b"x")
        built = build_spec(
            skill,
            action,
            results_dir=tmp_path / action,
            data_sources=_dataset_roots(tmp_path, act),
            parent=ParentJob(f"job-{job}", spec, folder.parent, job),
            stage=False,
        ).spec
        assert {k: built["dataset"]["augmentation"][k] for k in aug} == aug, action
        assert built["model"]["num_queries"] == 50
        issues = validator.validate_spec(skill.schema(action), built, network_arch="dino", action=action)
        assert [i for i in issues if i.code != "warning"] == [], (action, issues)
        if action == "deploy_gen_trt_engine":
            assert built["gen_trt_engine"]["onnx_file"].endswith("dino.onnx")
            spec, job = built, "deploy_gen_trt_engine"
        else:
            assert built[action.removeprefix("deploy_")]["trt_engine"].endswith("dino.engine")
