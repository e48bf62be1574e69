"""``tao-skills estimate SKILL ACTION ...``: wall time, peak memory and disk before launch.

A thin skin over :meth:`taoskills.service.Service.estimate` (rules in
:mod:`taoskills.jobs.estimate`); it takes the flags of ``tao-skills run``. Registered in
:mod:`taoskills.surfaces.cli` with ``app.command("estimate")(estimate)``.
"""

from __future__ import annotations

import json
from typing import Any

import typer
import yaml

from taoskills.errors import TaoSkillsError


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise TaoSkillsError(f"{what} {item!r} is not KEY=VALUE", field=what, fix=f"write {what} as key=value")
        key, _, raw = item.partition("=")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def render(est: dict[str, Any]) -> list[str]:
    """Readable lines for an estimate reply (``Service.estimate(...).model_dump()``)."""
    disk = est["disk"]
    lines = [
        f"estimate {est['skill']} {est['action']} on {est['device']} ({est['platform']}, engine {est['engine']})",
        f"  {est['images']} images, {est['steps']} steps ({est['steps_per_epoch']}/epoch), "
        f"{est['saves']} checkpoint save(s), {est['saves_kept']} kept",
    ]
    if est.get("wall_time_s") is not None:
        lines.append(f"  wall time  ~{_duration(est['wall_time_s'])}")
    mem = est.get("memory")
    if mem:
        lines.append(f"  memory     ~{mem['peak_gb']:.1f} GB {'GPU memory' if mem['kind'] == 'gpu' else 'RAM'} (peak)")
    free = f", {est['free_disk_gb']:.1f} GB free" if est.get("free_disk_gb") is not None else ""
    if disk.get("final_mb") is not None:
        lines.append(f"  disk       ~{disk['final_mb']:.0f} MB at the end, {disk['peak_mb']:.0f} MB peak{free}")
    else:
        lines.append(f"  disk       unknown{free}")
    lines += [f"  note: {n}" for n in est.get("notes") or []]
    if est.get("fits"):
        lines.append("✓ fits on this host")
    for issue in est.get("issues") or []:
        lines.append(f"✗ {issue['field']}: {issue['reason']}. fix: {issue['fix']}")
    return lines


def estimate(
    skill: str,
    action: str,
    set_: list[str] = typer.Option(None, "--set", "-s", help="dotted override KEY=VALUE (repeatable)"),
    shorthand: list[str] = typer.Option(None, "--shorthand", "-k", help="shorthand KEY=VALUE (repeatable)"),
    data: list[str] = typer.Option(None, "--data", "-d", help="data source ROLE=FOLDER (repeatable)"),
    parent: str | None = typer.Option(None, "--parent", help="parent job id"),
    profile: str | None = typer.Option(None, "--profile", help="'smoke' applies the skill's small overrides"),
    resume: str | None = typer.Option(None, "--resume", help="job id whose training to resume"),
    pretrained: str | None = typer.Option(None, "--pretrained", help="pretrained model file"),
    engine: str = typer.Option("auto", help="runtime engine: auto, builtin, tao"),
    platform: str = "local",
    speed_factor: float = typer.Option(1.0, help="this host's step time over the measured table's (1: as measured)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Estimate wall time, peak memory and disk of a run (same flags as `run`); launches nothing."""
    from taoskills.security.redact import redact
    from taoskills.service import Service

    est = Service().estimate(
        skill,
        action,
        engine=engine,
        platform=platform,
        speed_factor=speed_factor,
        overrides=_pairs(set_, "--set"),
        shorthand=_pairs(shorthand, "--shorthand"),
        data_sources={k: str(v) for k, v in _pairs(data, "--data").items()},
        parent_job_id=parent,
        profile=profile,
        resume_job_id=resume,
        pretrained_model=pretrained,
    )
    reply = redact(est.model_dump())
    if as_json:
        typer.echo(json.dumps(reply, indent=2, default=str))
        return
    for line in render(reply):
        typer.echo(line)
