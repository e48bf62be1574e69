"""Where things live: the skill bank and the runtime's home (job store, workspaces)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def skills_dir() -> Path:
    """The skill bank folder.

    Order: ``$TAO_SKILLS_DIR``; the repository's ``skills/`` (editable install or checkout);
    the copy packaged in the wheel as ``taoskills/_skills`` (``pip``/``pipx``/``uvx`` install,
    copied there by the build hook in setup.py); ``<prefix>/share/tao-skills/skills``.
    """
    env = os.environ.get("TAO_SKILLS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2] / "skills"
    if repo.is_dir():
        return repo
    packaged = Path(__file__).resolve().parent / "_skills"
    if packaged.is_dir():
        return packaged
    return Path(sys.prefix) / "share" / "tao-skills" / "skills"


def home_dir() -> Path:
    """Runtime state: ``$TAO_SKILLS_HOME`` or ``~/.tao-skills`` (job store, workspaces, staging cache)."""
    env = os.environ.get("TAO_SKILLS_HOME")
    path = Path(env).expanduser() if env else Path.home() / ".tao-skills"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
