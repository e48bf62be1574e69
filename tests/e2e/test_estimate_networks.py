"""The estimate of a DINO / MAE / Grounding DINO train run (taoskills.jobs.estimate_measured) against
real jobs: MAE pretraining, the cheapest of the three measured rows (engine/throughput.yaml).

Calibration rule (the machine may be shared): the row's own reference job (the MAE demo's pretrain
spec: convnextv2_atto at 64 px, batch 8, here 1 epoch on the 64 sample photos) runs first;
``speed_factor`` = its wall time / the row's (fixed_s + steps x train_step_s). The estimate of a
second job at another batch size, image side and length, made with that factor, must be within 2x
of its measured wall time (launch to COMPLETE); its disk use within 2x of the estimate (no
calibration). About 30 s on 2 idle cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.slow]

SKILL = "tao-train-mask-auto-encoder"


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _run(svc, request: dict) -> tuple[float, object]:
    t0 = time.monotonic()
    job = svc.launch_job(SKILL, "train", **request)
    st = svc.wait_job(job.job_id, timeout_s=1800, poll_s=0.5)
    assert st.status == "COMPLETE", svc.job_logs(job.job_id, tail=40).text
    return time.monotonic() - t0, st


@pytest.mark.timeout(1800)
def test_mae_estimate_predicts_another_config_within_2x(home, tmp_path):
    from taoskills.engine.mae.sample import demo_overrides, write_classification_set
    from taoskills.jobs.estimate import throughput_table
    from taoskills.service import Service

    write_classification_set(tmp_path / "data", num_classes=4)
    svc = Service()
    row, ref = throughput_table()["mae"]["devices"]["cpu"], throughput_table()["mae"]["reference"]
    base = {"automl_policy": "off", "data_sources": {"train_datasets": str(tmp_path / "data")}}
    reference = {**demo_overrides("pretrain", epochs=1), "train.num_gpus": 1}  # the row's structure, batch and side
    ref_wall, _ = _run(svc, {**base, "overrides": reference})
    factor = ref_wall / (row["fixed_s"] + 64 // ref["batch_size"] * row["train_step_s"])

    other = {**reference, "dataset.batch_size": 4, "dataset.augmentation.input_size": 96, "train.num_epochs": 2}
    est = svc.estimate(SKILL, "train", speed_factor=factor, **base, overrides=other)
    assert est.measured and est.steps == 2 * (64 // 4) and est.images == 64
    wall, st = _run(svc, {**base, "overrides": other})
    disk = _disk_bytes(Path(st.results_dir))
    print(
        f"\nMAE reference job {ref_wall:.1f} s (speed_factor {factor:.2f}); batch 4 / 96 px / 2 epochs: wall "
        f"{wall:.1f} s vs estimate {est.wall_time_s:.1f} s; disk {disk / 1e6:.1f} MB vs {est.disk['final_mb']} MB"
    )
    assert 0.5 <= wall / est.wall_time_s <= 2.0, (wall, est.wall_time_s, factor)
    assert 0.5 <= disk / (est.disk["final_mb"] * 1e6) <= 2.0, (disk, est.disk)
