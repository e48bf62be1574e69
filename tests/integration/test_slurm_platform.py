"""The SLURM platform on a real cluster (tests/slurm_cluster.py; Debian slurm-wlm + munge; two
nodes, each a slurmd on this host).

Jobs go through the normal service chain (place, build, validate, preflight, render, record,
sbatch) with the fake, torch-free NVDINOv2 (tests/fake_engine.py). The cluster has no
accounting database, so sacct is unavailable: state comes from squeue and the runner's
exit-code file. The infrastructure failure is simulated the way SLURM itself sees one: the
job's node is set DOWN (``scontrol update nodename=... state=down``) while the job runs, SLURM
ends the job as NODE_FAIL, and the node returns (ReturnToService=2, its slurmd still answers).
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.jobs.store import JobRecord
from taoskills.platforms.registry import get_platform
from taoskills.platforms.slurm import SlurmConfig, SlurmPlatform
from taoskills.service import Service


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("data")
    write_tiny_images(root / "images_train", n=8)
    return root


@pytest.fixture()
def svc(tmp_path, monkeypatch, fake_engine, slurm_cluster):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    return Service(home=tmp_path / "home")


def _configure(monkeypatch, tmp_path, **config) -> None:
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"partition": "debug", "time": "00:10:00", "gpus_per_node": 0, **config}))
    monkeypatch.setenv("TAO_SKILLS_SLURM_CONFIG", str(path))


def _launch(svc: Service, photos: Path, epochs: int = 1):
    return svc.launch_job(
        "tao-train-nvdinov2",
        "train",
        automl_policy="off",
        platform="slurm",
        data_sources={"train_datasets": str(photos)},
        profile="smoke",
        overrides={**TINY_TRAIN_OVERRIDES, "train.num_epochs": epochs},
    )


def _wait_log(path: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(path).exists() and text in Path(path).read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{text!r} never appeared in {path}: {Path(path).read_text(errors='replace') if Path(path).exists() else 'no log'}"
    )


def test_builtin_engine_job_runs_to_complete(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path)
    handle = _launch(svc, photos)
    rec = svc.store.get(handle.job_id)
    assert rec.platform == "slurm" and rec.backend_id and rec.backend_id.isdigit()
    batch = (Path(rec.workdir) / "slurm.sbatch").read_text()
    assert "#SBATCH --partition=debug" in batch and "#SBATCH --time=00:10:00" in batch and "#SBATCH --no-requeue" in batch
    status = svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5)
    assert status.status == "COMPLETE", svc.job_logs(handle.job_id).text
    assert status.exit_code == 0 and (status.epoch, status.max_epoch) == (0, 1)  # TAO epochs count from 0
    ckpt = svc.resolve_checkpoint(handle.job_id, "inference")  # through the platform's artifacts
    assert Path(ckpt.path).is_file() and ckpt.candidates
    logs = svc.job_logs(handle.job_id, grep="WORLD_SIZE|finished").text
    assert "WORLD_SIZE=1" in logs and f"MASTER_ADDR={slurm_cluster.node_of(rec.backend_id)}" in logs and "exit code 0" in logs
    assert slurm_cluster.squeue_state(rec.backend_id) == "COMPLETED"


def test_cancel_is_scancel(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path)
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "5")
    handle = _launch(svc, photos, epochs=50)
    rec = svc.store.get(handle.job_id)
    _wait_log(rec.log_path, "running:")
    assert svc.cancel_job(handle.job_id).status == "CANCELED"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and slurm_cluster.squeue_state(rec.backend_id) != "CANCELLED":
        time.sleep(0.3)
    assert slurm_cluster.squeue_state(rec.backend_id) == "CANCELLED"
    assert get_platform("slurm").poll(rec).state == "CANCELED"
    assert svc.job_status(handle.job_id).status == "CANCELED"


def test_program_fault_is_error_and_never_requeued(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    # Held at submit, the data removed, then released: the engine finds no images and exits
    # non-zero -> SLURM FAILED, a program fault.
    import shutil

    data = tmp_path / "vanishing"
    shutil.copytree(photos, data)
    _configure(monkeypatch, tmp_path, extra_sbatch=["--hold"], max_requeues=3)
    handle = _launch(svc, data)
    rec = svc.store.get(handle.job_id)
    shutil.rmtree(data)
    slurm_cluster.scontrol("release", rec.backend_id)
    status = svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5)
    assert status.status == "ERROR" and status.exit_code not in (None, 0)
    assert slurm_cluster.squeue_state(rec.backend_id) == "FAILED"
    plat = get_platform("slurm")
    assert isinstance(plat, SlurmPlatform)
    assert plat.requeues(rec) == {"job_ids": [rec.backend_id], "requeues": 0, "history": []}
    assert status.failure is not None


def test_node_failure_is_requeued_then_completes(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path, max_requeues=1)
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "1")
    handle = _launch(svc, photos, epochs=3)
    rec = svc.store.get(handle.job_id)
    _wait_log(rec.log_path, "running:")
    node = slurm_cluster.node_of(rec.backend_id)
    slurm_cluster.scontrol("update", f"nodename={node}", "state=down", "reason=simulated-node-failure")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and slurm_cluster.squeue_state(rec.backend_id) != "NODE_FAIL":
        time.sleep(0.3)
    assert slurm_cluster.squeue_state(rec.backend_id) == "NODE_FAIL"
    slurm_cluster.wait_nodes_up()
    status = svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5)
    assert status.status == "COMPLETE", svc.job_logs(handle.job_id).text
    plat = get_platform("slurm")
    assert isinstance(plat, SlurmPlatform)
    history = plat.requeues(rec)
    assert history["requeues"] == 1 and history["job_ids"][0] == rec.backend_id and len(history["job_ids"]) == 2
    assert history["history"][0]["state"] == "NODE_FAIL"
    assert "attempt 1" in svc.job_logs(handle.job_id, grep="attempt").text


def test_node_failure_beyond_max_requeues_is_an_infrastructure_error(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path, max_requeues=0)
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "5")
    handle = _launch(svc, photos, epochs=50)
    rec = svc.store.get(handle.job_id)
    _wait_log(rec.log_path, "running:")
    slurm_cluster.scontrol(
        "update", f"nodename={slurm_cluster.node_of(rec.backend_id)}", "state=down", "reason=simulated-node-failure"
    )
    try:
        status = svc.wait_job(handle.job_id, timeout_s=60, poll_s=0.5)
    finally:
        slurm_cluster.wait_nodes_up()
    assert status.status == "ERROR"
    assert status.failure is not None and status.failure.get("fault") == "infrastructure"


# ------------------------------------------------------------------ rendering (no cluster needed)


def _record(tmp_path: Path, spec: dict) -> JobRecord:
    runner = tmp_path / "run.sh"
    runner.write_text(
        '#!/usr/bin/env bash\nenv | grep -E "^(WORLD_SIZE|NODE_RANK|MASTER_ADDR|MASTER_PORT|NUM_GPU_PER_NODE|SLURM_[A-Z_]*)=" | sort\n'
    )
    return JobRecord(
        job_id="job-twonodes",
        skill="tao-train-nvdinov2",
        network_arch="nvdinov2",
        action="train",
        platform="slurm",
        engine="builtin",
        status="PENDING",
        spec=spec,
        results_dir=str(tmp_path / "results"),
        workdir=str(tmp_path),
        script_path=str(runner),
        log_path=str(tmp_path / "log.txt"),
    )


def _fake_tools(bin_dir: Path) -> None:
    """srun that runs its command once per node (SLURM_NODEID 0, 1) and scontrol's hostname expansion."""
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/usr/bin/env bash\nwhile [[ $1 == -* ]]; do [[ $1 == --nodes ]] && shift; shift; done\n"
        'for i in 0 1; do SLURM_NODEID=$i "$@" > "$SLURM_OUT.$i"; done\n'
    )
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho gpu-node-07\necho gpu-node-08\n")
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)


def test_two_node_job_gets_tao_env_per_node(tmp_path):
    spec = {"train": {"num_gpus": 8, "num_nodes": 2}}
    plat = SlurmPlatform(SlurmConfig(partition="gpu", account="proj1", qos="high", cpus_per_task=32, mem="480G", time="04:00:00"))
    rec = _record(tmp_path, spec)
    text = plat.render_batch(rec)
    for line in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gres=gpu:8",
        "--partition=gpu",
        "--account=proj1",
        "--qos=high",
        "--cpus-per-task=32",
        "--mem=480G",
        "--time=04:00:00",
    ):
        assert f"#SBATCH {line}\n" in text
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir)
    batch = tmp_path / "slurm.sbatch"
    batch.write_text(text)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu-node-[07-08]",
        "SLURM_NTASKS": "2",
        "SLURM_OUT": str(tmp_path / "node"),
    }
    subprocess.run(["bash", str(batch)], env=env, check=True, capture_output=True, timeout=30)
    for rank in (0, 1):
        got = dict(line.split("=", 1) for line in (tmp_path / f"node.{rank}").read_text().split())
        assert got == {  # and no SLURM_* variable reaches the runner (the trainer spawns its own ranks)
            "WORLD_SIZE": "2",
            "NODE_RANK": str(rank),
            "MASTER_ADDR": "gpu-node-07",
            "MASTER_PORT": "29500",
            "NUM_GPU_PER_NODE": "8",
        }


def test_pyxis_container_and_launch_env(tmp_path):
    from taoskills.bank.catalog import Catalog

    plat = SlurmPlatform(
        SlurmConfig(container_image="nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt", container_mounts=["/lustre:/lustre"])
    )
    text = plat.render_batch(_record(tmp_path, {"train": {"num_gpus": 2}}))
    assert "--container-image=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt" in text and "--container-mounts=/lustre:/lustre" in text
    info = Catalog.load().get("tao-train-nvdinov2").info
    env = plat.launch_env(info, "train", {"train": {"num_gpus": 4, "num_nodes": 3}})
    assert env == {"WORLD_SIZE": "3", "NUM_GPU_PER_NODE": "4", "MASTER_PORT": "29500"}  # rank and master are per node


def test_bad_config_names_the_key(monkeypatch, tmp_path):
    from taoskills.errors import JobError

    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"partition": "gpu; rm -rf /"}))
    monkeypatch.setenv("TAO_SKILLS_SLURM_CONFIG", str(path))
    with pytest.raises(JobError) as exc:
        get_platform("slurm")
    assert "partition" in exc.value.message and exc.value.field == "TAO_SKILLS_SLURM_CONFIG"


def test_remote_input_is_refused_with_the_fix():
    (result,) = SlurmPlatform(SlurmConfig()).check_input("dataset.train_dataset.images_dir", "s3://bucket/images")
    assert not result.ok and "shared filesystem" in result.fix


def test_preflight_checks_partition_on_the_cluster(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path, partition="nosuch")
    report = svc.preflight("tao-train-nvdinov2", "train", {"train": {"num_gpus": 0}}, platform="slurm")
    bad = [c for c in report.checks if c.name == "host.slurm.partition"]
    assert bad and not bad[0].ok and "debug" in bad[0].fix and not report.ok
    _configure(monkeypatch, tmp_path)
    report = svc.preflight("tao-train-nvdinov2", "train", {"train": {"num_gpus": 0}}, platform="slurm")
    assert [c.ok for c in report.checks if c.name.startswith("host.slurm")] == [True, True]
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump({"partition": "debug"}))  # GPUs from the spec: the test node has none
    report = svc.preflight("tao-train-nvdinov2", "train", {"train": {"num_gpus": 2}}, platform="slurm")
    (gpus,) = [c for c in report.checks if c.name == "host.slurm.gpus"]
    assert not gpus.ok and "2 GPU(s)" in gpus.message and gpus.field == "train.num_gpus"


def test_poll_many_is_one_squeue_call(svc, photos, monkeypatch, tmp_path, slurm_cluster):
    _configure(monkeypatch, tmp_path, extra_sbatch=["--hold"])  # held: they stay PENDING
    handles = [_launch(svc, photos) for _ in range(3)]
    records = [svc.store.get(h.job_id) for h in handles]
    plat = get_platform("slurm")
    calls: list[list[str]] = []
    real_run = SlurmPlatform._run

    def counting(self, argv, **kw):
        calls.append(argv)
        return real_run(self, argv, **kw)

    monkeypatch.setattr(SlurmPlatform, "_run", counting)
    states = plat.poll_many(records)
    assert [c[0] for c in calls] == ["squeue"]
    assert calls[0][calls[0].index("-j") + 1] == ",".join(r.backend_id for r in records)
    assert {s.state for s in states.values()} == {"PENDING"}
    assert all("JobHeldUser" in s.detail for s in states.values())
    for h in handles:
        assert svc.cancel_job(h.job_id).status == "CANCELED"


def test_failed_attempt_with_an_interconnect_error_is_requeued(tmp_path, slurm_cluster):
    # A real batch job whose first attempt prints the skill's nccl_error pattern and exits 1
    # (SLURM: FAILED); the platform resubmits it; the second attempt succeeds.
    rec = _record(tmp_path, {"train": {"num_gpus": 0}})
    marker = tmp_path / "first-attempt-done"
    Path(rec.script_path).write_text(
        "#!/usr/bin/env bash\n"
        f"if [ ! -e {marker} ]; then touch {marker}; echo 'NCCL error: unhandled system error'; exit 1; fi\n"
        "echo second attempt ok\n"
    )
    plat = SlurmPlatform(SlurmConfig(max_requeues=2, gpus_per_node=0))
    first = plat.submit(rec)
    deadline = time.monotonic() + 90
    state = plat.poll(rec)
    while time.monotonic() < deadline and state.state not in ("COMPLETE", "ERROR", "CANCELED"):
        time.sleep(0.5)
        state = plat.poll(rec)
    assert state.state == "COMPLETE", (state, Path(rec.log_path).read_text())
    history = plat.requeues(rec)
    assert history["job_ids"][0] == first and history["requeues"] == 1
    assert slurm_cluster.squeue_state(first) == "FAILED"
    assert "second attempt ok" in Path(rec.log_path).read_text()


def test_failed_attempt_without_a_retry_pattern_is_not_requeued(tmp_path, slurm_cluster):
    rec = _record(tmp_path, {"train": {"num_gpus": 0}})
    Path(rec.script_path).write_text("#!/usr/bin/env bash\necho 'ValueError: bad value'; exit 1\n")
    plat = SlurmPlatform(SlurmConfig(max_requeues=2, gpus_per_node=0))
    plat.submit(rec)
    deadline = time.monotonic() + 90
    state = plat.poll(rec)
    while time.monotonic() < deadline and state.state not in ("COMPLETE", "ERROR", "CANCELED"):
        time.sleep(0.5)
        state = plat.poll(rec)
    assert state.state == "ERROR" and state.exit_code == 1 and "program fault" in state.detail
    assert plat.requeues(rec)["requeues"] == 0


def test_gres_count_reads_sinfo_fields():
    from taoskills.platforms.slurm_checks import gres_count

    assert gres_count("gpu:8") == 8 and gres_count("gpu:a100:4(S:0-1)") == 4
    assert gres_count("(null)") == 0 and gres_count("shard:8,gpu:h100:2") == 2


@pytest.mark.torch
@pytest.mark.slow
def test_real_tiny_nvdinov2_train_on_slurm(tmp_path, monkeypatch, slurm_cluster, photos):
    """The real built-in engine (torch) trains a tiny NVDINOv2 as a SLURM batch job."""
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    svc = Service(home=tmp_path / "home")
    _configure(monkeypatch, tmp_path)
    handle = _launch(svc, photos)
    status = svc.wait_job(handle.job_id, timeout_s=300, poll_s=1.0)
    assert status.status == "COMPLETE", svc.job_logs(handle.job_id).text
    assert (status.epoch, status.max_epoch) == (0, 1) and status.exit_code == 0
    assert Path(svc.resolve_checkpoint(handle.job_id, "inference").path).is_file()


def test_job_forgotten_by_squeue_is_read_from_the_exit_code_file(tmp_path, slurm_cluster):
    # No accounting here (sacct has nothing): once squeue forgets a job (MinJobAge), the
    # runner's exit_code file decides; without one the state is UNKNOWN, never a guess.
    import json

    rec = _record(tmp_path, {})
    plat = SlurmPlatform(SlurmConfig())
    (tmp_path / "slurm.json").write_text(json.dumps({"job_ids": ["999999"], "requeues": 0, "history": []}))
    assert plat.poll(rec).state == "UNKNOWN"
    (tmp_path / "exit_code").write_text("0\n")
    assert plat.poll(rec).state == "COMPLETE"
    (tmp_path / "exit_code").write_text("2\n")
    state = plat.poll(rec)
    assert state.state == "ERROR" and state.exit_code == 2


def test_sbatch_refusal_is_a_clear_error(tmp_path, slurm_cluster):
    from taoskills.errors import JobError

    rec = _record(tmp_path, {})
    with pytest.raises(JobError) as exc:
        SlurmPlatform(SlurmConfig(partition="nosuch")).submit(rec)
    assert "sbatch" in exc.value.message and "partition" in exc.value.message.lower()
    assert "partition" in exc.value.fix


def test_two_node_job_runs_on_both_nodes_with_tao_env(tmp_path, slurm_cluster):
    # A real 2-node batch job: the runner prints its environment per node; NODE_RANK follows
    # SLURM_NODEID, MASTER_ADDR is the first node, and no SLURM variable reaches the runner.
    assert len(slurm_cluster.nodes) >= 2, slurm_cluster.nodes
    rec = _record(tmp_path, {"train": {"num_gpus": 0, "num_nodes": 2}})
    Path(rec.script_path).write_text(
        '#!/usr/bin/env bash\nenv | grep -E "^(WORLD_SIZE|NODE_RANK|MASTER_ADDR|MASTER_PORT|NUM_GPU_PER_NODE|SLURM_[A-Z_]*)=" '
        f"| sort > {tmp_path}/env.$NODE_RANK\n"
    )
    plat = SlurmPlatform(SlurmConfig(gpus_per_node=0))
    slurm_id = plat.submit(rec)
    deadline = time.monotonic() + 90
    state = plat.poll(rec)
    while time.monotonic() < deadline and state.state not in ("COMPLETE", "ERROR", "CANCELED"):
        time.sleep(0.5)
        state = plat.poll(rec)
    assert state.state == "COMPLETE", (state, Path(rec.log_path).read_text())
    first = slurm_cluster.node_of(slurm_id)
    assert "#SBATCH --nodes=2\n" in (tmp_path / "slurm.sbatch").read_text()
    for rank in (0, 1):
        got = dict(line.split("=", 1) for line in (tmp_path / f"env.{rank}").read_text().split())
        assert got == {
            "WORLD_SIZE": "2",
            "NODE_RANK": str(rank),
            "MASTER_ADDR": first,
            "MASTER_PORT": "29500",
            "NUM_GPU_PER_NODE": "0",
        }
