"""Platforms: where a job's runner script runs (local now; docker, slurm, kubernetes later).

Use :func:`get_platform` ("local") and the :class:`Platform` protocol.
"""

from taoskills.platforms.base import Platform, PlatformState, compile_grep, get_platform, read_log
from taoskills.platforms.local import LocalPlatform

__all__ = ["LocalPlatform", "Platform", "PlatformState", "compile_grep", "get_platform", "read_log"]
