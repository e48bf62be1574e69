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
