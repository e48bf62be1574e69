"""Grounding DINO through the runtime with the real built-in engine: train (MCP, the skill's smoke
profile) -> evaluate (MCP) -> inference with the user's captions (CLI) -> export (CLI), chained by
parent job on the local platform, one torch thread per job.

Model: the smoke profile (``swin_tiny_224_1k``, d_model 64, 1+2 layers, 100 queries, log_scale auto,
class_embed_bias) at 96 px, one epoch on 8 synthetic captioned shape scenes, with a small offline
BERT folder as ``model.text_encoder_type``. Plumbing, not learning: tests/e2e/test_engine_grounding_dino.py
checks that it learns.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch

SKILL = "tao-train-grounding-dino"
CLI = str(Path(sys.executable).with_name("tao-skills"))
TERMINAL = {"COMPLETE", "ERROR", "CANCELED"}
AUG = "dataset.augmentation."
#: 96 px: the smoke profile's 100 queries need >= 100 encoder tokens (levels 2-4: 12x12 + 6x6 + 3x3).
SIZE = {
    f"{AUG}scales": [96],
    f"{AUG}train_random_resize": [96],
    f"{AUG}train_random_crop_min": 80,
    f"{AUG}train_random_crop_max": 96,
    f"{AUG}random_resize_max_size": 96,
    f"{AUG}test_random_resize": 96,
}
CAPTIONS = ["red circle", "blue triangle"]


@pytest.fixture()
def shapes(tmp_path, monkeypatch):
    from taoskills.engine.grounding_dino import synthetic as Y
    from taoskills.engine.grounding_dino import text_encoder as T

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 shared cores: one torch thread per job
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    Y.write_shapes(root, n=8, size=96, seed=0)  # images/, annotations_odvg.jsonl, ..._labelmap.json, annotations.json
    bert = T.write_text_encoder(tmp_path / "bert", Y.vocabulary_texts())
    return root, bert


async def _call(client, tool: str, **args) -> dict:
    res = await client.call_tool(tool, args)
    assert not res.is_error, f"{tool} failed: {res.content[0].text if res.content else res}"
    return res.structured_content


async def _wait(client, job_id: str, timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await _call(client, "job_status", job_id=job_id)
        if status["status"] in TERMINAL:
            if status["status"] != "COMPLETE":
                logs = await _call(client, "job_logs", job_id=job_id, tail=60)
                pytest.fail(f"{job_id} ended {status['status']}: {status['failure']}\n{logs['text']}")
            return status
        assert time.monotonic() < deadline, f"{job_id} still {status['status']} after {timeout}s"
        await asyncio.sleep(1.0)


def _cli(*args: str) -> dict:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([CLI, *args, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"tao-skills {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def _sets(overrides: dict) -> list[str]:
    return [f"--set={k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


@pytest.mark.slow
def test_gdino_train_evaluate_inference_export_over_mcp_and_cli(tmp_path, shapes):
    from mcp import Client

    from taoskills.engine.grounding_dino.spec import STRUCTURAL_KEYS
    from taoskills.service import Service
    from taoskills.specs.dotted import get_dotted
    from taoskills.surfaces.mcp import build_server

    root, bert = shapes
    svc = Service(home=tmp_path / "home")
    text = {"model.text_encoder_type": str(bert)}

    async def scenario():
        async with Client(build_server(svc)) as client:
            train = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="train",
                automl_policy="off",
                profile="smoke",
                data_sources={"train_datasets": str(root), "eval_dataset": str(root)},
                overrides={
                    **text,
                    **SIZE,
                    "train.num_epochs": 1,
                    "train.checkpoint_interval": 1,
                    "dataset.batch_size": 2,
                },
            )
            tid = train["job_id"]
            status = await _wait(client, tid)
            assert {"val_mAP", "val_mAP50", "train_loss"} <= set(status["kpis"]), status["kpis"]
            out = Path(status["results_dir"]) / "train"
            assert [p.name for p in out.glob("model_epoch_*_step_*.pth")] == ["model_epoch_000_step_00004.pth"]
            assert (out / "gdino_model_latest.pth").is_symlink()
            ckpt = await _call(client, "resolve_checkpoint", job_id=tid, for_action="evaluate")
            assert Path(ckpt["path"]).name == "model_epoch_000_step_00004.pth"  # never the latest alias unasked

            ev = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="evaluate",
                parent_job_id=tid,
                data_sources={"eval_dataset": str(root)},
                overrides=SIZE,
            )
            ev_status = await _wait(client, ev["job_id"])
            assert {"test_mAP", "test_mAP50"} <= set(ev_status["kpis"]) and ev_status["parent_job_id"] == tid
            return tid, ev["job_id"]

    tid, ev_id = asyncio.run(scenario())

    inf = _cli(
        "run",
        SKILL,
        "inference",
        "--parent",
        tid,
        "-d",
        f"inference_dataset={root}",
        *_sets({**SIZE, "dataset.infer_data_sources.captions": CAPTIONS, "inference.conf_threshold": 0.0}),
    )
    assert inf["status"] == "COMPLETE", inf
    inf_out = Path(inf["results_dir"]) / "inference"
    report = json.loads((inf_out / "detections.json").read_text())
    assert report["captions"] == CAPTIONS and len(report["images"]) == 8
    assert len(list((inf_out / "images_annotated").glob("*.jpg"))) == 8 and len(list((inf_out / "labels").glob("*.json"))) == 8
    assert {d["caption"] for im in report["images"] for d in im["detections"]} <= set(CAPTIONS)

    exp = _cli("run", SKILL, "export", "--parent", tid, *_sets({"export.input_width": 96, "export.input_height": 96}))
    assert exp["status"] == "COMPLETE", exp
    onnx = Path(svc.store.get(exp["job_id"]).spec["export"]["onnx_file"])
    assert onnx.is_file() and onnx.stat().st_size > 0, onnx
    assert onnx.suffix == ".onnx" and "onnx_max_abs_diff" in exp["kpis"], exp["kpis"]

    parent_spec = svc.store.get(tid).spec
    for job_id in (ev_id, inf["job_id"], exp["job_id"]):
        spec = svc.store.get(job_id).spec
        assert svc.store.get(job_id).parent_job_id == tid
        for key in STRUCTURAL_KEYS:
            if get_dotted(parent_spec, key, default=None) is not None:
                assert get_dotted(spec, key, default=None) == get_dotted(parent_spec, key), (job_id, key)
