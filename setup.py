"""Build hook: the skill bank ships inside the wheel as ``taoskills/_skills``.

Everything else about the package is declared in pyproject.toml. ``build_py`` copies the
repository's ``skills/`` folder into the built package so that ``pip install``, ``pipx`` and
``uvx tao-skills serve`` work with no checkout (``taoskills.paths.skills_dir`` falls back to
the packaged copy).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithSkills(build_py):
    """``build_py`` plus a copy of ``skills/`` into ``<build_lib>/taoskills/_skills``."""

    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "skills"
        if not src.is_dir():  # building from an sdist that lacks it: fail loudly, not silently
            raise SystemExit(f"setup.py: skill bank folder missing: {src}")
        dst = Path(self.build_lib) / "taoskills" / "_skills"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithSkills})
