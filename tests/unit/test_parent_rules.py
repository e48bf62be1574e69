"""Parent-job rules of the spec builder (taoskills.specs.parent), on the MAE skill's data:
a finetune launched with a pretrain parent job gets the parent's exact ``model_epoch_*_step_*``
checkpoint as ``train.pretrained_model_path`` (the ``*_latest.pth`` alias only when the caller
passes it), the pretrain structure is carried, and a parent of the wrong stage is refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydantic import ValidationError

from taoskills.bank.catalog import Catalog
from taoskills.bank.skill_info import ActionInfo
from taoskills.errors import NotFound, SpecError
from taoskills.specs.builder import ParentJob, build_spec

MAE = "tao-train-mask-auto-encoder"
CATALOG = Catalog.load()
FINETUNE = {"train.stage": "finetune", "model.num_classes": 4}


def _pretrain_parent(tmp_path: Path, *, stage: str = "pretrain", files=None, latest: bool = True) -> ParentJob:
    sk = CATALOG.get(MAE)
    out = tmp_path / "parent" / "results" / "train"
    out.mkdir(parents=True)
    names = files if files is not None else ["model_epoch_000_step_00004.pth", "model_epoch_002_step_00012.pth"]
    for name in names:
        (out / name).write_bytes(b"x")
    if latest:
        # the alias is the newest file on disk: a rule that took latest or mtime would pick it
        (out / "vit_base_patch16_latest.pth").write_bytes(b"newest")
    spec = copy.deepcopy(sk.template("train"))
    spec["train"]["stage"] = stage
    spec["model"]["arch"] = "vit_base_patch16"
    spec["dataset"]["augmentation"]["input_size"] = 160
    return ParentJob(job_id="job-pre", spec=spec, results_dir=out.parent, action="train")


def _images(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "data" / "images_train").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "images_val").mkdir(parents=True, exist_ok=True)
    return {"train_datasets": str(tmp_path / "data"), "eval_dataset": str(tmp_path / "data")}


def _finetune(tmp_path: Path, parent: ParentJob | None, **kw):
    return build_spec(
        CATALOG.get(MAE),
        "train",
        results_dir=tmp_path / "ft",
        parent=parent,
        data_sources=_images(tmp_path),
        overrides={**FINETUNE, **kw.pop("overrides", {})},
        stage=False,
        **kw,
    )


def test_finetune_from_pretrain_parent_takes_its_exact_epoch_step_checkpoint(tmp_path):
    parent = _pretrain_parent(tmp_path)
    built = _finetune(tmp_path, parent)
    path = Path(built.spec["train"]["pretrained_model_path"])
    assert path == parent.results_dir / "train" / "model_epoch_002_step_00012.pth"  # not the newer *_latest.pth
    inferred = built.inferred["train.pretrained_model_path"]
    assert inferred["fn"] == "ptm_if_no_resume_model" and "job-pre" in inferred["reason"]
    # the pretrain checkpoint's structure is carried; the finetune's own keys stay its own
    assert built.spec["model"]["arch"] == "vit_base_patch16"
    assert built.spec["dataset"]["augmentation"]["input_size"] == 160
    assert built.spec["train"]["stage"] == "finetune" and built.spec["model"]["num_classes"] == 4


def test_caller_pretrained_model_wins_so_latest_is_used_only_on_request(tmp_path):
    parent = _pretrain_parent(tmp_path)
    alias = str(parent.results_dir / "train" / "vit_base_patch16_latest.pth")
    built = _finetune(tmp_path, parent, pretrained_model=alias)
    assert built.spec["train"]["pretrained_model_path"] == alias
    assert built.inferred["train.pretrained_model_path"]["reason"] == "pretrained model given by caller"
    # the dotted override is an explicit value too: the inference function is skipped
    built = _finetune(tmp_path, parent, overrides={"train.pretrained_model_path": alias})
    assert built.spec["train"]["pretrained_model_path"] == alias and "train.pretrained_model_path" not in built.inferred


def test_a_finetune_parent_is_refused_for_train(tmp_path):
    parent = _pretrain_parent(tmp_path, stage="finetune")
    with pytest.raises(SpecError) as exc:
        _finetune(tmp_path, parent)
    assert exc.value.field == "parent_job_id"
    assert "train.stage='finetune'" in str(exc.value) and "train.stage='pretrain'" in str(exc.value)
    assert "train.stage=pretrain" in exc.value.fix


def test_parent_with_only_a_latest_alias_names_the_rule(tmp_path):
    parent = _pretrain_parent(tmp_path, files=[])
    with pytest.raises(NotFound) as exc:
        _finetune(tmp_path, parent)
    assert exc.value.field == "parent_model"
    assert "model_epoch_*_step_*.pth" in exc.value.fix and "vit_base_patch16_latest.pth" in exc.value.fix


def test_resume_empties_the_pretrained_model_even_with_a_parent(tmp_path):
    parent = _pretrain_parent(tmp_path)
    own = tmp_path / "own" / "train"
    own.mkdir(parents=True)
    (own / "model_epoch_000_step_00003.pth").write_bytes(b"x")
    built = _finetune(tmp_path, parent, resume_from=own.parent)
    assert built.spec["train"]["pretrained_model_path"] == ""
    assert built.spec["train"]["resume_training_checkpoint_path"] == str(own / "model_epoch_000_step_00003.pth")


def test_no_parent_keeps_the_old_behaviour(tmp_path):
    built = _finetune(tmp_path, None)
    assert built.spec["train"]["pretrained_model_path"] == ""
    assert built.inferred["train.pretrained_model_path"]["reason"] == "no pretrained model"


def test_smoke_profile_keeps_the_keys_carried_from_the_parent(tmp_path):
    parent = _pretrain_parent(tmp_path)
    built = _finetune(tmp_path, parent, profile="smoke")
    assert built.spec["model"]["arch"] == "vit_base_patch16"  # smoke would set convnextv2_atto
    assert built.spec["dataset"]["augmentation"]["input_size"] == 160
    assert built.spec["dataset"]["batch_size"] == 2  # the other smoke settings apply


def test_finetune_parent_still_feeds_evaluate_inference_export(tmp_path):
    sk = CATALOG.get(MAE)
    parent = _pretrain_parent(tmp_path, stage="finetune", latest=False)
    parent.spec["model"]["num_classes"] = 4
    for action in ("evaluate", "inference", "export"):
        over = {"evaluate": {"dataset.val_data_sources": "/v"}, "inference": {"dataset.test_data_sources": "/t"}}.get(action, {})
        spec = build_spec(sk, action, results_dir=tmp_path / action, parent=parent, overrides=over, stage=False).spec
        assert Path(spec[action]["checkpoint"]).name == "model_epoch_002_step_00012.pth"
        assert spec["train"]["stage"] == "finetune" and spec["model"]["num_classes"] == 4


def test_parent_when_needs_a_parent_action():
    base = {"description": "d", "command": "mae train -e {config_path}", "spec_template": "t.yaml", "schema_file": "s.json"}
    with pytest.raises(ValidationError, match="parent_when needs parent_action"):
        ActionInfo(**base, parent_when={"train.stage": "pretrain"})
    with pytest.raises(ValidationError, match="dotted spec key"):
        ActionInfo(**base, parent_action="train", parent_when={"not a key": "x"})
    assert ActionInfo(**base, parent_action="train", parent_when={"train.stage": "pretrain"}).parent_when
