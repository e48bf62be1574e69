"""Checkpoint discovery and selection on a real NVDINOv2-style results folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taoskills.bank.skill_info import CheckpointRule, SkillInfo
from taoskills.errors import NotFound
from taoskills.jobs.checkpoints import (
    DEFAULT_RESUME_RULE,
    list_checkpoints,
    parse_checkpoint_name,
    resume_rule,
    select_checkpoint,
    select_for_action,
)

ALIAS = "nvdinov2_model_latest.pth"
STUDENT = CheckpointRule(from_action="train", prefer=["student_epoch_*.pth"], avoid=["teacher_epoch_*", "model_epoch_*"])
RESUME = CheckpointRule(from_action="train", prefer=["model_epoch_*.pth"], avoid=["student_epoch_*", "teacher_epoch_*"])


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ckpt")
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def results(tmp_path) -> Path:
    """results_dir/train/ as NVDINOv2 leaves it after 3 epochs (zero-indexed files 000..002)."""
    train = tmp_path / "results" / "train"
    t = 1_700_000_000
    for e in range(3):
        step = (e + 1) * 40
        _touch(train / f"model_epoch_{e:03d}_step_{step:05d}.pth", t + e)
        _touch(train / f"student_epoch_{e:03d}_step_{step:05d}.pth", t + e)
        _touch(train / f"teacher_epoch_{e:03d}_step_{step:05d}.pth", t + e)
    (train / ALIAS).symlink_to("model_epoch_002_step_00120.pth")
    _touch(train / "lightning_logs" / "version_1" / "epoch=9-step=999.ckpt", t + 100)
    _touch(train / "ptm" / "model_epoch_099.pth", t + 100)
    (train / "status.json").write_text("{}")
    (tmp_path / "results" / "export").mkdir()
    _touch(tmp_path / "results" / "export" / "nvdinov2.onnx", t + 10)
    return tmp_path / "results"


def test_parse_names():
    assert parse_checkpoint_name("model_epoch_004_step_00120.pth") == (4, 120, "model")
    assert parse_checkpoint_name("student_epoch_007.pth") == (7, None, "student")
    assert parse_checkpoint_name("teacher_epoch_001_step_00002.pth") == (1, 2, "teacher")
    assert parse_checkpoint_name("dino_model_latest.pth") == (None, None, "latest")
    assert parse_checkpoint_name("nvdinov2.onnx")[2] == "onnx"
    assert parse_checkpoint_name("model.engine")[2] == "engine"
    assert parse_checkpoint_name("fp16.trt")[2] == "engine"
    assert parse_checkpoint_name("12.pth") == (12, None, "model")
    assert parse_checkpoint_name("weights.pt") == (None, None, "other")


def test_list_checkpoints_skips_logs_and_ptm(results):
    files = list_checkpoints(results)
    names = {f.name for f in files}
    assert "epoch=9-step=999.ckpt" not in names and "model_epoch_099.pth" not in names
    assert "status.json" not in names
    assert {"nvdinov2.onnx", ALIAS, "student_epoch_002_step_00120.pth"} <= names
    alias = next(f for f in files if f.name == ALIAS)
    assert alias.is_link and alias.is_latest and alias.kind == "latest"
    kinds = {f.kind for f in files}
    assert kinds == {"model", "student", "teacher", "latest", "onnx"}
    with pytest.raises(NotFound):
        list_checkpoints(results / "nope")


def test_inference_gets_newest_student(results):
    choice = select_checkpoint(results, STUDENT, latest_alias=ALIAS)
    assert choice.path == results / "train" / "student_epoch_002_step_00120.pth"
    assert choice.epoch == 2 and choice.step == 120 and choice.glob == "student_epoch_*.pth"
    assert {c.name for c in choice.candidates} == {f"student_epoch_{e:03d}_step_{(e + 1) * 40:05d}.pth" for e in range(3)}
    assert choice.searched == results / "train"


def test_resume_gets_model_epoch(results):
    choice = select_checkpoint(results, RESUME, latest_alias=ALIAS)
    assert choice.path.name == "model_epoch_002_step_00120.pth"
    assert select_checkpoint(results, DEFAULT_RESUME_RULE).path.name == "model_epoch_002_step_00120.pth"


def test_latest_only_when_allowed(results):
    # an "anything .pth" rule: the latest alias never wins unless allowed
    rule = CheckpointRule(prefer=["nvdinov2_model_latest.pth"])
    with pytest.raises(NotFound) as exc:
        select_checkpoint(results, rule, latest_alias=ALIAS, action="inference")
    assert ALIAS in exc.value.fix and "latest alias" in exc.value.fix
    # allowed: the alias resolves to its link target
    choice = select_checkpoint(results, rule, latest_alias=ALIAS, allow_latest=True)
    assert choice.path == results / "train" / "model_epoch_002_step_00120.pth"
    assert not choice.path.is_symlink() and choice.rule.allow_latest
    assert "matches 'nvdinov2_model_latest.pth'" in choice.reason
    # allowing latest never lets an avoided file win: the alias stands for a model_epoch file
    assert select_checkpoint(results, STUDENT, latest_alias=ALIAS, allow_latest=True).path.name.startswith("student_epoch_002")
    with pytest.raises(NotFound):
        select_checkpoint(results, rule.model_copy(update={"avoid": ["model_epoch_*"]}), latest_alias=ALIAS, allow_latest=True)
    choice = select_checkpoint(results, rule.model_copy(update={"allow_latest": True}), latest_alias=ALIAS)
    assert choice.path.name == "model_epoch_002_step_00120.pth"


def test_latest_is_fallback_when_no_epoch_files(tmp_path):
    train = tmp_path / "train"
    _touch(train / "dino_model_latest.pth", 1_700_000_000)
    with pytest.raises(NotFound):
        select_checkpoint(tmp_path, RESUME)
    choice = select_checkpoint(tmp_path, RESUME, allow_latest=True)
    assert choice.path.name == "dino_model_latest.pth" and "latest" in choice.reason


def test_zero_indexed_epoch_request(results):
    exact = select_checkpoint(results, STUDENT, epoch=1)
    assert exact.path.name == "student_epoch_001_step_00080.pth"
    # 3 epochs trained: "epoch 3" is the zero-indexed file 002
    shifted = select_checkpoint(results, STUDENT, epoch=3)
    assert shifted.path.name == "student_epoch_002_step_00120.pth"
    assert "zero-indexed" in shifted.reason
    by_step = select_checkpoint(results, RESUME, step=80)
    assert by_step.path.name == "model_epoch_001_step_00080.pth"
    with pytest.raises(NotFound) as exc:
        select_checkpoint(results, STUDENT, epoch=7)
    assert "Epochs available: 0, 1, 2" in exc.value.fix


def test_nothing_found_lists_what_is_there(tmp_path):
    train = tmp_path / "train"
    _touch(train / "model_epoch_000_step_00010.pth", 1_700_000_000)
    (train / ALIAS).symlink_to("model_epoch_000_step_00010.pth")
    with pytest.raises(NotFound) as exc:
        select_checkpoint(tmp_path, STUDENT, latest_alias=ALIAS, action="inference")
    err = exc.value
    assert "model_epoch_000_step_00010.pth" in err.message and ALIAS in err.message
    assert err.fix.startswith("inference needs student_epoch_*.pth")
    assert f"{ALIAS} is a latest alias (a training checkpoint)" in err.fix
    assert err.field == "parent_model"
    with pytest.raises(NotFound, match="does not exist"):
        select_checkpoint(tmp_path / "missing", STUDENT)


def test_falls_back_to_results_dir_itself_and_mtime_tiebreak(tmp_path):
    _touch(tmp_path / "student_epoch_001.pth", 1_700_000_000)
    _touch(tmp_path / "again" / "student_epoch_001.pth", 1_700_000_500)
    choice = select_checkpoint(tmp_path, STUDENT)
    assert choice.searched == tmp_path
    assert choice.path == tmp_path / "again" / "student_epoch_001.pth"


def _info(train_resume: dict | None = None) -> SkillInfo:
    cmd = "nvdinov2 {action} -e {config_path}"
    base = {"description": "x", "spec_template": "t.yaml", "schema_file": "s.json"}
    train = dict(base, command=cmd.replace("{action}", "train"))
    if train_resume:
        train["resume"] = train_resume
    return SkillInfo.model_validate(
        {
            "name": "tao-train-nvdinov2",
            "description": "x",
            "network_arch": "nvdinov2",
            "gpu_spec_key": "train.num_gpus",
            "multi_gpu": {"launcher": "lightning"},
            "metrics": [{"name": "train_loss", "direction": "minimize"}],
            "latest_checkpoint_alias": ALIAS,
            "routing": {"triggers": ["nvdinov2"]},
            "actions": {
                "train": train,
                "inference": dict(
                    base,
                    command=cmd.replace("{action}", "inference"),
                    parent_action="train",
                    spec_params={"inference.checkpoint": "parent_model"},
                    checkpoint=STUDENT.model_dump(),
                ),
                "export": dict(base, command=cmd.replace("{action}", "export")),
            },
        }
    )


def test_select_for_action_reads_rules_from_skill_info(results):
    info = _info()
    assert select_for_action(info, "inference", results).path.name == "student_epoch_002_step_00120.pth"
    assert resume_rule(info) == DEFAULT_RESUME_RULE
    assert select_for_action(info, "resume", results).path.name == "model_epoch_002_step_00120.pth"
    with pytest.raises(NotFound, match="consumes no checkpoint"):
        select_for_action(info, "export", results)
    with pytest.raises(NotFound, match="no action"):
        select_for_action(info, "distill", results)
    custom = _info(train_resume={"prefer": ["model_epoch_000_*.pth"]})
    assert resume_rule(custom).prefer == ["model_epoch_000_*.pth"]
    assert select_for_action(custom, "resume", results).path.name == "model_epoch_000_step_00040.pth"


def test_real_nvdinov2_skill_rules(results):
    """The rules as the packaged skill declares them (skills/tao-train-nvdinov2)."""
    import yaml

    from taoskills.paths import skills_dir

    path = skills_dir() / "tao-train-nvdinov2" / "references" / "skill_info.yaml"
    info = SkillInfo.model_validate(yaml.safe_load(path.read_text()))
    for action in ("inference", "export"):
        choice = select_for_action(info, action, results)
        assert choice.path.name == "student_epoch_002_step_00120.pth"
    assert select_for_action(info, "resume", results).path.name == "model_epoch_002_step_00120.pth"
    assert select_for_action(info, "inference", results, epoch=3).path.name == "student_epoch_002_step_00120.pth"


def _packaged(skill: str) -> SkillInfo:
    import yaml

    from taoskills.paths import skills_dir

    return SkillInfo.model_validate(yaml.safe_load((skills_dir() / skill / "references" / "skill_info.yaml").read_text()))


@pytest.mark.parametrize(
    "skill,alias", [("tao-train-dino", "dino_model_latest.pth"), ("tao-train-grounding-dino", "gdino_model_latest.pth")]
)
def test_explicit_latest_request_works_although_the_rule_avoids_the_alias(tmp_path, skill, alias):
    """The packaged rules list the alias under ``avoid``; asking for latest must still work."""
    info = _packaged(skill)
    assert alias in info.actions["evaluate"].checkpoint.avoid
    _touch(tmp_path / "train" / alias, 1_700_000_000)  # a plain file: only the alias is there
    with pytest.raises(NotFound):
        select_for_action(info, "evaluate", tmp_path)
    assert select_for_action(info, "evaluate", tmp_path, allow_latest=True).path.name == alias
    assert select_for_action(info, "resume", tmp_path, allow_latest=True).path.name == alias
    # a latest link resolves to the numbered file it stands for
    _touch(tmp_path / "train" / "model_epoch_004_step_00050.pth", 1_700_000_001)
    (tmp_path / "train" / alias).unlink()
    (tmp_path / "train" / alias).symlink_to("model_epoch_004_step_00050.pth")
    assert select_for_action(info, "evaluate", tmp_path, allow_latest=True).path.name == "model_epoch_004_step_00050.pth"


def test_explicit_latest_still_refuses_what_the_alias_stands_for(results):
    """NVDINOv2 inference avoids model_epoch_* (training checkpoints): the latest alias points at one."""
    info = _packaged("tao-train-nvdinov2")
    choice = select_for_action(info, "inference", results, allow_latest=True)
    assert choice.path.name.startswith("student_epoch_002")
