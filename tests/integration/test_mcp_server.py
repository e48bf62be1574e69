"""The MCP server driven by the MCP Python SDK client over real transports.

stdio: ``python -m taoskills.surfaces.mcp`` as a subprocess with ``TAO_SKILLS_HOME`` in a tmp
dir. The main chain runs NVDINOv2 train, then inference and ONNX export from the train job, on
the fake torch-free engine (tests/fake_engine.py: real runner script, platform and engine CLI). Also: JSON error replies with a
``fix``, skill files as resources (and reads outside a skill refused), tool annotations,
streamable HTTP on 127.0.0.1, and the refusal of non-loopback HTTP hosts.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from engine_settings import TINY_TRAIN_OVERRIDES
from taoskills.surfaces.mcp_automl import AUTOML_TOOLS
from taoskills.surfaces.mcp_estimate import ESTIMATE_TOOLS

SKILL = "tao-train-nvdinov2"
TERMINAL = {"COMPLETE", "ERROR", "CANCELED"}
EXPECTED_TOOLS = {
    "ping",
    "list_skills",
    "get_skill",
    "route_request",
    "get_spec_template",
    "build_spec",
    "validate_spec",
    "preflight",
    "render_runner",
    "launch_job",
    "job_status",
    "job_logs",
    "cancel_job",
    "list_jobs",
    "plot_job",
    "resolve_checkpoint",
    "wait_job",
}


def _params(home: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "taoskills.surfaces.mcp"],
        env={
            "TAO_SKILLS_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            **{
                k: os.environ[k]
                for k in ("TAO_SKILLS_PLUGINS", "PYTHONPATH", "TAO_SKILLS_FAKE_ENGINE_EPOCH_S")
                if k in os.environ
            },
        },
    )


def run(coro):
    return asyncio.run(coro)


async def call(client: Client, tool: str, **args) -> dict:
    """Call a tool that must succeed; returns its structured content."""
    res = await client.call_tool(tool, args)
    assert not res.is_error, f"{tool} failed: {res.content[0].text if res.content else res}"
    assert res.structured_content is not None, f"{tool} returned no structured content"
    return res.structured_content


async def call_error(client: Client, tool: str, **args) -> dict:
    """Call a tool that must fail; returns the parsed JSON error reply."""
    res = await client.call_tool(tool, args)
    assert res.is_error, f"{tool} unexpectedly succeeded: {res.structured_content}"
    payload = json.loads(res.content[0].text)
    assert payload["message"] and payload["fix"], payload  # every error says what to do next
    assert "Traceback" not in res.content[0].text
    return payload


async def wait_terminal(client: Client, job_id: str, timeout: float = 420.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await call(client, "job_status", job_id=job_id)
        if status["status"] in TERMINAL:
            return status
        assert time.monotonic() < deadline, f"{job_id} still {status['status']} after {timeout}s"
        await asyncio.sleep(1.0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A data-source root holding ``images_train/`` and ``images_test/`` with small PNG images."""
    from fake_engine import write_tiny_images

    root = tmp_path_factory.mktemp("mcp-data")
    write_tiny_images(root / "images_train", n=8)
    write_tiny_images(root / "images_test", n=4)
    return root


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("TAO_SKILLS_HOME", str(path))
    return path


# ----------------------------------------------------------------------------- main chain


def test_train_inference_export_chain_over_stdio(home, photos, fake_engine):
    async def scenario():
        async with Client(_params(home)) as client:
            skills = await call(client, "list_skills")
            names = {s["name"] for s in skills["skills"]}
            assert SKILL in names
            detail = await call(client, "get_skill", name=SKILL)
            assert detail["runs_here"]["train"]["runs_here"] and detail["runs_here"]["train"]["engine"] == "builtin"

            route = await call(client, "route_request", text="train NVDINOv2 on my photos, plain training")
            assert route["skill"] == SKILL and route["action"] == "train"
            assert route["automl_policy"]["policy"] == "off"

            job_args = dict(
                skill=SKILL,
                action="train",
                profile="smoke",
                overrides=TINY_TRAIN_OVERRIDES,
                data_sources={"train_datasets": str(photos)},
            )
            built = await call(client, "build_spec", **job_args)
            assert built["valid"], built["issues"]
            images_dir = built["spec"]["dataset"]["train_dataset"]["images_dir"]
            assert Path(images_dir).resolve() == (photos / "images_train").resolve()
            assert built["spec"]["train"]["num_epochs"] == 1

            report = await call(client, "preflight", skill=SKILL, action="train", spec=built["spec"])
            assert report["ok"], report

            handle = await call(client, "launch_job", automl_policy="off", **job_args)
            assert handle["status"] == "RUNNING" and handle["job_id"].startswith("job-")
            train_id = handle["job_id"]
            status = await wait_terminal(client, train_id)
            if status["status"] != "COMPLETE":
                logs = await call(client, "job_logs", job_id=train_id, tail=80)
                pytest.fail(f"train ended {status['status']}: {status['failure']}\n{logs['text']}")
            assert status["epoch"] == 0 and status["max_epoch"] == 1, status

            logs = await call(client, "job_logs", job_id=train_id, tail=5, max_bytes=2048)
            assert 0 < logs["lines"] <= 5 and len(logs["text"].encode()) <= 2048 and logs["truncated"]
            grepped = await call(client, "job_logs", job_id=train_id, grep="running:")
            assert grepped["lines"] >= 1 and all(
                "running:" in ln for ln in grepped["text"].splitlines() if not ln.startswith("[...")
            )
            err = await call_error(client, "job_logs", job_id=train_id, grep="([")
            assert err["field"] == "grep"

            ckpt = await call(client, "resolve_checkpoint", job_id=train_id, for_action="inference")
            assert Path(ckpt["path"]).is_file() and Path(ckpt["path"]).name.startswith("student_epoch_")
            resume = await call(client, "resolve_checkpoint", job_id=train_id, for_action="resume")
            assert Path(resume["path"]).is_file() and not Path(resume["path"]).name.startswith("student_")

            inf = await call(
                client,
                "launch_job",
                skill=SKILL,
                action="inference",
                parent_job_id=train_id,
                data_sources={"inference_dataset": str(photos)},
            )
            inf_status = await wait_terminal(client, inf["job_id"])
            assert inf_status["status"] == "COMPLETE", inf_status
            assert inf_status["parent_job_id"] == train_id

            exp = await call(client, "launch_job", skill=SKILL, action="export", parent_job_id=train_id)
            exp_status = await wait_terminal(client, exp["job_id"])
            assert exp_status["status"] == "COMPLETE", exp_status
            onnx_files = list(Path(exp_status["results_dir"]).rglob("*.onnx"))
            assert onnx_files and onnx_files[0].stat().st_size > 0

            jobs = await call(client, "list_jobs", status="COMPLETE")
            assert {train_id, inf["job_id"], exp["job_id"]} <= {j["job_id"] for j in jobs["jobs"]}

            # a finished job is left as it is by cancel_job
            after = await call(client, "cancel_job", job_id=exp["job_id"])
            assert after["status"] == "COMPLETE"

    run(scenario())


# ----------------------------------------------------------------------------- errors


def test_error_replies_are_json_with_a_fix(home, photos, fake_engine):
    async def scenario():
        async with Client(_params(home)) as client:
            err = await call_error(client, "get_skill", name="tao-train-nvdinov")
            assert err["error"] == "not_found"
            assert SKILL in err["message"] + err["fix"]  # did-you-mean

            err = await call_error(
                client,
                "launch_job",
                skill=SKILL,
                action="train",
                data_sources={"train_datasets": str(photos)},
                overrides=TINY_TRAIN_OVERRIDES,
                automl_policy="sometimes",
            )
            assert err["error"] == "invalid_arguments" and "automl_policy" in json.dumps(err)  # an enum in the input schema
            assert "inputSchema" in err["fix"]

            # unknown spec key: build_spec reports it as an issue, launch_job refuses with it
            built = await call(
                client,
                "build_spec",
                skill=SKILL,
                action="train",
                data_sources={"train_datasets": str(photos)},
                overrides={"train.num_epoch": 3},
            )
            assert built["valid"] is False
            issue = next(i for i in built["issues"] if i["field"] == "train.num_epoch")
            assert "train.num_epochs" in issue["fix"]
            err = await call_error(
                client,
                "launch_job",
                skill=SKILL,
                action="train",
                automl_policy="off",
                data_sources={"train_datasets": str(photos)},
                overrides={**TINY_TRAIN_OVERRIDES, "train.num_epoch": 3},
            )
            assert err["error"] == "spec_invalid"
            assert "train.num_epochs" in json.dumps(err)  # did-you-mean for the unknown key

            err = await call_error(client, "job_status", job_id="job-000000000000")
            assert err["error"] == "not_found"

            # argument-schema failures (raised inside the SDK) get the same JSON shape
            err = await call_error(client, "job_logs", job_id="job-000000000000", tail=0)
            assert err["error"] == "invalid_arguments" and "tail" in err["message"]
            err = await call_error(client, "no_such_tool")
            assert err["error"] == "not_found" and "tools/list" in err["fix"]

            # nothing was launched by any of the above
            assert (await call(client, "list_jobs"))["jobs"] == []

    run(scenario())


def test_unexpected_exception_becomes_a_generic_error_without_details(home):
    from taoskills.service import Service
    from taoskills.surfaces.mcp import build_server

    class Broken(Service):
        def list_skills(self):
            raise RuntimeError("secret-detail /very/private/path")

    async def scenario():
        async with Client(build_server(Broken(home=home))) as client:
            res = await client.call_tool("list_skills", {})
            assert res.is_error
            text = res.content[0].text
            payload = json.loads(text)
            assert payload["error"] == "internal" and "report this" in payload["fix"]
            assert "secret-detail" not in text and "private" not in text
            # the server keeps serving
            pong = await client.call_tool("ping", {})
            assert pong.content[0].text == "pong" and pong.structured_content == {"result": "pong"}

    run(scenario())


# ----------------------------------------------------------------------------- resources, annotations


def test_skill_files_are_resources_confined_to_the_skill(home):
    skill_dir = Path(__file__).resolve().parents[2] / "skills" / SKILL

    async def scenario():
        async with Client(_params(home)) as client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            for rel in ("SKILL.md", "references/skill_info.yaml", "schemas/train.schema.json"):
                assert f"skill://{SKILL}/{rel}" in listed
            on_disk = {
                p.relative_to(skill_dir).as_posix()
                for p in skill_dir.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
            }
            assert {u.removeprefix(f"skill://{SKILL}/") for u in listed if u.startswith(f"skill://{SKILL}/")} == on_disk

            body = (await client.read_resource(f"skill://{SKILL}/SKILL.md")).contents[0].text
            assert body == (skill_dir / "SKILL.md").read_text()
            info = (await client.read_resource(f"skill://{SKILL}/references/skill_info.yaml")).contents[0].text
            assert f"name: {SKILL}" in info
            schema = json.loads((await client.read_resource(f"skill://{SKILL}/schemas/train.schema.json")).contents[0].text)
            assert "properties" in schema

            templates = (await client.list_resource_templates()).resource_templates
            assert any(t.uri_template == "skill://{skill}/{+path}" for t in templates)

            for uri in (
                f"skill://{SKILL}/../../pyproject.toml",
                f"skill://{SKILL}/%2E%2E/%2E%2E/pyproject.toml",
                f"skill://{SKILL}//etc/passwd",
                f"skill://{SKILL}/references/nope.yaml",
                "skill://no-such-skill/SKILL.md",
            ):
                with pytest.raises(Exception) as exc:
                    await client.read_resource(uri)
                assert "tool.setuptools" not in str(exc.value) and "root:" not in str(exc.value)

    run(scenario())


def test_symlink_leaving_the_skill_folder_is_neither_listed_nor_readable(home, tmp_path):
    import shutil

    from taoskills.service import Service
    from taoskills.surfaces.mcp import build_server

    bank = tmp_path / "bank"
    shutil.copytree(Path(__file__).resolve().parents[2] / "skills" / SKILL, bank / SKILL)
    secret = tmp_path / "outside.txt"
    secret.write_text("outside-the-skill")
    (bank / SKILL / "references" / "leak.txt").symlink_to(secret)

    async def scenario():
        async with Client(build_server(Service(skills_dir=bank, home=home))) as client:
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            assert f"skill://{SKILL}/references/skill_info.yaml" in listed
            assert f"skill://{SKILL}/references/leak.txt" not in listed
            with pytest.raises(Exception) as exc:
                await client.read_resource(f"skill://{SKILL}/references/leak.txt")
            assert "outside-the-skill" not in str(exc.value)

    run(scenario())


def test_tools_have_schemas_and_annotations(home):
    async def scenario():
        async with Client(_params(home)) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == EXPECTED_TOOLS | AUTOML_TOOLS | ESTIMATE_TOOLS
            for name, tool in tools.items():
                assert tool.description and len(tool.description) > 60, name
                assert tool.output_schema is not None, name
                assert tool.annotations is not None, name
            for name in (
                "ping",
                "list_skills",
                "get_skill",
                "route_request",
                "get_spec_template",
                "validate_spec",
                "preflight",
                "render_runner",
                "job_status",
                "job_logs",
                "list_jobs",
                "resolve_checkpoint",
            ):
                assert tools[name].annotations.read_only_hint is True, name
                assert tools[name].annotations.idempotent_hint is True, name
            assert tools["build_spec"].annotations.read_only_hint is False  # it may stage archives
            assert tools["build_spec"].annotations.destructive_hint is False
            assert tools["launch_job"].annotations.read_only_hint is False
            assert tools["launch_job"].annotations.destructive_hint is False
            assert tools["launch_job"].annotations.idempotent_hint is False
            assert tools["cancel_job"].annotations.destructive_hint is True
            props = tools["build_spec"].input_schema["properties"]
            assert {"skill", "action", "overrides", "data_sources", "parent_job_id"} <= set(props)
            assert set(tools["launch_job"].input_schema["required"]) == {"skill", "action"}
            pong = await client.call_tool("ping", {})
            assert pong.content[0].text == "pong" and pong.structured_content == {"result": "pong"}

    run(scenario())


# ----------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_on_loopback(home, tmp_path):
    port = _free_port()
    errlog = (tmp_path / "server.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "taoskills.surfaces.mcp", "--transport", "streamable-http", "--port", str(port)],
        env={**os.environ, "TAO_SKILLS_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=errlog,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.err").read_text()
                assert time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.2)

        async def scenario():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                skills = await call(client, "list_skills")
                assert SKILL in {s["name"] for s in skills["skills"]}

        run(scenario())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        errlog.close()


def test_http_refuses_non_loopback_host_without_allow_remote():
    from taoskills.surfaces import mcp as mcp_server

    with pytest.raises(ValueError, match="allow_remote"):
        mcp_server.run("streamable-http", host="0.0.0.0", port=_free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "taoskills.surfaces.mcp", "--transport", "streamable-http", "--host", "192.0.2.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "non-loopback" in proc.stderr and proc.stdout == ""


def test_plot_job_returns_the_curve_as_image_content(home, photos, fake_engine):
    import base64

    async def scenario():
        async with Client(_params(home)) as client:
            job = await call(
                client,
                "launch_job",
                skill=SKILL,
                action="train",
                profile="smoke",
                automl_policy="off",
                overrides={**TINY_TRAIN_OVERRIDES, "train.num_epochs": 3},
                data_sources={"train_datasets": str(photos)},
            )
            assert (await wait_terminal(client, job["job_id"]))["status"] == "COMPLETE"
            res = await client.call_tool("plot_job", {"job_id": job["job_id"]})
            assert not res.is_error, res.content
            images = [c for c in res.content if c.type == "image"]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data)[:8] == b"\x89PNG\r\n\x1a\n"
            text = json.loads(next(c for c in res.content if c.type == "text").text)
            assert Path(text["png"]).is_file()
            err = await call_error(client, "plot_job", job_id="job-000000000000")
            assert err["error"] == "not_found"

    run(scenario())
