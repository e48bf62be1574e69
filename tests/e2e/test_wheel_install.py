"""The wheel carries the skill bank: build it, install it in a fresh venv, use it with no checkout.

The wheel is built from a copy of the packaging inputs (pyproject.toml, setup.py, README,
``runtime/``, ``skills/``) with ``pip wheel --no-build-isolation`` (no network). The fresh venv
gets the wheel with ``--no-deps --ignore-installed`` (pip never touches another environment); its base dependencies come from this interpreter's
site-packages through a ``.pth`` file (never the editable ``taoskills``: a ``.pth``'s own path
entries do not process the ``.pth`` files inside them, and the venv's site-packages comes first).
From a folder with no checkout: ``tao-skills skills list`` shows the five skills, and the MCP
server (``tao-skills serve`` over stdio, driven by the MCP SDK client) answers ``list_skills``
and reads a ``skill://`` resource.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parents[2]
FIVE = {
    "tao-run-automl",
    "tao-train-dino",
    "tao-train-grounding-dino",
    "tao-train-mask-auto-encoder",
    "tao-train-nvdinov2",
}
pytestmark = pytest.mark.slow  # builds and installs a wheel: ~20-40 s on 2 cores


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (where the base dependencies are installed)."""
    dirs = [p for p in sys.path if p.rstrip("/").endswith("site-packages") and Path(p).is_dir()]
    for d in dirs:
        assert not (Path(d) / "taoskills").is_dir(), f"a non-editable taoskills in {d} would shadow the wheel"
    return dirs


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("runtime", "skills"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("tao_skills-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    Path(site, "zz_base_deps.pth").write_text("\n".join(_site_dirs()) + "\n")
    subprocess.run(
        [*pip, "--python", str(py), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], check=True
    )
    empty = tmp / "elsewhere"
    empty.mkdir()
    return venv, empty


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TAO_SKILLS_DIR", "VIRTUAL_ENV")}
    env["TAO_SKILLS_HOME"] = str(tmp / "home")
    return env


def test_wheel_holds_the_skill_bank(wheel_venv):
    venv, empty = wheel_venv
    env = _env(empty)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import taoskills, taoskills.paths as p; print(taoskills.__file__); print(p.skills_dir())"],
        cwd=empty, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(venv), f"taoskills imported from {where[0]}, not the wheel"
    assert Path(where[1]) == Path(where[0]).parent / "_skills"

    version = subprocess.run([str(venv / "bin" / "tao-skills"), "--version"], cwd=empty, env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    assert version.startswith("tao-skills 0.") and "_skills" in version

    listed = subprocess.run([str(venv / "bin" / "tao-skills"), "skills", "list", "--json"], cwd=empty, env=env,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert {s["name"] for s in json.loads(listed)} == FIVE


def test_wheel_mcp_server_lists_skills_and_reads_resources(wheel_venv):
    venv, empty = wheel_venv
    params = StdioServerParameters(command=str(venv / "bin" / "tao-skills"), args=["serve"], env=_env(empty), cwd=str(empty))

    async def scenario():
        async with Client(params) as client:
            res = await client.call_tool("list_skills", {})
            assert not res.is_error
            assert {s["name"] for s in res.structured_content["skills"]} == FIVE
            body = (await client.read_resource("skill://tao-train-nvdinov2/SKILL.md")).contents[0].text
            assert body.startswith("---") and "name: tao-train-nvdinov2" in body

    asyncio.run(scenario())
