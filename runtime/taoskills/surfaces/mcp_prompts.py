"""MCP prompts: one per model skill, its main workflow (train -> evaluate -> export).

Each prompt is built from the skill's ``references/skill_info.yaml`` (actions, their data
sources, shorthand keys), never from SKILL.md prose: the steps are the skill's actions among
``train``, ``evaluate``, ``inference`` and ``export`` in that order, and for each step the
data-source roles (e.g. ``train_datasets``, ``eval_dataset``) the agent must ask the user for,
with the spec keys each fills and whether it is optional. Prompt name: ``<skill>-workflow``;
argument ``goal``: the user's request in their words (optional).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt

#: The main workflow's actions, in order (those a skill lacks are skipped).
WORKFLOW = ("train", "evaluate", "inference", "export")


def workflow_roles(sk: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """``{action: {role: {"keys": [dotted spec keys], "optional": bool}}}`` for the skill's
    workflow actions (``skill_info.yaml`` ``actions.<a>.data_sources``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for action in (a for a in WORKFLOW if a in sk.actions):
        roles: dict[str, dict[str, Any]] = {}
        for key, ds in sk.action(action).data_sources.items():
            entry = roles.setdefault(ds.source, {"keys": [], "optional": True})
            entry["keys"].append(key)
            entry["optional"] = entry["optional"] and ds.optional
        out[action] = roles
    return out


def workflow_text(sk: Any, goal: str = "") -> str:
    """The prompt text for skill ``sk`` (a :class:`taoskills.bank.catalog.Skill`)."""
    steps = workflow_roles(sk)
    lines = [
        f"Run the {sk.name} workflow ({sk.network_arch}): " + " -> ".join(steps) + ", with the tao-skills tools.",
    ]
    if goal:
        lines.append(f"The user's goal: {goal}")
    lines.append("First ask the user for these data sources (local folders or archives), then follow the steps:")
    for n, (action, roles) in enumerate(steps.items(), 1):
        if roles:
            ask = "; ".join(
                f"`{role}`{' (optional)' if r['optional'] else ''} -> {', '.join(r['keys'])}" for role, r in roles.items()
            )
        else:
            ask = "no data source (it uses the parent job's model)"
        parent = sk.action(action).parent_action
        link = f" with parent_job_id = the {parent} job's id" if parent and action != "train" else ""
        lines.append(f"{n}. {action}{link}: {'data_sources ' if roles else ''}{ask}.")
    lines += [
        "For each step: build_spec (fix every issue it lists), preflight (fix every failed check), "
        "then launch_job and wait_job (or poll job_status) until COMPLETE; on ERROR read failure.fix and job_logs.",
        "Training: pass automl_policy='off' for plain training unless the user asked for AutoML. "
        "profile='smoke' gives a short validation run first.",
    ]
    if sk.info.shorthand:
        lines.append("Shorthand keys you may set: " + ", ".join(sorted(sk.info.shorthand)) + ".")
    lines.append(f"Details: resource skill://{sk.name}/SKILL.md and get_skill('{sk.name}').")
    return "\n".join(lines)


def _renderer(sk: Any):
    def render(goal: str = "") -> str:
        """The workflow prompt; ``goal``: the user's request in their words (optional)."""
        return workflow_text(sk, goal)

    return render


def register_prompts(server: MCPServer, svc: Any) -> list[str]:
    """Add a ``<skill>-workflow`` prompt for every skill with a train action; returns their names."""
    names = []
    for name, sk in svc.catalog.skills.items():
        if "train" not in sk.actions:
            continue

        render = _renderer(sk)
        prompt_name = f"{name}-workflow"
        desc = f"{sk.network_arch}: " + " -> ".join(workflow_roles(sk)) + " (asks for the data sources each step needs)"
        server.add_prompt(Prompt.from_function(render, name=prompt_name, title=f"{name} workflow", description=desc))
        names.append(prompt_name)
    return names
