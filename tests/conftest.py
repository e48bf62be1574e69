"""Fixtures shared by the job-layer tests: a private runtime home and a job store in it."""

from __future__ import annotations

import pytest

from taoskills.jobs.store import JobStore


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
