"""Host checks the platforms run before launch (moved here from :mod:`taoskills.data.preflight`).

Building blocks: :func:`check_requirements` (an engine's tools and libraries on this host),
:func:`check_nvidia_smi` / :func:`probe_torch_gpus` (GPUs, memory, compute capability),
:func:`check_gpu_request` (the job's ``num_gpus``/``gpu_ids``/bf16 precision and TAO's minimum
compute capability against them), :func:`check_hardware` (a skill's
``hardware.min_gpus`` / ``min_gpu_memory_gb``), plus the tool checks of platforms that are not
registered yet (:func:`check_docker`, :func:`check_slurm_tools`, :func:`check_kubernetes_client`).
:func:`check_host` keeps the old ``preflight.check_host(engine, platform)`` answer for callers
that have no skill at hand. Nothing heavy (torch) is imported unless the engine needs it.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import TYPE_CHECKING

from taoskills.data.preflight import CheckResult, Severity
from taoskills.platforms.gpuchecks import (  # noqa: F401 - re-exported: callers and tests use hostchecks.*
    BF16_MIN_COMPUTE_CAPABILITY,
    TAO_MIN_COMPUTE_CAPABILITY,
    _run,
    cc_from_name,
    check_gpu_request,
    check_nvidia_smi,
    gpu_request,
)

if TYPE_CHECKING:
    from taoskills.bank.skill_info import Hardware
    from taoskills.engine.registry import HostInfo
    from taoskills.platforms.engines import EngineRequirements


def check_docker(field: str = "platform") -> list[CheckResult]:
    """The docker CLI on PATH and a reachable daemon (``docker version``)."""
    docker = shutil.which("docker")
    if docker is None:
        return [
            CheckResult(
                name="host.docker",
                ok=False,
                field=field,
                message="The docker CLI is not on PATH.",
                fix="Install Docker Engine with the NVIDIA Container Toolkit, or use platform 'local'.",
            )
        ]
    rc, out = _run([docker, "version", "--format", "{{.Server.Version}}"])
    if rc != 0:
        return [
            CheckResult(
                name="host.docker",
                ok=False,
                field=field,
                message=f"The docker CLI is installed but the Docker daemon is not reachable: {out[:300]}",
                fix="Start the Docker daemon (systemctl start docker) and make sure this user may use it.",
                details={"docker": docker},
            )
        ]
    return [
        CheckResult(
            name="host.docker", ok=True, field=field, message=f"Docker daemon {out} reachable.", details={"docker": docker}
        )
    ]


def check_slurm_tools() -> CheckResult:
    """sbatch, squeue and scancel on PATH (a SLURM login node)."""
    missing = [t for t in ("sbatch", "squeue", "scancel") if shutil.which(t) is None]
    return CheckResult(
        name="host.slurm",
        ok=not missing,
        field="platform",
        message="SLURM tools found." if not missing else f"SLURM tools missing from PATH: {', '.join(missing)}.",
        fix=None if not missing else "Run on a SLURM login node (sbatch, squeue, scancel on PATH).",
    )


def check_kubernetes_client() -> CheckResult:
    """kubectl on PATH or the ``kubernetes`` Python client importable."""
    have = shutil.which("kubectl") is not None or importlib.util.find_spec("kubernetes") is not None
    return CheckResult(
        name="host.kubernetes",
        ok=have,
        field="platform",
        message="Kubernetes client found." if have else "Neither kubectl nor the kubernetes Python client is available.",
        fix=None if have else "Install kubectl (with a kubeconfig) or `pip install kubernetes`.",
    )


def probe_torch_gpus() -> CheckResult:
    """CUDA devices as torch sees them (imports torch; call only when the engine uses torch)."""
    import torch  # heavy: imported only here

    has_gpu = bool(torch.cuda.is_available())
    count = torch.cuda.device_count() if has_gpu else 0
    memory, caps = None, []
    if has_gpu:
        memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(count)) / 1024**3
        caps = ["{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(count)]
    return CheckResult(
        name="host.gpu",
        ok=True,
        field="platform",
        severity="info",
        message=f"{count} CUDA GPU(s) available." if has_gpu else "No CUDA GPU: the built-in engine runs on CPU.",
        details={"cuda": has_gpu, "gpus": count, "memory_gb": memory, "compute_caps": caps},
    )


def check_requirements(req: EngineRequirements) -> list[CheckResult]:
    """The engine's tools on PATH and Python libraries importable here (``find_spec``, no import)."""
    results: list[CheckResult] = []
    if req.tools:
        found = [t for t in req.tools if shutil.which(t)]
        missing = [t for t in req.tools if t not in found]
        results.append(
            CheckResult(
                name=req.check_name,
                ok=not missing,
                field="engine",
                message=f"{req.what} found: {', '.join(found)}."
                if not missing
                else f"{req.what} not on PATH (looked for: {', '.join(missing)}).",
                fix=None if not missing else req.fix,
                details={"tools": list(req.tools), "image": req.image},
            )
        )
    if req.modules:
        missing = [m for m in req.modules if importlib.util.find_spec(m) is None]
        results.append(
            CheckResult(
                name=req.check_name,
                ok=not missing,
                field="engine",
                message=f"{req.what} found ({', '.join(req.modules)})."
                if not missing
                else f"{req.what} missing: {', '.join(missing)}.",
                fix=None if not missing else req.fix,
                details={"modules": list(req.modules)},
            )
        )
    return results


def quick_requirements(req: EngineRequirements) -> str | None:
    """The first missing tool or library as a reason, or None (cheap: which + find_spec)."""
    for check in check_requirements(req):
        if not check.ok:
            return check.message
    return None


def check_hardware(hardware: Hardware, host: HostInfo, *, severity: Severity, engine: str) -> list[CheckResult]:
    """The skill's ``hardware.min_gpus`` and ``min_gpu_memory_gb`` (skill_info.yaml) against ``host``.

    ``severity``: ``error`` where the engine needs them (TAO), ``warning`` where it can run
    below them (the built-in engine on CPU with small data); the message names the minimum.
    """
    out: list[CheckResult] = []
    if hardware.min_gpus and host.gpus < hardware.min_gpus:
        out.append(
            CheckResult(
                name="host.hardware.gpus",
                ok=False,
                field="train.num_gpus",
                severity=severity,
                message=f"the skill's minimum is {hardware.min_gpus} GPU(s) (skill_info hardware.min_gpus); this host has {host.gpus}"
                + (
                    "" if severity == "error" else f": the {engine} engine runs, but only small data and short runs are practical"
                ),
                fix=f"run on a host with at least {hardware.min_gpus} GPU(s)"
                + (f" of {hardware.min_gpu_memory_gb} GB or more" if hardware.min_gpu_memory_gb else ""),
                details={"min_gpus": hardware.min_gpus, "gpus": host.gpus},
            )
        )
    mem = host.gpu_memory_gb
    if hardware.min_gpu_memory_gb and host.gpus and mem is not None and mem < hardware.min_gpu_memory_gb:
        out.append(
            CheckResult(
                name="host.hardware.gpu_memory",
                ok=False,
                field="dataset.batch_size",
                severity=severity,
                message=f"GPUs here have {mem:.0f} GB; the skill's minimum is {hardware.min_gpu_memory_gb} GB (skill_info hardware.min_gpu_memory_gb)",
                fix=f"run on GPUs with {hardware.min_gpu_memory_gb} GB or more, or lower dataset.batch_size",
                details={"min_gpu_memory_gb": hardware.min_gpu_memory_gb, "gpu_memory_gb": mem},
            )
        )
    return out


def check_host(engine: str, platform: str, *, network: str | None = None) -> list[CheckResult]:
    """The old preflight host answer for ``engine`` on ``platform`` without a skill at hand.

    * ``engine="tao"``: ``docker`` needs the docker CLI and daemon; ``local`` needs the ``tao``
      launcher or the network's in-container entrypoint (``network``) on PATH; ``slurm`` needs
      sbatch/squeue/scancel; ``kubernetes`` kubectl or its Python client. A missing GPU driver
      is a warning.
    * ``engine="builtin"``: torch, transformers and pytorch_lightning importable; CUDA
      presence reported as ``info``.
    Unknown engines give one failed ``host.engine`` check. With a skill, prefer
    ``platform.host_checks(engine, info, action, spec)``.
    """
    known = ("tao", "builtin")
    if engine not in known:
        return [
            CheckResult(
                name="host.engine",
                ok=False,
                field="engine",
                message=f"Unknown engine {engine!r}.",
                fix=f"Use one of: {', '.join(known)}.",
            )
        ]
    results: list[CheckResult] = []
    if platform == "docker":
        results += check_docker("platform")
    elif platform == "slurm":
        results.append(check_slurm_tools())
    elif platform == "kubernetes":
        results.append(check_kubernetes_client())
    elif platform != "local":
        results.append(
            CheckResult(
                name="host.platform",
                ok=False,
                field="platform",
                message=f"Unknown platform {platform!r}.",
                fix="Use one of: local, docker, slurm, kubernetes.",
            )
        )
    if engine == "tao":
        if platform == "local":
            tools = ["tao"] + ([network] if network else [])
            found = [t for t in tools if shutil.which(t)]
            results.append(
                CheckResult(
                    name="host.tao_cli",
                    ok=bool(found),
                    field="engine",
                    message=f"TAO CLI found: {found[0]}." if found else f"No TAO CLI on PATH (looked for: {', '.join(tools)}).",
                    fix=None
                    if found
                    else "Install the TAO launcher (pip install nvidia-tao) with Docker, run inside a TAO "
                    "container, use platform 'docker', or use engine 'builtin'.",
                )
            )
        results.append(check_nvidia_smi("warning"))
        return results
    from taoskills.platforms.engines import BUILTIN_MODULES

    missing = [m for m in BUILTIN_MODULES if importlib.util.find_spec(m) is None]
    results.append(
        CheckResult(
            name="host.builtin_engine",
            ok=not missing,
            field="engine",
            message="Built-in engine libraries found (torch, transformers, pytorch_lightning)."
            if not missing
            else f"Built-in engine libraries missing: {', '.join(missing)}.",
            fix=None
            if not missing
            else "pip install 'tao-skills[engine]' (on CPU hosts install torch first; never install torchvision there).",
        )
    )
    if "torch" not in missing:
        results.append(probe_torch_gpus())
    return results
