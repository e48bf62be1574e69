"""MAE through the runtime with the real built-in engine, as CLI processes: pretrain -> finetune
(parent job = the pretrain job, whose checkpoint becomes train.pretrained_model_path) -> evaluate
-> inference -> export, chained by parent job.

``convnextv2_atto`` (TAO's smallest MAE arch) at 64 px on the shipped sample photographs
(4 classes, 8 train / 4 val / 2 test images each), one epoch per stage, one torch thread per
job. Plumbing, not learning: tests/e2e/test_engine_mae.py checks that it learns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch

SKILL = "tao-train-mask-auto-encoder"
CLI = str(Path(sys.executable).with_name("tao-skills"))


def _cli(env, *args, check=True):
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"tao-skills {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _json(env, *args):
    return json.loads(_cli(env, *args, "--json").stdout)


def _sets(overrides: dict) -> list[str]:
    return [f"--set={k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]


@pytest.fixture()
def sample(tmp_path):
    from taoskills.engine.mae.sample import write_classification_set

    return write_classification_set(tmp_path / "data", num_classes=4, train=8, val=4, test=2, size=64)


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "TAO_SKILLS_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.mark.slow
def test_mae_pretrain_finetune_evaluate_inference_export_through_cli(tmp_path, sample, env):
    from taoskills.engine.mae.sample import demo_overrides

    root = str(Path(sample["train"]).parent)
    pre = _json(
        env,
        "run",
        SKILL,
        "train",
        "--automl-policy",
        "off",
        "-d",
        f"train_datasets={root}",
        *_sets({**demo_overrides("pretrain", epochs=1), "train.num_gpus": 1}),
    )
    assert pre["status"] == "COMPLETE", pre
    assert "train_loss" in pre["kpis"]
    out = Path(pre["results_dir"]) / "train"
    assert list(out.glob("model_epoch_*_step_*.pth")) and (out / "convnextv2_atto_latest.pth").exists()
    ckpt = _json(env, "checkpoints", pre["job_id"], "--for", "evaluate")
    assert Path(ckpt["path"]).name.startswith("model_epoch_")  # the latest alias only when asked

    # inference from a pretrain parent: refused before launch with the seed's cause and fix
    refused = _cli(env, "run", SKILL, "inference", "--parent", pre["job_id"], "-d", f"inference_dataset={root}", check=False)
    said = " ".join(refused.stderr.split())  # rich wraps long lines
    assert refused.returncode == 2 and "Inference with pretrain checkpoints" in said and "field: train.stage" in said
    assert "Use a finetune checkpoint" in said

    fine = _json(
        env,
        "run",
        SKILL,
        "train",
        "--automl-policy",
        "off",
        "--parent",
        pre["job_id"],
        "-d",
        f"train_datasets={root}",
        "-d",
        f"eval_dataset={root}",
        *_sets({**demo_overrides("finetune", epochs=1), "model.num_classes": 4, "train.num_gpus": 1}),
    )
    assert fine["status"] == "COMPLETE", fine
    assert {"ACC_all", "train_loss"} <= set(fine["kpis"]), fine["kpis"]
    fid = fine["job_id"]

    ev = _json(env, "run", SKILL, "evaluate", "--parent", fid, "-d", f"eval_dataset={root}")
    assert ev["status"] == "COMPLETE" and "ACC_all" in ev["kpis"], ev

    inf = _json(env, "run", SKILL, "inference", "--parent", fid, "-d", f"inference_dataset={root}")
    assert inf["status"] == "COMPLETE", inf
    produced = [p for p in (Path(inf["results_dir"]) / "inference").rglob("*") if p.suffix in (".csv", ".json")]
    assert produced, "inference wrote no predictions"
    text = "\n".join(p.read_text() for p in produced)
    assert any(c in text for c in sample["classes"])  # predictions carry class names

    exp = _json(env, "run", SKILL, "export", "--parent", fid)
    assert exp["status"] == "COMPLETE", exp
    onnx = list((Path(exp["results_dir"]) / "export").glob("*.onnx"))
    assert [p.name for p in onnx] == ["mae.onnx"] and onnx[0].stat().st_size > 0

    # structural keys carried from the finetune job into evaluate/inference/export
    from taoskills.service import Service

    svc = Service(home=Path(env["TAO_SKILLS_HOME"]))
    parent = svc.store.get(fid).spec
    assert svc.store.get(fid).parent_job_id == pre["job_id"]
    # no --pretrained: the pretrain parent's exact epoch/step checkpoint filled train.pretrained_model_path
    assert parent["train"]["pretrained_model_path"] == ckpt["path"]
    assert Path(ckpt["path"]).name.startswith("model_epoch_") and "_step_" in Path(ckpt["path"]).name
    for job in (ev, inf, exp):
        spec = svc.store.get(job["job_id"]).spec
        assert spec["train"]["stage"] == "finetune" and spec["model"]["arch"] == "convnextv2_atto"
        assert spec["model"]["num_classes"] == 4 and spec["dataset"]["augmentation"]["input_size"] == 64
    export_spec = svc.store.get(exp["job_id"]).spec["export"]
    assert export_spec["input_width"] == export_spec["input_height"] == 64
