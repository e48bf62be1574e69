"""What the built-in engine can run (importable without torch): a view over
:mod:`taoskills.engine.registry`, kept for callers that ask by network and action.

The runtime asks :func:`supports` before it picks the built-in engine for a job; anything
not registered must run on the TAO engine (container or installed TAO CLI).
"""

from __future__ import annotations

from taoskills.engine.registry import CPU_BAD_PRECISIONS, HostInfo, describe, get, networks, supports

__all__ = ["CPU_BAD_PRECISIONS", "describe", "host_issues", "supported", "supports"]


def supported() -> dict[str, tuple[str, ...]]:
    """network_arch -> actions the built-in engine implements (TAO action names)."""
    return {n: d.actions for n, d in networks().items()}


def host_issues(network: str, action: str, spec: dict, *, cuda: bool, gpus: int, platform: str = "local") -> list[dict[str, str]]:
    """Spec values the built-in engine cannot honour on this host, found before launch.

    Returns ``[{"field", "reason", "fix"}]`` (empty when the job can run). ``cuda``/``gpus``:
    whether CUDA is available and how many devices. The rules are the network descriptor's
    ``host_rules`` (registry); the engine re-checks the same rules when it starts.
    """
    desc = get(network)
    if desc is None:
        return []
    return desc.host_issues(action, spec, HostInfo(cuda=cuda, gpus=gpus, platform=platform))
