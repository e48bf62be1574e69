"""The platform registry: name -> factory of a :class:`~taoskills.platforms.base.Platform`.

``local`` is registered here; other platforms (docker, slurm, kubernetes, ...) are new
modules that call :func:`register` when imported (a plug-in named in ``TAO_SKILLS_PLUGINS``,
:mod:`taoskills.plugins`, or a test). Names announced for a later release but not registered
give NotSupported, any other unknown name NotFound; both name the registered platforms.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taoskills.errors import NotFound
from taoskills.platforms.base import Platform

PlatformFactory = Callable[..., Platform]

#: Platforms announced for a later release (name -> how to say it).


@dataclass(frozen=True)
class PlatformEntry:
    """``name``: registry key. ``factory(**options) -> Platform``. ``description``: one line."""

    name: str
    factory: PlatformFactory
    description: str = ""


_lock = threading.Lock()
_entries: dict[str, PlatformEntry] = {}


def _local_factory(**options: Any) -> Platform:
    from taoskills.platforms.local import LocalPlatform

    return LocalPlatform(**options)


def register(name: str, factory: PlatformFactory, *, description: str = "", replace: bool = False) -> PlatformEntry:
    """Register platform ``name``. Errors: ValueError when it exists and ``replace`` is false."""
    key = name.strip().lower()
    with _lock:
        if key in _entries and not replace:
            raise ValueError(f"platform {key!r} is already registered")
        entry = _entries[key] = PlatformEntry(key, factory, description)
    return entry


def unregister(name: str) -> None:
    """Remove ``name`` (tests undo a dummy registration with it); ``local`` can be removed too."""
    with _lock:
        _entries.pop(name.strip().lower(), None)


def _docker_factory(**options: Any) -> Platform:
    from taoskills.platforms.docker import DockerPlatform

    return DockerPlatform(**options)


def _slurm_factory(**options: Any) -> Platform:
    from taoskills.platforms.slurm import SlurmPlatform

    return SlurmPlatform(**options)


def _kubernetes_factory(**options: Any) -> Platform:
    from taoskills.platforms.kubernetes import KubernetesPlatform

    return KubernetesPlatform(**options)


register("local", _local_factory, description="runs the runner script as a process group on this host")
register("docker", _docker_factory, description="one hardened container per job on a Docker daemon (docker SDK)")
register("slurm", _slurm_factory, description="runs jobs as SLURM batch jobs (sbatch/srun; Pyxis containers when configured)")
register(
    "kubernetes",
    _kubernetes_factory,
    description="runs jobs as Kubernetes Indexed Jobs (official client; PVC for data and results)",
)


def entries() -> dict[str, PlatformEntry]:
    """name -> entry for every registered platform (plug-ins loaded first), sorted by name."""
    from taoskills.plugins import load_plugins

    load_plugins()
    with _lock:
        return dict(sorted(_entries.items()))


def names() -> list[str]:
    """Registered platform names, ``local`` first."""
    return sorted(entries(), key=lambda n: (n != "local", n))


def get_platform(name: str, **options: Any) -> Platform:
    """The platform called ``name``; ``options`` go to its factory.

    Errors: NotFound for an unknown name (``fix`` names the registered platforms).
    """
    key = (name or "").strip().lower()
    entry = entries().get(key)
    if entry is not None:
        return entry.factory(**options)
    have = ", ".join(names())
    raise NotFound(f"unknown platform {name!r}", field="platform", fix=f"use one of the registered platforms: {have}")
