"""Preflight of the Kubernetes platform: client, kubeconfig, API server, namespace, GPU resource.

Each check is one :class:`~taoskills.data.preflight.CheckResult`; later checks are skipped once
an earlier one fails (no API server, no namespace). Listing nodes needs cluster-wide read
rights: when RBAC forbids it the GPU check is a warning, not an error.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from taoskills.data.preflight import CheckResult

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.platforms.engines import RuntimeEngine
    from taoskills.platforms.kubernetes import KubernetesPlatform


def _fail(name: str, message: str, fix: str, field: str = "platform") -> CheckResult:
    return CheckResult(name=name, ok=False, field=field, message=message, fix=fix)


def kubernetes_host_checks(
    plat: KubernetesPlatform, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]
) -> list[CheckResult]:
    """The checks of the module docstring, in order."""
    from taoskills.platforms.kubernetes import kube_config_present

    if importlib.util.find_spec("kubernetes") is None:
        return [
            _fail("host.kubernetes", "The kubernetes Python client is not installed.", "pip install 'tao-skills[kubernetes]'")
        ]
    if plat._api_client is None and not kube_config_present():
        return [
            _fail(
                "host.kubernetes",
                "No kubeconfig (KUBECONFIG or ~/.kube/config) and no in-cluster service account.",
                "point KUBECONFIG at a kubeconfig with a context for the cluster",
            )
        ]
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    out: list[CheckResult] = []
    try:
        version = client.VersionApi(plat._client()).get_code()
        out.append(
            CheckResult(name="host.kubernetes", ok=True, field="platform", message=f"API server {version.git_version} reachable.")
        )
    except Exception as exc:  # noqa: BLE001 - connection errors, ApiException, config errors
        return [
            _fail(
                "host.kubernetes",
                f"The Kubernetes API server is not reachable: {exc}",
                "check the kubeconfig context and network access",
            )
        ]
    ns = plat.config.namespace
    try:
        plat._core().read_namespace(ns)
        out.append(CheckResult(name="host.kubernetes.namespace", ok=True, field="namespace", message=f"namespace {ns} exists."))
    except ApiException as exc:
        if exc.status == 404:
            return out + [
                _fail("host.kubernetes.namespace", f"namespace {ns} does not exist", "create it or set namespace", "namespace")
            ]
        out.append(
            CheckResult(
                name="host.kubernetes.namespace",
                ok=True,
                field="namespace",
                severity="warning",
                message=f"cannot read namespace {ns} ({exc.status}); assuming it exists",
            )
        )
    _nodes, gpus = plat.shape(info.name, action, spec)
    if gpus:
        res = plat.config.gpu_resource
        try:
            nodes = plat._core().list_node().items
            have = [n.metadata.name for n in nodes if int((n.status.allocatable or {}).get(res, "0") or 0) >= gpus]
            out.append(
                CheckResult(
                    name="host.kubernetes.gpus",
                    ok=bool(have),
                    field="train.num_gpus",
                    message=f"{len(have)} node(s) offer {gpus} {res}." if have else f"no node offers {gpus} allocatable {res}",
                    fix=None
                    if have
                    else "lower train.num_gpus, set gpu_resource to the cluster's GPU resource name, or add GPU nodes",
                )
            )
        except ApiException as exc:
            out.append(
                CheckResult(
                    name="host.kubernetes.gpus",
                    ok=False,
                    field="train.num_gpus",
                    severity="warning",
                    message=f"cannot list nodes ({exc.status}) to check {res}",
                    fix="ask for node read access or check GPUs by hand",
                )
            )
    return out
