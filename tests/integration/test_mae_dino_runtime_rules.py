"""Runtime rules of the MAE and DINO skills, torch-free: checkpoint choice (exact epoch/step
files, the latest alias only on request), structural keys carried from the parent job, and the
MAE seed error patterns in failure analysis (log lines as the built-in engine writes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taoskills.bank.catalog import Catalog
from taoskills.errors import SpecError
from taoskills.jobs import checkpoints
from taoskills.jobs.failure import analyze_failure
from taoskills.specs.builder import ParentJob, build_spec

MAE = "tao-train-mask-auto-encoder"
DINO = "tao-train-dino"


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load()


def _train_dir(tmp: Path, latest: str) -> Path:
    out = tmp / "results" / "train"
    out.mkdir(parents=True)
    for name in ("model_epoch_000_step_00008.pth", "model_epoch_001_step_00016.pth"):
        (out / name).write_bytes(b"x")
    (out / latest).symlink_to(out / "model_epoch_001_step_00016.pth")
    return tmp / "results"


@pytest.mark.parametrize(("skill", "latest"), [(MAE, "convnextv2_atto_latest.pth"), (DINO, "dino_model_latest.pth")])
@pytest.mark.parametrize("action", ["evaluate", "inference", "export"])
def test_checkpoint_rule_picks_model_epoch_latest_only_on_request(tmp_path, catalog, skill, latest, action):
    sk = catalog.get(skill)
    results = _train_dir(tmp_path, latest)
    rule = sk.action(action).checkpoint
    choice = checkpoints.select_checkpoint(results, rule, latest_alias=sk.info.latest_checkpoint_alias)
    assert Path(choice.path).name == "model_epoch_001_step_00016.pth"
    first = checkpoints.select_checkpoint(results, rule, latest_alias=sk.info.latest_checkpoint_alias, epoch=0)
    assert Path(first.path).name == "model_epoch_000_step_00008.pth"  # an exact epoch when asked
    asked = checkpoints.select_checkpoint(results, rule, latest_alias=sk.info.latest_checkpoint_alias, allow_latest=True)
    assert Path(asked.path).name == "model_epoch_001_step_00016.pth"  # the alias stands for its target file


def test_mae_structure_carried_into_evaluate_inference_export(tmp_path, catalog):
    sk = catalog.get(MAE)
    results = _train_dir(tmp_path, "convnextv2_atto_latest.pth")
    spec = {
        "train": {"stage": "finetune"},
        "model": {"arch": "convnextv2_atto", "num_classes": 4},
        "dataset": {"augmentation": {"input_size": 64}},
    }
    parent = ParentJob(job_id="job-parent", spec=spec, results_dir=results, action="train")
    val = tmp_path / "val"
    val.mkdir()
    for action, extra in (
        ("evaluate", {"dataset.val_data_sources": str(val)}),
        ("inference", {"dataset.test_data_sources": str(val)}),
    ):
        built = build_spec(sk, action, results_dir=tmp_path / action, parent=parent, overrides=extra, stage=False).spec
        assert built["train"]["stage"] == "finetune" and built["model"] == {**built["model"], **spec["model"]}
        assert built["dataset"]["augmentation"]["input_size"] == 64
        assert Path(built[action]["checkpoint"]).name == "model_epoch_001_step_00016.pth"
    exp = build_spec(sk, "export", results_dir=tmp_path / "export", parent=parent, stage=False).spec
    assert exp["export"]["input_width"] == exp["export"]["input_height"] == 64
    assert exp["export"]["onnx_file"].endswith("/export/mae.onnx")


def _job(svc, job_id: str, stage: str, results: Path, status: str = "COMPLETE") -> None:
    from taoskills.jobs.store import JobRecord

    spec = {"train": {"stage": stage}, "model": {"arch": "vit_base_patch16"}, "dataset": {"augmentation": {"input_size": 96}}}
    svc.store.create(JobRecord(job_id=job_id, skill=MAE, action="train", status=status, spec=spec, results_dir=str(results)))


def test_service_finetune_with_pretrain_parent_gets_its_checkpoint(tmp_path):
    """Through the service: parent_job_id = a COMPLETE pretrain job fills train.pretrained_model_path
    with its exact model_epoch_*_step_* file (the latest alias is never picked), carries its arch and
    input size; a finetune job as the parent of a train is refused before anything is built."""
    from taoskills.service import Service

    svc = Service(home=tmp_path / "home")
    results = _train_dir(tmp_path / "pre", "vit_base_patch16_latest.pth")
    _job(svc, "job-pre", "pretrain", results)
    _job(svc, "job-ft", "finetune", results)
    data = tmp_path / "data"
    for sub in ("images_train", "images_val"):
        (data / sub / "a").mkdir(parents=True)
    request = {
        "data_sources": {"train_datasets": str(data), "eval_dataset": str(data)},
        "overrides": {"train.stage": "finetune", "model.num_classes": 4},
    }
    built = svc.build_spec(MAE, "train", stage=False, parent_job_id="job-pre", **request)
    assert built.spec["train"]["pretrained_model_path"] == str(results / "train" / "model_epoch_001_step_00016.pth")
    assert built.inferred["train.pretrained_model_path"]["fn"] == "ptm_if_no_resume_model"
    assert built.spec["model"]["arch"] == "vit_base_patch16" and built.spec["dataset"]["augmentation"]["input_size"] == 96
    with pytest.raises(SpecError) as exc:
        svc.build_spec(MAE, "train", stage=False, parent_job_id="job-ft", **request)
    assert exc.value.field == "parent_job_id" and "train.stage=pretrain" in exc.value.fix
    # and the finetune job still feeds evaluate (its classification checkpoint)
    ev = svc.build_spec(MAE, "evaluate", stage=False, parent_job_id="job-ft", data_sources={"eval_dataset": str(data)})
    assert Path(ev.spec["evaluate"]["checkpoint"]).name == "model_epoch_001_step_00016.pth"
    assert ev.spec["train"]["stage"] == "finetune"


@pytest.mark.torch  # places the job on the built-in engine, which needs the engine extra
def test_dino_structural_keys_carried_into_every_child_action(catalog):
    from taoskills.engine.dino.common import STRUCTURAL_KEYS

    sk = catalog.get(DINO)
    for action in ("evaluate", "inference", "export", "quantize"):
        carried = set(sk.action(action).carry_from_parent)
        assert set(STRUCTURAL_KEYS) <= carried, (action, set(STRUCTURAL_KEYS) - carried)


def _log(*lines: str) -> str:
    return "\n".join(["[tao-skills] running: python -m taoskills.engine mae ...", *lines, "Execution status: FAIL"])


@pytest.mark.parametrize(
    ("action", "line", "pattern"),
    [
        (
            "inference",
            "ERROR:taoskills.engine:Inference with pretrain checkpoints: the MAE predict dataloader raises "
            "NotImplementedError for train.stage: pretrain (a pretrained MAE encoder has no classifier).",
            "pretrain_checkpoint_inference",
        ),
        (
            "evaluate",
            "ERROR:taoskills.engine:Stage mismatch: evaluate.checkpoint=/r/train/model_epoch_000_step_00008.pth is a "
            "train.stage=pretrain checkpoint but the spec has train.stage=finetune.",
            "stage_mismatch",
        ),
        (
            "train",
            "ERROR:taoskills.engine:num_classes mismatch (finetune only): model.num_classes=5 but "
            "dataset.train_data_sources has 4 class folders (a, b, c, d).",
            "num_classes_mismatch",
        ),
    ],
)
def test_mae_seed_error_patterns_in_failure_analysis(catalog, action, line, pattern):
    sk = catalog.get(MAE)
    result = analyze_failure(_log(line), sk.info.error_patterns, action=action, exit_code=1)
    assert result.primary is not None and result.primary.id == pattern, result.matched
    assert result.primary.fault == "program" and result.primary.fix


def test_demo_network_option(tmp_path):
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("tao-skills"))
    helptext = subprocess.run([cli, "demo", "--help"], capture_output=True, text=True, timeout=120).stdout
    assert "--network" in helptext and "mae" in helptext and "dino" in helptext
    bad = subprocess.run([cli, "demo", "--network", "yolo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "network" in bad.stderr and "nvdinov2, mae, dino" in bad.stderr
    assert not list(tmp_path.iterdir())  # nothing written for an unknown network
