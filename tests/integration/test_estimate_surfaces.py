"""``estimate`` through the service, the CLI and the MCP server, and launch_job's use of it: the
reply carries the estimate, and a run that would not fit the free disk is refused up front with
the fix and nothing launched. Jobs run the torch-free fake NVDINOv2 (tests/fake_engine.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from mcp import Client

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills import service_estimate
from taoskills.errors import NotSupported, PreflightError
from taoskills.service import Service
from taoskills.surfaces.mcp import build_server

SKILL = "tao-train-nvdinov2"


@pytest.fixture()
def svc(home, fake_engine):
    return Service(home=home)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("data")
    write_tiny_images(root / "images_train", n=8)
    return root


def _request(photos) -> dict:
    return dict(profile="smoke", data_sources={"train_datasets": str(photos)}, overrides=TINY_TRAIN_OVERRIDES)


def test_estimate_counts_the_data_source_and_launch_reply_carries_it(svc, photos):
    est = svc.estimate(SKILL, "train", **_request(photos))
    assert est.images == 8 and est.steps_per_epoch == 2 and est.steps == 2  # 8 images, batch 4, 1 epoch
    assert est.disk["lean_checkpoints"] is True  # the smoke profile's smoke_env
    assert est.fits and est.free_disk_gb is not None and est.free_disk_gb > 0
    assert svc.store.list() == []  # nothing launched
    handle = svc.launch_job(SKILL, "train", automl_policy="off", **_request(photos))
    assert handle.estimate is not None and handle.estimate["steps"] == 2 and handle.estimate["fits"]
    assert svc.wait_job(handle.job_id, timeout_s=60, poll_s=0.2).status == "COMPLETE"


def test_run_that_exceeds_free_disk_is_refused_with_the_fix_and_nothing_launched(svc, photos, monkeypatch):
    monkeypatch.setattr(service_estimate, "_free_disk_gb", lambda path: 0.001)
    with pytest.raises(PreflightError) as exc:
        svc.launch_job(SKILL, "train", automl_policy="off", **_request(photos))
    assert exc.value.field == "train.checkpoint_interval"
    assert "checkpoint_interval" in exc.value.fix and "another host" in exc.value.fix
    assert exc.value.details["estimate"]["fits"] is False
    assert svc.store.list() == []
    jobs = svc.home / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []


@pytest.mark.torch  # placement needs the built-in engine's libraries before the estimate is reached
def test_actions_without_a_table_say_so(svc):
    with pytest.raises(NotSupported) as exc:
        svc.estimate("tao-train-dino", "export", parent_job_id="job-none")
    assert "throughput table" in exc.value.message and exc.value.fix


@pytest.mark.torch  # placement needs the built-in engine's libraries before the estimate is reached
def test_dino_estimate_of_the_demo_config_counts_the_coco_images(svc, tmp_path):
    from taoskills.data.sample_data import DETECTION_CLASSES, write_sample_detection
    from taoskills.surfaces.demo import DINO_DEMO

    root = tmp_path / "dino"
    write_sample_detection(root, n=12, size=128)
    overrides = {**DINO_DEMO, "dataset.num_classes": len(DETECTION_CLASSES) + 1, "train.num_epochs": 2}
    est = svc.estimate("tao-train-dino", "train", data_sources={"train_datasets": str(root)}, overrides=overrides)
    assert est.images == 12 and est.steps_per_epoch == 3 and est.steps == 6  # batch 4, COCO images
    assert est.measured and est.wall_time_s and est.disk["per_save_mb"] > 100 and est.fits
    other = svc.estimate(
        "tao-train-dino",
        "train",
        data_sources={"train_datasets": str(root)},
        overrides={**overrides, "model.backbone": "resnet_50"},
    )
    assert not other.measured and other.wall_time_s is None and any("resnet_50" in n for n in other.notes)


def test_cli_estimate_prints_lines_and_json(svc, photos):
    env = {**os.environ, "COLUMNS": "120"}
    args = [sys.executable, "-m", "taoskills.surfaces.cli", "estimate", SKILL, "train", "--profile", "smoke"]
    args += ["-d", f"train_datasets={photos}"] + [f"--set={k}={v}" for k, v in TINY_TRAIN_OVERRIDES.items()]
    text = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "8 images, 2 steps" in text.stdout and "disk" in text.stdout and "✓ fits" in text.stdout
    js = subprocess.run([*args, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(js.stdout)["steps"] == 2


def test_mcp_estimate_tool(svc, photos):
    async def scenario():
        async with Client(build_server(svc)) as client:
            res = await client.call_tool("estimate", {"skill": SKILL, "action": "train", **_request(photos)})
            bad = await client.call_tool("estimate", {"skill": "tao-train-dino", "action": "export", "parent_job_id": "job-none"})
            return res, bad

    res, bad = asyncio.run(scenario())
    assert not res.is_error and res.structured_content["steps"] == 2
    assert res.structured_content["disk"]["final_mb"] > 0
    assert bad.is_error and json.loads(bad.content[0].text)["error"] == "not_supported"
