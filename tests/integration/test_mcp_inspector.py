"""The MCP server seen by an independent client: the MCP Inspector CLI (Node).

``npx -y @modelcontextprotocol/inspector@2.12.0 --cli <server command> --method ...`` starts
``python -m taoskills.surfaces.mcp`` over stdio and prints the JSON reply on stdout (exit
codes differ across Inspector versions, so the JSON is what is checked).
Version pinned: plain ``npx`` on Node 20 silently picks an old 0.x release. Skipped only
when ``npx`` is missing or the package cannot be fetched from the npm registry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from taoskills.surfaces.mcp_automl import AUTOML_TOOLS
from taoskills.surfaces.mcp_estimate import ESTIMATE_TOOLS

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"

SKILL = "tao-train-nvdinov2"
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
FETCH_FAILURES = (
    "E404",
    "ENOTFOUND",
    "EAI_AGAIN",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "ECONNRESET",
    "network request",
    "npm error code",
    "npm ERR!",
)


@pytest.fixture(scope="module")
def inspect(tmp_path_factory):
    """``inspect(*method_args) -> dict``: one Inspector CLI call against a fresh server process."""
    if shutil.which("npx") is None:
        pytest.skip("npx (Node.js) is not installed; the Inspector CLI needs it")
    home = tmp_path_factory.mktemp("inspector-home")

    def _inspect(*method_args: str) -> dict:
        cmd = [
            "npx",
            "-y",
            INSPECTOR,
            "--cli",
            "--connect-timeout",  # the server's start-up is slow on a loaded 2-core host
            "120000",
            "-e",
            f"TAO_SKILLS_HOME={home}",
            sys.executable,
            "-m",
            "taoskills.surfaces.mcp",
            *method_args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            if any(marker in proc.stderr for marker in FETCH_FAILURES):
                pytest.skip(f"could not fetch {INSPECTOR} from the npm registry: {proc.stderr.strip()[-400:]}")
            raise AssertionError(
                f"Inspector printed no JSON (rc={proc.returncode})\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
            )

    return _inspect


def test_inspector_lists_the_tools_with_annotations(inspect):
    reply = inspect("--method", "tools/list")
    tools = {t["name"]: t for t in reply["tools"]}
    assert set(tools) == EXPECTED_TOOLS | AUTOML_TOOLS | ESTIMATE_TOOLS
    assert all(t.get("outputSchema") for t in tools.values())
    assert tools["list_skills"]["annotations"]["readOnlyHint"] is True
    assert tools["cancel_job"]["annotations"]["destructiveHint"] is True
    assert tools["launch_job"]["annotations"]["readOnlyHint"] is False


def test_inspector_calls_list_skills(inspect):
    reply = inspect("--method", "tools/call", "--tool-name", "list_skills")
    assert reply["isError"] is False
    skills = {s["name"]: s for s in reply["structuredContent"]["skills"]}
    assert SKILL in skills and "train" in skills[SKILL]["actions"]


def test_inspector_sees_json_error_with_fix(inspect):
    reply = inspect("--method", "tools/call", "--tool-name", "get_skill", "--tool-arg", "name=tao-train-nvdinov")
    assert reply["isError"] is True
    payload = json.loads(reply["content"][0]["text"])
    assert payload["error"] == "not_found" and payload["fix"]
    assert SKILL in payload["message"] + payload["fix"]


def test_inspector_lists_and_reads_a_skill_resource(inspect):
    listed = {r["uri"] for r in inspect("--method", "resources/list")["resources"]}
    uri = f"skill://{SKILL}/references/skill_info.yaml"
    assert uri in listed and f"skill://{SKILL}/SKILL.md" in listed
    contents = inspect("--method", "resources/read", "--uri", uri)["contents"]
    assert contents[0]["uri"] == uri
    assert f"name: {SKILL}" in contents[0]["text"]
