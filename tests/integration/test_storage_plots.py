"""Short-run schedules, KPI curves, checkpoint retention (gc / rm) and the terminal progress line.

The service parts run on the fake engine (tests/fake_engine.py): it writes TAO-named
checkpoints and status lines (per-epoch KPIs and mid-epoch step progress) without torch.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

from taoskills.specs import schedules

REPO = Path(__file__).resolve().parents[2]
SKILL = "tao-train-nvdinov2"


def _template() -> dict:
    return yaml.safe_load((REPO / "skills" / SKILL / "references" / "spec_template_train.yaml").read_text())


# ----------------------------------------------------------------------------- schedules


def test_short_nvdinov2_run_fits_its_schedules(tmp_path):
    from fake_engine import write_tiny_images

    write_tiny_images(tmp_path / "imgs", n=16)
    spec = _template()
    spec["dataset"]["train_dataset"]["images_dir"] = str(tmp_path / "imgs")
    spec["dataset"]["batch_size"] = 8
    spec["train"]["num_epochs"] = 3
    fit = schedules.fit_schedules("nvdinov2", spec, explicit={"train.schedulers.momentum.max_decay_steps"})
    s = spec["train"]["schedulers"]
    assert fit.total_steps == 6  # 3 epochs x ceil(16 / (8 x 1))
    assert (s["learning_rate"]["warm_up_steps"], s["learning_rate"]["max_decay_steps"]) == (1, 6)
    assert s["last_layer_learning_rate"]["freeze_steps"] == 0
    assert (s["teacher_temperature"]["warm_up_steps"], s["teacher_temperature"]["max_decay_steps"]) == (2, 2)
    assert s["momentum"]["max_decay_steps"] == 2500000  # set by the caller: kept
    assert s["weight_decay"]["warm_up_steps"] == 0  # zero in TAO's template: kept
    assert s["learning_rate"]["val_base"] == pytest.approx(0.004 * (8 / 1024) ** 0.5, rel=1e-4)
    assert fit.notes and "6 total steps" in fit.notes[0] and not fit.warnings


def test_caller_warmup_is_kept_and_warns_and_unknown_counts_change_nothing(tmp_path):
    from fake_engine import write_tiny_images

    write_tiny_images(tmp_path / "imgs", n=4)
    spec = _template()
    spec["dataset"]["train_dataset"]["images_dir"] = str(tmp_path / "imgs")
    key = "train.schedulers.learning_rate.warm_up_steps"
    fit = schedules.fit_schedules("nvdinov2", spec, explicit={key})
    assert spec["train"]["schedulers"]["learning_rate"]["warm_up_steps"] == 100000  # the caller's value is kept
    assert spec["train"]["schedulers"]["learning_rate"]["max_decay_steps"] == 10  # 10 epochs x ceil(4 / 4)
    assert any("learning_rate.warm_up_steps=100000 exceeds the run's 10 total steps" in w for w in fit.warnings)
    # unknown image count (remote data): nothing changes, nothing claimed
    spec2 = _template()
    spec2["dataset"]["train_dataset"]["images_dir"] = "s3://bucket/images"
    before = copy.deepcopy(spec2)
    fit2 = schedules.fit_schedules("nvdinov2", spec2, explicit=set())
    assert fit2.total_steps is None and not fit2.changed and not fit2.warnings and spec2 == before


def test_build_spec_reports_the_fit_and_the_warning(home, tmp_path):
    from fake_engine import write_tiny_images
    from taoskills.service import Service

    write_tiny_images(tmp_path / "data" / "images_train", n=16)
    svc = Service()
    res = svc.build_spec(SKILL, "train", profile="smoke", data_sources={"train_datasets": str(tmp_path / "data")})
    assert res.spec["train"]["schedulers"]["learning_rate"]["warm_up_steps"] == 1  # 1 epoch x 2 steps
    assert any("schedules fitted to the run" in n for n in res.notes)
    res = svc.build_spec(
        SKILL,
        "train",
        profile="smoke",
        data_sources={"train_datasets": str(tmp_path / "data")},
        overrides={"train.schedulers.teacher_temperature.warm_up_steps": 500},
    )
    assert any(n.startswith("warning:") and "teacher_temperature.warm_up_steps=500" in n for n in res.notes)


# ----------------------------------------------------------------------------- plot, gc, rm


@pytest.fixture()
def trained(home, tmp_path, fake_engine):
    from fake_engine import write_tiny_images
    from taoskills.service import Service

    write_tiny_images(tmp_path / "data" / "images_train", n=8)
    write_tiny_images(tmp_path / "data" / "images_test", n=2)
    svc = Service()
    job = svc.launch_job(
        SKILL,
        "train",
        automl_policy="off",
        profile="smoke",
        data_sources={"train_datasets": str(tmp_path / "data")},
        overrides={"train.num_epochs": 3, "train.checkpoint_interval": 1, "dataset.batch_size": 4},
    )
    st = svc.wait_job(job.job_id, timeout_s=120, poll_s=0.2)
    assert st.status == "COMPLETE", st
    return svc, st, tmp_path / "data"


def test_plot_job_writes_a_png_of_the_loss(trained):
    svc, st, _ = trained
    png = svc.plot_job(st.job_id)
    assert png.name == "kpi_curves.png" and png.parent == next(Path(st.results_dir).rglob("status.json")).parent
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_gc_keeps_the_newest_and_what_a_child_used(trained):
    svc, st, data = trained
    root = Path(st.results_dir)
    tags = sorted({p.name.split("_", 1)[1] for p in root.rglob("model_epoch_*.pth")})
    assert len(tags) == 3
    oldest_student = next(root.rglob(f"student_{tags[0]}"))
    child = svc.launch_job(
        SKILL,
        "inference",
        parent_job_id=st.job_id,
        data_sources={"inference_dataset": str(data)},
        overrides={"inference.checkpoint": str(oldest_student)},
    )
    assert svc.wait_job(child.job_id, timeout_s=120, poll_s=0.2).status == "COMPLETE"

    dry = svc.gc_checkpoints(st.job_id, keep_last=1, dry_run=True)
    assert dry.deleted and all(Path(f).exists() for f in dry.deleted)
    report = svc.gc_checkpoints(st.job_id, keep_last=1)
    assert sorted(report.deleted) == sorted(dry.deleted)
    left = sorted(p.name for p in root.rglob("*_epoch_*.pth"))
    expected = sorted(f"{prefix}_{tag}" for prefix in ("model", "student", "teacher") for tag in (tags[0], tags[2]))
    assert left == expected  # the middle save went; the newest and the one the child used stayed
    assert str(oldest_student) in report.kept_used
    assert next(root.rglob("nvdinov2_model_latest.pth")).resolve().is_file()

    with pytest.raises(Exception, match="parent of"):
        svc.remove_job(st.job_id)
    removed = svc.remove_job(child.job_id)
    assert removed and not Path(removed[0]).exists()
    svc.remove_job(st.job_id)
    assert not root.exists() and st.job_id not in {j.job_id for j in svc.list_jobs()}


def test_cli_gc_dry_run_and_plot(trained, tmp_path):
    from typer.testing import CliRunner

    from taoskills.surfaces.cli import app

    _, st, _ = trained
    runner = CliRunner()
    out = runner.invoke(app, ["jobs", "gc", st.job_id, "--keep-last", "1", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "would delete" in out.output and "student_epoch_000" in out.output
    assert list(Path(st.results_dir).rglob("student_epoch_000_*.pth"))  # dry run: still there
    png = tmp_path / "curve.png"
    out = runner.invoke(app, ["jobs", "plot", st.job_id, "--out", str(png)])
    assert out.exit_code == 0 and png.is_file() and str(png) in out.output


# ----------------------------------------------------------------------------- terminal progress


def test_terminal_progress_line_shows_steps_per_second_and_eta(home, tmp_path, fake_engine):
    pexpect = pytest.importorskip("pexpect")
    from fake_engine import write_tiny_images

    write_tiny_images(tmp_path / "data" / "images_train", n=8)
    env = dict(os.environ, TAO_SKILLS_FAKE_EPOCH_S="3", COLUMNS="160", TERM="xterm")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "taoskills.surfaces.cli",
            "run",
            SKILL,
            "train",
            "--automl-policy",
            "off",
            "--profile",
            "smoke",
            "-d",
            f"train_datasets={tmp_path / 'data'}",
            "--set",
            "train.num_epochs=2",
            "--set",
            "dataset.batch_size=2",
        ],
        env=env,
        encoding="utf-8",
        timeout=90,
        dimensions=(40, 160),
    )
    child.expect(r"step \d+/\d+ [\d.]+ steps/s ETA \d+:\d\d:\d\d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.torch
def test_mean_pairwise_cosine_flags_collapse():
    import numpy as np

    from taoskills.engine.nvdinov2.inference import COLLAPSE_COSINE, mean_pairwise_cosine

    same = np.tile(np.arange(1.0, 9.0, dtype=np.float32), (5, 1)) + 1e-4 * np.random.default_rng(0).normal(size=(5, 8))
    assert mean_pairwise_cosine(same) > COLLAPSE_COSINE
    assert mean_pairwise_cosine(np.eye(4, dtype=np.float32)) == pytest.approx(0.0)
    assert mean_pairwise_cosine(np.ones((1, 3), dtype=np.float32)) is None


def test_progress_text_from_a_status():
    from taoskills.service_models import JobStatus
    from taoskills.surfaces.follow import progress_text

    base = dict(job_id="j", skill=SKILL, network_arch="nvdinov2", action="train", status="RUNNING")
    st = JobStatus(
        **base, parent_job_id=None, results_dir="/r", log_path="/l", step=12, max_step=60, steps_per_s=1.53, eta="0:00:31"
    )
    assert progress_text(st) == "step 12/60 1.53 steps/s ETA 0:00:31"
    assert progress_text(JobStatus(**base, parent_job_id=None, results_dir="/r", log_path="/l")) == ""
