"""Human output of the CLI: compact ✓/✗ lines, fixes in CLI syntax, log following.

The service writes every ``fix`` (and JobStatus ``next``) in tool-argument syntax, the words
an MCP client sends (``automl_policy='off'``, ``data_sources={'train_datasets': ...}``,
``job_status('job-...')``). An error may carry its own ``fix_cli`` (:class:`TaoSkillsError`);
otherwise :func:`to_cli` rewrites the tool syntax into the flags and commands of
``tao-skills`` (``--automl-policy off``, ``-d train_datasets=...``, ``tao-skills jobs status
job-...``). ``--json`` output is never rewritten: it is the service's reply as it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import typer

OK, BAD, WARN = "✓", "✗", "!"

# (pattern, replacement) applied in order; tool argument -> CLI flag, tool call -> command
_ARG_FLAGS = {
    "automl_policy": "--automl-policy",
    "profile": "--profile",
    "engine": "--engine",
    "platform": "--platform",
    "parent_job_id": "--parent",
    "resume_job_id": "--resume",
    "pretrained_model": "--pretrained",
    "pretrained_backbone": "--pretrained-backbone",
    "request_text": "--request",
    "for_action": "--for",
}
_DICT_FLAGS = {"data_sources": "-d", "shorthand": "-k", "overrides": "-s"}
_CALLS = {
    "job_status": "tao-skills jobs status",
    "job_logs": "tao-skills jobs logs",
    "cancel_job": "tao-skills jobs cancel",
    "wait_job": "tao-skills jobs wait",
    "list_jobs": "tao-skills jobs list",
    "list_skills": "tao-skills skills list",
    "get_skill": "tao-skills skills show",
    "resolve_checkpoint": "tao-skills checkpoints",
    "build_spec": "tao-skills spec build",
    "validate_spec": "tao-skills spec validate",
    "get_spec_template": "tao-skills spec template",
    "launch_job": "tao-skills run",
    "preflight": "tao-skills preflight",
    "route_request": "tao-skills route",
}
_Q = r"""['"]([^'"]*)['"]"""


def _dict_to_flags(flag: str, body: str) -> str:
    pairs = re.findall(r"""['"]([^'"]+)['"]\s*:\s*(['"][^'"]*['"]|[^,}]+)""", body)
    return " ".join(f"{flag} {k}={v.strip().strip(chr(39) + chr(34))}" for k, v in pairs) or f"{flag} KEY=VALUE"


def _call_to_cmd(m: re.Match) -> str:
    cmd = _CALLS[m.group(1)]
    args = [a.strip().strip("'\"") for a in m.group(2).split(",") if a.strip()] if m.group(2) else []
    if m.group(1) == "resolve_checkpoint" and len(args) == 2:
        return f"{cmd} {args[0]} --for {args[1]}"
    return " ".join([cmd, *args])


def _sub_dict(flag: str) -> Callable[[re.Match], str]:
    return lambda m: _dict_to_flags(flag, m.group(1))


def _sub_arg(flag: str) -> Callable[[re.Match], str]:
    return lambda m: f"{flag} {m.group(1)}"


def to_cli(text: str | None) -> str | None:
    """``text`` with tool-argument syntax rewritten as ``tao-skills`` flags and commands."""
    if not text:
        return text
    # an inline CLI hint replaces the tool name before it: "list_jobs (CLI: tao-skills jobs list)"
    out = re.sub(rf"\b(?:{'|'.join(_CALLS)})(?:\([^)]*\))? \(CLI: ([^)]*)\)", r"\1", text)
    out = re.sub(r" ?\(CLI: [^)]*\)", "", out)
    for name, flag in _DICT_FLAGS.items():
        out = re.sub(rf"\b{name}\s*=\s*\{{([^}}]*)\}}", _sub_dict(flag), out)
    for name, flag in _ARG_FLAGS.items():
        out = re.sub(rf"\b{name}\s*=\s*{_Q}", _sub_arg(flag), out)
    out = re.sub(rf"\b({'|'.join(_CALLS)})\(([^)]*)\)", _call_to_cmd, out)
    out = re.sub(rf"(?<![\w-])({'|'.join(_CALLS)})\b", lambda m: _CALLS[m.group(1)], out)  # bare tool names
    out = re.sub(r"\b(override|overrides) ([A-Za-z_][\w.\[\]]*)\b", r"-s \2=VALUE", out)
    return out


def cli_fix(exc: Any) -> str | None:
    """The fix to show on the CLI: the error's own ``fix_cli``, else its ``fix`` rewritten."""
    return getattr(exc, "fix_cli", None) or to_cli(getattr(exc, "fix", None))


# ----------------------------------------------------------------------------- printers


def _line(ok: bool | None, text: str, fix: str | None = None) -> None:
    mark = OK if ok else (WARN if ok is None else BAD)
    typer.echo(f"{mark} {text}")
    if fix and not ok:
        typer.echo(f"    fix: {to_cli(fix)}")


def print_preflight(report: Any) -> None:
    """One line per check (✓ ok, ✗ failed error, ! failed warning), then a verdict."""
    for c in report.checks:
        warn = not c.ok and getattr(c, "severity", "error") == "warning"
        _line(None if warn else c.ok, f"{c.name}: {c.message}", c.fix)
    for w in report.warnings:
        if not any(w == c.message for c in report.checks):
            _line(None, w)
    failed = sum(1 for c in report.checks if not c.ok and getattr(c, "severity", "error") != "warning")
    typer.echo(f"{OK} preflight passed" if report.ok else f"{BAD} preflight failed: {failed} check(s) to fix")


def print_status(s: Any) -> None:
    """A job in a few lines: id, state, progress, KPIs, artifacts, failure and next step."""
    mark = {"COMPLETE": OK, "ERROR": BAD, "CANCELED": BAD}.get(s.status, "…")
    epoch = f"  epoch {s.epoch}/{s.max_epoch}" if s.max_epoch else ""
    eta = f"  ETA {s.eta}" if s.eta else ""
    typer.echo(f"{mark} {s.job_id}  {s.skill} {s.action}  {s.status}{epoch}{eta}")
    if s.kpis:
        typer.echo("  kpis: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.kpis.items()))
    if s.parent_job_id:
        typer.echo(f"  parent: {s.parent_job_id}")
    typer.echo(f"  results: {s.results_dir}")
    if s.log_path:
        typer.echo(f"  log: {s.log_path}")
    if s.message:
        typer.echo(f"  message: {s.message}")
    failure = s.failure or {}
    if failure:
        typer.echo(f"  {BAD} cause: {failure.get('cause') or failure.get('summary') or '-'}")
        if failure.get("fix"):
            typer.echo(f"    fix: {to_cli(failure['fix'])}")
    if s.next:
        typer.echo(f"  next: {to_cli(s.next)}")


def print_route(r: Any) -> None:
    """Skill, action, AutoML policy, parameters and where it runs."""
    if not r.skill:
        typer.echo(f"{BAD} no skill applies: {r.no_skill_reason or r.reason}")
        return
    typer.echo(f"{OK} {r.skill} {r.action or '-'}  (confidence {r.confidence:.2f}{', ambiguous' if r.ambiguous else ''})")
    if r.automl_policy is not None:
        p = r.automl_policy
        why = f" ({p.source}{': ' + repr(p.phrase) if getattr(p, 'phrase', None) else ''})" if getattr(p, "source", None) else ""
        typer.echo(f"  automl_policy: {p.policy}{why}")
    for prm in r.parameters:
        typer.echo(f"  {prm.name} = {prm.value}" + (f"  -> {', '.join(prm.keys)}" if getattr(prm, "keys", None) else ""))
    for alt in r.alternatives[:3]:
        typer.echo(f"  or: {alt.skill} ({alt.score:.2f})" if hasattr(alt, "score") else f"  or: {alt}")
    _placement(r.runs_here)


def _placement(where: Any) -> None:
    if where is None:
        return
    if where.runs_here:
        typer.echo(f"{OK} runs here: engine {where.engine}, platform {where.platform}")
    else:
        typer.echo(f"{BAD} cannot run here")
        if where.next:
            typer.echo(f"    fix: {to_cli(where.next)}")


def print_build(result: Any, echo: Callable[[str], None] = typer.echo) -> None:
    """Build summary: validity, inferred/staged values, issues with CLI fixes, placement."""
    for key, inf in result.inferred.items():
        echo(f"  inferred {key} = {inf.get('value')}  ({inf.get('reason', '')})")
    for key, st in result.staged.items():
        echo(f"  staged {key}: {st.get('path') or st.get('to') or st}")
    for note in result.notes:
        echo(f"{WARN} {note}")
    for i in result.issues:
        echo(f"{BAD} {i.get('field')}: {i.get('reason')}")
        if i.get("fix"):
            echo(f"    fix: {to_cli(i['fix'])}")
    echo(f"{OK} spec valid" if result.valid else f"{BAD} spec invalid: {len(result.issues)} issue(s)")


# ----------------------------------------------------------------------------- logs -f


def _after_seen(seen: str, text: str) -> str:
    """The part of ``text`` after the last lines of ``seen`` (the last 3, 2 or 1 of them, matched at
    line starts, last occurrence); all of ``text`` when none is found (the window moved past them)."""
    lines = seen.splitlines()
    for k in (3, 2, 1):
        if len(lines) < k:
            continue
        anchor = "\n" + "\n".join(lines[-k:]) + "\n"
        pos = ("\n" + text).rfind(anchor)
        if pos >= 0:
            return text[pos + len(anchor) - 1 :]
    return text


def follow_logs(read: Callable[[], str], is_done: Callable[[], bool], echo: Callable[[str], None], poll_s: float = 1.0) -> None:
    """Print ``read()`` (a log tail) and then only what was appended, until ``is_done()``.

    The tail window may slide as the log grows: new text is found after the last lines already
    printed (their last occurrence), so no line is printed twice while the window moves.
    """
    seen = ""  # text printed so far (whole lines only)
    while True:
        done = is_done()  # read the state first: a job that ended has written its last lines
        text = read()
        if not done:  # hold back a line still being written
            text = text[: text.rfind("\n") + 1]
        if text.startswith(seen):
            new = text[len(seen) :]
        else:
            new = _after_seen(seen, text)
        if new.strip():
            echo(new.rstrip("\n"))
        seen = text
        if done:
            return
        time.sleep(poll_s)
