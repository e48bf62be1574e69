"""Platforms: where a job's runner script runs (local, slurm, kubernetes; docker later).

Use :func:`get_platform` (registry, :mod:`taoskills.platforms.registry`) and the
:class:`Platform` protocol. Runtime engines (built-in vs TAO) are in
:mod:`taoskills.platforms.engines`; "where can this run" in :mod:`taoskills.platforms.placement`.
"""

from taoskills.platforms.base import Platform, PlatformState, compile_grep, read_log
from taoskills.platforms.local import LocalPlatform
from taoskills.platforms.registry import get_platform

__all__ = ["LocalPlatform", "Platform", "PlatformState", "compile_grep", "get_platform", "read_log"]
