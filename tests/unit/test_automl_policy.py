"""automl_policy resolution: the seeds' Train Action Policy as a table of real decisions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydantic
import pytest
import yaml

from taoskills.bank.automl_policy import (
    ACCEPTED_OFF_PHRASES,
    AUTOML_SKILL,
    NOT_RUNNABLE_REASON,
    REQUIRED_FILES,
    PolicyDecision,
    missing_automl_files,
    normalize_policy_value,
    policy_from_text,
    resolve_automl_policy,
)
from taoskills.bank.skill_info import SkillInfo
from taoskills.errors import SpecError

REPO = Path(__file__).resolve().parents[2]


def _info(name: str = "tao-train-toy", automl_enabled: bool = True, kind: str = "model") -> SkillInfo:
    action = {
        "description": "train",
        "command": "toy train -e {config_path}",
        "spec_template": "spec_template_train.yaml",
        "schema_file": "train.schema.json",
    }
    data = {
        "name": name,
        "kind": kind,
        "description": "a toy model",
        "network_arch": "toy",
        "automl_enabled": automl_enabled,
        "gpu_spec_key": "train.num_gpus",
        "multi_gpu": {"launcher": "lightning"},
        "metrics": [{"name": "train_loss", "direction": "minimize"}],
        "actions": {"train": action, "export": {**action, "description": "export", "command": "toy export -e {config_path}"}},
        "routing": {"triggers": ["toy"]},
    }
    return SkillInfo.model_validate(data)


@pytest.fixture
def skill_dir(tmp_path: Path) -> Path:
    """A skill folder with a parseable train schema and train template."""
    d = tmp_path / "tao-train-toy"
    (d / "schemas").mkdir(parents=True)
    (d / "references").mkdir()
    (d / "schemas/train.schema.json").write_text(json.dumps({"type": "object", "properties": {}}))
    (d / "references/spec_template_train.yaml").write_text(yaml.safe_dump({"train": {"num_epochs": 10}}))
    return d


def test_default_is_on_and_routes_via_automl(skill_dir: Path) -> None:
    d = resolve_automl_policy(_info(), "train", skill_dir=skill_dir, text="train the toy model on my data")
    assert (d.policy, d.requested, d.source, d.applies) == ("on", "on", "default", True)
    assert d.automl_runnable and d.route_via == AUTOML_SKILL and d.missing == []
    assert str(skill_dir) in d.reason


def test_action_none_counts_as_train(skill_dir: Path) -> None:
    assert resolve_automl_policy(_info(), None, skill_dir=skill_dir).policy == "on"


@pytest.mark.parametrize(
    "text",
    [
        "train it but turn off AutoML",
        "Turn AutoML off for this run",
        "switch off automl please",
        "Disable AutoML",
        "disable hyperparameter search",
        "no HPO",
        "No AutoML this time",
        "train without AutoML",
        "skip HPO, I know the settings",
        "skip auto-ml",
        "don't use AutoML",
        "do not run HPO",
        "AutoML off",
        "automl disabled",
        "plain training please",
        "a plain train run",
        "direct training",
        "just train directly",
        "a single training run",
        "automl_policy: off",
        "automl_policy=off",
        "no hyperparameter tuning",
        "HPO is not needed here",
    ],
)
def test_off_phrases(skill_dir: Path, text: str) -> None:
    d = resolve_automl_policy(_info(), "train", text=text, skill_dir=skill_dir)
    assert (d.policy, d.requested, d.source) == ("off", "off", "request text"), text
    assert d.route_via is None and d.phrase
    assert d.phrase.lower() in text.lower()
    assert "this run only" in d.reason


def test_accepted_phrase_list_is_documented() -> None:
    # every literal, single-form phrase of the documented list is recognised as off
    literal = [p for p in ACCEPTED_OFF_PHRASES if "/" not in p]
    assert {"turn off AutoML", "disable AutoML", "no HPO", "plain training"} <= set(literal)
    for phrase in literal:
        assert policy_from_text(phrase)[0] == "off", phrase


@pytest.mark.parametrize(
    "text", ["run HPO on it", "use AutoML", "do a hyperparameter search", "tune the hyperparameters", "automl_policy: auto"]
)
def test_on_phrases_come_from_request_text(skill_dir: Path, text: str) -> None:
    d = resolve_automl_policy(_info(), "train", text=text, skill_dir=skill_dir)
    assert (d.policy, d.source) == ("on", "request text")


def test_off_wins_over_on_mention() -> None:
    assert policy_from_text("AutoML is great but no HPO today")[0] == "off"


def test_extra_off_phrases_from_the_automl_skill() -> None:
    assert policy_from_text("train quickly, one-shot please")[0] is None
    assert policy_from_text("train quickly, one-shot please", ["one-shot"]) == ("off", "one-shot")


@pytest.mark.parametrize("value,expected", [("on", "on"), ("off", "off"), ("auto", "on"), (" AUTO ", "on"), ("Off", "off")])
def test_explicit_values(skill_dir: Path, value: str, expected: str) -> None:
    d = resolve_automl_policy(
        _info(), "train", explicit=value, text="no HPO" if expected == "on" else "run HPO", skill_dir=skill_dir
    )
    assert (d.policy, d.source, d.phrase) == (expected, "explicit", None)


@pytest.mark.parametrize("value", ["yes", "true", "", "maybe", "enabled"])
def test_invalid_explicit_value(skill_dir: Path, value: str) -> None:
    with pytest.raises(SpecError) as err:
        resolve_automl_policy(_info(), "train", explicit=value, skill_dir=skill_dir)
    e = err.value
    assert e.field == "automl_policy"
    assert e.details["allowed"] == ["on", "off", "auto"]
    assert "on" in e.fix and "off" in e.fix and "auto" in e.fix
    with pytest.raises(SpecError):
        normalize_policy_value(value)


@pytest.mark.parametrize("action", ["export", "evaluate", "inference", "distill", "quantize", "deploy_gen_trt_engine"])
def test_non_train_actions_stay_in_model_skill(skill_dir: Path, action: str) -> None:
    d = resolve_automl_policy(_info(), action, explicit="on", skill_dir=skill_dir)
    assert (d.policy, d.applies, d.route_via) == ("off", False, None)
    assert "non-train actions stay in the model skill" in d.reason


def test_not_enabled(skill_dir: Path) -> None:
    d = resolve_automl_policy(_info(automl_enabled=False), "train", skill_dir=skill_dir)
    assert (d.policy, d.automl_enabled, d.automl_runnable) == ("off", False, False)
    assert "automl_enabled: false" in d.reason


def _real_or_toy_skill(tmp_path: Path, skill_dir: Path) -> tuple[SkillInfo, Path]:
    """A tmp copy of a real model skill folder when the bank has one, else the toy folder."""
    for name in ("tao-train-dino", "tao-train-nvdinov2", "tao-train-mask-auto-encoder", "tao-train-grounding-dino"):
        src = REPO / "skills" / name
        if all((src / f).is_file() for f in (*REQUIRED_FILES, "references/skill_info.yaml")):
            dst = tmp_path / "copy" / name
            shutil.copytree(src, dst)
            info = SkillInfo.model_validate(yaml.safe_load((dst / "references/skill_info.yaml").read_text()))
            if info.automl_enabled:
                return info, dst
    return _info(), skill_dir


def test_missing_train_schema_is_not_runnable(tmp_path: Path, skill_dir: Path) -> None:
    info, d = _real_or_toy_skill(tmp_path, skill_dir)
    before = info.model_dump()
    assert resolve_automl_policy(info, "train", skill_dir=d).policy == "on"
    (d / "schemas/train.schema.json").unlink()
    dec = resolve_automl_policy(info, "train", skill_dir=d)
    assert (dec.policy, dec.requested, dec.automl_enabled, dec.automl_runnable) == ("off", "on", True, False)
    assert NOT_RUNNABLE_REASON in dec.reason
    assert dec.missing == ["schemas/train.schema.json"]
    assert info.model_dump() == before  # the per-run decision never changes skill metadata


def test_unparsable_template_is_not_runnable(skill_dir: Path) -> None:
    (skill_dir / "references/spec_template_train.yaml").write_text("train: [unclosed\n")
    assert missing_automl_files(skill_dir) == ["references/spec_template_train.yaml"]
    dec = resolve_automl_policy(_info(), "train", skill_dir=skill_dir)
    assert dec.policy == "off" and NOT_RUNNABLE_REASON in dec.reason


def test_unknown_skill_dir_reports_every_required_file() -> None:
    dec = resolve_automl_policy(_info(), "train")
    assert dec.policy == "off" and dec.missing == list(REQUIRED_FILES)


def test_explicit_off_on_non_enabled_and_decision_is_frozen(skill_dir: Path) -> None:
    dec = resolve_automl_policy(_info(), "train", explicit="off", skill_dir=skill_dir)
    assert isinstance(dec, PolicyDecision) and dec.policy == "off" and dec.automl_runnable
    with pytest.raises(pydantic.ValidationError):
        dec.policy = "on"  # type: ignore[misc]
