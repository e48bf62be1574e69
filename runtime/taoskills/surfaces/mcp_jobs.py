"""Job tools of the MCP server: ``launch_job``, ``job_status``, ``wait_job`` (blocking, with
progress notifications), ``job_logs``, ``cancel_job``, ``plot_job``, ``list_jobs``,
``resolve_checkpoint``.

Same pattern as :mod:`taoskills.surfaces.mcp_skills` (registered right after it): each tool
calls one job method of :class:`taoskills.service.Service` through the server's ToolRunner;
``wait_job`` polls ``job_status`` and reports progress, ``plot_job`` adds the PNG as image
content.
"""

import base64
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field

from taoskills.service import CheckpointResult, JobHandle, JobLogs, JobStatus, Service
from taoskills.surfaces.mcp_runtime import (
    AUTOML_POLICY,
    ENGINE_HELP,
    JOB_STATES,
    PROFILE,
    RO,
    ToolRunner,
    hints,
    registry_enums,
    reply,
)

log = logging.getLogger("taoskills.mcp")

LOG_TAIL_MAX = 5000  # lines
LOG_BYTES_MAX = 262144  # bytes returned by job_logs at most
WAIT_MAX_S = 3600.0  # wait_job's longest wait (s); it then returns the current status


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobStatus]


class PlotReply(BaseModel):
    """Structured part of a ``plot_job`` reply (the PNG itself comes as image content)."""

    job_id: str
    png: str = Field(description="path of the PNG on the runtime host (beside the job's status.json)")


def register(server: Any, svc: Service, call: ToolRunner) -> None:
    """Add the job tools to ``server`` over ``svc`` (arguments as in :func:`taoskills.surfaces.mcp_skills.register`)."""
    EngineName, PlatformName = registry_enums()  # noqa: N806 (types of the engine/platform enums)

    # -- jobs -----------------------------------------------------------------------------

    @server.tool(annotations=hints(read_only=False, idempotent=False, open_world=True, title="Launch a job"))
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
        return await call(
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

    @server.tool(annotations=hints(**RO, title="Job status"))
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
        return await call("job_status", lambda: svc.job_status(job_id))

    @server.tool(annotations=hints(**RO, title="Wait for a job"))
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
            status = await call.value("wait_job", lambda: svc.job_status(job_id))
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
                return reply(status)
            await anyio.sleep(min(poll_s, max(0.0, deadline - anyio.current_time())))

    @server.tool(annotations=hints(**RO, title="Job logs"))
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
        return await call("job_logs", lambda: svc.job_logs(job_id, tail=tail, grep=grep, max_bytes=max_bytes))

    @server.tool(annotations=hints(read_only=False, idempotent=True, destructive=True, open_world=True, title="Cancel a job"))
    async def cancel_job(
        job_id: Annotated[str, Field(description="job id to stop")],
    ) -> JobStatus:
        """Stop a running job (its process group gets SIGTERM, then SIGKILL) and mark it CANCELED; its
        partial results stay on disk. A job that already finished is left as it is. Destructive: the
        run's progress since its last checkpoint is lost. Returns the job's status.

        Errors: not_found (unknown job id). Next: launch again (resume_job_id to continue training).
        """
        return await call("cancel_job", lambda: svc.cancel_job(job_id))

    @server.tool(annotations=hints(read_only=False, idempotent=True, title="Plot a job's KPI curves"))
    async def plot_job(
        job_id: Annotated[str, Field(description="job id from launch_job or list_jobs, e.g. 'job-1a2b3c4d5e6f'")],
    ) -> Annotated[CallToolResult, PlotReply]:
        """The job's KPI curves (e.g. train_loss per zero-indexed epoch, from its status.json) as a
        PNG image (MCP image content, image/png) plus a text line with the PNG's path
        (``kpi_curves.png`` beside the job's status.json, rewritten on each call). Works for any engine and for a
        job still running (the epochs so far). Show the image to the user.

        Errors: not_found (unknown job id: list_jobs; no KPI values yet: wait for an epoch).
        """
        result = await call("plot_job", lambda: str(svc.plot_job(job_id)))
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

    @server.tool(annotations=hints(**RO, title="List jobs"))
    async def list_jobs(
        status: Annotated[JOB_STATES | None, Field(description="only jobs in this state")] = None,
        skill: Annotated[str | None, Field(description="only jobs of this skill")] = None,
        action: Annotated[str | None, Field(description="only jobs of this action")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many jobs (1..500)")] = 50,
    ) -> JobList:
        """Jobs newest first, with their refreshed status (same fields as job_status).

        Next: job_status / job_logs / resolve_checkpoint on a job_id from the list.
        """
        return await call(
            "list_jobs", lambda: JobList(jobs=svc.list_jobs(status=status, skill=skill, action=action, limit=limit))
        )

    @server.tool(annotations=hints(**RO, title="Resolve checkpoint"))
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
        return await call(
            "resolve_checkpoint", lambda: svc.resolve_checkpoint(job_id, for_action, epoch=epoch, allow_latest=allow_latest)
        )
