"""The MCP server: a thin skin over :class:`taoskills.service.Service` (MCP Python SDK 2.x).

Tools: ``ping`` (health check), ``list_skills``, ``get_skill``, ``route_request``,
``get_spec_template``, ``build_spec``, ``validate_spec``, ``preflight``, ``render_runner``,
``launch_job``, ``job_status``, ``wait_job`` (blocking, with progress notifications),
``job_logs``, ``cancel_job``, ``plot_job``, ``list_jobs``, ``resolve_checkpoint`` (plus any
registered by other surfaces modules). Tools are registered by theme: skills and specs in
:mod:`taoskills.surfaces.mcp_skills`, jobs in :mod:`taoskills.surfaces.mcp_jobs`, AutoML in
:mod:`taoskills.surfaces.mcp_automl`; they run through :mod:`taoskills.surfaces.mcp_runtime`.
Enumerated arguments (engine, platform, automl_policy, profile,
status) are JSON-schema enums; engine and platform names come from their registries. Each returns a pydantic model (MCP ``outputSchema`` +
``structuredContent``) and carries annotations (read-only / destructive / idempotent hints;
hints only, not security: MCP spec, ``ToolAnnotations``).

Errors: a :class:`~taoskills.errors.TaoSkillsError` becomes a tool error (``isError``) whose
text is ``json.dumps(error.as_dict())`` — ``error`` (code), ``message``, ``field``, ``fix``,
``issues``. Argument-schema failures and unknown tool names (raised inside the SDK) are
rewritten to the same JSON shape by a middleware (:mod:`taoskills.security.guard`); any other exception becomes
``{"error": "internal", ..., "fix": "report this ..."}`` with no traceback (the traceback
goes to the server's stderr log only).

Prompts (:mod:`taoskills.surfaces.mcp_prompts`): ``<skill>-workflow`` per model skill, its
train -> evaluate -> inference -> export steps with the data-source roles to ask for.

Resources: every file of every skill is a resource ``skill://<skill>/<relative path>``
(e.g. ``skill://tao-train-nvdinov2/references/skill_info.yaml``); the template
``skill://{skill}/{+path}`` serves the same files. Reads are confined to the skill folder:
the SDK rejects ``..``/absolute/NUL parameters and the handler re-checks the resolved path.

Transports: stdio (default) or streamable HTTP, which binds 127.0.0.1 and refuses any
non-loopback host unless ``allow_remote=True``; optional bearer auth (``--auth-token-env
NAME``) and per-client session caps (:mod:`taoskills.security.transport`). Logs go to
stderr only; the stdio transport diverts fd 1 to stderr while serving so stray output
cannot corrupt the wire, and answers malformed JSON-RPC lines with JSON-RPC errors (the
SDK's own stdio transport drops them silently).

Hostile input (:mod:`taoskills.security`): every tool's arguments are screened before the
call (:class:`taoskills.security.guard.ArgumentGuard`), tool calls run concurrently off the
event loop with a time limit (:class:`taoskills.surfaces.mcp_runtime.ToolRunner`), and every
reply passes one redaction layer.

Run: ``python -m taoskills.surfaces.mcp [--transport stdio|streamable-http] [--host H] [--port P]``.
"""

import argparse
import ipaddress
import logging
import mimetypes
import sys
from pathlib import Path
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources import FileResource

from taoskills.security import transport as edge
from taoskills.security.guard import ArgumentGuard
from taoskills.service import JobLogs, Service
from taoskills.surfaces import mcp_automl, mcp_estimate, mcp_jobs, mcp_skills
from taoskills.surfaces.mcp_jobs import LOG_BYTES_MAX, LOG_TAIL_MAX, WAIT_MAX_S, JobList, PlotReply
from taoskills.surfaces.mcp_prompts import register_prompts
from taoskills.surfaces.mcp_runtime import (
    AUTOML_POLICY,
    ENGINE_HELP,
    GIL_SWITCH_S,
    JOB_STATES,
    MAX_CONCURRENT_CALLS,
    PROFILE,
    TOOL_TIMEOUT_S,
    ToolRunner,
)
from taoskills.surfaces.mcp_skills import SkillList, SpecTemplate

log = logging.getLogger("taoskills.mcp")

SERVER_NAME = "tao-skills"
DEFAULT_PORT = 8765

INSTRUCTIONS = """\
tao-skills: train NVIDIA TAO models (NVDINOv2, DINO, MAE, Grounding DINO; AutoML) from a skill bank.
Typical flow: list_skills -> route_request(text) -> get_skill / get_spec_template -> build_spec
(check valid/issues) -> preflight -> launch_job (returns a job_id at once) -> poll job_status until
COMPLETE/ERROR/CANCELED -> resolve_checkpoint or launch the next action with parent_job_id.
Every error is JSON with 'message', 'field' and 'fix' (what to do next). Skill files are resources
skill://<skill>/<path> (start with SKILL.md and references/skill_info.yaml)."""


# ----------------------------------------------------------------------------- server


def build_server(service: Service | None = None) -> MCPServer:
    """Build the MCP server over ``service`` (default: ``Service()`` with the default skill
    bank and ``$TAO_SKILLS_HOME``). Registers the tools, the workflow prompts and every
    skill file as a resource. Service calls run concurrently on worker threads (at most
    :data:`MAX_CONCURRENT_CALLS` at once, each limited to :data:`TOOL_TIMEOUT_S` seconds)
    so the event loop stays free; every reply passes the redaction layer
    (:func:`taoskills.security.redact.redact`).
    """
    svc = service if service is not None else Service()
    # security (no request freezes the server): bounded worker threads, a time limit per call,
    # and the event-loop thread gets the GIL back within GIL_SWITCH_S (taoskills.surfaces.mcp_runtime)
    call = ToolRunner(MAX_CONCURRENT_CALLS, TOOL_TIMEOUT_S, GIL_SWITCH_S)
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, middleware=[ArgumentGuard()])
    mcp_skills.register(server, svc, call)  # skills and specs (taoskills.surfaces.mcp_skills)
    mcp_jobs.register(server, svc, call)  # jobs (taoskills.surfaces.mcp_jobs)
    _register_skill_resources(server, svc)
    mcp_automl.register(server, svc)  # AutoML tools (taoskills.surfaces.mcp_automl)
    mcp_estimate.register(server, svc, call)  # estimate tool (taoskills.surfaces.mcp_estimate)
    register_prompts(server, svc)
    return server


# ----------------------------------------------------------------------------- resources


_MIME = {
    ".md": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".json": "application/json",
    ".txt": "text/plain",
    ".py": "text/x-python",
    ".sh": "text/x-shellscript",
    ".j2": "text/plain",
}


def _mime(path: Path) -> str:
    return _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _skill_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (no hidden names, no caches, no links leaving ``root``)."""
    root = root.resolve()
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if not p.is_file() or not p.resolve().is_relative_to(root):
            continue
        out.append(p)
    return out


def _register_skill_resources(server: MCPServer, svc: Service) -> None:
    roots = {name: Path(skill.dir).resolve() for name, skill in svc.catalog.skills.items()}
    for name, root in sorted(roots.items()):
        for path in _skill_files(root):
            rel = path.relative_to(root).as_posix()
            mime = _mime(path)
            text_like = mime.startswith("text/") or mime in ("application/json", "application/yaml")
            server.add_resource(
                FileResource(
                    uri=f"skill://{name}/{rel}",
                    name=f"{name}/{rel}",
                    path=path.resolve(),
                    description=f"file {rel} of skill {name}",
                    mime_type=mime,
                    encoding="utf-8" if text_like else None,
                )
            )

    @server.resource(
        "skill://{skill}/{+path}",
        name="skill-file",
        mime_type="text/plain",
        description="A file of a skill: skill://<skill>/<relative path>, e.g. "
        "skill://tao-train-nvdinov2/SKILL.md (confined to the skill folder)",
    )
    def skill_file(skill: str, path: str) -> str:
        root = roots.get(skill)
        if root is None:
            raise ResourceNotFoundError(f"unknown skill {skill!r}; skills: {', '.join(sorted(roots))}")
        target = (root / path).resolve()
        if not target.is_relative_to(root) or target == root:
            raise ResourceError(f"path {path!r} is outside skill {skill}'s folder; use a relative path inside it")
        if not target.is_file():
            raise ResourceNotFoundError(f"skill {skill} has no file {path!r}; get_skill lists its files")
        return target.read_text(encoding="utf-8", errors="replace")


# ----------------------------------------------------------------------------- run


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(
    transport: Literal["stdio", "streamable-http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    service: Service | None = None,
    auth_token_env: str | None = None,
    max_sessions_per_client: int = 16,
    session_idle_s: float = 600.0,
) -> None:
    """Serve over ``transport``. HTTP serves ``http://<host>:<port>/mcp`` and refuses a
    non-loopback ``host`` unless ``allow_remote`` or bearer auth is on. ``auth_token_env``
    names the environment variable holding the bearer token (HTTP; compared in constant
    time); ``max_sessions_per_client`` and ``session_idle_s`` cap open sessions per client
    address (idle ones expire). stdio screens every line and answers malformed JSON-RPC
    (see :mod:`taoskills.security.transport`). Blocks until the client disconnects (stdio)
    or the process is stopped (HTTP). Raises ValueError for an unknown transport, a
    refused host or a named token variable that is unset.
    """
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from taoskills.platforms import placement

    placement.set_cache_ttl(placement.SERVER_CACHE_TTL_S)  # a long-lived server: reuse "runs here" answers briefly
    if transport == "stdio":
        edge.run_stdio(build_server(service))
    elif transport == "streamable-http":
        token = edge.token_from_env(auth_token_env)
        if not _is_loopback(host) and not allow_remote:
            raise ValueError(
                f"refusing to serve MCP over HTTP on non-loopback host {host!r}: use 127.0.0.1, or pass "
                "allow_remote=True (--allow-remote), ideally with --auth-token-env NAME (bearer auth) "
                "or behind your own authenticating proxy."
            )
        log.info("serving MCP on http://%s:%d/mcp (auth: %s)", host, port, "bearer" if token else "none")
        edge.run_http(
            build_server(service),
            host,
            port,
            token=token,
            max_sessions_per_client=max_sessions_per_client,
            idle_s=session_idle_s,
        )
    else:
        raise ValueError(f"unknown transport {transport!r}; use 'stdio' or 'streamable-http'")


def main(argv: list[str] | None = None) -> int:
    """``python -m taoskills.surfaces.mcp``: parse arguments and :func:`run`."""
    ap = argparse.ArgumentParser(prog="python -m taoskills.surfaces.mcp", description="tao-skills MCP server")
    ap.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    ap.add_argument("--auth-token-env", default=None, help="HTTP: require 'Authorization: Bearer <$NAME>' (give the NAME)")
    ap.add_argument("--max-sessions-per-client", type=int, default=16)
    ap.add_argument("--session-idle-s", type=float, default=600.0)
    args = ap.parse_args(argv)
    try:
        run(
            args.transport,
            args.host,
            args.port,
            allow_remote=args.allow_remote,
            auth_token_env=args.auth_token_env,
            max_sessions_per_client=args.max_sessions_per_client,
            session_idle_s=args.session_idle_s,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "AUTOML_POLICY",
    "ENGINE_HELP",
    "JOB_STATES",
    "LOG_BYTES_MAX",
    "LOG_TAIL_MAX",
    "PROFILE",
    "WAIT_MAX_S",
    "JobList",
    "JobLogs",
    "PlotReply",
    "SkillList",
    "SpecTemplate",
    "build_server",
    "main",
    "run",
]


if __name__ == "__main__":
    sys.exit(main())
