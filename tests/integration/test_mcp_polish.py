"""MCP polish: workflow prompts, the blocking ``wait_job`` tool with progress notifications,
enums in tool input schemas, job-id prefixes, and preflight's credential check (names only).

In-process MCP SDK client over :func:`taoskills.surfaces.mcp.build_server`; jobs run the
torch-free fake NVDINOv2 (tests/fake_engine.py) through the real runner script and platform.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from mcp import Client

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.errors import NotFound
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


def test_workflow_prompts_name_the_data_source_roles(svc):
    async def scenario():
        async with Client(build_server(svc)) as client:
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            assert set(prompts) == {
                "tao-train-nvdinov2-workflow",
                "tao-train-dino-workflow",
                "tao-train-grounding-dino-workflow",
                "tao-train-mask-auto-encoder-workflow",
            }
            nv = (await client.get_prompt("tao-train-nvdinov2-workflow", {"goal": "embed my photos"})).messages[0].content.text
            assert "train -> inference -> export" in nv and "embed my photos" in nv
            assert "`train_datasets` -> dataset.train_dataset.images_dir" in nv and "`inference_dataset`" in nv
            dino = (await client.get_prompt("tao-train-dino-workflow")).messages[0].content.text
            assert "train -> evaluate -> inference -> export" in dino and "`eval_dataset`" in dino
            mae = (await client.get_prompt("tao-train-mask-auto-encoder-workflow")).messages[0].content.text
            assert "`eval_dataset` (optional)" in mae  # MAE pretraining has no val split

    asyncio.run(scenario())


def test_tool_inputs_use_enums(svc):
    async def scenario():
        async with Client(build_server(svc)) as client:
            tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
            return tools

    tools = asyncio.run(scenario())

    def enum(schema: dict, prop: str) -> list:
        node = schema["properties"][prop]
        for alt in node.get("anyOf", [node]):
            if "enum" in alt:
                return alt["enum"]
            if "const" in alt:  # a one-value enum is written as const
                return [alt["const"]]
        raise AssertionError(f"{prop} has no enum: {node}")

    launch = tools["launch_job"]
    assert enum(launch, "automl_policy") == ["on", "off", "auto"]
    assert enum(launch, "profile") == ["smoke"]
    assert {"auto", "builtin", "tao"} <= set(enum(launch, "engine"))
    assert "local" in enum(launch, "platform")
    for tool in ("preflight", "render_runner"):
        assert "builtin" in enum(tools[tool], "engine") and "local" in enum(tools[tool], "platform")
    assert enum(tools["route_request"], "automl_policy") == ["on", "off", "auto"]
    assert "wait_job" in tools


def test_wait_job_blocks_with_progress_and_takes_a_prefix(svc, photos, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_FAKE_ENGINE_EPOCH_S", "0.5")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async def scenario():
        async with Client(build_server(svc)) as client:
            res = await client.call_tool(
                "launch_job",
                {
                    "skill": SKILL,
                    "action": "train",
                    "profile": "smoke",
                    "automl_policy": "off",
                    "overrides": {**TINY_TRAIN_OVERRIDES, "train.num_epochs": 2},
                    "data_sources": {"train_datasets": str(photos)},
                },
            )
            assert not res.is_error, res.content[0].text
            job_id = res.structured_content["job_id"]
            done = await client.call_tool(
                "wait_job", {"job_id": job_id[:10], "poll_s": 0.3, "timeout_s": 120}, progress_callback=on_progress
            )
            assert not done.is_error, done.content[0].text
            return job_id, done.structured_content

    job_id, status = asyncio.run(scenario())
    assert status["job_id"] == job_id and status["status"] == "COMPLETE"
    assert progress and progress[-1][2].startswith("COMPLETE")
    assert progress[-1][1] == 2.0 and progress[-1][0] == 2.0


def test_job_id_prefixes_resolve_or_say_which(svc, store):
    from taoskills.jobs.store import JobRecord

    for jid in ("job-aaaa11110000", "job-aaaa22220000"):
        store.create(JobRecord(job_id=jid, skill=SKILL, action="train"))
    assert svc.resolve_job_id("job-aaaa1") == "job-aaaa11110000"
    assert svc.resolve_job_id("aaaa2") == "job-aaaa22220000"  # the job- part may be left out
    with pytest.raises(NotFound) as exc:
        svc.resolve_job_id("job-aaaa")
    assert "job-aaaa11110000" in exc.value.fix and "job-aaaa22220000" in exc.value.fix
    with pytest.raises(NotFound):
        svc.resolve_job_id("job-zzzz")


def test_preflight_checks_credentials_by_name_only(svc, photos, monkeypatch):
    built = svc.build_spec(SKILL, "train", profile="smoke", data_sources={"train_datasets": str(photos)})
    spec = {**built.spec, "encryption_key": "${oc.env:TAO_TEST_SECRET_KEY}"}
    monkeypatch.delenv("TAO_TEST_SECRET_KEY", raising=False)
    report = svc.preflight(SKILL, "train", spec, engine="builtin")
    cred = [c for c in report.checks if c.name == "credentials.present"]
    assert [(c.field, c.ok) for c in cred] == [("TAO_TEST_SECRET_KEY", False)] and not report.ok
    assert "export TAO_TEST_SECRET_KEY" in cred[0].fix
    monkeypatch.setenv("TAO_TEST_SECRET_KEY", "s3cr3t-value-xyz")
    report = svc.preflight(SKILL, "train", spec, engine="builtin")
    assert [c.ok for c in report.checks if c.name == "credentials.present"] == [True]
    assert "s3cr3t-value-xyz" not in json.dumps(report.model_dump(), default=str)
