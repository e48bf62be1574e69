"""DINO through the runtime with the real built-in engine: train -> evaluate -> inference -> export
-> quantize (INT8 ONNX), chained by parent job, driven by the MCP SDK client against the server in this process (the jobs
themselves are real runner scripts and engine processes on the local platform).

The model is the smallest real config TAO's DINO ModelConfig accepts at a CPU-friendly size
(``resnet_34`` backbone, 2 feature levels, 1+1 transformer layers, 10 queries) on 4 synthetic
shape scenes at 64 px; one epoch. It checks plumbing, not learning (tests/e2e/test_engine_dino.py
checks learning).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch

SKILL = "tao-train-dino"
TERMINAL = {"COMPLETE", "ERROR", "CANCELED"}
AUG = "dataset.augmentation."
#: Every key is a TAO Core 7.3.0 dino key; the structural ones are carried into the child jobs.
TINY = {
    "model.backbone": "resnet_34",
    "model.hidden_dim": 32,
    "model.nheads": 2,
    "model.dim_feedforward": 64,
    "model.enc_layers": 1,
    "model.dec_layers": 1,
    "model.num_queries": 10,
    "model.num_select": 10,
    "model.dn_number": 4,
    "model.return_interm_indices": [3, 4],
    "model.num_feature_levels": 2,
    "dataset.num_classes": 4,
    "dataset.batch_size": 2,
    "dataset.workers": 1,
    f"{AUG}scales": [64],
    f"{AUG}train_random_resize": [64],
    f"{AUG}train_random_crop_min": 48,
    f"{AUG}train_random_crop_max": 64,
    f"{AUG}random_resize_max_size": 64,
    f"{AUG}test_random_resize": 64,
    f"{AUG}fixed_padding": False,
    "train.num_epochs": 1,
    "train.activation_checkpoint": False,
    "train.num_gpus": 1,
    "train.checkpoint_interval": 1,
    "train.validation_interval": 1,
}

#: Carried from the train job into every child (its input size and normalisation).
CARRIED_AUG = ("scales", "random_resize_max_size", "test_random_resize", "fixed_padding", "input_mean", "input_std")


@pytest.fixture()
def shapes(tmp_path, monkeypatch):
    from taoskills.engine.dino.synthetic import write_shapes_coco

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 shared cores: one torch thread per job
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    write_shapes_coco(root, n_images=4, size=64, seed=0)  # root/images + root/annotations.json
    (root / "label_map.txt").write_text("rectangle\nellipse\ntriangle\n", encoding="utf-8")
    return root


async def _call(client, tool: str, **args) -> dict:
    res = await client.call_tool(tool, args)
    assert not res.is_error, f"{tool} failed: {res.content[0].text if res.content else res}"
    return res.structured_content


async def _wait(client, job_id: str, timeout: float = 300.0) -> dict:
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


@pytest.mark.slow
def test_dino_train_evaluate_inference_export_over_mcp(tmp_path, shapes):
    from mcp import Client

    from taoskills.engine.dino.common import STRUCTURAL_KEYS
    from taoskills.service import Service
    from taoskills.specs.dotted import get_dotted
    from taoskills.surfaces.mcp import build_server

    svc = Service(home=tmp_path / "home")

    async def scenario():
        async with Client(build_server(svc)) as client:
            train = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="train",
                automl_policy="off",
                data_sources={"train_datasets": str(shapes)},
                overrides=TINY,
            )
            tid = train["job_id"]
            status = await _wait(client, tid)
            assert {"val_mAP", "val_mAP50", "train_loss"} <= set(status["kpis"]), status["kpis"]
            out = Path(status["results_dir"]) / "train"
            assert list(out.glob("model_epoch_*_step_*.pth")) and (out / "dino_model_latest.pth").exists()
            ckpt = await _call(client, "resolve_checkpoint", job_id=tid, for_action="evaluate")
            assert Path(ckpt["path"]).name.startswith("model_epoch_")  # never the latest alias unasked

            ev = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="evaluate",
                parent_job_id=tid,
                data_sources={"eval_dataset": str(shapes)},
            )
            ev_status = await _wait(client, ev["job_id"])
            assert {"test_mAP", "test_mAP50"} <= set(ev_status["kpis"]), ev_status["kpis"]
            assert ev_status["parent_job_id"] == tid

            inf = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="inference",
                parent_job_id=tid,
                data_sources={"inference_dataset": str(shapes)},
            )
            inf_status = await _wait(client, inf["job_id"])
            inf_out = Path(inf_status["results_dir"]) / "inference"
            assert list(inf_out.rglob("*.json")) and list(inf_out.rglob("*.jpg")) + list(inf_out.rglob("*.png"))

            size = {"export.input_width": 64, "export.input_height": 64}  # TAO's default is 960x544
            exp = await _call(client, "launch_job", skill=SKILL, action="export", parent_job_id=tid, overrides=size)
            exp_status = await _wait(client, exp["job_id"])
            onnx = Path(svc.store.get(exp["job_id"]).spec["export"]["onnx_file"])
            assert onnx.name == "dino.onnx" and onnx.is_file() and onnx.stat().st_size > 0
            assert exp_status["status"] == "COMPLETE"

            # built-in quantize: INT8 ONNX from the export job's ONNX, structure from the train job
            onnx_quant = {"quantize.backend": "modelopt.onnx", "quantize.mode": "static_ptq"}
            bad = await client.call_tool(
                "launch_job",
                {
                    "skill": SKILL,
                    "action": "quantize",
                    "parent_job_id": tid,
                    "overrides": onnx_quant,
                    "data_sources": {"train_datasets": str(shapes)},
                },
            )
            assert bad.is_error and "quantize.model_path" in bad.content[0].text  # the .pth is refused before launch
            q = await _call(
                client,
                "launch_job",
                skill=SKILL,
                action="quantize",
                parent_job_id=tid,
                overrides={**onnx_quant, "quantize.model_path": str(onnx)},
                data_sources={"train_datasets": str(shapes), "calibration_dataset": str(shapes)},
            )
            q_status = await _wait(client, q["job_id"])
            assert q_status["kpis"].get("quantize_nodes", 0) > 0, q_status["kpis"]
            assert (Path(q_status["results_dir"]) / "quantize" / "dino_int8.onnx").is_file()
            return tid, [ev["job_id"], inf["job_id"], exp["job_id"], q["job_id"]]

    tid, children = asyncio.run(scenario())
    parent_spec = svc.store.get(tid).spec
    for job_id in children:
        spec = svc.store.get(job_id).spec
        for key in STRUCTURAL_KEYS:
            if get_dotted(parent_spec, key, default=None) is not None:
                assert get_dotted(spec, key, default=None) == get_dotted(parent_spec, key), (job_id, key)
        # the 64 px train size reached every child without an override (TAO's test resize is 800 px)
        for name in CARRIED_AUG:
            assert spec["dataset"]["augmentation"][name] == parent_spec["dataset"]["augmentation"][name], (job_id, name)
        assert spec["dataset"]["augmentation"]["test_random_resize"] == 64
