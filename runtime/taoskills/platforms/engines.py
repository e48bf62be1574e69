"""Runtime engines: what actually runs a job's action once the runner script starts.

Two are registered: ``builtin`` (this project's ``tao-skills-engine``, PyTorch on this host,
networks from :mod:`taoskills.engine.registry`) and ``tao`` (TAO's in-container entrypoint,
``<network_arch> <action> -e spec.yaml``, from the skill's ``actions.<a>.command`` and
``images``). Each engine answers, with no branching on its name anywhere else:

* :meth:`RuntimeEngine.why_not` - can it run (skill, action) at all, and why not;
* :meth:`RuntimeEngine.requirements` - tools, libraries, container image/entrypoint, and
  how strictly the skill's hardware minimums apply (platforms check these on their hosts);
* :meth:`RuntimeEngine.command` - the argv the runner script runs;
* :meth:`RuntimeEngine.env` / :meth:`RuntimeEngine.secret_env_names` - environment it needs
  (secrets by variable name only);
* :meth:`RuntimeEngine.host_issues` - spec values it cannot honour on a given host.

New engines are new modules that call :func:`register` (or a plug-in named in
``TAO_SKILLS_PLUGINS``, :mod:`taoskills.plugins`).
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from taoskills.errors import NotFound

if TYPE_CHECKING:
    from taoskills.bank.skill_info import Hardware, SkillInfo
    from taoskills.engine.registry import HostInfo

#: Libraries the built-in engine's Lightning trainers import (a network descriptor may say otherwise).
BUILTIN_MODULES = ("torch", "transformers", "pytorch_lightning")

#: The engine used when a caller asks for ``auto`` (or gives none): the first that can run here.
AUTO = "auto"


@dataclass(frozen=True)
class EngineRequirements:
    """What a host needs to run an engine's command.

    ``tools``: executables on PATH (all needed). ``modules``: Python modules importable.
    ``image``: container image holding the entrypoint (platforms that run containers use it).
    ``entrypoint``: the first word of the command. ``what``: how to name the requirement in a
    message; ``check_name``: preflight check id; ``fix``: how to get what is missing.
    ``hardware``/``hardware_severity``: the skill's minimums and whether falling short is an
    ``error`` (TAO) or a ``warning`` (built-in engine, small runs on CPU). ``probe_torch``:
    GPUs are probed with torch (the engine imports it anyway) rather than nvidia-smi.
    """

    check_name: str
    what: str
    fix: str
    tools: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    image: str | None = None
    entrypoint: str | None = None
    hardware: Hardware | None = None
    hardware_severity: Literal["error", "warning"] = "error"
    probe_torch: bool = False


class RuntimeEngine:
    """Base of runtime engines. ``name``: registry key; ``description``: one line;
    ``order``: preference when the caller asks for ``auto`` (lower first)."""

    name: str = ""
    description: str = ""
    order: int = 100

    def why_not(self, info: SkillInfo, action: str) -> str | None:
        """Reason this engine can never run ``info`` ``action`` (on any host), or None."""
        if info.kind != "model" or not info.network_arch:
            return f"{info.name} is an application skill; engines run a model skill's actions"
        if action not in info.actions:
            return f"{info.name} has no action {action!r}"
        return None

    def fix(self, info: SkillInfo, action: str) -> str:
        """What to do when :meth:`why_not` refuses."""
        return "route the request to a model skill (route_request)"

    def requirements(self, info: SkillInfo, action: str) -> EngineRequirements:
        raise NotImplementedError

    def command(self, info: SkillInfo, action: str, spec_path: str) -> list[str]:
        """The argv the runner script runs after writing the spec to ``spec_path``."""
        raise NotImplementedError

    def env(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, str]:
        """Non-secret environment the command needs."""
        return {"PYTHONUNBUFFERED": "1"}

    def secret_env_names(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[str]:
        """Secret variables the job needs, by name (the encryption key when it is set here)."""
        from taoskills.specs.builder import ENCRYPTION_KEY_ENV

        return [n for n in (ENCRYPTION_KEY_ENV,) if os.environ.get(n)]

    def host_issues(self, info: SkillInfo, action: str, spec: dict[str, Any], host: HostInfo) -> list[dict[str, str]]:
        """Spec values this engine cannot honour on ``host``: ``[{"field", "reason", "fix"}]``."""
        return []


class BuiltinEngine(RuntimeEngine):
    """``python -m taoskills.engine <network> <action> -e spec.yaml`` on the platform's host."""

    name = "builtin"
    description = "tao-skills' own PyTorch engine (TAO CLI and results contract), CPU or GPU"
    order = 20  # the embedded default; TAO's own entrypoint wins when it is here

    def why_not(self, info: SkillInfo, action: str) -> str | None:
        base = super().why_not(info, action)
        if base:
            return base
        from taoskills.engine import registry

        if not registry.supports(info.network_arch or "", action):
            return f"the built-in engine does not run {info.network_arch} {action} yet (it runs: {registry.describe()})"
        return None

    def fix(self, info: SkillInfo, action: str) -> str:
        if info.kind != "model":
            return super().fix(info, action)
        return f"use engine='tao' (the TAO container, which provides the '{_entrypoint(info, action)}' entrypoint) for {info.network_arch} {action}"

    def requirements(self, info: SkillInfo, action: str) -> EngineRequirements:
        from taoskills.engine import registry

        desc = registry.get(info.network_arch or "")
        modules, extra_fix = desc.modules_for(action) if desc else (BUILTIN_MODULES, None)
        return EngineRequirements(
            check_name="host.builtin_engine",
            what="Built-in engine libraries",
            fix=extra_fix
            or "pip install 'tao-skills[engine]' (on CPU hosts install torch first; never install torchvision there)",
            modules=modules,
            hardware=info.hardware,
            hardware_severity="warning",
            probe_torch="torch" in (desc.requires if desc else BUILTIN_MODULES),
        )

    def command(self, info: SkillInfo, action: str, spec_path: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "taoskills.engine",
            info.network_arch or "",
            action.removeprefix("deploy_"),
            "-e",
            spec_path,
        ]

    def host_issues(self, info: SkillInfo, action: str, spec: dict[str, Any], host: HostInfo) -> list[dict[str, str]]:
        from taoskills.engine import registry

        desc = registry.get(info.network_arch or "")
        return desc.host_issues(action, spec, host) if desc else []


def _entrypoint(info: SkillInfo, action: str) -> str:
    act = info.actions.get(action)
    return shlex.split(act.command)[0] if act else (info.network_arch or "")


class TaoEngine(RuntimeEngine):
    """TAO's in-container entrypoint (``actions.<a>.command`` of the skill, e.g.
    ``nvdinov2 train -e {config_path}``), from the train or deploy image (``images``)."""

    name = "tao"
    description = "NVIDIA TAO's container entrypoint (TAO PyTorch / TAO Deploy images)"
    order = 10  # production: inside a TAO container its entrypoint runs the job

    def image(self, info: SkillInfo, action: str) -> str | None:
        """The container image of ``action``: ``images[actions.<a>.container]`` (train or deploy)."""
        act = info.actions.get(action)
        return info.images.get(act.container) if act else None

    def requirements(self, info: SkillInfo, action: str) -> EngineRequirements:
        entry = _entrypoint(info, action)
        image = self.image(info, action)
        where = f"the TAO container {image}" if image else "a TAO container"
        return EngineRequirements(
            check_name="host.tao_cli",
            what=f"TAO entrypoint '{entry}'",
            fix=f"run tao-skills inside {where} (it provides the '{entry}' entrypoint), or launch on a platform that runs containers",
            tools=(entry,),
            image=image,
            entrypoint=entry,
            hardware=info.hardware,
            hardware_severity="error",
        )

    def command(self, info: SkillInfo, action: str, spec_path: str) -> list[str]:
        return shlex.split(info.actions[action].command.format(config_path=spec_path))


_lock = threading.Lock()
_engines: dict[str, RuntimeEngine] = {}


def register(engine: RuntimeEngine, *, replace: bool = False) -> RuntimeEngine:
    """Register ``engine`` under ``engine.name``. Errors: ValueError when taken and not ``replace``."""
    with _lock:
        if engine.name in _engines and not replace and _engines[engine.name] is not engine:
            raise ValueError(f"runtime engine {engine.name!r} is already registered")
        _engines[engine.name] = engine
    return engine


def unregister(name: str) -> None:
    """Remove engine ``name`` (tests undo a dummy registration with it)."""
    with _lock:
        _engines.pop(name, None)


register(BuiltinEngine())
register(TaoEngine())


def engines() -> dict[str, RuntimeEngine]:
    """name -> engine, in preference order (plug-ins loaded first)."""
    from taoskills.plugins import load_plugins

    load_plugins()
    with _lock:
        return dict(sorted(_engines.items(), key=lambda kv: (kv[1].order, kv[0])))


def get_engine(name: str) -> RuntimeEngine:
    """The engine called ``name``. Errors: NotFound naming the registered engines."""
    found = engines().get((name or "").strip().lower())
    if found is None:
        raise NotFound(f"unknown engine {name!r}", field="engine", fix=f"use one of: {AUTO}, {', '.join(engines())}")
    return found
