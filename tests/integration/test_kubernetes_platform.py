"""The Kubernetes platform. No Kubernetes API server runs in these tests (none is available
here): manifests are checked against the Kubernetes OpenAPI schema (kubernetes-validate), and
the client boundary runs the official ``kubernetes`` client against recorded API responses
(tests/k8s_stub.py), so requests and the client's models are real; only the server is not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from k8s_stub import StubServer, condition, job_status
from taoskills.errors import JobError
from taoskills.jobs.store import JobRecord
from taoskills.platforms import kubernetes_manifests as km
from taoskills.platforms.kubernetes import KubernetesPlatform
from taoskills.platforms.registry import get_platform

NS = "vision"


def _record(tmp_path: Path, job_id="job-0123456789ab", spec=None) -> JobRecord:
    workdir = tmp_path / "jobs" / job_id
    workdir.mkdir(parents=True)
    (workdir / "run.sh").write_text("#!/usr/bin/env bash\necho hi\n")
    return JobRecord(
        job_id=job_id,
        skill="tao-train-nvdinov2",
        network_arch="nvdinov2",
        action="train",
        platform="kubernetes",
        engine="builtin",
        status="PENDING",
        spec=spec if spec is not None else {"train": {"num_gpus": 8, "num_nodes": 2}},
        results_dir=str(workdir / "results"),
        workdir=str(workdir),
        script_path=str(workdir / "run.sh"),
        log_path=str(workdir / "log.txt"),
    )


def _config(**kw) -> km.KubernetesConfig:
    base = dict(
        namespace=NS,
        image="registry.example/tao-skills:1.0",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        pvc="tao-workspace",
        mount_path="/workspace",
        queue="team-a",
        cpu="16",
        memory="128Gi",
    )
    return km.KubernetesConfig(**{**base, **kw})


def _pod_env(job: dict, index: int) -> dict[str, str]:
    """The environment the kubelet gives pod ``index``: plain values, and the Downward API
    field ``metadata.annotations['batch.kubernetes.io/job-completion-index']`` = index."""
    env = {}
    annotations = {km.INDEX_ANNOTATION: str(index)}
    for item in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item.get("valueFrom", {}):
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            key = path.removeprefix("metadata.annotations['").removesuffix("']")
            env[item["name"]] = annotations[key]
    return env


def test_two_node_manifests_are_valid_and_carry_tao_env_per_index(tmp_path):
    plat = KubernetesPlatform(_config())
    rec = _record(tmp_path)
    service, job = plat.manifests(rec, ["TAO_ENCRYPTION_KEY"])
    for m in (service, job):
        km.validate(m)  # strict OpenAPI schema check (unknown fields refused)
    name = km.job_name(rec.job_id)
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == name
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == name and pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "tao-workspace"}} in pod["volumes"]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert job["metadata"]["labels"][km.QUEUE_LABEL] == "team-a" and spec["suspend"] is True
    for index in (0, 1):
        env = _pod_env(job, index)
        assert {k: env[k] for k in ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "NUM_GPU_PER_NODE")} == {
            "WORLD_SIZE": "2",
            "NODE_RANK": str(index),
            "MASTER_ADDR": f"{name}-0.{name}.{NS}.svc",
            "MASTER_PORT": "29500",
            "NUM_GPU_PER_NODE": "8",
        }
    secret_ref = next(e for e in container["env"] if e["name"] == "TAO_ENCRYPTION_KEY")
    assert secret_ref["valueFrom"]["secretKeyRef"] == {"name": km.secret_name(rec.job_id), "key": "TAO_ENCRYPTION_KEY"}
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "Count" and rules[1]["action"] == "FailJob" and spec["backoffLimit"] == 2


def test_single_node_job_has_no_service_and_no_gpu_limit_on_cpu(tmp_path):
    plat = KubernetesPlatform(_config(queue=None))
    (job,) = plat.manifests(_record(tmp_path, spec={"train": {"num_gpus": 0}}))
    assert "subdomain" not in job["spec"]["template"]["spec"] and "suspend" not in job["spec"]
    assert "limits" not in job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert _pod_env(job, 0)["MASTER_ADDR"] == "127.0.0.1"


def test_schema_refuses_a_bad_configuration_value(tmp_path):
    plat = KubernetesPlatform(_config(tolerations=[{"key": "gpu", "tolerationSeconds": "soon"}]))
    with pytest.raises(JobError) as exc:
        plat.manifests(_record(tmp_path))
    assert "not valid Kubernetes" in exc.value.message and "tolerationSeconds" in exc.value.message + str(exc.value.__cause__)


def _stub_for(rec: JobRecord) -> StubServer:
    stub = StubServer()
    name = km.job_name(rec.job_id)
    stub.on(
        "POST",
        f"/api/v1/namespaces/{NS}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": km.secret_name(rec.job_id)}},
        201,
    )
    stub.on("POST", f"/api/v1/namespaces/{NS}/services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}}, 201)
    stub.on("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", job_status(name, NS, suspend=True), 201)
    return stub


def test_submit_creates_secret_service_and_job_through_the_official_client(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "s3cr3t-value")
    rec = _record(tmp_path)
    stub = _stub_for(rec)
    plat = KubernetesPlatform(_config(), api_client=stub.api_client())
    name = plat.submit(rec)
    assert name == km.job_name(rec.job_id)
    methods = [(m, p) for m, p, _q, _b in stub.requests]
    assert methods == [
        ("POST", f"/api/v1/namespaces/{NS}/secrets"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
    ]
    secret_body, job_body = stub.requests[0][3], stub.requests[2][3]
    assert secret_body["stringData"] == {"TAO_ENCRYPTION_KEY": "s3cr3t-value"}
    assert job_body["spec"]["completionMode"] == "Indexed"
    workdir = Path(rec.workdir)
    assert json.loads((workdir / "k8s.json").read_text())["name"] == name
    assert yaml.safe_load((workdir / "job.yaml").read_text()) == job_body
    for f in workdir.iterdir():  # the secret's value is never written to disk
        assert "s3cr3t-value" not in f.read_text()


def test_states_from_job_conditions_one_list_call(tmp_path):
    recs = [_record(tmp_path, job_id=f"job-00000000000{i}", spec={"train": {"num_gpus": 1}}) for i in range(6)]
    stub = StubServer()
    for r in recs:
        stub.on("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", job_status(km.job_name(r.job_id), NS), 201)
    plat = KubernetesPlatform(_config(), api_client=stub.api_client())
    for r in recs:
        plat.submit(r)
    n = lambda i: km.job_name(recs[i].job_id)  # noqa: E731
    items = [
        job_status(n(0), NS, conditions=[condition("Complete")]),
        job_status(n(1), NS, conditions=[condition("Failed", "PodFailurePolicy", "Container runner exited with 1")]),
        job_status(
            n(2),
            NS,
            conditions=[condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")],
            failed=3,
        ),
        job_status(n(3), NS, suspend=True),
        job_status(n(4), NS, active=1, failed=1),
    ]
    stub.on(
        "GET",
        f"/apis/batch/v1/namespaces/{NS}/jobs",
        {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items},
    )
    stub.requests.clear()
    states = plat.poll_many(recs)
    assert [(m, p) for m, p, _q, _b in stub.requests] == [("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")]
    assert stub.requests[0][2]["labelSelector"] == ["app.kubernetes.io/managed-by=tao-skills"]
    got = [states[r.job_id] for r in recs]
    assert [s.state for s in got] == ["COMPLETE", "ERROR", "ERROR", "PENDING", "RUNNING", "ERROR"]
    assert "program fault" in got[1].detail and not got[1].lost
    assert got[2].lost and "infrastructure" in got[2].detail
    assert "queue" in got[3].detail and "1 disrupted" in got[4].detail
    assert got[5].lost  # gone from the cluster without a cancel


def test_cancel_deletes_job_service_and_secret_then_canceled(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "k")
    rec = _record(tmp_path)
    stub = _stub_for(rec)
    plat = KubernetesPlatform(_config(), api_client=stub.api_client())
    plat.submit(rec)
    name = km.job_name(rec.job_id)
    status_ok = {"apiVersion": "v1", "kind": "Status", "status": "Success"}
    stub.on("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{name}", status_ok)
    stub.on(
        "DELETE", f"/api/v1/namespaces/{NS}/services/{name}", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}}
    )
    stub.on("DELETE", f"/api/v1/namespaces/{NS}/secrets/{km.secret_name(rec.job_id)}", status_ok)
    stub.requests.clear()
    plat.cancel(rec)
    deleted = sorted(p for m, p, _q, _b in stub.requests if m == "DELETE")
    assert len(deleted) == 3 and any(p.endswith(f"/jobs/{name}") for p in deleted)
    job_delete = next(b for m, p, _q, b in stub.requests if p.endswith(f"/jobs/{name}"))
    assert job_delete["propagationPolicy"] == "Background"
    stub.on(
        "GET", f"/apis/batch/v1/namespaces/{NS}/jobs", {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}
    )
    assert plat.poll(rec).state == "CANCELED"


def test_logs_through_the_api_when_the_volume_is_not_here(tmp_path):
    rec = _record(tmp_path, spec={"train": {"num_gpus": 1}})
    stub = StubServer()
    stub.on("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", job_status(km.job_name(rec.job_id), NS), 201)
    plat = KubernetesPlatform(_config(), api_client=stub.api_client())
    plat.submit(rec)
    pod = f"{km.job_name(rec.job_id)}-0-abcde"
    stub.on(
        "GET",
        f"/api/v1/namespaces/{NS}/pods",
        {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{"metadata": {"name": pod}}]},
    )
    stub.on(
        "GET",
        f"/api/v1/namespaces/{NS}/pods/{pod}/log",
        "epoch 0 loss 1.5\nepoch 1 loss 1.2\n[tao-skills] job finished with exit code 0\n",
    )
    assert plat.logs(rec, tail=1) == "[... earlier log output not shown ...]\n[tao-skills] job finished with exit code 0"
    assert next(q for m, p, q, _b in stub.requests if p.endswith("/log"))["tailLines"] == ["2"]
    assert plat.logs(rec, grep="loss") == "epoch 0 loss 1.5\nepoch 1 loss 1.2"
    selector = next(q for m, p, q, _b in stub.requests if p.endswith("/pods"))["labelSelector"][0]
    assert f"batch.kubernetes.io/job-name={km.job_name(rec.job_id)}" in selector and "job-completion-index=0" in selector


def test_registered_with_host_checks_and_input_policy(tmp_path, monkeypatch):
    from taoskills.bank.catalog import Catalog
    from taoskills.platforms.engines import get_engine

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cfg = tmp_path / "k8s.yaml"
    cfg.write_text(
        yaml.safe_dump({"namespace": NS, "image": "registry.example/tao-skills:1.0", "pvc": "ws", "mount_path": "/workspace"})
    )
    monkeypatch.setenv(km.CONFIG_ENV, str(cfg))
    plat = get_platform("kubernetes")
    assert isinstance(plat, KubernetesPlatform) and plat.config.namespace == NS
    info = Catalog.load().get("tao-train-nvdinov2").info
    eng = get_engine("builtin")
    assert "kubeconfig" in (plat.quick_check(eng, info, "train") or "")
    (check,) = plat.host_checks(eng, info, "train", {})
    assert not check.ok and "KUBECONFIG" in check.fix
    on_volume = plat.check_input("dataset.train_dataset.images_dir", str(tmp_path))
    assert not on_volume[0].ok and "/workspace" in on_volume[0].fix
    (remote,) = plat.check_input("dataset.train_dataset.images_dir", "s3://bucket/images")
    assert not remote.ok and "shared filesystem" in remote.fix


def test_host_checks_against_the_api(tmp_path):
    from taoskills.bank.catalog import Catalog
    from taoskills.platforms.engines import get_engine

    stub = StubServer()
    stub.on(
        "GET",
        "/version/",
        {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.2",
            "gitCommit": "x",
            "gitTreeState": "clean",
            "buildDate": "2026-06-01T00:00:00Z",
            "goVersion": "go1.24",
            "compiler": "gc",
            "platform": "linux/amd64",
        },
    )
    stub.on("GET", f"/api/v1/namespaces/{NS}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    node = lambda name, gpus: {"metadata": {"name": name}, "status": {"allocatable": {"cpu": "64", "nvidia.com/gpu": gpus}}}  # noqa: E731
    stub.on(
        "GET",
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [node("a", "4"), node("b", "8")]},
    )
    plat = KubernetesPlatform(_config(), api_client=stub.api_client())
    info = Catalog.load().get("tao-train-nvdinov2").info
    checks = {c.name: c for c in plat.host_checks(get_engine("builtin"), info, "train", {"train": {"num_gpus": 8}})}
    assert checks["host.kubernetes"].ok and "v1.33.2" in checks["host.kubernetes"].message
    assert checks["host.kubernetes.namespace"].ok
    assert checks["host.kubernetes.gpus"].ok and "1 node(s)" in checks["host.kubernetes.gpus"].message
    too_many = {c.name: c for c in plat.host_checks(get_engine("builtin"), info, "train", {"train": {"num_gpus": 16}})}
    assert not too_many["host.kubernetes.gpus"].ok and too_many["host.kubernetes.gpus"].field == "train.num_gpus"
    stub.routes.pop(("GET", f"/api/v1/namespaces/{NS}"))
    missing_ns = {c.name: c for c in plat.host_checks(get_engine("builtin"), info, "train", {})}
    assert not missing_ns["host.kubernetes.namespace"].ok and "create it" in missing_ns["host.kubernetes.namespace"].fix
