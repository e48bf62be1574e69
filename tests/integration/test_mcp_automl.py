"""The AutoML MCP tools over stdio (fake TAO entrypoint): start -> status (trials, pruned,
progress) -> best -> report -> cancel; an agent-driven run with suggest/tell; errors in the
server's JSON shape with a fix."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from mcp import Client, StdioServerParameters  # noqa: E402

from automl_helpers import LR, SEARCH, SKILL, install_fake_engine  # noqa: E402
from engine_settings import TINY_TRAIN_OVERRIDES  # noqa: E402


def _params(tmp: Path) -> StdioServerParameters:
    env = {
        "TAO_SKILLS_HOME": str(tmp / "home"),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "TAO_SKILLS_FAKE_EPOCH_S": "0.02",
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "taoskills.surfaces.mcp"], env=env)


async def _call(client, tool, **args):
    res = await client.call_tool(tool, args)
    assert not res.is_error, res.content[0].text
    return res.structured_content


def test_automl_tools_end_to_end(tmp_path):
    from taoskills.data.sample_data import write_sample_images

    install_fake_engine(tmp_path / "bin")
    write_sample_images(tmp_path / "data" / "images_train", n=8)
    common = dict(
        skill=SKILL,
        data_sources={"train_datasets": str(tmp_path / "data")},
        overrides=TINY_TRAIN_OVERRIDES,
        profile="smoke",
        engine="tao",
        parameters=SEARCH,
    )

    async def scenario():
        async with Client(_params(tmp_path)) as client:
            bad = await client.call_tool("automl_start", {**common, "algorithm": "annealing"})
            err = json.loads(bad.content[0].text)
            assert bad.is_error and err["field"] == "algorithm" and "bohb" in err["fix"]

            run = await _call(client, "automl_start", **common, algorithm="hyperband", max_trials=5, max_epochs=9, seed=2)
            assert run["automl_policy"] == "on"
            deadline = time.monotonic() + 180
            while True:
                st = await _call(client, "automl_status", run=run["job_id"])
                if st["status"] in ("COMPLETE", "ERROR", "CANCELED") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert st["status"] == "COMPLETE"
            c = st["counts"]
            assert c["trials"] == 5 and c["complete"] + c["pruned"] == 5 and c["progress"] == 1.0 and c["pruned"] >= 1
            best = await _call(client, "automl_best", run=run["job_id"])
            assert best["metric_name"] == "train_loss" and best["best"]["score"] == c["best"]["value"]
            report = await _call(client, "automl_report", run=run["job_id"])
            assert "AutoML report" in report["markdown"] and report["plots"]
            ck = await _call(client, "resolve_checkpoint", job_id=run["job_id"], for_action="inference")
            assert ck["path"] == best["best"]["checkpoint_uri"]
            assert (await _call(client, "automl_cancel", run=run["job_id"]))["status"] == "COMPLETE"

            agent = await _call(client, "automl_start", **common, algorithm="tpe", max_epochs=2, agent_driven=True)
            sug = await _call(client, "automl_suggest", run=agent["job_id"], params={LR: 1e-4, "dataset.batch_size": 4})
            assert sug["values"][LR] == pytest.approx(1e-4)
            told = await _call(client, "automl_tell", run=agent["job_id"], trial_number=sug["trial_number"], value=0.3)
            assert told["complete"] == 1 and told["best"]["value"] == 0.3
            again = await client.call_tool(
                "automl_tell", {"run": agent["job_id"], "trial_number": sug["trial_number"], "value": 0.1}
            )
            assert again.is_error and json.loads(again.content[0].text)["field"] == "trial_number"

    asyncio.run(scenario())


def test_train_nvdinov2_on_these_photos_over_mcp_runs_automl(tmp_path):
    """No policy words: route_request -> launch_job starts AutoML; the run ends with a best_rec."""
    from taoskills.data.sample_data import write_sample_images

    install_fake_engine(tmp_path / "bin")
    write_sample_images(tmp_path / "data" / "images_train", n=8)
    text = "train NVDINOv2 on these photos"

    async def scenario():
        async with Client(_params(tmp_path)) as client:
            route = await _call(client, "route_request", text=text)
            assert route["skill"] == SKILL and route["automl_policy"]["policy"] == "on"
            handle = await _call(
                client,
                "launch_job",
                skill=route["skill"],
                action=route["action"],
                request_text=text,
                data_sources={"train_datasets": str(tmp_path / "data")},
                overrides=TINY_TRAIN_OVERRIDES,
                profile="smoke",
                engine="tao",
                automl={"algorithm": "tpe_asha", "max_trials": 4, "max_epochs": 3, "parameters": SEARCH, "poll_s": 0.1},
            )
            assert handle["automl_policy"] == "on"
            deadline = time.monotonic() + 180
            while (st := await _call(client, "job_status", job_id=handle["job_id"]))["status"] not in ("COMPLETE", "ERROR"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.5)
            trials = (await _call(client, "automl_status", run=handle["job_id"]))["trials"]
            assert st["status"] == "COMPLETE" and "train_loss" in st["kpis"], trials
            best = await _call(client, "automl_best", run=handle["job_id"])
            assert best["best"]["score"] == pytest.approx(st["kpis"]["train_loss"])

    asyncio.run(scenario())
