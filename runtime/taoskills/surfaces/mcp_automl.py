"""AutoML tools of the MCP server: start, status, best, suggest, tell, report, cancel.

Registered by :func:`register` from :func:`taoskills.surfaces.mcp.build_server`. A thin skin
over :mod:`taoskills.automl` (no logic here). Errors have the server's JSON shape
(``error``, ``message``, ``field``, ``fix``). A run is named by its AutoML job id (what
``automl_start`` or ``launch_job`` with automl_policy on returned) or its run folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from taoskills.errors import TaoSkillsError
from taoskills.service import JobHandle, JobStatus

log = logging.getLogger("taoskills.mcp.automl")
#: The tools :func:`register` adds.
AUTOML_TOOLS = frozenset(
    {"automl_start", "automl_status", "automl_best", "automl_suggest", "automl_tell", "automl_report", "automl_cancel"}
)
RUN = Annotated[str, Field(description="the AutoML job id (or its run folder)")]


class AutoMLStatus(BaseModel):
    """A run's state: ``counts`` = {trials, finished, complete, pruned, failed, running,
    progress (0..1 of max_trials), trial_epochs (epochs trained over all trials), best
    {number, value, values}}; ``trials`` = [{number, state, value, job_id, trial_epochs,
    values, reason}]."""

    model_config = ConfigDict(extra="allow")
    job_id: str | None
    status: str | None
    run_dir: str
    algorithm: str
    max_trials: int
    max_epochs: int
    objectives: list[dict[str, Any]]
    counts: dict[str, Any]
    trials: list[dict[str, Any]] = Field(default_factory=list)
    best_rec: str | None = None


class AutoMLData(BaseModel):
    """A JSON document of the run (best_rec, report, suggestion or counts)."""

    model_config = ConfigDict(extra="allow")


def _hints(read_only: bool, idempotent: bool, destructive: bool = False, title: str | None = None) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent)


def register(server: Any, service: Any) -> None:
    """Add the AutoML tools to ``server`` (an MCPServer) over ``service``."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taoskills-mcp-automl")

    async def _call(tool: str, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except TaoSkillsError as exc:
            log.info("tool %s: %s", tool, exc.code)
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(exc.as_dict(), default=str))], is_error=True)
        except Exception:
            log.exception("tool %s raised an unexpected exception", tool)
            payload = {
                "error": "internal",
                "message": f"tool {tool} failed unexpectedly (see the server log)",
                "fix": "retry once, then report it",
            }
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload))], is_error=True)

    from taoskills.automl import ask_tell, query
    from taoskills.automl.service_hook import launch_automl

    @server.tool(annotations=_hints(False, False, title="Start an AutoML run"))
    async def automl_start(
        skill: Annotated[str, Field(description="model skill, e.g. 'tao-train-nvdinov2'")],
        data_sources: Annotated[
            dict[str, str] | None, Field(description="dataset role -> folder, e.g. {'train_datasets': '/data'}")
        ] = None,
        overrides: Annotated[dict[str, Any] | None, Field(description="dotted spec keys every trial starts from")] = None,
        profile: Annotated[str | None, Field(description="'smoke' for the skill's small settings")] = None,
        pretrained_model: Annotated[str | None, Field(description="pretrained model file")] = None,
        algorithm: Annotated[
            str | None, Field(description="bayesian (default) | tpe | gp | random | cmaes | hyperband | asha | bohb | nsga2")
        ] = None,
        max_trials: Annotated[int | None, Field(description="trials (default 10)", ge=1)] = None,
        max_epochs: Annotated[int | None, Field(description="epochs of a full trial (default the spec's)", ge=1)] = None,
        min_epochs: Annotated[int, Field(description="first rung of multi-fidelity algorithms", ge=1)] = 1,
        reduction_factor: Annotated[int, Field(description="eta of multi-fidelity algorithms", ge=2)] = 3,
        parallel: Annotated[int, Field(description="trials at once", ge=1)] = 1,
        parameters: Annotated[
            list[str] | None, Field(description="dotted keys to search (default: the schema's AutoML parameters)")
        ] = None,
        disabled_parameters: Annotated[list[str] | None, Field(description="keys not to search")] = None,
        custom_param_ranges: Annotated[
            dict[str, dict[str, Any]] | None,
            Field(description="key -> {valid_min, valid_max, valid_options, option_weights, log}"),
        ] = None,
        metric: Annotated[
            list[dict[str, str]] | None,
            Field(description="[{name, direction}] (default: the skill's metric contract); 2+ -> nsga2"),
        ] = None,
        storage: Annotated[str | None, Field(description="study storage: SQLAlchemy URL or journal://PATH")] = None,
        keep_checkpoints: Annotated[bool, Field(description="keep losing trials' checkpoints")] = False,
        baseline: Annotated[
            bool, Field(description="trial 0 trains the base spec's values to max_epochs, never pruned (best_rec never worse)")
        ] = True,
        seed: Annotated[int | None, Field(description="sampler seed")] = None,
        agent_driven: Annotated[
            bool, Field(description="prepare the study only; you drive it with automl_suggest/automl_tell")
        ] = False,
        engine: Annotated[Literal["builtin", "tao"], Field(description="'builtin' or 'tao'")] = "builtin",
        platform: Annotated[str, Field(description="where trials run")] = "local",
    ) -> JobHandle:
        """Start an AutoML run of a model skill's train action; it is itself a job (returns at once).

        Every check of a plain launch runs first (spec, data, host; sampled specs validated);
        nothing is launched when one fails. Trials are normal train jobs. Next: poll
        automl_status(job_id); when COMPLETE, automl_best, or resolve_checkpoint(job_id) /
        parent_job_id=job_id for evaluate/export/inference.
        """
        settings = {
            "algorithm": algorithm,
            "max_trials": max_trials,
            "max_epochs": max_epochs,
            "min_epochs": min_epochs,
            "reduction_factor": reduction_factor,
            "parallel": parallel,
            "parameters": parameters,
            "disabled_parameters": disabled_parameters,
            "custom_param_ranges": custom_param_ranges,
            "metric": metric,
            "storage": storage,
            "keep_checkpoints": keep_checkpoints,
            "baseline": baseline,
            "seed": seed,
        }
        return await _call(
            "automl_start",
            lambda: launch_automl(
                service,
                skill,
                "train",
                engine=engine,
                platform=platform,
                settings={k: v for k, v in settings.items() if v is not None},
                launch=not agent_driven,
                data_sources=data_sources,
                overrides=overrides,
                profile=profile,
                pretrained_model=pretrained_model,
            ),
        )

    @server.tool(annotations=_hints(True, True, title="AutoML status"))
    async def automl_status(run: RUN, trials: Annotated[bool, Field(description="include every trial")] = True) -> AutoMLStatus:
        """Trials complete / pruned / failed / running, progress (0..1), trial-epochs used and the best so far."""
        return await _call("automl_status", lambda: AutoMLStatus(**query.status(service, run, trials=trials)))

    @server.tool(annotations=_hints(True, True, title="AutoML best"))
    async def automl_best(run: RUN) -> AutoMLData:
        """best_rec: {metric_name, direction, best {rec_id, score, specs (epoch budget moved to
        observed_budget), checkpoint_uri, job_id}, budget, all_recs}; while running, the best so far."""
        return await _call("automl_best", lambda: AutoMLData(**query.best(service, run)))

    @server.tool(annotations=_hints(False, False, title="AutoML suggest a trial"))
    async def automl_suggest(
        run: RUN,
        params: Annotated[
            dict[str, Any] | None,
            Field(description="your own trial: searched key -> value (validated); omit for the algorithm's"),
        ] = None,
        run_by: Annotated[
            Literal["agent", "controller"], Field(description="'agent': you launch it; 'controller': queue it")
        ] = "agent",
    ) -> AutoMLData:
        """Ask for the next trial (or propose yours). run_by='agent' returns {trial_number, values,
        overrides}: launch_job(skill, 'train', automl_policy='off', overrides=overrides), then
        automl_tell. run_by='controller' queues params for the running controller."""
        if run_by == "controller":
            return await _call("automl_suggest", lambda: AutoMLData(**ask_tell.propose(service, run, params or {})))
        return await _call("automl_suggest", lambda: AutoMLData(**ask_tell.suggest(service, run, params)))

    @server.tool(annotations=_hints(False, False, title="AutoML tell a result"))
    async def automl_tell(
        run: RUN,
        trial_number: Annotated[int, Field(description="from automl_suggest")],
        value: Annotated[float | list[float] | None, Field(description="the metric value (or values)")] = None,
        job_id: Annotated[str | None, Field(description="a finished train job: its metric is read from status.json")] = None,
        state: Annotated[Literal["complete", "pruned", "fail"], Field(description="the trial's outcome")] = "complete",
    ) -> AutoMLData:
        """Report a trial's result (value, or job_id of its train job); returns the run's counts and best."""
        return await _call(
            "automl_tell",
            lambda: AutoMLData(**ask_tell.tell(service, run, trial_number, value=value, job_id=job_id, state=state)),
        )

    @server.tool(annotations=_hints(True, True, title="AutoML report"))
    async def automl_report(run: RUN) -> AutoMLData:
        """The finished run's report: settings, search space, every trial, best, markdown text and plot files."""
        return await _call("automl_report", lambda: AutoMLData(**query.report(service, run)))

    @server.tool(annotations=_hints(False, True, destructive=True, title="AutoML cancel"))
    async def automl_cancel(run: RUN) -> JobStatus:
        """Stop the AutoML job and its running trials (finished trials and best_rec so far are kept)."""

        def cancel() -> JobStatus:
            _, job_id = query.run_dir_of(service, run)
            return service.cancel_job(job_id)

        return await _call("automl_cancel", cancel)
