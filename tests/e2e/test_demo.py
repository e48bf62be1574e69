"""README command 1's code path: the demo trains on real photos, the loss goes down, and
inference embeddings and a checked ONNX file come out (smaller than the README run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch  # needs the engine extra


@pytest.mark.slow
def test_demo_runs_and_loss_decreases(tmp_path, monkeypatch, capsys):
    from taoskills.surfaces.demo import run_demo

    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "unused-home"))
    assert run_demo(tmp_path / "demo", epochs=4, n_train=16, n_test=4) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["train_loss_last_epoch"] < summary["train_loss_first_epoch"]
    assert Path(summary["checkpoint"]).name.startswith("student_epoch_003_")
    embeddings = np.load(summary["embeddings"])
    assert embeddings.shape[0] == 4 and np.isfinite(embeddings).all()
    assert Path(summary["onnx"]).stat().st_size > 0
    printed = capsys.readouterr().out
    for key in ("checkpoint:", "embeddings:", "onnx:"):
        assert key in printed
