"""The MCP server: a thin skin over :class:`taoskills.service.Service` (MCP Python SDK 2.x).

Tools: ``ping`` (health check), ``list_skills``, ``get_skill``, ``route_request``,
``get_spec_template``, ``build_spec``, ``validate_spec``, ``preflight``, ``render_runner``,
``launch_job``, ``job_status``, ``wait_job`` (blocking, with progress notifications),
``job_logs``, ``cancel_job``, ``list_jobs``, ``resolve_checkpoint`` (plus any registered by
other surfaces modules). Enumerated arguments (engine, platform, automl_policy, profile,
status) are JSON-schema enums; engine and platform names come from their registries. Each returns a pydantic model (MCP ``outputSchema`` +
``structuredContent``) and carries annotations (read-only / destructive / idempotent hints;
hints only, not security: MCP spec, ``ToolAnnotations``).

Errors: a :class:`~taoskills.errors.TaoSkillsError` becomes a tool error (``isError``) whose
text is ``json.dumps(error.as_dict())`` — ``error`` (code), ``message``, ``field``, ``fix``,
``issues``. Argument-schema failures and unknown tool names (raised inside the SDK) are
rewritten to the same JSON shape by a middleware; any other exception becomes
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
call, tool calls run concurrently off the event loop with a time limit, and every reply
passes one redaction layer.

Run: ``python -m taoskills.surfaces.mcp [--transport stdio|streamable-http] [--host H] [--port P]``.
"""

import argparse
import base64
import ipaddress
import json
import logging
import mimetypes
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources import FileResource
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from taoskills.data import preflight as pf
from taoskills.errors import TaoSkillsError
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import registry as platform_registry
from taoskills.security import transport as edge
from taoskills.security.inputs import check_arguments
from taoskills.security.redact import redact
from taoskills.service import (
    CheckpointResult,
    JobHandle,
    JobLogs,
    JobStatus,
    RoutedRequest,
    RunnerResult,
    Service,
    SkillDetail,
    SkillSummary,
    SpecResult,
    ValidationResult,
    dump_yaml,
)
from taoskills.surfaces import mcp_automl, mcp_estimate
from taoskills.surfaces.mcp_prompts import register_prompts

log = logging.getLogger("taoskills.mcp")

SERVER_NAME = "tao-skills"
DEFAULT_PORT = 8765
LOG_TAIL_MAX = 5000  # lines
ENGINE_HELP = (
    "runtime engine: 'auto' (the first that can run the action here; see get_skill runs_here), "
    "'builtin' (this runtime's PyTorch engine) or 'tao' (TAO container entrypoint)"
)
LOG_BYTES_MAX = 262144  # bytes returned by job_logs at most
#: Tool calls running at once (threads) and the wall-clock limit of one call (seconds).
MAX_CONCURRENT_CALLS = 8
TOOL_TIMEOUT_S = 300.0
GIL_SWITCH_S = 0.001
JOB_STATES = Literal["PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN"]
#: automl_policy values (taoskills.bank.automl_policy) and build profiles (taoskills.specs.builder).
AUTOML_POLICY = Literal["on", "off", "auto"]
PROFILE = Literal["smoke"]
WAIT_MAX_S = 3600.0  # wait_job's longest wait (s); it then returns the current status

INSTRUCTIONS = """\
tao-skills: train NVIDIA TAO models (NVDINOv2, DINO, MAE, Grounding DINO; AutoML) from a skill bank.
Typical flow: list_skills -> route_request(text) -> get_skill / get_spec_template -> build_spec
(check valid/issues) -> preflight -> launch_job (returns a job_id at once) -> poll job_status until
COMPLETE/ERROR/CANCELED -> resolve_checkpoint or launch the next action with parent_job_id.
Every error is JSON with 'message', 'field' and 'fix' (what to do next). Skill files are resources
skill://<skill>/<path> (start with SKILL.md and references/skill_info.yaml)."""


# ----------------------------------------------------------------------------- result wrappers


class SkillList(BaseModel):
    """All skills in the bank."""

    skills: list[SkillSummary]


class SpecTemplate(BaseModel):
    """A packaged spec template: nested dict and the same as YAML text."""

    skill: str
    action: str
    spec: dict[str, Any]
    spec_yaml: str


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobStatus]


# ----------------------------------------------------------------------------- error replies


class PlotReply(BaseModel):
    """Structured part of a ``plot_job`` reply (the PNG itself comes as image content)."""

    job_id: str
    png: str = Field(description="path of the PNG on the runtime host (beside the job's status.json)")


def _error_result(payload: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload, default=str))], is_error=True)


def _internal_error(tool: str) -> dict[str, Any]:
    return {
        "error": "internal",
        "message": f"tool {tool} failed with an unexpected internal error (details are in the server's stderr log)",
        "fix": "retry once; if it fails again, report this to the tao-skills maintainers with the tool name, "
        "its arguments and the server log",
    }


class _ErrorShapeMiddleware:
    """Rewrite SDK-made tool errors (bad arguments, unknown tool) into the JSON error shape.

    Tool errors raised by the service are already JSON (see :func:`_call`); the SDK's own
    errors are plain text (``Error executing tool X: 1 validation error ...``), so this adds
    a ``fix`` that says what to do next.
    """

    async def __call__(self, ctx, call_next):
        if getattr(ctx, "method", None) == "tools/call":  # security: hostile arguments refused first
            args = ctx.params if isinstance(ctx.params, Mapping) else {}
            try:
                check_arguments(
                    str(args.get("name", "?")), args.get("arguments") if isinstance(args.get("arguments"), Mapping) else None
                )
            except TaoSkillsError as exc:
                return _error_result(redact(exc.as_dict())).model_dump(mode="json", by_alias=True, exclude_none=True)
        result = await call_next(ctx)
        if getattr(ctx, "method", None) != "tools/call":
            return result
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not isinstance(result, dict) or not result.get("isError"):
            return result
        content = result.get("content") or []
        text = content[0].get("text", "") if content and isinstance(content[0], dict) else ""
        try:
            json.loads(text)
            return result  # already our JSON shape
        except ValueError:
            pass
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        tool = params.get("name", "?")
        if text.lower().startswith("unknown tool"):
            payload = {
                "error": "not_found",
                "message": text,
                "field": "name",
                "fix": "call tools/list and use one of the listed tool names",
            }
        else:
            payload = {
                "error": "invalid_arguments",
                "message": text,
                "field": "arguments",
                "fix": f"correct the arguments of {tool} to match its inputSchema (tools/list): "
                "the message names each bad field and what was expected",
            }
        return {**result, "content": [{"type": "text", "text": json.dumps(redact(payload))}]}


# ----------------------------------------------------------------------------- server


def _hints(
    *, read_only: bool, idempotent: bool, destructive: bool = False, open_world: bool = False, title: str | None = None
) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


RO = dict(read_only=True, idempotent=True)


def build_server(service: Service | None = None) -> MCPServer:
    """Build the MCP server over ``service`` (default: ``Service()`` with the default skill
    bank and ``$TAO_SKILLS_HOME``). Registers the tools, the workflow prompts and every
    skill file as a resource. Service calls run concurrently on worker threads (at most
    :data:`MAX_CONCURRENT_CALLS` at once, each limited to :data:`TOOL_TIMEOUT_S` seconds)
    so the event loop stays free; every reply passes the redaction layer
    (:func:`taoskills.security.redact.redact`).
    """
    svc = service if service is not None else Service()
    # enums from the registries at build time (plug-ins registered by then are listed)
    EngineName = Literal[tuple(dict.fromkeys(["auto", *engine_registry.engines()]))]  # type: ignore[valid-type]
    PlatformName = Literal[tuple(platform_registry.names())]  # type: ignore[valid-type]
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_CALLS)
    # security (no request freezes the server): the event-loop thread gets the GIL back
    # within GIL_SWITCH_S while tool threads compute (CPython's default is 5 ms).
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, middleware=[_ErrorShapeMiddleware()])

    async def _call(tool: str, fn: Callable[[], Any]) -> Any:
        try:
            with anyio.fail_after(TOOL_TIMEOUT_S):
                return redact(await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True))
        except TimeoutError:
            log.warning("tool %s: no answer within %.0f s", tool, TOOL_TIMEOUT_S)
            return _error_result(
                {
                    "error": "timeout",
                    "message": f"tool {tool} did not finish within {TOOL_TIMEOUT_S:g} s",
                    "fix": "retry with smaller inputs (a shorter log slice, a simpler grep); long work runs as a job",
                }
            )
        except TaoSkillsError as exc:
            log.info("tool %s: %s", tool, exc.code)
            return _error_result(redact(exc.as_dict()))
        except Exception:  # never leak a traceback (paths, env) to the client
            log.exception("tool %s raised an unexpected exception", tool)
            return _error_result(_internal_error(tool))

    # -- health ---------------------------------------------------------------------------

    @server.tool(annotations=_hints(**RO, title="Health check"))
    async def ping() -> str:
        """Health check: returns "pong" (structured: {"result": "pong"}) and touches nothing (no skills, no jobs).

        Use it to see that the server is up; the MCP benchmark uses it as its baseline.
        """
        return "pong"

    # -- skills ---------------------------------------------------------------------------

    @server.tool(annotations=_hints(**RO, title="List skills"))
    async def list_skills() -> SkillList:
        """List every skill in the bank: name, kind (model|application), network_arch, description,
        actions (train, inference, export, ...), automl_enabled, builtin_engine_actions (actions the
        built-in CPU/GPU engine implements) and engine_actions (runtime engine -> actions it implements).

        Next: route_request(text) to pick a skill for a request, or get_skill(name) for details.
        """
        return await _call("list_skills", lambda: SkillList(skills=svc.list_skills()))

    @server.tool(annotations=_hints(**RO, title="Get skill"))
    async def get_skill(
        name: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2' (see list_skills)")],
    ) -> SkillDetail:
        """One skill in full: frontmatter, SKILL.md body, file list (each readable as resource
        skill://<name>/<file>), shorthand keys (e.g. num_epochs -> train.num_epochs), metric contract,
        the data sources each action needs (role -> spec key, expected archive/folder), and runs_here:
        per action, which runtime engines on which platforms can run it on this host (engine/platform
        of the first that can), or 'next' - the one thing to do when none can.

        Errors: not_found with a did-you-mean when the name is unknown; fix = use a listed name.
        """
        return await _call("get_skill", lambda: svc.get_skill(name))

    @server.tool(annotations=_hints(**RO, title="Route a request"))
    async def route_request(
        text: Annotated[str, Field(description="the user's request in plain words, e.g. 'train NVDINOv2 on my photos'")],
        action: Annotated[
            str | None, Field(description="force an action (train, inference, export, ...); default: inferred")
        ] = None,
        automl_policy: Annotated[
            AUTOML_POLICY | None,
            Field(
                description="'on', 'off' or 'auto' to override the AutoML decision; default: inferred from the text and the skill"
            ),
        ] = None,
    ) -> RoutedRequest:
        """Map a request to a skill, action and automl_policy, with the parameters found in the text,
        a confidence and alternatives. skill is null when no skill applies (no_skill_reason names the
        nearest). automl_policy is the resolved decision (policy on/off, its source and the deciding
        phrase). runs_here says where the routed action can run on this host, or the one thing to do.
        Read-only: it launches nothing.

        Next: build_spec(skill, action, ...) with the returned parameters. For training, automl_policy
        'on' means launch_job starts an AutoML run (automl_start for its settings); 'off' trains directly.
        """
        return await _call("route_request", lambda: svc.route_request(text, action=action, automl_policy=automl_policy))

    # -- specs ----------------------------------------------------------------------------

    @server.tool(annotations=_hints(**RO, title="Get spec template"))
    async def get_spec_template(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name, e.g. 'train', 'inference', 'export'")],
    ) -> SpecTemplate:
        """The packaged spec template (TAO Core 7.3.0 defaults) of skill/action, as a nested dict and
        as YAML. Values '???' are required and are filled by build_spec from data sources, parent jobs
        and inference rules. Keys are TAO spec keys; override them with dotted names
        (e.g. 'train.num_epochs').

        Errors: not_found (unknown skill or action) with the valid names in the fix.
        """

        def run() -> SpecTemplate:
            spec = svc.get_spec_template(skill, action)
            return SpecTemplate(skill=skill, action=action, spec=spec, spec_yaml=dump_yaml(spec))

        return await _call("get_spec_template", run)

    @server.tool(annotations=_hints(read_only=False, idempotent=True, title="Build a spec"))
    async def build_spec(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name, e.g. 'train'")],
        overrides: Annotated[
            dict[str, Any] | None,
            Field(description="dotted spec keys -> values, e.g. {'train.num_epochs': 5, 'dataset.batch_size': 8}"),
        ] = None,
        shorthand: Annotated[
            dict[str, Any] | None,
            Field(description="skill shorthand names -> values, e.g. {'num_epochs': 5} (get_skill lists them)"),
        ] = None,
        data_sources: Annotated[
            dict[str, str] | None,
            Field(
                description="dataset role -> local folder or archive path, e.g. {'train_datasets': '/data/photos'}; the folder holds images_train/ or images_train.tar.gz (get_skill shows each action's roles)"
            ),
        ] = None,
        parent_job_id: Annotated[
            str | None, Field(description="COMPLETE job whose results feed this action (e.g. the train job for inference/export)")
        ] = None,
        resume_job_id: Annotated[str | None, Field(description="job whose full training checkpoint to resume from")] = None,
        pretrained_model: Annotated[str | None, Field(description="path of a pretrained model file to start from")] = None,
        pretrained_backbone: Annotated[
            str | None, Field(description="path of backbone-only pretrained weights (DINO, Grounding DINO)")
        ] = None,
        profile: Annotated[
            PROFILE | None, Field(description="'smoke' applies the skill's small validation-run settings; default none")
        ] = None,
        stage: Annotated[
            bool, Field(description="extract dataset archives into the staging cache (default true); false = pure preview")
        ] = True,
    ) -> SpecResult:
        """Build a complete spec for skill/action: template + parent-job carry + profile + data
        sources + shorthand + overrides + TAO inference rules. Returns the spec (dict and YAML), what
        was inferred or staged and why, notes, and validation issues (valid=false with issues listed;
        nothing raised for those, so you see all problems at once), and runs_here: which runtime
        engines/platforms can run this action on this host, or 'next', the one thing to do. Launches nothing.

        Not read-only: with stage=true it may extract dataset archives into the runtime's staging
        cache (<TAO_SKILLS_HOME>/staging); the user's data is never modified and a repeat call reuses
        the cache (idempotent). Pass stage=false for a side-effect-free preview.

        Errors: spec_invalid (unknown shorthand/override key, with did-you-mean; unknown data source
        role; parent job not COMPLETE), staging_failed (bad or unsafe archive), not_found.
        Next: fix issues and rebuild, then preflight and launch_job with the same arguments.
        """
        return await _call(
            "build_spec",
            lambda: svc.build_spec(
                skill,
                action,
                overrides=overrides,
                shorthand=shorthand,
                data_sources=data_sources,
                parent_job_id=parent_job_id,
                resume_job_id=resume_job_id,
                pretrained_model=pretrained_model,
                pretrained_backbone=pretrained_backbone,
                profile=profile,
                stage=stage,
            ),
        )

    @server.tool(annotations=_hints(**RO, title="Validate a spec"))
    async def validate_spec(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the nested spec (as from get_spec_template or build_spec)")],
        require_complete: Annotated[
            bool, Field(description="also flag required values still '???' (true before a launch)")
        ] = False,
    ) -> ValidationResult:
        """Check a nested spec against the action's schema (types, enums, bounds, unknown keys with
        did-you-mean) and TAO's semantic constraints. Returns valid, issues (each with field, reason,
        fix) and warnings. Launches nothing.

        Errors: not_found (unknown skill/action). Next: apply each issue's fix and validate again.
        """
        return await _call("validate_spec", lambda: svc.validate_spec(skill, action, spec, require_complete=require_complete))

    @server.tool(annotations=_hints(**RO, title="Preflight checks"))
    async def preflight(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the built spec (build_spec's 'spec')")],
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="where the job runs, e.g. 'local'")] = "local",  # type: ignore[valid-type]
    ) -> pf.PreflightReport:
        """Check the data and host before a launch: each image folder exists, is a folder (not an
        archive), has enough readable images for one batch (corrupt files listed); host/engine and
        credential checks. Returns the report (ok + per-check results with fixes); launches nothing.

        Next: fix every failed check, then launch_job.
        """
        return await _call("preflight", lambda: svc.preflight(skill, action, spec, engine=engine, platform=platform))

    @server.tool(annotations=_hints(**RO, title="Render runner script"))
    async def render_runner(
        skill: Annotated[str, Field(description="skill name")],
        action: Annotated[str, Field(description="action name")],
        spec: Annotated[dict[str, Any], Field(description="the built spec")],
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="platform name, e.g. 'local'")] = "local",  # type: ignore[valid-type]
    ) -> RunnerResult:
        """Render (not run, not write) the bash runner script a launch would use: it writes the spec
        and runs the engine, with secrets passed by env-var name only. For review before launch_job.

        Errors: not_supported when the engine cannot run this action here (fix names the engine to use).
        """
        return await _call("render_runner", lambda: svc.render_runner(skill, action, spec, engine=engine, platform=platform))

    # -- jobs -----------------------------------------------------------------------------

    @server.tool(annotations=_hints(read_only=False, idempotent=False, open_world=True, title="Launch a job"))
    async def launch_job(
        skill: Annotated[str, Field(description="skill name, e.g. 'tao-train-nvdinov2'")],
        action: Annotated[str, Field(description="action name: train, inference, export, ...")],
        overrides: Annotated[
            dict[str, Any] | None, Field(description="dotted spec keys -> values, e.g. {'train.num_epochs': 5}")
        ] = None,
        shorthand: Annotated[dict[str, Any] | None, Field(description="skill shorthand names -> values")] = None,
        data_sources: Annotated[
            dict[str, str] | None,
            Field(description="dataset role -> local folder or archive path, e.g. {'train_datasets': '/data/photos'}"),
        ] = None,
        parent_job_id: Annotated[
            str | None, Field(description="COMPLETE job to take the model from (inference/export after train)")
        ] = None,
        resume_job_id: Annotated[str | None, Field(description="job to resume training from")] = None,
        pretrained_model: Annotated[str | None, Field(description="path of a pretrained model file")] = None,
        pretrained_backbone: Annotated[
            str | None, Field(description="path of backbone-only pretrained weights (DINO, Grounding DINO)")
        ] = None,
        profile: Annotated[PROFILE | None, Field(description="'smoke' for a small validation run")] = None,
        automl_policy: Annotated[
            AUTOML_POLICY | None,
            Field(
                description="'off' = plain training; 'on' = AutoML (an AutoML run, itself a job); 'auto' or unset = the skill's policy and the words in request_text"
            ),
        ] = None,
        request_text: Annotated[
            str, Field(description="the user's words, used to resolve automl_policy (e.g. 'plain training')")
        ] = "",
        engine: Annotated[EngineName, Field(description=ENGINE_HELP)] = "auto",  # type: ignore[valid-type]
        platform: Annotated[PlatformName, Field(description="where to run, e.g. 'local'")] = "local",  # type: ignore[valid-type]
        automl: Annotated[
            dict[str, Any] | None, Field(description="AutoML settings when automl_policy is on (see automl_start)")
        ] = None,
    ) -> JobHandle:
        """Build, validate, preflight, record and start a job; returns a handle at once (it does not
        wait). The handle has job_id, status (RUNNING), results_dir, log_path and 'next'. The job_id is
        a record key, not a credential; jobs live until deleted from the runtime's job store.

        Nothing is launched and no record is written when a check fails. Train with AutoML on starts
        an AutoML run (itself a job; see automl_status). Errors: spec_invalid (issues list
        every bad key with its fix), preflight_failed (data/host checks with fixes), not_supported
        (engine cannot run this action), staging_failed, job_error (platform failed to start it).
        Next: poll job_status(job_id) every few seconds until COMPLETE, ERROR or CANCELED.
        """
        return await _call(
            "launch_job",
            lambda: svc.launch_job(
                skill,
                action,
                overrides=overrides,
                shorthand=shorthand,
                data_sources=data_sources,
                parent_job_id=parent_job_id,
                resume_job_id=resume_job_id,
                pretrained_model=pretrained_model,
                pretrained_backbone=pretrained_backbone,
                profile=profile,
                automl_policy=automl_policy,
                request_text=request_text,
                engine=engine,
                platform=platform,
                automl=automl,
            ),
        )

    @server.tool(annotations=_hints(**RO, title="Job status"))
    async def job_status(
        job_id: Annotated[
            str, Field(description="job id from launch_job or list_jobs, e.g. 'job-1a2b3c4d5e6f', or a unique prefix of one")
        ],
    ) -> JobStatus:
        """State of a job: PENDING, RUNNING, COMPLETE, ERROR, CANCELED or UNKNOWN (terminal: COMPLETE,
        ERROR, CANCELED), epoch/max_epoch, ETA, KPIs (e.g. train_loss), and for ERROR a failure
        analysis (cause, fault, fix) from the skill's error patterns. 'next' says what to do next.
        Read-only apart from refreshing the stored state from the platform.

        Errors: not_found for an unknown job id (fix: list_jobs).
        """
        return await _call("job_status", lambda: svc.job_status(job_id))

    @server.tool(annotations=_hints(**RO, title="Wait for a job"))
    async def wait_job(
        job_id: Annotated[str, Field(description="job id from launch_job or list_jobs (a unique prefix is accepted)")],
        ctx: Context,
        timeout_s: Annotated[
            float, Field(ge=1, le=WAIT_MAX_S, description=f"wait at most this many seconds (1..{WAIT_MAX_S:g})")
        ] = 600.0,
        poll_s: Annotated[float, Field(ge=0.2, le=60, description="seconds between status reads (0.2..60)")] = 2.0,
    ) -> JobStatus:
        """Block until the job is COMPLETE, ERROR or CANCELED (or ``timeout_s`` passes), sending MCP
        progress notifications while it runs (progress = epoch as job_status reports it, total =
        max_epoch when known, progress = total once COMPLETE; the message holds status, epoch, ETA) when the client asked for them (a progressToken).
        Returns the last job_status; a job still running at the timeout comes back with its
        non-terminal status (call wait_job again). The submit-then-poll alternative: job_status.

        Errors: not_found for an unknown job id (fix: list_jobs).
        """
        deadline = anyio.current_time() + timeout_s
        while True:
            status = await _call("wait_job", lambda: svc.job_status(job_id))
            if not isinstance(status, JobStatus):
                return status  # an error reply
            msg = f"{status.status} epoch {status.epoch}/{status.max_epoch}" + (f", ETA {status.eta}" if status.eta else "")
            try:
                total = float(status.max_epoch) if status.max_epoch else None
                done = total if status.status == "COMPLETE" and total else float(status.epoch or 0)
                await ctx.report_progress(done, total, msg)
            except Exception:  # progress is best effort: a client that went away must not fail the wait
                log.debug("wait_job: progress notification failed", exc_info=True)
            if status.status in ("COMPLETE", "ERROR", "CANCELED") or anyio.current_time() >= deadline:
                return status
            await anyio.sleep(min(poll_s, max(0.0, deadline - anyio.current_time())))

    @server.tool(annotations=_hints(**RO, title="Job logs"))
    async def job_logs(
        job_id: Annotated[str, Field(description="job id")],
        tail: Annotated[int, Field(ge=1, le=LOG_TAIL_MAX, description=f"last N lines (1..{LOG_TAIL_MAX})")] = 200,
        grep: Annotated[
            str | None, Field(description="keep only lines matching this regular expression (Python re), e.g. 'loss|Error'")
        ] = None,
        max_bytes: Annotated[
            int, Field(ge=256, le=LOG_BYTES_MAX, description=f"cap on returned text in bytes (256..{LOG_BYTES_MAX})")
        ] = 65536,
    ) -> JobLogs:
        """A bounded slice of the job's log: the last `tail` lines, optionally filtered by regex
        `grep`, at most `max_bytes`. Use it after job_status shows ERROR (read failure.fix first) or
        to follow progress.

        Errors: not_found (unknown job), spec_invalid (bad regex: fix the pattern).
        """
        return await _call("job_logs", lambda: svc.job_logs(job_id, tail=tail, grep=grep, max_bytes=max_bytes))

    @server.tool(annotations=_hints(read_only=False, idempotent=True, destructive=True, open_world=True, title="Cancel a job"))
    async def cancel_job(
        job_id: Annotated[str, Field(description="job id to stop")],
    ) -> JobStatus:
        """Stop a running job (its process group gets SIGTERM, then SIGKILL) and mark it CANCELED; its
        partial results stay on disk. A job that already finished is left as it is. Destructive: the
        run's progress since its last checkpoint is lost. Returns the job's status.

        Errors: not_found (unknown job id). Next: launch again (resume_job_id to continue training).
        """
        return await _call("cancel_job", lambda: svc.cancel_job(job_id))

    @server.tool(annotations=_hints(read_only=False, idempotent=True, title="Plot a job's KPI curves"))
    async def plot_job(
        job_id: Annotated[str, Field(description="job id from launch_job or list_jobs, e.g. 'job-1a2b3c4d5e6f'")],
    ) -> Annotated[CallToolResult, PlotReply]:
        """The job's KPI curves (e.g. train_loss per zero-indexed epoch, from its status.json) as a
        PNG image (MCP image content, image/png) plus a text line with the PNG's path
        (``kpi_curves.png`` beside the job's status.json, rewritten on each call). Works for any engine and for a
        job still running (the epochs so far). Show the image to the user.

        Errors: not_found (unknown job id: list_jobs; no KPI values yet: wait for an epoch).
        """
        result = await _call("plot_job", lambda: str(svc.plot_job(job_id)))
        if isinstance(result, CallToolResult):
            return result
        data = base64.b64encode(Path(result).read_bytes()).decode("ascii")
        reply = {"job_id": job_id, "png": result}
        return CallToolResult(
            content=[
                TextContent(type="text", text=json.dumps(reply)),
                ImageContent(type="image", data=data, mime_type="image/png"),
            ],
            structured_content=reply,
        )

    @server.tool(annotations=_hints(**RO, title="List jobs"))
    async def list_jobs(
        status: Annotated[JOB_STATES | None, Field(description="only jobs in this state")] = None,
        skill: Annotated[str | None, Field(description="only jobs of this skill")] = None,
        action: Annotated[str | None, Field(description="only jobs of this action")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many jobs (1..500)")] = 50,
    ) -> JobList:
        """Jobs newest first, with their refreshed status (same fields as job_status).

        Next: job_status / job_logs / resolve_checkpoint on a job_id from the list.
        """
        return await _call(
            "list_jobs", lambda: JobList(jobs=svc.list_jobs(status=status, skill=skill, action=action, limit=limit))
        )

    @server.tool(annotations=_hints(**RO, title="Resolve checkpoint"))
    async def resolve_checkpoint(
        job_id: Annotated[str, Field(description="a COMPLETE train job")],
        for_action: Annotated[
            str, Field(description="the consuming action: 'inference', 'export', ... or 'resume'")
        ] = "inference",
        epoch: Annotated[int | None, Field(ge=0, description="pick this epoch's checkpoint; default: the last")] = None,
        allow_latest: Annotated[
            bool, Field(description="accept the 'latest' alias file when no numbered checkpoint exists")
        ] = False,
    ) -> CheckpointResult:
        """The model file that `for_action` should consume from a job's results, by the skill's
        checkpoint rule (NVDINOv2: student_epoch_* for inference/export, model_epoch_* for resume),
        with the reason and all candidates.

        Errors: not_found (no matching checkpoint or the action takes none; fix names the options).
        Usually you do not need it: launch_job(parent_job_id=...) resolves the checkpoint itself.
        """
        return await _call(
            "resolve_checkpoint", lambda: svc.resolve_checkpoint(job_id, for_action, epoch=epoch, allow_latest=allow_latest)
        )

    _register_skill_resources(server, svc)
    mcp_automl.register(server, svc)  # AutoML tools (taoskills.surfaces.mcp_automl)
    mcp_estimate.register(server, svc)  # estimate tool (taoskills.surfaces.mcp_estimate)
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


__all__ = ["build_server", "run", "main", "SkillList", "SpecTemplate", "JobLogs", "JobList"]


if __name__ == "__main__":
    sys.exit(main())
