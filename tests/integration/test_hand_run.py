"""Runner scripts rendered for a person to run by hand (``Service.render_runner``).

Each render has its own job id and results folder (no two previews share or overwrite one).
Run by hand with bash, the script registers with the job store (``taoskills.jobs.register``)
so ``job_status`` follows it to COMPLETE and ``job_logs`` reads its output; with no runtime to
register with, it runs all the same. Jobs run the torch-free fake NVDINOv2 (tests/fake_engine.py).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.service import Service

SKILL = "tao-train-nvdinov2"


@pytest.fixture()
def svc(home, fake_engine):
    return Service(home=home)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("data")
    write_tiny_images(root / "images_train", n=8)
    return root


def _spec(svc: Service, photos: Path) -> dict:
    built = svc.build_spec(
        SKILL, "train", profile="smoke", overrides=TINY_TRAIN_OVERRIDES, data_sources={"train_datasets": str(photos)}
    )
    assert built.valid, built.issues
    return built.spec


def _run_by_hand(script: str, where: Path) -> subprocess.CompletedProcess:
    path = where / "runner.sh"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "TAO_SKILLS_HOME"}  # the script knows its store
    return subprocess.run(["bash", str(path)], cwd=where, env=env, capture_output=True, text=True, timeout=120)


def test_each_render_has_its_own_job_id_and_results_folder(svc, photos):
    spec = _spec(svc, photos)
    a = svc.render_runner(SKILL, "train", spec)
    b = svc.render_runner(SKILL, "train", spec)
    assert a.job_id != b.job_id and a.job_id.startswith("job-")
    assert a.workdir != b.workdir
    preview = str(svc.home / "preview" / "results")
    for r in (a, b):
        assert preview not in r.script  # preview paths moved under the job's own folder
        assert shlex.quote(str(Path(r.workdir) / "results")) in r.script


def test_hand_run_script_registers_and_is_followed_to_complete(svc, photos, tmp_path):
    result = svc.render_runner(SKILL, "train", _spec(svc, photos))
    proc = _run_by_hand(result.script, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "registered with the job store" in proc.stdout
    rec = svc.store.get(result.job_id)
    assert rec.labels == {"registered_by": "runner script"} and rec.results_dir == str(Path(result.workdir) / "results")
    status = svc.job_status(result.job_id)
    assert status.status == "COMPLETE" and status.exit_code == 0
    assert (Path(result.workdir) / "results" / "train").is_dir()
    logs = svc.job_logs(result.job_id, tail=50).text
    assert "job finished with exit code 0" in logs
    assert result.job_id in {j.job_id for j in svc.list_jobs()}


def test_running_hand_run_job_shows_running(svc, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "3")
    result = svc.render_runner(SKILL, "train", _spec(svc, photos))
    path = tmp_path / "runner.sh"
    path.write_text(result.script)
    proc = subprocess.Popen(["bash", str(path)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if svc.job_status(result.job_id).status == "RUNNING":
                    break
            except Exception:  # not registered yet
                pass
            time.sleep(0.2)
        assert svc.job_status(result.job_id).status == "RUNNING"
    finally:
        proc.wait(timeout=60)
    assert svc.job_status(result.job_id).status == "COMPLETE"


def test_hand_run_script_runs_without_the_runtime(svc, photos, tmp_path):
    result = svc.render_runner(SKILL, "train", _spec(svc, photos))
    script = result.script.replace(shlex.quote(sys.executable) + " -m taoskills.jobs.register", "/nonexistent/python -m x")
    assert script != result.script
    proc = _run_by_hand(script, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not registered" in proc.stdout
    assert svc.store.list() == []
    assert (Path(result.workdir) / "exit_code").read_text().strip() == "0"
