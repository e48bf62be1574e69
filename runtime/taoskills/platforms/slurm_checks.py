"""Preflight of the SLURM platform: tools, controller and partition, engine, input policy.

* tools: ``sbatch``, ``squeue``, ``scancel``, ``scontrol`` on PATH (a login node);
* controller: ``sinfo -h -o '%P|%a|%D|%G'`` answers (slurmctld reachable); the configured
  partition (or the default one) exists, is ``up``, and has GPUs (GRES ``gpu``) when the job
  asks for them;
* engine: with ``container_image`` the image holds the engine (nothing to check here);
  otherwise the engine's libraries must be importable here, because the built-in engine runs
  from this Python environment on the shared filesystem;
* input: shared-filesystem paths only (checked from this host); remote URIs are refused.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from taoskills.data.preflight import CheckResult

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.platforms.engines import RuntimeEngine
    from taoskills.platforms.slurm import SlurmPlatform


def _partitions(timeout: float) -> tuple[list[dict[str, str]] | None, str]:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P|%a|%D|%G"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        return None, (proc.stderr or proc.stdout).strip()[:300]
    rows = []
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            rows.append(
                {
                    "name": parts[0].rstrip("*"),
                    "default": str(parts[0].endswith("*")),
                    "avail": parts[1],
                    "nodes": parts[2],
                    "gres": parts[3],
                }
            )
    return rows, ""


def gres_count(gres: str, name: str = "gpu") -> int:
    """GPUs per node in a sinfo ``%G`` field: ``gpu:8``, ``gpu:a100:4(S:0-1)``, ``(null)`` -> 8, 4, 0."""
    best = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == name and len(parts) >= 2 and parts[-1].isdigit():
            best = max(best, int(parts[-1]))
    return best


def slurm_host_checks(
    plat: SlurmPlatform, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]
) -> list[CheckResult]:
    """One CheckResult per check (see the module docstring); the partition check is skipped
    when the tools are missing."""
    from taoskills.platforms import hostchecks
    from taoskills.platforms.slurm import TOOLS

    missing = [t for t in TOOLS if shutil.which(t) is None]
    out = [
        CheckResult(
            name="host.slurm",
            ok=not missing,
            field="platform",
            message="SLURM tools found." if not missing else f"SLURM tools missing from PATH: {', '.join(missing)}.",
            fix=None if not missing else "run on a SLURM login node (sbatch, squeue, scancel, scontrol on PATH)",
        )
    ]
    if missing:
        return out
    rows, err = _partitions(plat.timeout)
    if rows is None:
        out.append(
            CheckResult(
                name="host.slurm.controller",
                ok=False,
                field="platform",
                message=f"sinfo could not reach the SLURM controller: {err}",
                fix="check that slurmctld runs and SLURM_CONF (or /etc/slurm/slurm.conf) points at it",
            )
        )
        return out
    want = plat.config.partition
    part = next((r for r in rows if (r["name"] == want if want else r["default"] == "True")), None)
    names = ", ".join(r["name"] for r in rows) or "none"
    if part is None:
        out.append(
            CheckResult(
                name="host.slurm.partition",
                ok=False,
                field="partition",
                message=f"partition {want!r} does not exist" if want else "the cluster has no default partition",
                fix=f"set partition to one of: {names}",
            )
        )
        return out
    ok = part["avail"] == "up"
    out.append(
        CheckResult(
            name="host.slurm.partition",
            ok=ok,
            field="partition",
            message=f"partition {part['name']} is {part['avail']} with {part['nodes']} node(s), GRES {part['gres']}.",
            fix=None if ok else f"use an available partition (one of: {names}) or ask the administrator",
            details=part,
        )
    )
    _nodes, gpus = plat.shape(info.name, action, spec)
    have = gres_count(part["gres"], plat.config.gpu_gres)
    if gpus and have < gpus:
        out.append(
            CheckResult(
                name="host.slurm.gpus",
                ok=False,
                field="train.num_gpus",
                message=f"the job asks for {gpus} GPU(s) per node but nodes of partition {part['name']} have {have} '{plat.config.gpu_gres}' GRES ({part['gres']})",
                fix="choose a GPU partition (partition=...), lower train.num_gpus, or set gpus_per_node: 0 for a CPU run of the built-in engine",
            )
        )
    if plat.config.container_image:
        out.append(
            CheckResult(
                name="engine.container",
                ok=True,
                field="engine",
                severity="info",
                message=f"{engine.name} runs inside {plat.config.container_image} (Pyxis --container-image).",
            )
        )
    else:
        out += hostchecks.check_requirements(engine.requirements(info, action))
    return out


def shared_fs_input(platform: str, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
    """A data input on the shared filesystem: the image-folder checks, from this login node;
    a remote URI is refused with the fix."""
    from taoskills.data import preflight as pf

    if "://" in value:
        return [
            CheckResult(
                name="remote_input",
                ok=False,
                field=field,
                message=f"{value} is a remote URI; the {platform} platform reads the cluster's shared filesystem only",
                fix="copy the data to the shared filesystem (a path every node sees) and pass that path",
            )
        ]
    return pf.check_image_folder(value, field=field, batch_size=batch_size)
