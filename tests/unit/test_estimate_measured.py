"""Estimate rules for DINO, MAE and Grounding DINO (taoskills.jobs.estimate_measured), torch-free:
sample counts from COCO / ODVG / image folders, steps, scaling from the reference row, structure
and device mismatches, and the service's dispatch."""

from __future__ import annotations

import json

import pytest

from taoskills.jobs import estimate as E
from taoskills.jobs import estimate_measured as EM


def reference_spec(network: str, **kw) -> dict:
    """A spec whose structure, batch and side are the packaged row's reference."""
    ref = E.throughput_table()[network]["reference"]
    spec: dict = {"model": {}, "dataset": {"augmentation": {}}, "train": {"num_epochs": 10, "checkpoint_interval": 1}}
    for key, value in ref["structure"].items():
        section, name = key.split(".")
        spec.setdefault(section, {})[name] = value
    spec["dataset"]["batch_size"] = ref["batch_size"]
    if network == "mae":
        spec["dataset"]["augmentation"]["input_size"] = ref["side"]
    else:
        spec["dataset"]["augmentation"]["scales"] = [ref["side"] // 2, ref["side"]]
    for key, value in kw.items():
        section, name = key.split(".", 1)
        spec[section][name] = value
    return spec


@pytest.mark.parametrize("network", EM.NETWORKS)
def test_every_network_has_a_measured_cpu_row(network):
    table = E.throughput_table()[network]
    row = table["devices"]["cpu"]
    assert row["train_step_s"] > 0 and row["fixed_s"] >= 0 and row["peak_rss_gb"] > 0
    assert set(table["reference"]) >= {"structure", "batch_size", "side", "steps", "checkpoint_mb"}


@pytest.mark.parametrize("network", EM.NETWORKS)
def test_the_reference_job_is_estimated_as_measured(network):
    """The row's own reference (same steps) gives back fixed_s + steps x train_step_s and its checkpoint."""
    table = E.throughput_table()[network]
    ref, row = table["reference"], table["devices"]["cpu"]
    epochs = 4
    spec = reference_spec(network, **{"train.num_epochs": epochs})
    samples = ref["batch_size"] * 5
    est = EM.estimate_train(network, spec, samples=samples, device="cpu", keep=1)
    assert est["measured"] and est["steps"] == epochs * 5
    assert est["wall_time_s"] == pytest.approx(row["fixed_s"] + epochs * 5 * row["train_step_s"], abs=0.1)
    assert est["disk"]["final_mb"] == pytest.approx(ref["checkpoint_mb"] + E.LOGS_MB, abs=0.1)
    assert est["disk"]["peak_mb"] == pytest.approx(2 * ref["checkpoint_mb"] + E.LOGS_MB, abs=0.1)  # one more while saving
    assert est["memory"] == {"kind": "ram", "peak_gb": row["peak_rss_gb"]}


def test_steps_round_up_for_dino_and_down_where_the_loader_drops_the_last_batch():
    for network, want in (("dino", 3), ("mae", 2), ("grounding_dino", 2)):
        batch = E.throughput_table()[network]["reference"]["batch_size"]
        est = EM.estimate_train(network, reference_spec(network, **{"train.num_epochs": 1}), samples=2 * batch + 1, device="cpu")
        assert est["steps_per_epoch"] == want, network


def test_step_time_scales_with_batch_and_pixels_and_gpus():
    network = "dino"
    ref = E.throughput_table()[network]["reference"]
    base = EM.estimate_train(network, reference_spec(network), samples=64, device="cpu")
    double_batch = EM.estimate_train(
        network, reference_spec(network, **{"dataset.batch_size": 2 * ref["batch_size"]}), samples=64, device="cpu"
    )
    assert double_batch["step_s"] == pytest.approx(2 * base["step_s"], rel=0.01)
    bigger = reference_spec(network)
    bigger["dataset"]["augmentation"]["scales"] = [2 * ref["side"]]
    big = EM.estimate_train(network, bigger, samples=64, device="cpu")
    assert big["step_s"] == pytest.approx(4 * base["step_s"], rel=0.01)
    assert any("does not follow batch size" in n for n in big["notes"])
    two = EM.estimate_train(network, reference_spec(network), samples=64, device="cpu", gpus=2)
    assert two["step_s"] == pytest.approx(base["step_s"] / 2, rel=0.01) and two["steps"] == base["steps"] // 2


def test_another_structure_or_device_has_no_figures_and_says_why():
    spec = reference_spec("dino", **{"model.backbone": "resnet_50"})
    est = EM.estimate_train("dino", spec, samples=32, device="cpu")
    assert not est["measured"] and est["wall_time_s"] is None and est["disk"]["peak_mb"] is None
    assert any("model.backbone='resnet_50'" in n and "demo --network dino" in n for n in est["notes"])
    assert E.fits(est, free_disk_gb=0.0, gpu_memory_gb=None) == []  # unknown disk cannot refuse
    gpu = EM.estimate_train("mae", reference_spec("mae"), samples=32, device="NVIDIA H100 80GB HBM3")
    assert not gpu["measured"] and gpu["wall_time_s"] is None and any("no measurement for this device" in n for n in gpu["notes"])
    assert gpu["disk"]["per_save_mb"] == E.throughput_table()["mae"]["reference"]["checkpoint_mb"]  # disk needs no device row


def test_too_little_disk_for_the_reference_checkpoint_is_refused():
    est = EM.estimate_train("grounding_dino", reference_spec("grounding_dino"), samples=32, device="cpu", keep=1)
    issues = E.fits(est, free_disk_gb=0.1, gpu_memory_gb=None)
    assert issues and issues[0]["field"] == "train.checkpoint_interval"


def test_samples_come_from_coco_odvg_and_image_folders(tmp_path):
    coco = tmp_path / "train.json"
    coco.write_text(json.dumps({"images": [{"id": i} for i in range(7)], "annotations": [], "categories": []}))
    odvg = tmp_path / "train.jsonl"
    odvg.write_text("".join(json.dumps({"filename": f"{i}.jpg"}) + "\n" for i in range(5)) + "\n")
    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    for i in range(3):
        (folder / "cat" / f"{i}.jpg").write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image")
    two_coco = {"dataset": {"train_data_sources": [{"json_file": str(coco)}, {"json_file": str(coco)}]}}
    assert EM.count_samples("dino", two_coco) == 14
    assert EM.count_samples("grounding_dino", {"dataset": {"train_data_sources": [{"json_file": str(odvg)}]}}) == 5
    assert EM.count_samples("mae", {"dataset": {"train_data_sources": str(folder)}}) == 3
    with pytest.raises(ValueError, match="json_file"):
        EM.count_samples("dino", {"dataset": {"train_data_sources": [{"json_file": str(tmp_path / "none.json")}]}})
    with pytest.raises(ValueError, match="not a folder"):
        EM.count_samples("mae", {"dataset": {"train_data_sources": str(tmp_path / "none")}})


def test_the_service_dispatches_every_network_and_refuses_other_actions():
    from taoskills import service_estimate as S

    assert set(S.ESTIMATORS) == {"nvdinov2", *EM.NETWORKS}

    class Info:
        network_arch = "dino"

    class Skill:
        info = Info()

    S._check_supported(Skill(), "train", "builtin")
    with pytest.raises(Exception, match="covers the train action"):
        S._check_supported(Skill(), "evaluate", "builtin")
