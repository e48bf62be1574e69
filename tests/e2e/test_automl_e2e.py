"""A real AutoML search on the built-in MAE engine (CPU, tiny settings): a plain "train" of
the MAE classifier with no policy words starts AutoML; >= 6 trials, at least one pruned,
best_rec written, and its checkpoint resolved and exported through the normal chain.

Sized for speed (about 160 CPU-seconds in all, so roughly 80-90 s on two idle cores; measured
under heavy load only): ``convnextv2_atto`` (TAO's smallest MAE
arch, 3.4M parameters) finetuned from scratch at 32 px on the shipped sample photographs
(4 classes, 4 train / 2 val images each: two optimiser steps per epoch), one torch thread per
job, two jobs at a time; most of each job is the engine's import of torch and Lightning. Earlier this test searched NVDINOv2 ViT-S (about 5 minutes: each
rung wrote ~0.5 GB of ViT-S checkpoints and the export traced ViT-S); "train NVDINOv2 on
these photos" starting AutoML is covered over MCP by tests/integration/test_mcp_automl.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("torch")

from taoskills.automl import query  # noqa: E402
from taoskills.service import Service  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.torch]

SKILL = "tao-train-mask-auto-encoder"
LR = "train.optim.lr"
TINY = {
    "train.stage": "finetune",
    "model.arch": "convnextv2_atto",
    "model.num_classes": 4,
    "dataset.augmentation.input_size": 32,
    "dataset.batch_size": 8,
    "dataset.num_workers_per_gpu": 0,
    "train.precision": "fp32",
    "train.num_gpus": 1,
    "train.optim.warmup_epochs": 0,
    "train.optim.backbone_multiplier": 1.0,
    "train.optim.lr_scheduler": "cosine",
    "dataset.augmentation.mixup": 0.0,
    "dataset.augmentation.cutmix": 0.0,
    "dataset.augmentation.auto_aug": "",
}


def test_real_search_prunes_and_the_best_checkpoint_exports(tmp_path, monkeypatch):
    from taoskills.engine.mae.sample import write_classification_set

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two jobs at a time on two cores
    data = write_classification_set(tmp_path / "data", num_classes=4, train=4, val=2, test=0, size=32)
    root = str(Path(data["train"]).parent)
    svc = Service(home=tmp_path / "home")
    handle = svc.launch_job(
        SKILL,
        "train",
        request_text="train the MAE classifier on these photos",
        data_sources={"train_datasets": root, "eval_dataset": root},
        overrides=TINY,
        automl={
            # rungs at 1 and 3 epochs; the first two trials at rung 1 stop there (>= 1 pruned),
            # later ones go on only when in the top third: 6 trials cost about 8 jobs
            "algorithm": "tpe_asha",
            "max_trials": 6,
            "max_epochs": 3,
            "min_epochs": 1,
            "reduction_factor": 3,
            "parallel": 2,
            "parameters": [LR],
            "custom_param_ranges": {LR: {"valid_min": 1e-5, "valid_max": 1e-1}},
            "seed": 0,
            "poll_s": 0.5,
        },
    )
    assert handle.automl_policy == "on"
    final = svc.wait_job(handle.job_id, timeout_s=900, poll_s=1)
    assert final.status == "COMPLETE", svc.job_logs(handle.job_id).text
    counts = query.status(svc, handle.job_id)["counts"]
    assert counts["trials"] >= 6 and counts["pruned"] >= 1 and counts["complete"] >= 1 and counts["failed"] == 0
    best = json.loads((Path(handle.results_dir) / "best_rec.json").read_text())
    assert best["metric_name"] == "ACC_all" and best["direction"] == "maximize"
    assert final.kpis["ACC_all"] == pytest.approx(best["best"]["score"])
    ck = svc.resolve_checkpoint(handle.job_id, "export")
    assert Path(ck.path).name.startswith("model_epoch_002") and Path(ck.path).is_file()
    export = svc.launch_job(SKILL, "export", parent_job_id=handle.job_id)
    done = svc.wait_job(export.job_id, timeout_s=600, poll_s=1)
    assert done.status == "COMPLETE", svc.job_logs(export.job_id).text
    spec = svc.store.get(export.job_id).spec
    assert spec["export"]["checkpoint"] == ck.path and Path(spec["export"]["onnx_file"]).is_file()
    assert spec["train"]["stage"] == "finetune" and spec["model"]["arch"] == "convnextv2_atto"
