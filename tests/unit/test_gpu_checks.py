"""GPU host checks with a stand-in nvidia-smi on PATH (tests/gpu_helpers.py): count, memory and
compute capability read back (old drivers by GPU name), and the job's request - num_gpus,
gpu_ids, bf16, TAO's minimum architecture - checked against them on the local and docker
platforms."""

from __future__ import annotations

import os

import pytest

from gpu_helpers import A100, T4, V100, install_fake_nvidia_smi
from taoskills import platforms
from taoskills.bank.catalog import Catalog
from taoskills.platforms import engines, hostchecks


@pytest.fixture()
def smi(tmp_path, monkeypatch):
    """Install a fake nvidia-smi reporting the GPUs given; returns the installer."""
    bin_dir = tmp_path / "bin"

    def install(gpus, *, old_driver=False):
        install_fake_nvidia_smi(bin_dir, gpus, old_driver=old_driver)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    return install


@pytest.fixture(scope="module")
def dino():
    return Catalog.load().get("tao-train-dino").info


def _by_name(results):
    return {r.name: r for r in results}


def test_nvidia_smi_reports_count_memory_and_compute_capability(smi):
    smi([A100, T4])
    gpu = hostchecks.check_nvidia_smi("warning")
    assert gpu.ok and gpu.details["gpus"] == 2 and gpu.details["compute_caps"] == ["8.0", "7.5"]
    assert gpu.details["memory_gb"] == 15.0 and gpu.details["cc_source"] == "nvidia-smi"
    assert "Tesla T4 (compute 7.5)" in gpu.message


def test_old_driver_falls_back_to_the_gpu_name(smi):
    smi([V100, {"name": "Mystery Accelerator", "memory.total": 1024}], old_driver=True)
    gpu = hostchecks.check_nvidia_smi("warning")
    assert gpu.ok and gpu.details["gpus"] == 2 and gpu.details["cc_source"] == "name"
    assert gpu.details["compute_caps"] == ["7.0", None]
    assert hostchecks.cc_from_name("NVIDIA H100 80GB HBM3") == "9.0" and hostchecks.cc_from_name("NVIDIA L4") == "8.9"


def test_tao_needs_turing_or_newer(smi, dino):
    smi([V100])
    found = _by_name(hostchecks.check_gpu_request(hostchecks.check_nvidia_smi("warning"), dino, "train", {}, engine="tao"))
    cc = found["host.gpu.compute_capability"]
    assert not cc.ok and cc.severity == "error" and "7.5" in cc.message and "0 (7.0)" in cc.message
    smi([T4])
    found = _by_name(hostchecks.check_gpu_request(hostchecks.check_nvidia_smi("warning"), dino, "train", {}, engine="tao"))
    assert found["host.gpu.compute_capability"].ok
    smi([{"name": "Mystery Accelerator", "memory.total": 1024}], old_driver=True)
    found = _by_name(hostchecks.check_gpu_request(hostchecks.check_nvidia_smi("warning"), dino, "train", {}, engine="tao"))
    unknown = found["host.gpu.compute_capability"]
    assert not unknown.ok and unknown.severity == "warning" and "driver" in unknown.fix


def test_bf16_needs_compute_capability_8(smi, dino):
    spec = {"train": {"precision": "bf16"}}
    smi([T4])
    gpu = hostchecks.check_nvidia_smi("warning")
    bf16 = _by_name(hostchecks.check_gpu_request(gpu, dino, "train", spec, engine="tao"))["host.gpu.bf16"]
    assert not bf16.ok and bf16.field == "train.precision" and bf16.severity == "error" and "8.0" in bf16.message
    soft = _by_name(hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"precision": "bf16-mixed"}}, engine="builtin"))
    assert soft["host.gpu.bf16"].severity == "warning"
    assert "host.gpu.bf16" not in _by_name(
        hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"precision": "fp16"}}, engine="tao")
    )
    smi([A100])
    ok = hostchecks.check_gpu_request(hostchecks.check_nvidia_smi("warning"), dino, "train", spec, engine="tao")
    assert all(r.ok for r in ok)


def test_gpu_count_and_ids_against_the_host(smi, dino):
    smi([A100, V100])
    gpu = hostchecks.check_nvidia_smi("warning")
    many = _by_name(hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"num_gpus": 4}}, engine="tao"))
    assert not many["host.gpu.count"].ok and many["host.gpu.count"].field == "train.num_gpus"
    assert "has 2 GPU" in many["host.gpu.count"].message
    ids = hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"num_gpus": 2, "gpu_ids": [0, 3]}}, engine="tao")
    assert any(r.field == "train.gpu_ids" and not r.ok and "[3]" in r.message for r in ids)
    # only the GPUs the job uses count: GPU 0 (A100) passes, GPU 1 (V100) does not
    first = hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"num_gpus": 1, "gpu_ids": [0]}}, engine="tao")
    assert all(r.ok for r in first)
    second = _by_name(hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"num_gpus": 1, "gpu_ids": [1]}}, engine="tao"))
    assert not second["host.gpu.compute_capability"].ok
    everything = _by_name(hostchecks.check_gpu_request(gpu, dino, "train", {"train": {"num_gpus": -1}}, engine="tao"))
    assert not everything["host.gpu.compute_capability"].ok and "host.gpu.count" not in everything


def test_local_platform_host_checks_include_the_gpu_request(smi, dino, tmp_path, monkeypatch):
    smi([V100])
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    local = platforms.get_platform("local")
    checks = local.host_checks(engines.get_engine("tao"), dino, "train", {"train": {"precision": "bf16", "num_gpus": 1}})
    failed = {c.name for c in checks if not c.ok and c.severity == "error"}
    assert {"host.gpu.compute_capability", "host.gpu.bf16"} <= failed


def test_no_gpu_means_no_request_checks(dino):
    none = hostchecks.CheckResult(name="host.gpu", ok=False, message="none", details={"cuda": False, "gpus": 0})
    assert hostchecks.check_gpu_request(none, dino, "train", {"train": {"precision": "bf16"}}, engine="tao") == []
