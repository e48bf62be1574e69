"""Plug-ins: modules named in ``TAO_SKILLS_PLUGINS`` that register engines or platforms.

``TAO_SKILLS_PLUGINS`` is a comma-separated list of importable module names. Each is imported
once, the first time any registry is read (engine networks :mod:`taoskills.engine.registry`,
runtime engines :mod:`taoskills.platforms.engines`, platforms
:mod:`taoskills.platforms.registry`); importing it is expected to call their ``register``
functions. Child processes (runner scripts, the engine CLI) inherit the variable, so a
plug-in is seen by every process of a job. Errors: ImportError names the variable.
"""

from __future__ import annotations

import importlib
import os
import threading

ENV = "TAO_SKILLS_PLUGINS"

_lock = threading.RLock()
_loaded: set[str] = set()


def plugin_names() -> list[str]:
    """Module names listed in ``TAO_SKILLS_PLUGINS`` (empty entries dropped)."""
    return [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]


def load_plugins() -> list[str]:
    """Import every module in ``TAO_SKILLS_PLUGINS`` not imported yet; returns those imported now."""
    new: list[str] = []
    with _lock:
        for name in plugin_names():
            if name in _loaded:
                continue
            _loaded.add(name)
            try:
                importlib.import_module(name)
            except ImportError as exc:
                _loaded.discard(name)
                raise ImportError(f"{ENV} names {name!r}, which cannot be imported: {exc}") from exc
            new.append(name)
    return new
