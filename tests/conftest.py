"""Fixtures shared by the tests: a private runtime home, a job store in it, and the fake engine.

``fake_engine``: the torch-free NVDINOv2 of tests/fake_engine.py, in this process and (through
``TAO_SKILLS_PLUGINS`` and ``PYTHONPATH``) in every child process a job or CLI call starts.

Marker ``torch``: the test (or its whole module, ``pytestmark = pytest.mark.torch``) needs the
engine extra (torch, transformers, Lightning, NumPy, ...). ``-m "not torch"`` deselects them,
and a module marked that way at module level is not even imported then (it may import torch
at the top), so the torch-free CI step can run everything else.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from taoskills.jobs.store import JobStore

TESTS_DIR = Path(__file__).resolve().parent
# Test modules live in unit/, integration/ and e2e/; the shared helpers (fake_engine, automl_helpers,
# docker_support, ...) stay here, importable from every folder.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
_TORCH_MODULE = re.compile(r"^pytestmark\s*=.*pytest\.mark\.torch", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    expr = (config.getoption("markexpr") or "").replace(" ", "")
    if "nottorch" not in expr or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    text = collection_path.read_text(encoding="utf-8")
    return True if _TORCH_MODULE.search(text) else None


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """``TAO_SKILLS_HOME`` in a tmp folder (never the user's ~/.tao-skills)."""
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def store(home):
    s = JobStore()
    yield s
    s.close()


@pytest.fixture()
def fake_engine(monkeypatch):
    """The fake NVDINOv2 (tests/fake_engine.py) here and in child processes; real one restored after."""
    import fake_engine as fe

    fe.install()
    monkeypatch.setenv("TAO_SKILLS_PLUGINS", "fake_engine")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p))
    yield fe
    fe.uninstall()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node SLURM cluster for the session (tests/slurm_cluster.py); fails, never skips."""
    import slurm_cluster as sc

    cluster = sc.start(tmp_path_factory.mktemp("slurm"))
    yield cluster
    sc.stop(cluster)
