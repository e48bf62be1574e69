"""Where can this run: for one skill action, which runtime engines on which platforms can run it
on this host, and - when none can - the one thing to do.

Answered up front (``get_skill``, ``route_request``, ``build_spec``) from cheap checks only:
the engine's static answer (:meth:`RuntimeEngine.why_not`), then the platform's
:meth:`quick_check` (tools on PATH, libraries findable; no subprocess, no torch import).
Full host checks (GPUs, spec values, hardware minimums) stay in preflight.

The one thing to do: an engine that implements the action but lacks something here beats an
engine that does not implement it, so a user asking for DINO on a host without the TAO
container is told to run inside the TAO container - not that the built-in engine lacks DINO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from taoskills.errors import NotSupported
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import registry as platform_registry

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo


class EngineOption(BaseModel):
    """One (engine, platform) pair: ``ok`` when it can run the action here; else ``reason`` and ``fix``."""

    engine: str
    platform: str
    ok: bool
    reason: str | None = None
    fix: str | None = None


class Placement(BaseModel):
    """Where ``action`` of ``skill`` can run here.

    ``runs_here``: at least one option is ok. ``engine``/``platform``: the first ok option
    (what ``engine='auto'`` picks). ``options``: every (engine, platform) pair checked.
    ``next``: when nothing runs here, the one thing to do (else None).
    """

    skill: str
    action: str
    runs_here: bool
    engine: str | None = None
    platform: str | None = None
    options: list[EngineOption] = Field(default_factory=list)
    next: str | None = None


def place(info: SkillInfo, action: str, *, engine: str | None = None, platform: str | None = None) -> Placement:
    """Check every registered engine (or just ``engine``; ``auto``/None = all) on every
    registered platform (or just ``platform``). Errors: NotFound for an unknown engine/platform."""
    engs = (
        list(engine_registry.engines().values())
        if engine in (None, "", engine_registry.AUTO)
        else [engine_registry.get_engine(engine)]
    )
    plats = platform_registry.names() if not platform else [platform]
    options: list[EngineOption] = []
    blockers: list[tuple[int, str]] = []  # (rank, fix): 0 = implemented but missing a tool here
    for eng in engs:
        why = eng.why_not(info, action)
        for pname in plats:
            if why:
                options.append(EngineOption(engine=eng.name, platform=pname, ok=False, reason=why, fix=eng.fix(info, action)))
                blockers.append((1, eng.fix(info, action)))
                continue
            plat = platform_registry.get_platform(pname)
            missing = plat.quick_check(eng, info, action)
            if missing:
                fix = eng.requirements(info, action).fix
                options.append(EngineOption(engine=eng.name, platform=pname, ok=False, reason=missing, fix=fix))
                blockers.append((0, fix))
            else:
                options.append(EngineOption(engine=eng.name, platform=pname, ok=True))
    first = next((o for o in options if o.ok), None)
    return Placement(
        skill=info.name,
        action=action,
        runs_here=first is not None,
        engine=first.engine if first else None,
        platform=first.platform if first else None,
        options=options,
        next=None if first else (min(blockers, key=lambda b: b[0])[1] if blockers else "no engine is registered"),
    )


def skill_placement(info: SkillInfo) -> dict[str, Placement]:
    """action -> :func:`place` for every action of a model skill ({} for an application skill)."""
    if info.kind != "model":
        return {}
    return {a: place(info, a) for a in info.actions}


def require(info: SkillInfo, action: str, *, engine: str | None, platform: str) -> Placement:
    """:func:`place` for the requested engine on ``platform``; raise NotSupported with the one
    thing to do when nothing can run. With ``engine`` auto/None the first runnable engine wins."""
    where = place(info, action, engine=engine, platform=platform)
    if where.runs_here:
        return where
    reasons = "; ".join(f"{o.engine}: {o.reason}" for o in where.options)
    raise NotSupported(
        f"{info.name} {action} cannot run on the {platform} platform here ({reasons})",
        field="engine",
        fix=where.next or "",
        details={"placement": where.model_dump()},
    )
