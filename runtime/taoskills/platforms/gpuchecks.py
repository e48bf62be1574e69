"""GPU checks of the platforms' host preflight: what ``nvidia-smi`` reports (count, memory,
compute capability, with a by-name fallback for old drivers) and whether the job's request -
``num_gpus``, ``gpu_ids``, a bf16 precision, TAO's minimum architecture - fits it.
Re-exported by :mod:`taoskills.platforms.hostchecks`.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from taoskills.data.preflight import CheckResult, Severity

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo


def _run(cmd: list[str], timeout: float = 10.0) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


#: Oldest compute capability TAO's 6.x containers run on: they are built on CUDA 13.0 (driver
#: 580) and TensorRT 10, and both dropped Maxwell, Pascal and Volta (CUDA 13.0 release notes:
#: no offline compilation or library support below compute capability 7.5; TensorRT 10.x
#: support matrix, docs.nvidia.com/deeplearning/tensorrt/support-matrix: 7.5 and newer).
TAO_MIN_COMPUTE_CAPABILITY = (7, 5)
#: bf16 tensor math needs Ampere, compute capability 8.0 (TensorRT support matrix, BF16 column;
#: CUDA programming guide, arithmetic instructions: bf16 from compute capability 8.0).
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)

#: Compute capability by GPU name, for drivers too old to answer ``compute_cap`` (NVIDIA's
#: CUDA GPUs list, developer.nvidia.com/cuda-gpus). First match wins; unknown names give None.
_CC_BY_NAME: tuple[tuple[str, str], ...] = (
    ("K80", "3.7"),
    ("K40", "3.5"),
    ("M40", "5.2"),
    ("M60", "5.2"),
    ("P100", "6.0"),
    ("P40", "6.1"),
    ("P4", "6.1"),
    ("GTX 10", "6.1"),
    ("V100", "7.0"),
    ("TITAN V", "7.0"),
    ("T4", "7.5"),
    ("RTX 20", "7.5"),
    ("QUADRO RTX", "7.5"),
    ("A100", "8.0"),
    ("A30", "8.0"),
    ("A10", "8.6"),
    ("A40", "8.6"),
    ("RTX A", "8.6"),
    ("RTX 30", "8.6"),
    ("L40", "8.9"),
    ("L4", "8.9"),
    ("RTX 40", "8.9"),
    ("H100", "9.0"),
    ("H200", "9.0"),
    ("GH200", "9.0"),
    ("B200", "10.0"),
)


def _cc(text: str | None) -> tuple[int, int] | None:
    """``"8.6"`` -> (8, 6); None for anything else (``[N/A]``, empty)."""
    parts = str(text or "").strip().split(".")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def cc_from_name(name: str) -> str | None:
    """Compute capability (``"7.0"``) of a GPU named ``name`` by :data:`_CC_BY_NAME`, or None."""
    up = name.upper()
    for needle, cc in _CC_BY_NAME:
        if needle in up:
            return cc
    return None


def _no_gpu(severity: Severity, message: str, fix: str) -> CheckResult:
    return CheckResult(
        name="host.gpu",
        ok=False,
        field="platform",
        severity=severity,
        message=message,
        fix=fix,
        details={"cuda": False, "gpus": 0},
    )


def check_nvidia_smi(severity: Severity) -> CheckResult:
    """GPUs as ``nvidia-smi`` lists them. ``details`` = {cuda, gpus, names, memory_gb (the
    smallest, GiB), compute_caps (``"8.0"`` per GPU, None where unknown), cc_source}.

    Reads ``--query-gpu=name,compute_cap,memory.total``; a driver that does not know the
    ``compute_cap`` field (older than 510) is asked again without it and the capability is
    looked up by name (:func:`cc_from_name`, ``cc_source: "name"``)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return _no_gpu(
            severity,
            "nvidia-smi is not on PATH: no NVIDIA GPU driver found on this host.",
            "Run on a host with NVIDIA GPUs and drivers (TAO trains on GPUs).",
        )
    rc, out = _run([smi, "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"])
    source = "nvidia-smi"
    rows = [[p.strip() for p in line.split(",")] for line in out.splitlines() if line.strip()] if rc == 0 else []
    if rows and all(len(r) >= 3 for r in rows):
        names, caps, mem_col = [r[0] for r in rows], [r[1] if _cc(r[1]) else None for r in rows], [r[2] for r in rows]
    else:  # old driver: "Field "compute_cap" is not a valid field to query."
        rc, out = _run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"])
        rows = [[p.strip() for p in line.split(",")] for line in out.splitlines() if line.strip()] if rc == 0 else []
        names, mem_col = [r[0] for r in rows], [r[1] if len(r) > 1 else "" for r in rows]
        caps, source = [None] * len(rows), "name"
    if not names:
        return _no_gpu(
            severity, f"nvidia-smi found no usable GPU: {out[:200]}", "Check the NVIDIA driver (nvidia-smi) on this host."
        )
    caps = [c or cc_from_name(n) for c, n in zip(caps, names, strict=True)]
    if source == "nvidia-smi" and any(c is None for c in caps):
        source = "nvidia-smi+name"
    mem = [float(m) / 1024 for m in mem_col if m.replace(".", "", 1).isdigit()]
    shown = ", ".join(f"{n} (compute {c or '?'})" for n, c in zip(names, caps, strict=True))
    return CheckResult(
        name="host.gpu",
        ok=True,
        field="platform",
        severity=severity,
        message=f"{len(names)} GPU(s): {shown}.",
        details={
            "cuda": True,
            "gpus": len(names),
            "names": names,
            "memory_gb": min(mem) if mem else None,
            "compute_caps": caps,
            "cc_source": source,
        },
    )


def gpu_request(info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What the job asks of the GPUs: ``{num_gpus, gpu_ids, precision}`` with the dotted keys
    they came from (``*_key``). Keys: the skill's ``multi_gpu.keys`` / ``gpu_spec_key`` and
    ``shorthand.precision`` for train (skill_info.yaml), else ``<action>.num_gpus`` /
    ``<action>.gpu_ids`` / ``<action>.precision`` (TAO Core 7.3.0 per-action configs)."""
    from taoskills.specs.dotted import get_dotted

    section = action.removeprefix("deploy_")
    if action == "train":
        keys = info.multi_gpu.keys if info.multi_gpu else {}
        num_key = keys.get("num_gpus") or info.gpu_spec_key or "train.num_gpus"
        ids_key = keys.get("gpu_ids") or "train.gpu_ids"
        prec_key = info.shorthand.get("precision") or "train.precision"
    else:
        num_key, ids_key, prec_key = f"{section}.num_gpus", f"{section}.gpu_ids", f"{section}.precision"
    return {
        "num_gpus": get_dotted(spec, num_key, default=None),
        "gpu_ids": get_dotted(spec, ids_key, default=None),
        "precision": get_dotted(spec, prec_key, default=None),
        "num_gpus_key": num_key,
        "gpu_ids_key": ids_key,
        "precision_key": prec_key,
    }


def check_gpu_request(
    gpu: CheckResult,
    info: SkillInfo,
    action: str,
    spec: dict[str, Any],
    *,
    engine: str,
    skip_fields: set[str | None] | None = None,
) -> list[CheckResult]:
    """The job's GPU request (:func:`gpu_request`) against the GPUs ``gpu`` found
    (:func:`check_nvidia_smi` / :func:`probe_torch_gpus` details). Only when GPUs were found.

    * ``host.gpu.count``: ``num_gpus`` (``-1`` = all) at most the GPU count; every ``gpu_ids``
      entry an index below it (``CUDA_VISIBLE_DEVICES`` numbering).
    * ``host.gpu.compute_capability``: for the TAO engine every GPU used is at least
      :data:`TAO_MIN_COMPUTE_CAPABILITY`; unknown capabilities give a warning.
    * ``host.gpu.bf16``: a ``bf16`` precision (``bf16``, ``bf16-mixed``, ``bf16-true``) needs
      :data:`BF16_MIN_COMPUTE_CAPABILITY` on every GPU used.
    Severity: error for the TAO engine, warning for the built-in engine (torch can fall back).
    ``skip_fields``: fields another check already reports (no second message)."""
    d = gpu.details or {}
    count = int(d.get("gpus") or 0)
    if not d.get("cuda") or count == 0:
        return []
    req = gpu_request(info, action, spec)
    sev: Severity = "error" if engine == "tao" else "warning"
    skip = skip_fields or set()
    out: list[CheckResult] = []

    def add(name: str, ok: bool, field: str, message: str, fix: str | None, severity: Severity = sev, **details: Any) -> None:
        if field in skip and not ok:
            return
        out.append(
            CheckResult(
                name=name, ok=ok, field=field, severity=severity, message=message, fix=None if ok else fix, details=details
            )
        )

    num, ids = req["num_gpus"], req["gpu_ids"]
    used = list(range(count))
    if isinstance(ids, list) and ids and all(isinstance(i, int) for i in ids):
        bad = [i for i in ids if i < 0 or i >= count]
        if bad:
            add(
                "host.gpu.count",
                False,
                req["gpu_ids_key"],
                f"{req['gpu_ids_key']}={ids} names GPU(s) {bad} but this host has {count} GPU(s) (indices 0-{count - 1})",
                f"set {req['gpu_ids_key']} to indices below {count} (e.g. {list(range(min(count, max(len(ids), 1))))})",
                gpus=count,
            )
        used = [i for i in ids if 0 <= i < count] or used
    elif isinstance(num, int) and num > 0:
        used = used[:num]
    if isinstance(num, int) and num > count:
        add(
            "host.gpu.count",
            False,
            req["num_gpus_key"],
            f"{req['num_gpus_key']}={num} but this host has {count} GPU(s)",
            f"set {req['num_gpus_key']} to at most {count} (and {req['gpu_ids_key']} to match), or run on a bigger host",
            gpus=count,
        )
    caps = list(d.get("compute_caps") or [None] * count)
    used_caps = {i: _cc(caps[i]) if i < len(caps) else None for i in used}
    unknown = [i for i, c in used_caps.items() if c is None]
    if engine == "tao":
        low = {i: c for i, c in used_caps.items() if c is not None and c < TAO_MIN_COMPUTE_CAPABILITY}
        want = ".".join(map(str, TAO_MIN_COMPUTE_CAPABILITY))
        if low:
            add(
                "host.gpu.compute_capability",
                False,
                "platform",
                "TAO's containers (CUDA 13, TensorRT 10) need compute capability "
                f"{want} or newer; GPU(s) {', '.join(f'{i} ({c[0]}.{c[1]})' for i, c in low.items())} are older",
                f"run on Turing (T4) or newer GPUs, or pick others with {req['gpu_ids_key']}",
                compute_caps=caps,
            )
        elif unknown:
            add(
                "host.gpu.compute_capability",
                False,
                "platform",
                f"the compute capability of GPU(s) {unknown} is unknown (the driver does not report it); TAO needs {want}+",
                "update the NVIDIA driver (TAO 6 needs driver 580 or newer, which reports compute_cap)",
                severity="warning",
                compute_caps=caps,
            )
        else:
            add("host.gpu.compute_capability", True, "platform", f"GPU compute capability meets TAO's {want}.", None, "info")
    if "bf16" in str(req["precision"] or "").lower():
        low = {i: c for i, c in used_caps.items() if c is not None and c < BF16_MIN_COMPUTE_CAPABILITY}
        if low:
            add(
                "host.gpu.bf16",
                False,
                req["precision_key"],
                f"{req['precision_key']}={req['precision']} needs compute capability 8.0 (Ampere) or newer; GPU(s) "
                f"{', '.join(f'{i} ({c[0]}.{c[1]})' for i, c in low.items())} have no bf16",
                f"set {req['precision_key']} to fp16 or fp32 (16-mixed or 32-true for the built-in engine), "
                "or run on A100/A10/L4/H100-class GPUs",
                compute_caps=caps,
            )
    return out
