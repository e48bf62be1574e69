"""A real AutoML search on the built-in NVDINOv2 engine (CPU, tiny settings): "train NVDINOv2
on these photos" with no policy words starts AutoML; >= 6 trials, at least one pruned,
best_rec written, and its checkpoint resolved and exported through the normal chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("torch")

from taoskills.automl import query  # noqa: E402
from taoskills.service import Service  # noqa: E402

pytestmark = pytest.mark.slow

SKILL = "tao-train-nvdinov2"
LR = "train.schedulers.learning_rate.val_base"
# The smoke profile (ViT-S, img_size 224, 32-true) made as small as validate_spec allows:
# 8 images, batch 4 (two steps per epoch), 42/28 px crops, a small DINO head; no LR warm-up
# so the searched learning rate acts from the first step.
TINY = {
    "dataset.batch_size": 4,
    "dataset.workers": 1,
    "dataset.transform.global_crops_size": 42,
    "dataset.transform.local_crops_size": 28,
    "dataset.transform.n_local_crops": 1,
    "model.head.hidden_dim": 64,
    "model.head.bottleneck_dim": 32,
    "train.num_prototypes": 64,
    "train.checkpoint_interval": 1,
    "train.schedulers.learning_rate.warm_up_steps": 0,
    "train.schedulers.learning_rate.max_decay_steps": 4,
    "train.schedulers.last_layer_learning_rate.freeze_steps": 0,
    "train.schedulers.teacher_temperature.warm_up_steps": 1,
    "train.schedulers.teacher_temperature.max_decay_steps": 2,
}


def test_real_search_prunes_and_the_best_checkpoint_exports(tmp_path):
    from taoskills.data.sample_data import write_sample_images

    write_sample_images(tmp_path / "photos" / "images_train", n=8, size=64)
    svc = Service(home=tmp_path / "home")
    route = svc.route_request("train NVDINOv2 on these photos")
    assert route.skill == SKILL and route.automl_policy.policy == "on"
    handle = svc.launch_job(
        SKILL,
        "train",
        request_text="train NVDINOv2 on these photos",
        data_sources={"train_datasets": str(tmp_path / "photos")},
        profile="smoke",
        overrides=TINY,
        automl={
            "algorithm": "tpe_asha",  # the first trial at rung 1 stops there: >= 1 pruned
            "max_trials": 6,
            "max_epochs": 2,
            "min_epochs": 1,
            "reduction_factor": 2,
            "parallel": 2,
            "parameters": [LR],
            "custom_param_ranges": {LR: {"valid_min": 1e-6, "valid_max": 1e-1}},
            "seed": 0,
            "poll_s": 1.0,
        },
    )
    assert handle.automl_policy == "on"
    final = svc.wait_job(handle.job_id, timeout_s=1500, poll_s=2)
    assert final.status == "COMPLETE", svc.job_logs(handle.job_id).text
    counts = query.status(svc, handle.job_id)["counts"]
    assert counts["trials"] >= 6 and counts["pruned"] >= 1 and counts["complete"] >= 1 and counts["failed"] == 0
    best = json.loads((Path(handle.results_dir) / "best_rec.json").read_text())
    assert best["metric_name"] == "train_loss" and best["direction"] == "minimize"
    assert final.kpis["train_loss"] == pytest.approx(best["best"]["score"])
    ck = svc.resolve_checkpoint(handle.job_id, "export")
    assert Path(ck.path).name.startswith("student_epoch_001") and Path(ck.path).is_file()
    export = svc.launch_job(SKILL, "export", parent_job_id=handle.job_id)
    done = svc.wait_job(export.job_id, timeout_s=600, poll_s=2)
    assert done.status == "COMPLETE", svc.job_logs(export.job_id).text
    spec = svc.store.get(export.job_id).spec
    assert spec["export"]["checkpoint"] == ck.path and Path(spec["export"]["onnx_file"]).is_file()
