"""Layout of the built-in engine: each network package (``engine/<network>/``) imports only
its own modules and the engine-wide ones (``taoskills.engine.common``, ``lightning``, ``contract``
...), never another network's, so networks can be added, changed or removed one at a time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import taoskills.engine

ENGINE = Path(taoskills.engine.__file__).parent
NETWORKS = sorted(p.name for p in ENGINE.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _engine_imports(path: Path) -> set[str]:
    """Network packages a module imports (absolute ``taoskills.engine.<net>`` or relative ``..<net>``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level >= 2 and node.module:  # from ..dino import x
                names = [f"taoskills.engine.{node.module}"]
            elif node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["taoskills", "engine"] and len(parts) > 2 and parts[2] in NETWORKS:
                found.add(parts[2])
    return found


def test_networks_are_found():
    assert {"nvdinov2", "mae", "dino", "grounding_dino"} <= set(NETWORKS)


def test_no_network_imports_another_network():
    crossed = {}
    for net in NETWORKS:
        for module in sorted((ENGINE / net).rglob("*.py")):
            other = _engine_imports(module) - {net}
            if other:
                crossed[str(module.relative_to(ENGINE))] = sorted(other)
    assert crossed == {}, f"move shared helpers to taoskills.engine.common: {crossed}"


@pytest.mark.torch  # the MAE modules import torch
def test_shared_helpers_live_in_engine_common():
    from taoskills.engine import common
    from taoskills.engine.mae import common as mae_common
    from taoskills.engine.mae import data as mae_data

    assert mae_data.list_images is common.list_images and mae_data.check_readable is common.check_readable
    assert mae_common.pick_device is common.pick_device
