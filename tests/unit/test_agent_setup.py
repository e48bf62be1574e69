"""Agent setup files: the Claude Code plugin manifest and README's "Use it from your agent".

The repository root is a Claude Code plugin (``.claude-plugin/plugin.json``; skills
auto-discovered from ``skills/<name>/SKILL.md``; the MCP server in ``mcpServers``) and a
one-plugin marketplace (``.claude-plugin/marketplace.json`` with ``source: "./"``).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_plugin_manifest_points_at_the_skills_and_the_server():
    plugin = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text())
    market = json.loads((REPO / ".claude-plugin" / "marketplace.json").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert re.fullmatch(r"[a-z0-9-]+", plugin["name"])  # kebab-case, as Claude Code requires
    assert plugin["version"] == project["version"]
    server = plugin["mcpServers"]["tao-skills"]
    assert server["command"] in project["scripts"] and server["args"] == ["serve"]
    assert [p["name"] for p in market["plugins"]] == [plugin["name"]]
    assert (REPO / market["plugins"][0]["source"] / ".claude-plugin" / "plugin.json").is_file()
    skills = sorted(p.parent.name for p in (REPO / "skills").glob("*/SKILL.md"))
    assert len(skills) == 5


def test_readme_tells_how_to_connect_each_agent():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it from your agent", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "claude mcp add",
        "claude plugin install",
        '"mcpServers"',
        "Cursor",
        ".vscode/mcp.json",
        "uvx tao-skills serve",
    ):
        assert needle in section, needle
    blocks = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        cfg = json.loads(block)
        (server,) = (cfg.get("mcpServers") or cfg["servers"]).values()
        assert server["args"] == ["serve"]
