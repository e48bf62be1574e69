"""The built-in engine's network registry (importable without torch).

One :class:`EngineNetwork` descriptor per ``network_arch`` says everything the runtime and the
engine CLI need: the display name, the TAO actions the built-in engine runs, where each
action's ``run(ctx)`` lives, where the spec defaults live (a structured config mirroring TAO
Core 7.3.0's ``ExperimentConfig``), and the host rules checked before launch.

Discovery: every sub-package ``taoskills.engine.<net>`` that has a torch-free module
``descriptor.py`` defining ``DESCRIPTOR`` is registered on first use, so adding a network is a
new folder — no edit here or in the CLI, capabilities, preflight or service. Tests (or
plug-ins named in ``TAO_SKILLS_PLUGINS``, :mod:`taoskills.plugins`, loaded after discovery)
may call :func:`register` directly.

Action modules: ``<package>.<action>`` (``deploy_`` prefix removed) with ``run(ctx) -> dict|None``,
where ``ctx`` is an :class:`taoskills.engine.contract.ActionContext`. Spec module:
``<package>.spec`` with ``DEFAULTS`` (dict) and ``SOURCE`` (str naming the TAO Core config).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Lightning precisions that need a CUDA GPU (fp16); on a CPU-only host use 32-true or bf16-mixed.
CPU_BAD_PRECISIONS = ("16-mixed", "16", "16-true")


@dataclass(frozen=True)
class HostInfo:
    """What the launching host offers: ``cuda`` (CUDA available), ``gpus`` (device count),
    ``platform`` (registry name of the platform that runs the job, e.g. ``"local"``),
    ``gpu_memory_gb`` (smallest GPU's memory in GiB, None when unknown)."""

    cuda: bool = False
    gpus: int = 0
    platform: str = "local"
    gpu_memory_gb: float | None = None


#: host rule: (action, spec, host) -> [{"field", "reason", "fix"}] (empty when the job can run).
HostRule = Callable[[str, dict, HostInfo], list[dict[str, str]]]


@dataclass(frozen=True)
class EngineNetwork:
    """Descriptor of one network in the built-in engine.

    ``network``: TAO ``network_arch`` (``"nvdinov2"``). ``display_name``: as TAO prints it in
    status lines (``"NVDINOv2"``). ``actions``: TAO action names implemented. ``package``:
    import path holding one module per action and ``spec``. ``host_rules``: checks run before
    launch (see :func:`standard_train_host_rule`); the engine re-checks at start.
    ``runner``: optional ``(action) -> run`` override (tests register in-process dummies).
    ``requires``: Python modules the actions import (checked on the launching host with
    ``importlib.util.find_spec`` by the platform's host checks; a torch-free fake needs none).
    ``action_requires``: action -> ``(extra modules, what to do when one is missing)`` (DINO's
    TensorRT actions need ``tensorrt``; :mod:`taoskills.engine.tensorrt`).
    """

    network: str
    display_name: str
    actions: tuple[str, ...]
    package: str
    host_rules: tuple[HostRule, ...] = ()
    runner: Callable[[str], Callable[[Any], Any]] | None = None
    requires: tuple[str, ...] = ("torch", "transformers", "pytorch_lightning")
    action_requires: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def modules_for(self, action: str) -> tuple[tuple[str, ...], str | None]:
        """(modules ``action`` imports, the fix for a missing extra one or None)."""
        extra, fix = self.action_requires.get(action, ((), None))
        return self.requires + tuple(m for m in extra if m not in self.requires), fix

    def supports(self, action: str) -> bool:
        return action in self.actions

    def action_fn(self, action: str) -> Callable[[Any], Any]:
        """The ``run(ctx)`` of ``action``; imports torch & co. only when called."""
        if self.runner is not None:
            return self.runner(action)

        def run(ctx: Any) -> Any:
            return importlib.import_module(f"{self.package}.{action.removeprefix('deploy_')}").run(ctx)

        return run

    def spec_defaults(self) -> tuple[dict[str, Any], str]:
        """(DEFAULTS, SOURCE) of ``<package>.spec`` (torch-free)."""
        mod = importlib.import_module(f"{self.package}.spec")
        return mod.DEFAULTS, mod.SOURCE

    def host_issues(self, action: str, spec: dict, host: HostInfo) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for rule in self.host_rules:
            out.extend(rule(action, spec, host))
        return out


_lock = threading.Lock()
_registry: dict[str, EngineNetwork] = {}
_discovered = False


def register(desc: EngineNetwork, *, replace: bool = False) -> EngineNetwork:
    """Add ``desc`` to the registry. Errors: ValueError when the network is already
    registered and ``replace`` is false."""
    with _lock:
        if desc.network in _registry and not replace and _registry[desc.network] is not desc:
            raise ValueError(f"engine network {desc.network!r} is already registered")
        _registry[desc.network] = desc
    return desc


def unregister(network: str) -> None:
    """Remove ``network`` (tests use it to undo a dummy registration)."""
    with _lock:
        _registry.pop(network, None)


def _discover() -> None:
    global _discovered
    from taoskills.plugins import load_plugins

    if _discovered:
        load_plugins()  # cheap when nothing new is listed
        return
    import taoskills.engine as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.ispkg:
            continue
        try:
            m = importlib.import_module(f"{pkg.__name__}.{mod.name}.descriptor")
        except ModuleNotFoundError as exc:
            if exc.name == f"{pkg.__name__}.{mod.name}.descriptor":
                continue
            raise
        desc = getattr(m, "DESCRIPTOR", None)
        if isinstance(desc, EngineNetwork):
            with _lock:
                _registry.setdefault(desc.network, desc)
    _discovered = True
    load_plugins()  # after discovery, so a plug-in may replace a discovered network


def networks() -> dict[str, EngineNetwork]:
    """network_arch -> descriptor, for every registered network (sorted by name)."""
    _discover()
    with _lock:
        return dict(sorted(_registry.items()))


def get(network: str) -> EngineNetwork | None:
    """The descriptor of ``network`` or None."""
    return networks().get(network)


def supports(network: str, action: str) -> bool:
    """True when ``tao-skills-engine <network> <action>`` is implemented (TAO spellings)."""
    desc = get(network)
    return bool(desc and desc.supports(action))


def describe() -> str:
    """One line naming every supported network and its actions, for error messages."""
    return "; ".join(f"{n}: {', '.join(d.actions)}" for n, d in networks().items())


def display_name(network: str) -> str:
    """TAO's display name of ``network`` (the network name itself when unregistered)."""
    desc = get(network)
    return desc.display_name if desc else network


# ----------------------------------------------------------------------------- shared host rules


def standard_train_host_rule(action: str, spec: dict, host: HostInfo) -> list[dict[str, str]]:
    """Host rule shared by Lightning trainers: fp16 needs CUDA; ``train.num_gpus`` ≤ GPUs on
    the host; one node on the local platform. Applies to ``train`` only (source: PyTorch
    Lightning 2.x ``Trainer(precision=, devices=, num_nodes=)``; TAO Core 7.3.0 TrainConfig keys)."""
    if action != "train":
        return []
    train = spec.get("train") or {}
    issues = []
    precision = str(train.get("precision", ""))
    if not host.cuda and precision in CPU_BAD_PRECISIONS:
        issues.append(
            {
                "field": "train.precision",
                "reason": f"{precision} (fp16) needs a CUDA GPU and this host has none",
                "fix": "set train.precision to 32-true or bf16-mixed (or use --profile smoke), or run on a GPU host",
            }
        )
    n, nodes = train.get("num_gpus", 1), train.get("num_nodes", 1)
    if isinstance(n, int) and n > max(host.gpus, 1):
        issues.append(
            {
                "field": "train.num_gpus",
                "reason": f"num_gpus={n} but this host has {host.gpus} CUDA GPU(s)",
                "fix": f"set train.num_gpus to at most {max(host.gpus, 1)} (and gpu_ids to match) or run on a bigger host",
            }
        )
    if host.platform == "local" and isinstance(nodes, int) and nodes > 1:
        issues.append(
            {
                "field": "train.num_nodes",
                "reason": f"num_nodes={nodes}: the local platform runs one node",
                "fix": "set train.num_nodes=1 on the local platform",
            }
        )
    return issues
