"""CLI output a person can read: ✓/✗ lines for route, build, preflight and status; ``--json``
everywhere; full job ids and unique prefixes; ``jobs logs -f`` and ``jobs wait``; fixes in CLI
syntax (taoskills.surfaces.cli_render). Commands run as subprocesses (``python -m
taoskills.surfaces.cli``); jobs run the torch-free fake NVDINOv2 (tests/fake_engine.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.surfaces.cli_render import follow_logs, to_cli

SKILL = "tao-train-nvdinov2"


def cli(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run(
        [sys.executable, "-m", "taoskills.surfaces.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("data")
    write_tiny_images(root / "images_train", n=8)
    return root


def test_tool_syntax_fixes_become_cli_flags():
    assert to_cli("pass automl_policy='off' or say 'plain training'") == "pass --automl-policy off or say 'plain training'"
    assert to_cli("pass data_sources={'train_datasets': '/data/x'}") == "pass -d train_datasets=/data/x"
    assert to_cli("set shorthand={'num_epochs': 5}") == "set -k num_epochs=5"
    assert to_cli("poll job_status('job-1') again") == "poll tao-skills jobs status job-1 again"
    assert to_cli("resolve_checkpoint('job-1', 'inference')") == "tao-skills checkpoints job-1 --for inference"
    assert to_cli("launch with parent_job_id='job-1'") == "launch with --parent job-1"
    assert to_cli("or override train.num_epochs") == "or -s train.num_epochs=VALUE"
    assert to_cli("run list_jobs (CLI: tao-skills jobs list) to see") == "run tao-skills jobs list to see"


def test_follow_logs_prints_each_line_once_as_the_window_slides():
    log = [f"line {i}" for i in range(3)]
    printed: list[str] = []
    state = {"n": 0}

    def read() -> str:
        state["n"] += 1
        log.extend(f"line {len(log)}" for _ in range(4))
        return "\n".join(log[-5:]) + "\n"  # a 5-line tail window over a growing log

    follow_logs(read, lambda: state["n"] >= 3, lambda t: printed.extend(t.splitlines()), poll_s=0)
    assert printed[-1] == log[-1] and len(printed) == len(set(printed))
    assert printed == [f"line {i}" for i in range(int(printed[0].split()[1]), len(log))]


def test_route_build_preflight_are_compact(home, photos, tmp_path, fake_engine):
    route = cli("route", "train NVDINOv2 on my photos, plain training").stdout
    assert route.splitlines()[0].startswith(f"✓ {SKILL} train") and "automl_policy: off" in route
    assert json.loads(cli("route", "train NVDINOv2", "--json").stdout)["skill"] == SKILL
    spec = tmp_path / "spec.yaml"
    built = cli("spec", "build", SKILL, "train", "--profile", "smoke", "-d", f"train_datasets={photos}", "-o", str(spec))
    assert "✓ spec valid" in built.stderr
    pre = cli("preflight", SKILL, "train", str(spec), "--engine", "builtin").stdout.splitlines()
    assert pre[-1] == "✓ preflight passed"
    assert all(line[0] in "✓✗!" or line.startswith("    fix: ") for line in pre) and len(pre) < 20
    assert json.loads(cli("preflight", SKILL, "train", str(spec), "--engine", "builtin", "--json").stdout)["ok"] is True
    assert "train" in json.loads(cli("spec", "template", SKILL, "train", "--json").stdout)


def test_refusal_fix_is_written_in_cli_syntax(home, photos, fake_engine):
    proc = cli("run", SKILL, "train", "--automl-policy", "off", check=2)  # no data source given
    assert "-d train_datasets=" in proc.stderr and "data_sources={" not in proc.stderr


def test_job_ids_prefixes_wait_and_logs_follow(home, photos, fake_engine):
    overrides = [f"{k}={v}" for k, v in TINY_TRAIN_OVERRIDES.items()]
    sets = [a for kv in overrides for a in ("-s", kv)]
    launched = cli("run", SKILL, "train", "--automl-policy", "off", "--profile", "smoke", "-d",
                   f"train_datasets={photos}", *sets, "--no-follow", "--json")  # fmt: skip
    job_id = json.loads(launched.stdout)["job_id"]
    prefix = job_id[:9]
    waited = cli("jobs", "wait", prefix).stdout
    assert waited.splitlines()[-1].startswith("  next:") and f"✓ {job_id}  {SKILL} train  COMPLETE" in waited
    assert "tao-skills checkpoints" in waited or "--parent" in waited  # next step in CLI syntax
    follow = cli("jobs", "logs", prefix, "-f").stdout
    assert follow.count("job finished with exit code 0") == 1
    assert json.loads(cli("jobs", "logs", prefix, "--json").stdout)["job_id"] == job_id
    assert json.loads(cli("jobs", "status", prefix, "--json").stdout)["status"] == "COMPLETE"
    assert job_id in cli("jobs", "list").stdout  # the whole id, not cut
    missing = cli("jobs", "status", "job-zzzz", check=2)
    assert "tao-skills jobs list" in missing.stderr
