"""Service API: policy refusal, bad input before launch (nothing launched, nothing
half-written), a killed engine -> ERROR with failure analysis, and terminal states.

Jobs run the fake, torch-free NVDINOv2 (tests/fake_engine.py) through the real runner script,
local platform and engine CLI."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.errors import NotSupported, PreflightError, SpecError
from taoskills.service import Service


@pytest.fixture()
def svc(tmp_path, monkeypatch, fake_engine):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    return Service(home=tmp_path / "home")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("data")
    write_tiny_images(root / "images_train", n=8)
    return root


def _nothing_launched(svc: Service) -> None:
    assert svc.store.list() == []
    jobs_dir = svc.home / "jobs"
    assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []


def test_train_with_automl_on_starts_automl_and_checks_its_settings_first(svc, photos):
    """Policy on (the default) goes to the AutoML hook; bad AutoML settings launch nothing."""
    with pytest.raises(SpecError) as exc:
        svc.launch_job("tao-train-nvdinov2", "train", data_sources={"train_datasets": str(photos)}, automl={"algoritm": "tpe"})
    assert exc.value.field == "automl.algoritm" and "did you mean algorithm" in exc.value.message
    _nothing_launched(svc)


def test_policy_phrase_in_request_turns_automl_off(svc, photos, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "5")
    handle = svc.launch_job(
        "tao-train-nvdinov2",
        "train",
        request_text="train NVDINOv2, plain training please",
        data_sources={"train_datasets": str(photos)},
        profile="smoke",
        overrides=TINY_TRAIN_OVERRIDES,
    )
    assert handle.automl_policy == "off"
    status = svc.cancel_job(handle.job_id)
    assert status.status == "CANCELED"
    pgid = int(svc.store.get(handle.job_id).backend_id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.2)
    assert not _group_alive(pgid)
    assert svc.job_status(handle.job_id).status == "CANCELED"  # terminal: never changes back


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_image_folder_fails_preflight_and_launches_nothing(svc, tmp_path, make):
    root = tmp_path / "ds"
    if make == "empty":
        (root / "images_train").mkdir(parents=True)
    with pytest.raises(PreflightError) as exc:
        svc.launch_job(
            "tao-train-nvdinov2",
            "train",
            automl_policy="off",
            data_sources={"train_datasets": str(root)},
            overrides=TINY_TRAIN_OVERRIDES,
        )
    assert exc.value.issues and exc.value.issues[0].field == "dataset.train_dataset.images_dir"
    assert exc.value.issues[0].fix
    _nothing_launched(svc)


def test_unknown_spec_key_launches_nothing(svc, photos):
    with pytest.raises(SpecError) as exc:
        svc.launch_job(
            "tao-train-nvdinov2",
            "train",
            automl_policy="off",
            data_sources={"train_datasets": str(photos)},
            overrides={**TINY_TRAIN_OVERRIDES, "train.num_epoch": 3},
        )
    assert "num_epochs" in str(exc.value)
    _nothing_launched(svc)


def test_builtin_engine_refuses_networks_it_cannot_run(svc):
    with pytest.raises(NotSupported) as exc:
        svc.render_runner("tao-train-dino", "distill", svc.get_spec_template("tao-train-dino", "distill"), engine="builtin")
    assert exc.value.field == "engine"
    assert "engine='tao'" in exc.value.fix


def test_dino_without_tao_container_gets_one_thing_to_do(svc, monkeypatch, tmp_path):
    """DINO distill (not in the built-in engine) and no TAO entrypoint: one refusal whose fix is
    the TAO container (not "built-in lacks it" -> "no TAO CLI" pointing at each other)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no 'dino' entrypoint here
    where = svc.get_skill("tao-train-dino").runs_here["distill"]
    assert not where.runs_here and "TAO container" in where.next
    assert svc.get_skill("tao-train-dino").runs_here["train"].engine == "builtin"
    assert svc.route_request("distill my DINO detector", action="distill").runs_here.next == where.next
    with pytest.raises(NotSupported) as exc:
        svc.launch_job("tao-train-dino", "distill", data_sources={"train_datasets": str(tmp_path)})
    assert exc.value.fix == where.next and "nvcr.io/nvidia/tao" in exc.value.fix
    _nothing_launched(svc)


def test_killed_engine_process_is_error_with_failure_analysis(svc, photos, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "5")
    overrides = {**TINY_TRAIN_OVERRIDES, "train.num_epochs": 200}
    handle = svc.launch_job(
        "tao-train-nvdinov2",
        "train",
        automl_policy="off",
        data_sources={"train_datasets": str(photos)},
        overrides=overrides,
        profile="smoke",
    )
    engine_pid = _wait_for_engine_pid(int(svc.store.get(handle.job_id).backend_id))
    os.kill(engine_pid, signal.SIGKILL)
    status = svc.wait_job(handle.job_id, timeout_s=60, poll_s=0.5)
    assert status.status == "ERROR"
    assert status.failure is not None
    text = str(status.failure).lower()
    assert "kill" in text
    # terminal states never change back
    assert svc.store.update_status(handle.job_id, "RUNNING").status == "ERROR"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_engine_pid(shell_pid: int, timeout: float = 60.0) -> int:
    """The python engine process started by the runner script (a child of its bash)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{shell_pid}/task/{shell_pid}/children").read_text().split():
            try:  # short-lived children (the runner's own helpers) may be gone already
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                continue
            if b"taoskills.engine" in cmdline:
                return int(child)
        time.sleep(0.2)
    raise AssertionError("engine process did not start")


def test_host_issues_rules():
    from taoskills.engine.capabilities import host_issues

    spec = {"train": {"precision": "16-mixed", "num_gpus": 2, "num_nodes": 1}}
    fields = [i["field"] for i in host_issues("nvdinov2", "train", spec, cuda=False, gpus=0)]
    assert fields == ["train.precision", "train.num_gpus"]
    assert host_issues("nvdinov2", "train", spec, cuda=True, gpus=2) == []
    assert host_issues("nvdinov2", "export", spec, cuda=False, gpus=0) == []


def test_fp16_on_a_cpu_host_is_caught_before_launch(svc, photos, monkeypatch):
    from taoskills.platforms import hostchecks

    no_gpu = hostchecks.CheckResult(
        name="host.gpu", ok=True, severity="info", message="no GPU", details={"cuda": False, "gpus": 0}
    )
    monkeypatch.setattr(hostchecks, "check_nvidia_smi", lambda severity: no_gpu)
    with pytest.raises(PreflightError) as exc:
        svc.launch_job(
            "tao-train-nvdinov2",
            "train",
            automl_policy="off",
            data_sources={"train_datasets": str(photos)},
            overrides={**TINY_TRAIN_OVERRIDES, "train.precision": "16-mixed"},
        )
    assert [i.field for i in exc.value.issues] == ["train.precision"]
    _nothing_launched(svc)
