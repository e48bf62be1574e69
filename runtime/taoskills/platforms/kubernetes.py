"""The Kubernetes platform: a job's runner script as a batch/v1 Indexed Job (one pod per node).

Manifests (Job, headless Service for multi-node, per-job Secret) come from
:mod:`taoskills.platforms.kubernetes_manifests` and are validated against the Kubernetes
OpenAPI schema before anything is created. They are created, watched, logged and deleted with
the official ``kubernetes`` Python client (extra ``kubernetes``): ``BatchV1Api`` for the Job,
``CoreV1Api`` for the Service, Secret, pods and logs. ``<workdir>/k8s.json`` keeps the names;
``<workdir>/job.yaml`` (and ``service.yaml``) keep the manifests as submitted (never the Secret).

Data and results live on a PersistentVolumeClaim (``pvc`` mounted at ``mount_path`` in every
pod, and at the same path on this host), so the results are read like the local platform's;
inputs must sit under ``mount_path``. Object-storage (S3) staging is not implemented for this
platform: ``s3://`` inputs are refused with the fix. The built-in engine needs an image with
tao-skills installed at this host's interpreter path (the runner calls the interpreter by
path); the TAO engine uses the skill's TAO image.

State: ``Complete`` condition -> COMPLETE; ``Failed`` with reason ``PodFailurePolicy`` (a
non-zero exit code) -> ERROR, a program fault never retried; ``BackoffLimitExceeded`` (only
disruptions are counted, see the manifests module) -> ERROR marked lost (infrastructure);
``DeadlineExceeded`` -> ERROR; suspended (Kueue) or no active pod -> PENDING; active -> RUNNING;
deleted after a cancel -> CANCELED. :meth:`KubernetesPlatform.poll_many` lists each namespace's
tao-skills Jobs once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from taoskills.errors import JobError
from taoskills.jobs.store import JobRecord, utc_now
from taoskills.platforms import kubernetes_manifests as km
from taoskills.platforms.base import PlatformBase, PlatformState, compile_grep, read_log
from taoskills.platforms.local import CANCEL_FILE, LocalArtifacts

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.platforms.engines import RuntimeEngine

STATE_FILE = "k8s.json"


def _api_client(context: str | None) -> Any:
    """An official-client ApiClient from the kubeconfig (or the in-cluster service account)."""
    from kubernetes import client, config

    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config(context=context)
    except Exception as exc:  # noqa: BLE001 - ConfigException and file errors alike
        raise JobError(
            f"no usable Kubernetes configuration: {exc}",
            field="platform",
            fix="set KUBECONFIG (or ~/.kube/config) with a context for the cluster, or run inside the cluster",
        ) from exc


def kube_config_present() -> bool:
    """A kubeconfig file (KUBECONFIG or ~/.kube/config) or in-cluster credentials exist."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config")).split(os.pathsep)
    return any(p and Path(p).is_file() for p in paths)


class KubernetesPlatform(PlatformBase):
    """Runs runner scripts as Indexed Jobs. ``config``: :class:`KubernetesConfig` (else from
    ``options`` and ``TAO_SKILLS_KUBERNETES_CONFIG``); ``api_client``: an official
    ``kubernetes.client.ApiClient`` (else made from the kubeconfig on first use)."""

    name = "kubernetes"

    def __init__(self, config: km.KubernetesConfig | None = None, api_client: Any = None, **options: Any) -> None:
        self.config = config or km.KubernetesConfig.load(**options)
        self._api_client = api_client

    # ---------------------------------------------------------------- client
    def _client(self) -> Any:
        if self._api_client is None:
            self._api_client = _api_client(self.config.context)
        return self._api_client

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self._client())

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client())

    @staticmethod
    def _api_error(exc: Exception, what: str) -> JobError:
        status = getattr(exc, "status", None)
        return JobError(
            f"Kubernetes API refused to {what}: {status or ''} {getattr(exc, 'reason', '') or exc}".strip(),
            field="platform",
            fix="check the namespace, quota and RBAC of the configured context (kubectl auth can-i create jobs)",
        )

    # ---------------------------------------------------------------- manifests
    def shape(self, skill: str, action: str, spec: dict[str, Any] | None) -> tuple[int, int]:
        """(nodes, GPUs per pod) from the spec's ``num_nodes``/``num_gpus`` keys (train only)."""
        from taoskills.platforms.multinode import job_shape

        return job_shape(skill, action, spec)

    def image_for(self, record: JobRecord) -> str:
        """``config.image``, else the engine's container image (TAO: the skill's image)."""
        if self.config.image:
            return self.config.image
        from taoskills.bank.catalog import Catalog
        from taoskills.platforms.engines import get_engine

        try:
            image = get_engine(record.engine).requirements(Catalog.load().get(record.skill).info, record.action).image
        except Exception:  # noqa: BLE001 - unknown skill/engine: fall through to the error
            image = None
        if not image:
            raise JobError(
                f"no container image for the {record.engine} engine on Kubernetes",
                field="image",
                fix="set image in the Kubernetes platform configuration (an image with tao-skills installed)",
            )
        return image

    def manifests(self, record: JobRecord, secret_names: list[str] | None = None) -> list[dict[str, Any]]:
        """[Service (multi-node only), Job] for ``record``, each schema-validated (no Secret)."""
        nodes, gpus = self.shape(record.skill, record.action, record.spec)
        job = km.job_manifest(
            job_id=record.job_id,
            script_path=str(record.script_path),
            log_path=str(record.log_path),
            workdir=str(record.workdir),
            image=self.image_for(record),
            nodes=nodes,
            gpus=gpus,
            cfg=self.config,
            secret_names=list(secret_names or []),
        )
        out = ([km.service_manifest(record.job_id, self.config)] if nodes > 1 else []) + [job]
        for m in out:
            km.validate(m)
        return out

    # ---------------------------------------------------------------- protocol
    def submit(self, record: JobRecord) -> str:
        """Create the Secret (when the engine needs secrets), the Service (multi-node) and the
        Job; returns the Job's name. Errors: JobError for missing paths, an invalid manifest or
        an API refusal (what was created is deleted again)."""
        from kubernetes.client.exceptions import ApiException

        from taoskills.bank.catalog import Catalog
        from taoskills.platforms.engines import get_engine

        for name in ("workdir", "script_path", "log_path"):
            if not getattr(record, name):
                raise JobError(
                    f"job {record.job_id} has no {name}", field=name, fix="render the runner script first (write_runner)"
                )
        try:
            secrets = get_engine(record.engine).secret_env_names(
                Catalog.load().get(record.skill).info, record.action, record.spec or {}
            )
        except JobError:
            raise
        except Exception:  # noqa: BLE001 - unknown skill: no secrets
            secrets = []
        objs = self.manifests(record, secrets)
        ns = self.config.namespace
        workdir = Path(record.workdir)  # type: ignore[arg-type]
        workdir.mkdir(parents=True, exist_ok=True)
        for m in objs:
            (workdir / f"{m['kind'].lower()}.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
        created: list[tuple[str, str]] = []
        try:
            if secrets:
                body = km.secret_manifest(record.job_id, self.config, secrets, dict(os.environ))
                km.validate(body)
                self._core().create_namespaced_secret(ns, body)
                created.append(("Secret", body["metadata"]["name"]))
            for m in objs:
                if m["kind"] == "Service":
                    self._core().create_namespaced_service(ns, m)
                else:
                    self._batch().create_namespaced_job(ns, m)
                created.append((m["kind"], m["metadata"]["name"]))
        except ApiException as exc:
            self._delete(created)
            raise self._api_error(exc, f"create {record.job_id}") from exc
        name = km.job_name(record.job_id)
        state = {"name": name, "namespace": ns, "objects": created, "submitted_at": utc_now()}
        (workdir / STATE_FILE).write_text(json.dumps(state))
        return name

    def _state(self, record: JobRecord) -> dict | None:
        try:
            data = json.loads((Path(record.workdir or ".") / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("name") else None

    def poll_many(self, records: Iterable[JobRecord]) -> dict[str, PlatformState]:
        """job_id -> state, one ``list_namespaced_job`` call per namespace (tao-skills label)."""
        from kubernetes.client.exceptions import ApiException

        recs = list(records)
        states = {r.job_id: self._state(r) for r in recs}
        by_ns: dict[str, dict[str, Any]] = {}
        for ns in sorted({s["namespace"] for s in states.values() if s}):
            selector = ",".join(f"{k}={v}" for k, v in km.MANAGED_BY.items())
            try:
                jobs = self._batch().list_namespaced_job(ns, label_selector=selector).items
            except ApiException as exc:
                raise self._api_error(exc, f"list jobs in {ns}") from exc
            by_ns[ns] = {j.metadata.name: j for j in jobs}
        out = {}
        for r in recs:
            st = states[r.job_id]
            if st is None:
                out[r.job_id] = PlatformState(
                    state="PENDING" if r.backend_id is None else "UNKNOWN", detail="no Kubernetes job recorded"
                )
                continue
            out[r.job_id] = self._decide(r, by_ns.get(st["namespace"], {}).get(st["name"]))
        return out

    def poll(self, record: JobRecord) -> PlatformState:
        """:meth:`poll_many` for one job."""
        return self.poll_many([record])[record.job_id]

    def _decide(self, record: JobRecord, job: Any) -> PlatformState:
        canceled = (Path(record.workdir or ".") / CANCEL_FILE).exists()
        if job is None:
            if canceled:
                return PlatformState(state="CANCELED", detail="the Job was deleted on cancel")
            return PlatformState(state="ERROR", lost=True, detail="the Job is gone from the cluster (deleted, or its TTL passed)")
        name = job.metadata.name
        st = job.status
        for cond in st.conditions if st and st.conditions else []:
            if cond.status != "True":
                continue
            if cond.type == "Complete":
                return PlatformState(state="COMPLETE", exit_code=0, detail=f"Job {name} complete")
            if cond.type == "Failed":
                why = f"Job {name} failed: {cond.reason} {cond.message or ''}".strip()
                if canceled:
                    return PlatformState(state="CANCELED", detail=why)
                if cond.reason == "BackoffLimitExceeded":
                    return PlatformState(
                        state="ERROR",
                        lost=True,
                        detail=why + f" (infrastructure: disruptions beyond max_requeues={self.config.max_requeues})",
                    )
                return PlatformState(
                    state="ERROR", detail=why + (" (a program fault, not retried)" if cond.reason == "PodFailurePolicy" else "")
                )
        if job.spec is not None and job.spec.suspend:
            return PlatformState(state="PENDING", detail=f"Job {name} suspended (waiting for admission by the queue)")
        if st is not None and st.active:
            retries = f", {st.failed} disrupted pod(s) replaced" if st.failed else ""
            return PlatformState(state="RUNNING", detail=f"Job {name}: {st.active} active pod(s){retries}")
        return PlatformState(state="PENDING", detail=f"Job {name}: no pod running yet")

    def _delete(self, objects: Iterable[tuple[str, str]]) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        ns = self.config.namespace
        body = client.V1DeleteOptions(propagation_policy="Background")
        for kind, name in objects:
            try:
                if kind == "Job":
                    self._batch().delete_namespaced_job(name, ns, body=body)
                elif kind == "Service":
                    self._core().delete_namespaced_service(name, ns)
                elif kind == "Secret":
                    self._core().delete_namespaced_secret(name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise self._api_error(exc, f"delete {kind} {name}") from exc

    def cancel(self, record: JobRecord) -> None:
        """Delete the Job (its pods with it), the Service and the Secret."""
        st = self._state(record)
        if st is None:
            return
        (Path(record.workdir) / CANCEL_FILE).write_text(utc_now() + "\n")  # type: ignore[arg-type]
        self._delete([tuple(o) for o in st.get("objects", [])])  # type: ignore[misc]

    def logs(self, record: JobRecord, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
        """The log on the volume (``record.log_path``, rank 0); when this host does not see the
        volume, pod 0's log through the API (``read_namespaced_pod_log``), bounded the same way."""
        compile_grep(grep)
        if record.log_path and Path(record.log_path).exists():
            return read_log(record.log_path, tail=tail, grep=grep, max_bytes=max_bytes)
        st = self._state(record)
        if st is None:
            return ""
        from kubernetes.client.exceptions import ApiException

        selector = f"batch.kubernetes.io/job-name={st['name']},{km.INDEX_ANNOTATION}=0"
        try:
            pods = self._core().list_namespaced_pod(st["namespace"], label_selector=selector).items
            if not pods:
                return ""
            text = self._core().read_namespaced_pod_log(
                pods[0].metadata.name,
                st["namespace"],
                container="runner",
                tail_lines=None if grep else tail + 1,  # one more: read_log then marks the cut
            )
        except ApiException as exc:
            raise self._api_error(exc, f"read the log of {st['name']}") from exc
        cache = Path(record.workdir or ".") / "pod0.log"
        cache.write_text(text or "")
        return read_log(cache, tail=tail, grep=grep, max_bytes=max_bytes)

    def launch_env(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, str]:
        """Nothing in the runner: the pod spec carries TAO's multi-node variables (per index, see
        :func:`taoskills.platforms.kubernetes_manifests.job_manifest`), which the runner must not override."""
        return {}

    def artifacts(self, record: JobRecord) -> LocalArtifacts:
        """Results on the volume, read at the same path on this host."""
        return LocalArtifacts(record)

    # ---------------------------------------------------------------- placement and policy
    def quick_check(self, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
        """The ``kubernetes`` client installed, a kubeconfig present, an image for the engine."""
        import importlib.util

        if importlib.util.find_spec("kubernetes") is None:
            return "the kubernetes Python client is not installed (pip install 'tao-skills[kubernetes]')"
        if self._api_client is None and not kube_config_present():
            return "no kubeconfig (KUBECONFIG or ~/.kube/config) and not running inside a cluster"
        if not self.config.image and not engine.requirements(info, action).image:
            return f"no container image for the {engine.name} engine: set image in the Kubernetes platform configuration"
        return None

    def host_checks(self, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[CheckResult]:
        """Client and kubeconfig, the API server reachable with the namespace, GPUs of
        ``gpu_resource`` allocatable on some node when the job asks for GPUs."""
        from taoskills.platforms.kubernetes_checks import kubernetes_host_checks

        return kubernetes_host_checks(self, engine, info, action, spec)

    def check_input(self, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
        """Inputs on the job volume (under ``mount_path``); remote URIs refused (no S3 staging yet)."""
        from taoskills.data.preflight import CheckResult
        from taoskills.platforms.slurm_checks import shared_fs_input

        results = shared_fs_input(self.name, field, value, batch_size=batch_size)
        root = self.config.mount_path
        if root and "://" not in value and not os.path.abspath(value).startswith(root.rstrip("/") + "/"):
            results.insert(
                0,
                CheckResult(
                    name="input.volume",
                    ok=False,
                    field=field,
                    message=f"{value} is not on the job volume ({self.config.pvc} at {root}); pods cannot see it",
                    fix=f"copy the data under {root} and pass that path",
                ),
            )
        return results
