"""What the built-in engine can run (importable without torch).

The runtime asks :func:`supports` before it picks the built-in engine for a job; anything
not listed here must run on the TAO engine (container or installed TAO CLI).
"""

from __future__ import annotations

#: network_arch -> actions the built-in engine implements (TAO action names).
SUPPORTED: dict[str, tuple[str, ...]] = {"nvdinov2": ("train", "inference", "export")}


def supports(network: str, action: str) -> bool:
    """True when ``tao-skills-engine <network> <action>`` is implemented.

    Names are compared as TAO spells them (lower case, e.g. ``"nvdinov2"``, ``"train"``).
    """
    return action in SUPPORTED.get(network, ())


def describe() -> str:
    """One line naming every supported network and its actions, for error messages."""
    return "; ".join(f"{net}: {', '.join(acts)}" for net, acts in sorted(SUPPORTED.items()))
