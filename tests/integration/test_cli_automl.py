"""``tao-skills automl run|status|best|report|plot`` on the fake TAO entrypoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from typer.testing import CliRunner  # noqa: E402

from automl_helpers import LR, SKILL, install_fake_engine  # noqa: E402
from engine_settings import TINY_TRAIN_OVERRIDES  # noqa: E402
from taoskills.surfaces.cli import app  # noqa: E402


def test_cli_run_follows_and_reads_the_run(tmp_path, monkeypatch):
    from taoskills.data.sample_data import write_sample_images

    install_fake_engine(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAO_SKILLS_FAKE_EPOCH_S", "0.01")
    write_sample_images(tmp_path / "data" / "images_train", n=8)
    runner = CliRunner()
    args = ["automl", "run", SKILL, "--data", f"train_datasets={tmp_path / 'data'}", "--profile", "smoke", "--engine", "tao"]
    args += [x for k, v in TINY_TRAIN_OVERRIDES.items() for x in ("--set", f"{k}={v}")]
    args += ["--algorithm", "asha", "--trials", "4", "--epochs", "3", "--param", LR, "--param", "dataset.batch_size"]
    args += ["--range", f"{LR}=1e-6:1e-2", "--seed", "1", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout.split("\n}\n")[0] + "\n}")["job_id"]
    status = json.loads(runner.invoke(app, ["automl", "status", job_id, "--json"]).stdout)
    assert status["counts"]["finished"] == 4 and status["algorithm"] == "asha"
    best = json.loads(runner.invoke(app, ["automl", "best", job_id, "--json"]).stdout)
    assert best["metric_name"] == "train_loss" and 1e-6 <= best["best"]["values"][LR] <= 1e-2
    report = runner.invoke(app, ["automl", "report", job_id])
    assert report.exit_code == 0 and "AutoML report" in report.stdout
    out = tmp_path / "plots"
    plotted = json.loads(runner.invoke(app, ["automl", "plot", job_id, "--out", str(out), "--json"]).stdout)
    assert plotted["written"] and all(Path(p).is_file() for p in plotted["written"])
    bad = runner.invoke(app, ["automl", "status", "job-nope"])
    assert bad.exit_code != 0
