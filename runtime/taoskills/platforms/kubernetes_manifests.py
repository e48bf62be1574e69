"""Kubernetes manifests of one job: a batch/v1 Indexed Job, a headless Service, a per-job Secret.

Layout (the Kubernetes Indexed Job pattern for multi-node training, as TAO SDK 7.2.0's
Kubernetes platform builds it): ``completionMode: Indexed`` with ``completions = parallelism = nodes``; for
more than one node a headless Service (``clusterIP: None``) named like the Job and the pods'
``subdomain`` set to it, so pod ``<job>-<i>`` resolves as ``<job>-<i>.<job>.<namespace>.svc``.
TAO's multi-node environment per pod: ``WORLD_SIZE`` = nodes, ``NODE_RANK`` = the pod's
completion index (Downward API, annotation ``batch.kubernetes.io/job-completion-index``),
``MASTER_ADDR`` = pod 0's DNS name, ``MASTER_PORT``, ``NUM_GPU_PER_NODE`` (= the container's
GPU limit of ``gpu_resource``). Failures: ``podFailurePolicy`` fails the Job at once on a
non-zero exit code (a program fault, never retried) and counts disruptions (preemption,
eviction, node drain: condition ``DisruptionTarget``) against ``backoffLimit = max_requeues``.
Secrets: a per-job Secret ``<job>-secrets`` holds the engine's secret variables; the Job
references it by name (``secretKeyRef``) and never holds a value. ``kueue.x-k8s.io/queue-name``
is set when ``queue`` is configured (the Job is then created suspended for Kueue to admit).
Every manifest is checked against the Kubernetes OpenAPI schema with ``kubernetes-validate``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from taoskills.errors import JobError

CONFIG_ENV = "TAO_SKILLS_KUBERNETES_CONFIG"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tao-skills"}
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: Kubernetes version whose OpenAPI schema the manifests are validated against.
SCHEMA_VERSION = "1.33.0"
_DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class KubernetesConfig(BaseModel):
    """Where and how Kubernetes jobs run.

    ``namespace``; ``context``: kubeconfig context (None = current). ``image``: the container
    (for the built-in engine an image with tao-skills installed; for the TAO engine the skill's
    TAO image is used when this is None). ``gpu_resource``: the extended resource of GPUs.
    ``node_selector``/``tolerations``: pod placement (Kubernetes shapes). ``pvc``/``mount_path``:
    the PersistentVolumeClaim holding job folders, data and results, mounted at ``mount_path``
    (the same path as on this host, so paths need no mapping). ``queue``: Kueue LocalQueue.
    ``cpu``/``memory``: requests per pod. ``max_requeues``: disruptions tolerated.
    ``service_account``, ``image_pull_secret``, ``active_deadline_s``, ``ttl_after_finished_s``,
    ``master_port`` (29500), ``env`` (non-secret variables).
    """

    namespace: str = "default"
    context: str | None = None
    image: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    pvc: str | None = None
    mount_path: str | None = None
    queue: str | None = None
    cpu: str | None = None
    memory: str | None = None
    max_requeues: int = Field(default=2, ge=0, le=20)
    service_account: str | None = None
    image_pull_secret: str | None = None
    active_deadline_s: int | None = Field(default=None, ge=1)
    ttl_after_finished_s: int | None = Field(default=86400, ge=0)
    master_port: int = Field(default=29500, ge=1, le=65535)
    env: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def load(cls, **options: Any) -> KubernetesConfig:
        """Options over the YAML file named by ``TAO_SKILLS_KUBERNETES_CONFIG`` (if set).
        Errors: JobError (field ``TAO_SKILLS_KUBERNETES_CONFIG``) for a bad file or value."""
        data: dict[str, Any] = {}
        path = os.environ.get(CONFIG_ENV)
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise JobError(f"cannot read {path}: {exc}", field=CONFIG_ENV, fix="point it at a YAML mapping") from exc
            if not isinstance(loaded, dict):
                raise JobError(f"{path} is not a mapping", field=CONFIG_ENV, fix="write key: value lines")
            data.update(loaded)
        data.update({k: v for k, v in options.items() if v is not None})
        try:
            cfg = cls(**data)
        except ValueError as exc:
            raise JobError(f"bad Kubernetes platform configuration: {exc}", field=CONFIG_ENV, fix="fix the named key") from exc
        if bool(cfg.pvc) != bool(cfg.mount_path):
            raise JobError("pvc and mount_path go together", field=CONFIG_ENV, fix="set both (claim name and its mount path)")
        return cfg


def job_name(job_id: str) -> str:
    """The Kubernetes name of a tao-skills job (DNS-1123 label, at most 52 characters)."""
    name = ("tao-" + job_id.lower()).replace("_", "-")[:52].rstrip("-")
    if not _DNS.match(name):
        raise JobError(f"job id {job_id!r} gives no valid Kubernetes name", field="job_id", fix="use letters, digits and '-'")
    return name


def secret_name(job_id: str) -> str:
    """The per-job Secret's name."""
    return job_name(job_id) + "-secrets"


def master_addr(job_id: str, namespace: str) -> str:
    """Pod 0's DNS name through the headless Service (TAO's MASTER_ADDR)."""
    name = job_name(job_id)
    return f"{name}-0.{name}.{namespace}.svc"


def _labels(job_id: str, cfg: KubernetesConfig) -> dict[str, str]:
    labels = {**MANAGED_BY, "tao-skills/job-id": job_id.lower()}
    if cfg.queue:
        labels[QUEUE_LABEL] = cfg.queue
    return labels


def job_manifest(
    *,
    job_id: str,
    script_path: str,
    log_path: str,
    workdir: str,
    image: str,
    nodes: int,
    gpus: int,
    cfg: KubernetesConfig,
    secret_names: list[str],
) -> dict[str, Any]:
    """The batch/v1 Indexed Job (see the module docstring). The container runs the runner
    script with ``bash``, its output also appended to ``log_path`` (rank 0; other ranks to
    ``log_path.rank<N>``) so results and log sit together on the volume."""
    name = job_name(job_id)
    env: list[dict[str, Any]] = [
        {"name": "WORLD_SIZE", "value": str(nodes)},
        {"name": "NUM_GPU_PER_NODE", "value": str(gpus)},
        {"name": "MASTER_PORT", "value": str(cfg.master_port)},
        {"name": "MASTER_ADDR", "value": master_addr(job_id, cfg.namespace) if nodes > 1 else "127.0.0.1"},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}},
        {"name": "TAO_SKILLS_JOB_ID", "value": job_id},
        *({"name": k, "value": v} for k, v in sorted(cfg.env.items())),
        *({"name": s, "valueFrom": {"secretKeyRef": {"name": secret_name(job_id), "key": s}}} for s in secret_names),
    ]
    resources: dict[str, Any] = {}
    if gpus:
        resources["limits"] = {cfg.gpu_resource: str(gpus)}
    requests = {k: v for k, v in (("cpu", cfg.cpu), ("memory", cfg.memory)) if v}
    if requests:
        resources["requests"] = requests
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if cfg.pvc and cfg.mount_path:
        mounts.append({"name": "workspace", "mountPath": cfg.mount_path})
        volumes.append({"name": "workspace", "persistentVolumeClaim": {"claimName": cfg.pvc}})
    tee = 'set -o pipefail; log="$1"; [ "${NODE_RANK:-0}" = 0 ] || log="$1.rank$NODE_RANK"; bash "$0" 2>&1 | tee -a "$log"'
    container = {
        "name": "runner",
        "image": image,
        "command": ["bash", "-c", tee, script_path, log_path],
        "workingDir": workdir,
        "env": env,
        "resources": resources,
        "volumeMounts": mounts,
        "ports": [{"containerPort": cfg.master_port, "name": "master"}],
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
    }
    if nodes > 1:
        pod["subdomain"] = name
    if cfg.node_selector:
        pod["nodeSelector"] = dict(cfg.node_selector)
    if cfg.tolerations:
        pod["tolerations"] = [dict(t) for t in cfg.tolerations]
    if cfg.service_account:
        pod["serviceAccountName"] = cfg.service_account
    if cfg.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": cfg.image_pull_secret}]
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": cfg.max_requeues,
        "podFailurePolicy": {
            "rules": [
                {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "runner", "operator": "NotIn", "values": [0]}},
            ]
        },
        "template": {"metadata": {"labels": _labels(job_id, cfg)}, "spec": pod},
    }
    if cfg.queue:
        spec["suspend"] = True  # Kueue admits (unsuspends) it
    if cfg.active_deadline_s:
        spec["activeDeadlineSeconds"] = cfg.active_deadline_s
    if cfg.ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = cfg.ttl_after_finished_s
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": _labels(job_id, cfg)},
        "spec": spec,
    }


def service_manifest(job_id: str, cfg: KubernetesConfig) -> dict[str, Any]:
    """The headless Service giving the Job's pods stable DNS names (multi-node only)."""
    name = job_name(job_id)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": cfg.namespace, "labels": _labels(job_id, cfg)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": name},
            "ports": [{"name": "master", "port": cfg.master_port, "targetPort": cfg.master_port}],
        },
    }


def secret_manifest(job_id: str, cfg: KubernetesConfig, names: list[str], environ: dict[str, str]) -> dict[str, Any]:
    """The per-job Secret with the values of ``names`` from ``environ`` (created, never written
    to disk). Errors: JobError naming a variable that is not set."""
    missing = [n for n in names if not environ.get(n)]
    if missing:
        raise JobError(
            f"secret variables not set: {', '.join(missing)}", field=missing[0], fix=f"export {missing[0]} before launching"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(job_id), "namespace": cfg.namespace, "labels": _labels(job_id, cfg)},
        "type": "Opaque",
        "stringData": {n: environ[n] for n in names},
    }


def validate(manifest: dict[str, Any], version: str = SCHEMA_VERSION) -> None:
    """Check ``manifest`` against the Kubernetes OpenAPI schema (``kubernetes-validate``, strict:
    unknown fields refused). Errors: JobError (field ``platform``) with the schema's message."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path) if getattr(exc, "path", None) else ""
        raise JobError(
            f"{manifest.get('kind')} manifest is not valid Kubernetes {version}: {exc.message} at {where or 'top level'}",
            field="platform",
            fix="fix the Kubernetes platform configuration value that produced it (node_selector, tolerations, cpu, memory)",
        ) from exc
