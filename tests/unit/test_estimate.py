"""Estimate rules (taoskills.jobs.estimate), torch-free: steps, saves, disk, time scaling, fit checks."""

from __future__ import annotations

import copy

import pytest

from taoskills.engine.nvdinov2.spec import DEFAULTS
from taoskills.jobs import estimate as E

ROW = {"train_step_s": 2.0, "fixed_s": 20.0, "save_s_per_gb": 1.0, "peak_rss_gb": 3.0, "rss_per_image_gb": 0.1}
GPU_ROW = {"train_step_s": 0.1, "fixed_s": 10.0, "save_s_per_gb": 0.5, "peak_mem_gb": 2.0, "mem_per_image_gb": 0.05}


@pytest.fixture()
def table(monkeypatch):
    """A throughput table with known figures (the packaged one is measured; these are for the rules)."""
    real = copy.deepcopy(E.throughput_table())
    real["nvdinov2"]["devices"] = {"cpu": dict(ROW), "NVIDIA H100": dict(GPU_ROW)}
    monkeypatch.setattr(E, "throughput_table", lambda: real)
    return real


def smoke_spec(**kw) -> dict:
    """The engine defaults with the smoke profile's model and the throughput table's reference crops."""
    spec = copy.deepcopy(DEFAULTS)
    spec["model"]["backbone"].update(student_type="vit_s", teacher_type="vit_s", img_size=224)
    spec["train"].update(num_prototypes=1024, num_epochs=1, checkpoint_interval=1)
    spec["dataset"]["batch_size"] = 8
    spec["dataset"]["transform"].update(global_crops_size=56, n_local_crops=2, local_crops_size=28)
    for key, value in kw.items():
        node = spec
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return spec


def test_vit_s_checkpoint_sizes_match_the_files_the_engine_writes():
    # A smoke run wrote model_epoch 445_094_292 bytes and student_/teacher_ 86_591_178 bytes each
    # (full checkpoints, measured on this project's CI machine): 4 bytes per parameter plus a
    # little pickle overhead.
    est = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="nowhere", keep=1)
    assert est["disk"]["model_file_mb"] == pytest.approx(445.09, rel=0.002)
    assert est["disk"]["per_save_mb"] - est["disk"]["model_file_mb"] == pytest.approx(2 * 86.59, rel=0.002)
    lean = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="nowhere", keep=1, lean=True)
    assert lean["disk"]["model_file_mb"] == pytest.approx(2 * 4 * 6_165_888 / 1e6, rel=1e-3)  # the two heads
    assert lean["disk"]["final_mb"] < 300


def test_steps_drop_incomplete_batches_and_saves_follow_interval_and_keep():
    spec = smoke_spec(**{"train.num_epochs": 5, "train.checkpoint_interval": 2})
    est = E.estimate_nvdinov2_train(spec, images=20, device="nowhere", keep=1)
    assert (est["steps_per_epoch"], est["steps"]) == (2, 10)  # floor(20 / 8)
    assert (est["saves"], est["saves_kept"]) == (3, 1)  # epochs 2, 4 and the last (5)
    assert est["disk"]["peak_mb"] > est["disk"]["final_mb"]  # one more save exists while replacing
    keep_all = E.estimate_nvdinov2_train(spec, images=20, device="nowhere", keep=None)
    assert keep_all["saves_kept"] == 3
    assert keep_all["disk"]["final_mb"] == pytest.approx(3 * est["disk"]["per_save_mb"] + E.LOGS_MB, rel=1e-3)
    steps = smoke_spec(**{"train.num_epochs": 2, "train.checkpoint_interval": 3, "train.checkpoint_interval_unit": "step"})
    assert E.estimate_nvdinov2_train(steps, images=64, device="nowhere", keep=None)["saves"] == 5  # 16 steps // 3
    replace = smoke_spec(**{"train.num_epochs": 4})
    replace["train"]["checkpointer"]["replace_periodic"] = True
    assert E.estimate_nvdinov2_train(replace, images=16, device="nowhere", keep=None)["saves_kept"] == 1


def test_no_row_means_no_time_and_says_so():
    est = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="Some GPU 9000", keep=1)
    assert est["wall_time_s"] is None and est["memory"] is None and not est["measured"]
    assert any("no measurement for this device" in n for n in est["notes"])
    assert est["disk"]["final_mb"] > 0  # disk follows from the spec alone


def test_time_scales_with_steps_work_and_speed_factor(table):
    base = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="cpu", keep=1)
    # reference config: 2 steps x 2.0 s + 20 s fixed + GB written x 1 s/GB
    written = base["disk"]["per_save_mb"] / 1e3
    assert base["wall_time_s"] == pytest.approx(20 + 2 * 2.0 + written, abs=0.1)
    assert base["memory"] == {"kind": "ram", "peak_gb": 3.0}
    double = E.estimate_nvdinov2_train(smoke_spec(**{"dataset.batch_size": 16}), images=32, device="cpu", keep=1)
    assert double["step_s"] == pytest.approx(4.0, rel=1e-3)  # twice the images per step
    assert double["memory"]["peak_gb"] == pytest.approx(3.0 + 8 * 0.1, rel=1e-3)
    slow = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="cpu", keep=1, speed_factor=3.0)
    assert slow["wall_time_s"] == pytest.approx(3 * base["wall_time_s"], rel=1e-2)
    big = E.estimate_nvdinov2_train(
        smoke_spec(**{"model.backbone.student_type": "vit_b", "model.backbone.teacher_type": "vit_b"}),
        images=16,
        device="cpu",
        keep=1,
    )
    assert big["step_s"] == pytest.approx(2.0 * 4, rel=1e-3)  # same depth, twice the width: 4x the cost per token
    gpu = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="NVIDIA H100 80GB HBM3", gpus=2, keep=1)
    assert gpu["measured"] and gpu["memory"]["kind"] == "gpu" and gpu["steps_per_epoch"] == 1  # 16 // (8 x 2)


def test_fits_refuses_disk_and_known_gpu_memory_with_fixes(table):
    est = E.estimate_nvdinov2_train(smoke_spec(), images=16, device="cpu", keep=1)
    assert E.fits(est, free_disk_gb=100.0, gpu_memory_gb=None) == []
    (disk,) = E.fits(est, free_disk_gb=0.05, gpu_memory_gb=None)
    assert disk["field"] == "train.checkpoint_interval" and "TAO_SKILLS_KEEP_CHECKPOINTS" in disk["fix"]
    assert "another host" in disk["fix"]
    gpu = E.estimate_nvdinov2_train(smoke_spec(**{"dataset.batch_size": 64}), images=640, device="NVIDIA H100", keep=1)
    (mem,) = E.fits(gpu, free_disk_gb=None, gpu_memory_gb=1.0)
    assert mem["field"] == "dataset.batch_size" and "lower dataset.batch_size" in mem["fix"]
    assert E.fits(gpu, free_disk_gb=None, gpu_memory_gb=None) == []  # unknown GPU memory: no refusal


def test_packaged_table_has_a_measured_cpu_row_and_no_invented_gpu_rows():
    table = E.throughput_table()["nvdinov2"]
    cpu = table["devices"]["cpu"]
    assert cpu["train_step_s"] > 0 and cpu["fixed_s"] > 0 and cpu["peak_rss_gb"] > 0 and cpu["measured_on"]
    for name, row in table["devices"].items():
        assert row.get("measured_on"), f"row {name} says where it was measured"
