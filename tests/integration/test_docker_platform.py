"""The docker platform against the real Docker daemon: built-in engine in the engine image, the
TAO-engine path through the TAO stand-in image (tests/standin), logs, cancel, exit codes,
reconciliation by label, results through artifact access (bind and volume), hardening.

The daemon must run (``.ci/run`` starts one); when it does not, these tests FAIL with the
command that starts it. Images are built at session start (tests/docker_support.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_support import ENGINE_IMAGE, HOW_TO_START, STANDIN_IMAGE, build_images, docker_env
from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.errors import PolicyRefusal
from taoskills.jobs.store import JobRecord
from taoskills.platforms import docker_config as dc
from taoskills.platforms.docker import DockerPlatform
from taoskills.platforms.docker_reconcile import reconcile
from taoskills.platforms.registry import get_platform
from taoskills.service import Service

PLANTED = "planted-SECRET-9f8e7d6c5b4a"


@pytest.fixture(scope="session")
def client():
    import docker

    try:
        c = docker.from_env(timeout=60)
        c.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{HOW_TO_START} ({type(exc).__name__}: {exc})")
    build_images(c)
    yield c
    for ctr in c.containers.list(all=True, filters={"label": dc.LABEL_JOB}):
        if ctr.name.startswith("tao-skills-job-"):
            ctr.remove(force=True)


@pytest.fixture()
def ws(tmp_path, monkeypatch, client, fake_engine):
    """A workspace (= runtime home) and the docker settings of docker_support.docker_env."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("TAO_SKILLS_HOME", str(root))
    for k, v in docker_env(root).items():
        monkeypatch.setenv(k, v)
    return root


@pytest.fixture()
def svc(ws):
    return Service(home=ws)


def coco_root(root, n=4):
    from fake_engine import write_tiny_images

    imgs = write_tiny_images(root / "images", n=n)
    coco = {
        "images": [{"id": i + 1, "file_name": p.name, "width": 16, "height": 16} for i, p in enumerate(imgs)],
        "annotations": [
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0} for i in range(n)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root


def _wait(svc, job_id, timeout=90):
    st = svc.wait_job(job_id, timeout_s=timeout, poll_s=0.3)
    assert st.status in ("COMPLETE", "ERROR", "CANCELED"), st
    return st


def _dino(svc, ws, **kw):
    data = coco_root(ws / "coco")
    return svc.launch_job(
        "tao-train-dino",
        "train",
        engine="tao",
        platform="docker",
        automl_policy="off",
        data_sources={"train_datasets": str(data)},
        overrides={"train.num_epochs": 2, **kw.pop("overrides", {})},
        **kw,
    )


def test_registry_gives_the_docker_platform(ws):
    assert isinstance(get_platform("docker"), DockerPlatform)


def test_tao_engine_dino_train_through_the_standin_image(svc, ws, client):
    handle = _dino(svc, ws)
    rec = svc.store.get(handle.job_id)
    ctr = client.containers.get(rec.backend_id)
    assert ctr.image.tags == [STANDIN_IMAGE]
    # the exact TAO command: the skill's entrypoint, the read-only spec, results_dir override
    assert ctr.attrs["Config"]["Cmd"][-4:] == ["train", "-e", "/spec.yaml", "results_dir=/results"]
    assert "dino" in ctr.attrs["Config"]["Cmd"]
    st = _wait(svc, handle.job_id)
    assert st.status == "COMPLETE", svc.job_logs(handle.job_id).text
    assert st.epoch == 1 and st.max_epoch == 2 and st.kpis.get("val_mAP50") == pytest.approx(0.2)
    logs = svc.job_logs(handle.job_id).text
    assert "STUB: tao-skills stand-in" in logs and "Execution status: PASS" in logs
    ck = svc.resolve_checkpoint(handle.job_id, "inference")
    assert ck.path.endswith("model_epoch_001_step_00020.pth")
    mounts = {m["Destination"]: m for m in ctr.attrs["Mounts"]}
    assert mounts["/spec.yaml"]["RW"] is False and mounts["/workspace"]["RW"] is False and mounts["/results"]["RW"] is True
    assert not any("docker.sock" in m["Source"] for m in ctr.attrs["Mounts"])
    host = ctr.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"] and host["Init"] is True
    assert host["ShmSize"] == 1 << 30 and host["NetworkMode"] == "none" and host["IpcMode"] == "private"
    assert {u["Name"] for u in host["Ulimits"]} == {"memlock", "stack"}
    assert ctr.labels[dc.LABEL_JOB] == handle.job_id
    spec = (ws / "jobs" / handle.job_id / "container_spec.yaml").read_text()
    assert "/workspace/coco/images" in spec and str(ws) not in spec


@pytest.mark.parametrize(
    ("skill", "network"), [("tao-train-mask-auto-encoder", "mae"), ("tao-train-grounding-dino", "grounding_dino")]
)
def test_standin_entrypoints_of_other_networks(svc, ws, client, skill, network):
    import docker

    from taoskills.bank.catalog import Catalog

    info = Catalog.load().get(skill).info
    plat = get_platform("docker")
    out = client.containers.run(
        plat.cfg.image_for("tao", info, "train"),
        [network, "--help"],
        remove=True,
        mounts=[docker.types.Mount(m, m, type="bind", read_only=True) for m in plat.cfg.toolchain_mounts],
        environment={"PATH": plat.cfg.env_path},
        network_mode="none",
    ).decode()
    assert "STUB" in out and network in out


def test_builtin_engine_in_the_engine_image(svc, ws, photos_root, client):
    handle = svc.launch_job(
        "tao-train-nvdinov2",
        "train",
        engine="builtin",
        platform="docker",
        automl_policy="off",
        data_sources={"train_datasets": str(photos_root)},
        overrides=TINY_TRAIN_OVERRIDES,
        profile="smoke",
    )
    rec = svc.store.get(handle.job_id)
    assert client.containers.get(rec.backend_id).image.tags == [ENGINE_IMAGE]
    st = _wait(svc, handle.job_id)
    assert st.status == "COMPLETE", svc.job_logs(handle.job_id).text
    assert svc.resolve_checkpoint(handle.job_id, "inference").path.split("/")[-1].startswith("student_epoch_")


@pytest.fixture()
def photos_root(ws):
    from fake_engine import write_tiny_images

    write_tiny_images(ws / "photos" / "images_train", n=8)
    return ws / "photos"


def test_exit_code_maps_to_error_with_failure_analysis(svc, ws):
    (ws / ".standin_exit").write_text("3")
    handle = _dino(svc, ws)
    st = _wait(svc, handle.job_id)
    assert st.status == "ERROR" and st.exit_code == 3 and st.failure


def test_logs_stream_and_cancel_stops_then_kills(svc, ws, client):
    (ws / ".standin_epoch_s").write_text("0.5")
    handle = _dino(svc, ws, overrides={"train.num_epochs": 200})
    plat = get_platform("docker")
    rec = svc.store.get(handle.job_id)
    lines = []
    for line in plat.stream_logs(rec):
        lines.append(line)
        if "Epoch 1/200" in line:
            break
    assert any("STUB" in ln for ln in lines)
    t0 = time.monotonic()
    st = svc.cancel_job(handle.job_id)
    assert st.status == "CANCELED" and time.monotonic() - t0 < 15
    assert client.containers.get(rec.backend_id).attrs["State"]["Status"] == "exited"


def test_reconcile_by_label_after_runtime_restart(svc, ws, client):
    (ws / ".standin_epoch_s").write_text("0.3")
    done = _dino(svc, ws, overrides={"train.num_epochs": 1})
    running = _dino(svc, ws, overrides={"train.num_epochs": 200})
    time.sleep(2.0)
    # a fresh runtime: new platform object, records without backend ids (lost with the old process)
    for h in (done, running):
        svc.store.update_status(h.job_id, "RUNNING", backend_id=None)
    report = reconcile(svc.store, DockerPlatform())
    assert report["updated"][done.job_id] == "COMPLETE" and report["updated"][running.job_id] == "RUNNING"
    assert svc.store.get(running.job_id).backend_id == client.containers.get(f"tao-skills-{running.job_id}").id
    svc.cancel_job(running.job_id)


def test_results_in_a_volume_are_read_through_the_container(svc, ws, monkeypatch, client):
    """Volume results, written by a non-root container user (the volume is chowned to it first)."""
    monkeypatch.setenv("TAO_SKILLS_DOCKER_RESULTS", "volume")
    monkeypatch.setenv("TAO_SKILLS_DOCKER_USER", "4321:4321")
    handle = _dino(svc, ws)
    st = _wait(svc, handle.job_id)
    assert st.status == "COMPLETE" and st.kpis.get("val_mAP50")
    assert client.containers.get(svc.store.get(handle.job_id).backend_id).attrs["Config"]["User"] == "4321:4321"
    host_train = ws / "jobs" / handle.job_id / "results" / "train"
    assert not host_train.exists()  # status and KPIs came out of the volume, through the container
    ck = svc.resolve_checkpoint(handle.job_id, "inference")  # fetches a copy of the volume
    assert ck.path.endswith("model_epoch_001_step_00020.pth") and host_train.is_dir()
    get_platform("docker").remove(svc.store.get(handle.job_id))


def test_secrets_reach_the_container_by_name_only(svc, ws, monkeypatch, client):
    """Planted secrets: none in container logs, labels, ``docker inspect`` (container and image),
    the job record, the job store file or any file left in the job's workdir."""
    planted = {n: f"{PLANTED}-{n}" for n in ("TAO_ENCRYPTION_KEY", "NGC_KEY", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN")}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    handle = _dino(svc, ws)
    st = _wait(svc, handle.job_id)
    assert st.status == "COMPLETE"
    rec = svc.store.get(handle.job_id)
    ctr = client.containers.get(rec.backend_id)
    logs = ctr.logs().decode()
    assert "TAO_ENCRYPTION_KEY" in logs  # the job saw the variable (the stand-in prints names)
    workdir = ws / "jobs" / handle.job_id
    texts = {
        "logs": logs,
        "inspect": json.dumps(client.api.inspect_container(ctr.id)),
        "image": json.dumps(client.api.inspect_image(ctr.image.id)),
        "labels": json.dumps(ctr.labels),
        "record": rec.model_dump_json(),
        "store": (ws / "jobs.db").read_bytes().decode("latin-1"),
    }
    texts |= {str(p): p.read_bytes().decode("latin-1") for p in workdir.rglob("*") if p.is_file()}
    leaks = [(where, name) for where, text in texts.items() for name, value in planted.items() if value in text]
    assert leaks == []
    from taoskills.platforms.docker import secrets_dir

    assert not secrets_dir(handle.job_id).exists()  # removed when the job ended


def test_data_outside_the_workspace_is_refused(svc, ws, tmp_path):
    from taoskills.errors import PreflightError

    data = coco_root(tmp_path / "outside")
    with pytest.raises(PreflightError) as exc:
        svc.launch_job(
            "tao-train-dino",
            "train",
            engine="tao",
            platform="docker",
            automl_policy="off",
            data_sources={"train_datasets": str(data)},
        )
    assert "outside the docker platform's workspace" in str(exc.value)
    assert svc.store.list() == []


def test_unlisted_image_is_refused(ws, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_DOCKER_IMAGE_MAP", "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt=alpine:latest")
    from taoskills.bank.catalog import Catalog

    info = Catalog.load().get("tao-train-dino").info
    with pytest.raises(PolicyRefusal) as exc:
        get_platform("docker").cfg.image_for("tao", info, "train")
    assert "allowlist" in exc.value.message and "TAO_SKILLS_DOCKER_IMAGES=alpine:latest" in exc.value.fix


def test_gpu_request_fails_here_and_leaves_no_container(svc, ws, monkeypatch, client):
    """A GPU run needs the NVIDIA runtime; on a host without it the start fails cleanly."""
    monkeypatch.setenv("TAO_SKILLS_DOCKER_GPUS", "on")
    plat = DockerPlatform()
    if plat.nvidia_runtime():
        pytest.skip("this host has the NVIDIA runtime: the GPU job test covers it")
    from taoskills.errors import PreflightError

    with pytest.raises(PreflightError) as exc:
        _dino(svc, ws)
    assert "NVIDIA runtime" in str(exc.value)
    assert not client.containers.list(all=True, filters={"label": f"{dc.LABEL_PREFIX}.managed=true", "status": "created"})


def test_preflight_reports_docker_checks(svc, ws):
    data = coco_root(ws / "coco")
    built = svc.build_spec("tao-train-dino", "train", data_sources={"train_datasets": str(data)})
    rep = svc.preflight("tao-train-dino", "train", built.spec, engine="tao", platform="docker")
    names = {c.name: c for c in rep.checks}
    for n in (
        "host.docker",
        "host.docker.gpu",
        "host.docker.image_allowed",
        "host.docker.image",
        "host.docker.shm",
        "host.docker.user",
        "host.docker.workspace",
    ):
        assert n in names, n
    assert names["host.docker.image"].ok and STANDIN_IMAGE in names["host.docker.image"].message


def test_docker_host_checks_weigh_the_gpu_request(svc, ws, monkeypatch, tmp_path):
    """GPU count, gpu_ids, TAO's minimum compute capability and bf16, read from nvidia-smi (a
    stand-in reporting one V100) once the daemon has the NVIDIA runtime (patched in here)."""
    import os

    from gpu_helpers import V100, install_fake_nvidia_smi
    from taoskills.platforms import engines

    install_fake_nvidia_smi(tmp_path / "bin", [V100])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TAO_SKILLS_DOCKER_GPUS", "auto")
    monkeypatch.setattr(DockerPlatform, "nvidia_runtime", lambda self: True)
    info = svc.catalog.get("tao-train-dino").info
    spec = {"train": {"precision": "bf16", "num_gpus": 2}, "results_dir": str(ws / "results")}
    checks = {c.name: c for c in DockerPlatform().host_checks(engines.get_engine("tao"), info, "train", spec)}
    for name, field in (
        ("host.gpu.compute_capability", "platform"),
        ("host.gpu.bf16", "train.precision"),
        ("host.gpu.count", "train.num_gpus"),
    ):
        assert not checks[name].ok and checks[name].severity == "error" and checks[name].field == field, name
    assert checks["host.gpu"].details["compute_caps"] == ["7.0"]


def test_unit_record_platform_is_docker(ws):
    rec = JobRecord(skill="tao-train-dino", action="train", platform="docker")
    assert get_platform(rec.platform).poll(rec).state == "PENDING"


@pytest.fixture()
def s3_endpoint(monkeypatch):
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield
    server.stop()


def test_dino_from_s3_data_with_results_uploaded(svc, ws, tmp_path, monkeypatch, s3_endpoint):
    import io
    import tarfile

    from taoskills.data import s3

    c = s3.client()
    c.create_bucket(Bucket="coco")
    c.create_bucket(Bucket="out")
    src = coco_root(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "images", arcname="images")
    c.put_object(Bucket="coco", Key="train/images.tar.gz", Body=buf.getvalue())
    c.put_object(Bucket="coco", Key="train/annotations.json", Body=(src / "annotations.json").read_bytes())
    monkeypatch.setenv("TAO_SKILLS_DOCKER_RESULTS_BUCKET", "out")
    monkeypatch.setenv("TAO_SKILLS_DOCKER_UPLOAD_EXCLUDES", ".tao-runtime/*,experiment.yaml")
    handle = svc.launch_job(
        "tao-train-dino",
        "train",
        engine="tao",
        platform="docker",
        automl_policy="off",
        data_sources={"train_datasets": "s3://coco/train"},
        overrides={"train.num_epochs": 1},
    )
    st = _wait(svc, handle.job_id)
    assert st.status == "COMPLETE", svc.job_logs(handle.job_id).text
    spec = (ws / "jobs" / handle.job_id / "container_spec.yaml").read_text()
    import yaml

    images = yaml.safe_load(spec)["dataset"]["train_data_sources"][0]["image_dir"]
    assert images.startswith("/workspace/staging/") and images.endswith("/images") and "s3:" not in spec
    keys = {o["Key"] for o in c.list_objects_v2(Bucket="out", Prefix=f"results/{handle.job_id}/")["Contents"]}
    assert f"results/{handle.job_id}/train/status.json" in keys
    assert f"results/{handle.job_id}/train/model_epoch_000_step_00010.pth" in keys
    assert not any(k.endswith("experiment.yaml") or ".tao-runtime" in k for k in keys)
    staged = ws / "staging" / "s3" / "coco" / "train" / "images"
    host_images = svc.store.get(handle.job_id).spec["dataset"]["train_data_sources"][0]["image_dir"]
    assert host_images == str(staged) and Path(host_images).is_dir()  # extracted in the staging cache
    assert not (staged.parent / "images.tar.gz").exists()  # extracted while it downloaded: no archive kept
    marker = staged / ".tao-skills-extracted.json"
    assert json.loads(marker.read_text())["archive"] == "s3://coco/train/images.tar.gz"
    mtime = marker.stat().st_mtime_ns
    plat = get_platform("docker")
    from taoskills.bank.catalog import Catalog

    plat.stage_data_sources(Catalog.load().get("tao-train-dino").info, "train", {"train_datasets": "s3://coco/train"})
    assert marker.stat().st_mtime_ns == mtime  # a retry reuses the finished staging


def test_pull_policy_and_ngc_login_by_name(ws, monkeypatch, client):
    from taoskills.errors import JobError

    tao = "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    with pytest.raises(JobError) as exc:
        DockerPlatform(pull="never").ensure_image(tao)
    assert "pull policy is 'never'" in exc.value.message
    monkeypatch.delenv("NGC_KEY", raising=False)
    with pytest.raises(JobError) as exc:
        DockerPlatform(pull="missing").ensure_image(tao)
    assert exc.value.field == "NGC_KEY"
    monkeypatch.setenv("NGC_KEY", PLANTED)
    with pytest.raises(JobError) as exc:  # no registry is reachable from CI: the pull fails cleanly
        DockerPlatform(pull="missing").ensure_image(tao)
    assert "could not pull" in exc.value.message and PLANTED not in str(exc.value) and exc.value.__cause__ is None
    DockerPlatform(pull="never").ensure_image(STANDIN_IMAGE)  # present: nothing to do


def _start_dockerd(root):
    import shutil
    import subprocess

    import docker

    exe = shutil.which("dockerd")
    if exe is None:
        pytest.fail(HOW_TO_START)
    sock = root / "docker.sock"
    log = open(root / "dockerd.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [exe, "--iptables=false", "--ip6tables=false", "--bridge=none", "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"), "-H", f"unix://{sock}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
            c.ping()
            return proc, c
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.25)
    proc.kill()
    pytest.fail(f"a private dockerd did not start; see {root / 'dockerd.log'}")


def test_reconcile_after_a_docker_daemon_restart(svc, ws, monkeypatch):
    """A private dockerd (own data root and socket) is stopped and started again between the
    launch and the reconciliation: the finished job is COMPLETE, the one the daemon stopped is ERROR."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="/tmp/tsd-"))  # short: unix socket paths are limited
    proc, c = _start_dockerd(root)
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{root / 'docker.sock'}")
        build_images(c)
        (ws / ".standin_epoch_s").write_text("0.3")
        done = _dino(svc, ws, overrides={"train.num_epochs": 1})
        running = _dino(svc, ws, overrides={"train.num_epochs": 500})
        plat = DockerPlatform()
        deadline = time.monotonic() + 60
        while plat.poll(svc.store.get(done.job_id)).state != "COMPLETE" and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.terminate()  # the daemon stops its running containers on the way down
        proc.wait(timeout=60)
        proc, c = _start_dockerd(root)
        report = reconcile(svc.store, DockerPlatform())
        assert report["updated"] == {done.job_id: "COMPLETE", running.job_id: "ERROR"}
        rec = svc.store.get(running.job_id)
        assert rec.status == "ERROR" and rec.exit_code not in (None, 0)
    finally:
        for ctr in c.containers.list(all=True):
            ctr.remove(force=True)
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
