"""``tao-skills demo --network mae|dino|grounding_dino``: the whole chain on sample data with the built-in engine,
one epoch per training stage; the summary names every artifact and each one exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 shared cores: one torch thread per job


@pytest.mark.slow
def test_mae_demo_runs_the_chain_and_prints_where_everything_is(tmp_path, capsys):
    from taoskills.surfaces.demo import run_mae_demo

    assert run_mae_demo(tmp_path / "demo", epochs=1) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert Path(summary["finetune_checkpoint"]).name.startswith("model_epoch_")
    assert Path(summary["onnx"]).name == "mae.onnx" and Path(summary["onnx"]).is_file()
    assert Path(summary["predictions"]).is_dir() and 0.0 <= summary["evaluate_ACC_all"] <= 1.0
    out = capsys.readouterr().out
    assert summary["onnx"] in out and summary["predictions"] in out


@pytest.mark.slow
def test_dino_demo_runs_the_chain_and_prints_where_the_annotated_images_are(tmp_path, capsys):
    from taoskills.surfaces.demo import run_dino_demo

    assert run_dino_demo(tmp_path / "demo", epochs=1) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    annotated = Path(summary["annotated_images"])
    assert list(annotated.rglob("*.jpg")) + list(annotated.rglob("*.png"))
    assert Path(summary["onnx"]).name == "dino.onnx" and Path(summary["onnx"]).is_file()
    assert "test_mAP50" in summary and summary["annotated_images"] in capsys.readouterr().out


@pytest.mark.slow
def test_grounding_dino_demo_runs_the_chain_with_captions_and_prints_where_the_annotated_images_are(tmp_path, capsys):
    from taoskills.surfaces.demo import GDINO_CAPTIONS, run_gdino_demo

    assert run_gdino_demo(tmp_path / "demo", epochs=1, n_train=8) == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    annotated = Path(summary["annotated_images"])
    assert len(list(annotated.glob("*.jpg"))) == 16  # the 16 validation scenes
    report = json.loads(Path(summary["detections"]).read_text())
    assert report["captions"] == list(GDINO_CAPTIONS) == summary["captions"]
    assert Path(summary["checkpoint"]).name == "model_epoch_000_step_00002.pth"
    assert Path(summary["onnx"]).suffix == ".onnx" and Path(summary["onnx"]).is_file()
    assert "test_mAP50" in summary and summary["annotated_images"] in capsys.readouterr().out
