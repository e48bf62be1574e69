"""The automl_policy table at launch: an explicit value wins, each off phrase trains
directly, a skill without AutoML trains directly with the reason, a skill whose train
schema/template does not parse is "enabled but not runnable" (and never improvised)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from automl_helpers import SKILL, install_fake_engine, request, settings  # noqa: E402
from taoskills.bank.automl_policy import NOT_RUNNABLE_REASON  # noqa: E402
from taoskills.service import Service  # noqa: E402

REPO_SKILLS = Path(__file__).resolve().parents[2] / "skills"


@pytest.fixture()
def env(tmp_path, monkeypatch):
    from taoskills.data.sample_data import write_sample_images

    install_fake_engine(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TAO_SKILLS_FAKE_EPOCH_S", "0.01")
    write_sample_images(tmp_path / "data" / "images_train", n=8)
    return tmp_path, tmp_path / "data"


def _plain(svc: Service, handle) -> None:
    assert handle.automl_policy == "off"
    assert not (Path(handle.results_dir) / "automl.json").exists()
    assert svc.wait_job(handle.job_id, timeout_s=60).status == "COMPLETE"


@pytest.mark.parametrize(
    "text",
    [
        "train NVDINOv2 on my photos, plain training",
        "turn off AutoML and train nvdinov2",
        "train it without AutoML",
        "no HPO please, just train",
        "disable automl for this run",
        "skip hyperparameter search and train directly",
        "train nvdinov2, automl_policy: off",
        "don't run AutoML",
    ],
)
def test_each_off_phrase_trains_directly(env, text):
    tmp, photos = env
    svc = Service(home=tmp / "home")
    handle = svc.launch_job(SKILL, "train", engine="tao", request_text=text, **request(photos))
    assert "request text" in handle.automl_reason
    _plain(svc, handle)


def test_explicit_value_wins_over_the_text(env):
    tmp, photos = env
    svc = Service(home=tmp / "home")
    off = svc.launch_job(SKILL, "train", engine="tao", automl_policy="off", request_text="run AutoML with HPO", **request(photos))
    assert "explicit" in off.automl_reason
    _plain(svc, off)
    on = svc.launch_job(
        SKILL,
        "train",
        engine="tao",
        automl_policy="on",
        request_text="plain training",
        automl=settings(algorithm="random", max_trials=1, max_epochs=1),
        **request(photos),
    )
    assert on.automl_policy == "on" and (Path(on.results_dir) / "automl.json").is_file()
    assert svc.wait_job(on.job_id, timeout_s=60).status == "COMPLETE"
    auto = svc.launch_job(
        SKILL,
        "train",
        engine="tao",
        automl_policy="auto",
        automl=settings(algorithm="random", max_trials=1, max_epochs=1),
        **request(photos),
    )
    assert auto.automl_policy == "on"
    assert svc.wait_job(auto.job_id, timeout_s=60).status == "COMPLETE"


def _bank_copy(tmp: Path) -> Path:
    bank = tmp / "skills"
    shutil.copytree(REPO_SKILLS, bank)
    return bank


def test_skill_without_automl_trains_directly_with_the_reason(env):
    tmp, photos = env
    bank = _bank_copy(tmp)
    info = bank / SKILL / "references" / "skill_info.yaml"
    data = yaml.safe_load(info.read_text())
    data["automl_enabled"] = False
    info.write_text(yaml.safe_dump(data, sort_keys=False))
    svc = Service(skills_dir=bank, home=tmp / "home")
    handle = svc.launch_job(SKILL, "train", engine="tao", **request(photos))
    assert "not AutoML-enabled" in handle.automl_reason
    _plain(svc, handle)


def test_unreadable_train_schema_is_enabled_but_not_runnable(env):
    tmp, _ = env
    bank = _bank_copy(tmp)
    (bank / SKILL / "schemas" / "train.schema.json").write_text("{not json")
    svc = Service(skills_dir=bank, home=tmp / "home")
    route = svc.route_request("train NVDINOv2 on these photos")
    decision = route.automl_policy
    assert decision.policy == "off" and decision.automl_enabled and not decision.automl_runnable
    assert NOT_RUNNABLE_REASON in decision.reason and "schemas/train.schema.json" in decision.missing
