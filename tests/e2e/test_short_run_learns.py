"""Acceptance (real engine): the smoke profile on the sample photos learns and its embeddings do
not collapse, with no scheduler keys given (the spec builder fits TAO's schedules to the run).

CPU-sized: the smoke profile (ViT-S) with 56/28 px crops, 16 photos, batch 8, 10 epochs (20 steps).
Measured on 2 busy shared cores: loss 12.18 -> 10.46 (-14%), mean pairwise cosine 0.84 (after
4 epochs / 8 steps it was still 0.998: too few steps to separate the images).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.slow]

SKILL = "tao-train-nvdinov2"
CROPS = {
    "dataset.transform.global_crops_size": 56,
    "dataset.transform.local_crops_size": 28,
    "dataset.transform.n_local_crops": 2,
    "train.num_epochs": 10,
}


def test_smoke_profile_learns_and_embeddings_do_not_collapse(home, tmp_path):
    from taoskills.data.sample_data import write_sample_images
    from taoskills.jobs import monitor
    from taoskills.service import Service

    write_sample_images(tmp_path / "train" / "images_train", n=16)
    write_sample_images(tmp_path / "test" / "images_test", n=8)
    svc = Service()
    job = svc.launch_job(
        SKILL,
        "train",
        automl_policy="off",
        profile="smoke",
        data_sources={"train_datasets": str(tmp_path / "train")},
        overrides=CROPS,
    )
    spec = svc.store.get(job.job_id).spec
    assert spec["train"]["schedulers"]["learning_rate"]["max_decay_steps"] == 20  # fitted: 10 x ceil(16 / 8)
    st = svc.wait_job(job.job_id, timeout_s=600, poll_s=1.0)
    assert st.status == "COMPLETE", svc.job_logs(job.job_id, tail=40).text
    losses = [v for _, v in monitor.progress(st.results_dir, "train").kpi_history["train_loss"]]
    assert losses[-1] <= 0.95 * losses[0], losses  # at least 5% lower
    results = Path(st.results_dir)
    assert (results / "kpi_curves.png").is_file() or next(results.rglob("kpi_curves.png"))
    events = list(results.rglob("events.out.tfevents.*"))  # TensorBoard while it ran
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert len(acc.Scalars("kpi/train_loss")) == 10  # one KPI point per epoch
    steps = [json.loads(x) for x in next(results.rglob("status.json")).read_text().splitlines() if '"steps_per_s"' in x]
    assert steps and all(s["max_step"] == 20 and "eta" in s for s in steps)
    assert len(list(results.rglob("model_epoch_*.pth"))) == 1  # keep-last 1 (default)

    inf = svc.launch_job(SKILL, "inference", parent_job_id=job.job_id, data_sources={"inference_dataset": str(tmp_path / "test")})
    ist = svc.wait_job(inf.job_id, timeout_s=300, poll_s=1.0)
    assert ist.status == "COMPLETE", svc.job_logs(inf.job_id, tail=40).text
    cos = monitor.progress(ist.results_dir, "inference").kpis["mean_pairwise_cosine"]
    assert cos < 0.99, cos
