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

import os
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from taoskills.errors import NotSupported
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import registry as platform_registry
from taoskills.security.redact import environ_snapshot

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo


def _type_lists(schema: dict[str, Any]) -> None:
    """``anyOf: [{type: X}, {type: null}]`` -> ``type: [X, null]`` (same meaning; a JSON-schema
    validator checks one keyword instead of two subschemas - MCP clients check every reply)."""
    for prop in (schema.get("properties") or {}).values():
        alts = prop.get("anyOf")
        if isinstance(alts, list) and alts and all(isinstance(a, dict) and set(a) == {"type"} for a in alts):
            prop["type"] = [a["type"] for a in prop.pop("anyOf")]


class EngineOption(BaseModel):
    """One (engine, platform) pair: ``ok`` when it can run the action here; else ``reason`` and ``fix``."""

    model_config = ConfigDict(json_schema_extra=_type_lists)

    engine: str
    platform: str
    ok: bool
    reason: str | None = None
    fix: str | None = None


#: JSON schema of ``Placement.options`` as MCP tools declare it: the item keys without a schema
#: each (an MCP client validates every reply against the tool's output schema, and ten typed
#: option objects per action cost it more than the tool's own work; the server builds them
#: from :class:`EngineOption`, so their types hold anyway).
_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "title": "Options",
    "description": "every (engine, platform) pair checked: {engine: str, platform: str, ok: bool, "
    "reason: str|null (why not), fix: str|null (what to do)}",
    "items": {"type": "object", "required": ["engine", "platform", "ok"]},
}


class Placement(BaseModel):
    """Where ``action`` of ``skill`` can run here.

    ``runs_here``: at least one option is ok. ``engine``/``platform``: the first ok option
    (what ``engine='auto'`` picks). ``options``: every (engine, platform) pair checked.
    ``next``: when nothing runs here, the one thing to do (else None). Frozen: a cached answer
    is handed to every caller (:func:`place`).
    """

    model_config = ConfigDict(json_schema_extra=_type_lists, frozen=True)

    skill: str
    action: str
    runs_here: bool
    engine: str | None = None
    platform: str | None = None
    options: Annotated[list[EngineOption], WithJsonSchema(_OPTIONS_SCHEMA)] = Field(default_factory=list)
    next: str | None = None


#: Seconds a (engine, platform, skill, action) answer is reused; 0 = never (the default). A
#: long-running server (the MCP server) turns it on with :func:`set_cache_ttl` so that
#: ``build_spec``/``get_skill`` do not ask the Docker daemon or walk PATH on every call.
_cache_ttl_s = 0.0
#: The TTL the MCP server sets: an image pulled or a tool installed shows within this many seconds.
SERVER_CACHE_TTL_S = 10.0
_cache: dict[tuple, tuple[float, dict[str, Any], tuple[int, str] | None]] = {}
#: Whole answers of :func:`place` (same TTL, key of every pair it checked): (time, Placement).
_placed: dict[tuple, tuple[float, Placement]] = {}
_cache_lock = threading.Lock()


def set_cache_ttl(seconds: float) -> None:
    """Reuse each (engine, platform) answer of :func:`place` for ``seconds`` (0 turns it off and
    empties the cache). The key holds the engine and platform registrations, the skill, the action
    and the whole environment, so a changed variable (PATH, DOCKER_HOST, NGC_KEY, ...) or a new
    registration is seen at once; a tool installed or an image pulled meanwhile is seen after
    ``seconds``. Launches (:func:`require`) always check afresh."""
    global _cache_ttl_s
    with _cache_lock:
        _cache_ttl_s = max(0.0, float(seconds))
        _cache.clear()
        _placed.clear()


def _check_pair(eng, pname: str, info: SkillInfo, action: str) -> tuple[dict[str, Any], tuple[int, str] | None]:
    """(EngineOption fields, blocker) for one engine on one platform."""
    why = eng.why_not(info, action)
    if why:
        fix = eng.fix(info, action)
        return {"engine": eng.name, "platform": pname, "ok": False, "reason": why, "fix": fix}, (1, fix)
    plat = platform_registry.get_platform(pname)
    missing = plat.quick_check(eng, info, action)
    if missing:
        fix = eng.requirements(info, action).fix
        return {"engine": eng.name, "platform": pname, "ok": False, "reason": missing, "fix": fix}, (0, fix)
    return {"engine": eng.name, "platform": pname, "ok": True}, None


def _cached_pair(
    eng, pname: str, info: SkillInfo, action: str, env: tuple | None, entries: dict[str, Any]
) -> tuple[float, dict[str, Any], tuple[int, str] | None]:
    """(when it was checked, EngineOption fields, blocker) for one pair, from the cache when fresh."""
    ttl = _cache_ttl_s
    now = time.monotonic()
    if env is None or ttl <= 0:
        return (now, *_check_pair(eng, pname, info, action))
    key = (eng.name, id(eng), pname, id(entries.get(pname)), info.name, id(info), action, env)
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit
    option, blocker = _check_pair(eng, pname, info, action)
    with _cache_lock:
        if len(_cache) > 512:  # environments or registrations churned: start over
            _cache.clear()
        _cache[key] = (now, option, blocker)
    return now, option, blocker


def place(
    info: SkillInfo, action: str, *, engine: str | None = None, platform: str | None = None, fresh: bool = False
) -> Placement:
    """Check every registered engine (or just ``engine``; ``auto``/None = all) on every
    registered platform (or just ``platform``). ``fresh`` skips the answer cache
    (:func:`set_cache_ttl`). Errors: NotFound for an unknown engine/platform."""
    engs = (
        list(engine_registry.engines().values())
        if engine in (None, "", engine_registry.AUTO)
        else [engine_registry.get_engine(engine)]
    )
    plats = platform_registry.names() if not platform else [platform]
    options: list[EngineOption] = []
    blockers: list[tuple[int, str]] = []  # (rank, fix): 0 = implemented but missing a tool here
    cached = not fresh and _cache_ttl_s > 0
    env = (environ_snapshot() or tuple(os.environ.items())) if cached else None
    entries = platform_registry.entries() if cached else {}
    key = None
    if cached:
        regs = (tuple((e.name, id(e)) for e in engs), tuple((p, id(entries.get(p))) for p in plats))
        key = (regs, info.name, id(info), action, env)
        hit = _placed.get(key)
        if hit is not None and time.monotonic() - hit[0] < _cache_ttl_s:
            return hit[1]
    oldest = time.monotonic()
    for eng in engs:
        for pname in plats:
            checked, option, blocker = _cached_pair(eng, pname, info, action, env, entries)
            oldest = min(oldest, checked)
            options.append(EngineOption(**option))
            if blocker is not None:
                blockers.append(blocker)
    first = next((o for o in options if o.ok), None)
    answer = Placement(
        skill=info.name,
        action=action,
        runs_here=first is not None,
        engine=first.engine if first else None,
        platform=first.platform if first else None,
        options=options,
        next=None if first else (min(blockers, key=lambda b: b[0])[1] if blockers else "no engine is registered"),
    )
    if key is not None:
        with _cache_lock:
            if len(_placed) > 512:
                _placed.clear()
            _placed[key] = (oldest, answer)  # as old as its oldest pair answer
    return answer


def skill_placement(info: SkillInfo) -> dict[str, Placement]:
    """action -> :func:`place` for every action of a model skill ({} for an application skill)."""
    if info.kind != "model":
        return {}
    return {a: place(info, a) for a in info.actions}


def require(info: SkillInfo, action: str, *, engine: str | None, platform: str) -> Placement:
    """:func:`place` for the requested engine on ``platform``; raise NotSupported with the one
    thing to do when nothing can run. With ``engine`` auto/None the first runnable engine wins."""
    where = place(info, action, engine=engine, platform=platform, fresh=True)
    if where.runs_here:
        return where
    reasons = "; ".join(f"{o.engine}: {o.reason}" for o in where.options)
    raise NotSupported(
        f"{info.name} {action} cannot run on the {platform} platform here ({reasons})",
        field="engine",
        fix=where.next or "",
        details={"placement": where.model_dump()},
    )
