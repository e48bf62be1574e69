"""The service API: the one place where the runtime's steps are composed.

The CLI (:mod:`taoskills.surfaces.cli`) and the MCP server (:mod:`taoskills.surfaces.mcp`) are thin
skins over :class:`Service`; no logic lives in them. Every method returns a pydantic
model (MCP structured output, :mod:`taoskills.service_models`) or raises a
:class:`taoskills.errors.TaoSkillsError` whose ``fix`` says what to do next.

A launch is a straight pipeline, each stage entered once (DESIGN.md):
resolve skill/action -> place (runtime engine x platform, :mod:`taoskills.platforms.placement`)
-> automl_policy -> build (spec builder) -> validate -> preflight (data through the platform's
input policy, host through the platform's host checks) -> render (runner script from the
engine's command and env) -> record (PENDING, written before launch) -> submit (platform).
Every stage before record is :meth:`Service.prepare_job` (:mod:`taoskills.service_prepare`),
which ``launch_job`` and the AutoML run (:mod:`taoskills.automl.service_hook`) both call.
The policy of each stage lives in its layer: engines in :mod:`taoskills.platforms.engines`,
platforms in :mod:`taoskills.platforms.registry`, data checks in :mod:`taoskills.data.preflight`.
Job state, logs and checkpoints are read through ``platform.artifacts(record)``.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from taoskills import paths
from taoskills.bank import routing
from taoskills.bank.catalog import Catalog
from taoskills.data import preflight as pf
from taoskills.errors import Issue, JobError
from taoskills.jobs.store import JobRecord, JobStore
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import placement
from taoskills.platforms.base import Platform
from taoskills.platforms.engines import AUTO, RuntimeEngine
from taoskills.platforms.registry import get_platform
from taoskills.platforms.render import render_runner, write_runner
from taoskills.security import inputs as guard
from taoskills.security import launch as launch_guard
from taoskills.service_estimate import EstimateMixin
from taoskills.service_jobs import JobsMixin
from taoskills.service_models import (
    CheckpointResult,
    JobHandle,
    JobLogs,
    JobStatus,
    PreparedJob,
    RoutedRequest,
    RunnerResult,
    SkillDetail,
    SkillSummary,
    SpecReply,
    SpecRequest,
    SpecResult,
    ValidationResult,
    dump_yaml,
)
from taoskills.service_prepare import Engine, PrepareMixin
from taoskills.service_storage import StorageMixin
from taoskills.specs import validator


class Service(PrepareMixin, JobsMixin, StorageMixin, EstimateMixin):
    """The runtime's API. Cheap to construct; state lives in the job store (SQLite).

    ``skills_dir``: skill bank (default :func:`paths.skills_dir`). ``home``: runtime home
    holding ``jobs.db`` and ``jobs/<job_id>/`` workspaces (default :func:`paths.home_dir`).
    """

    def __init__(self, skills_dir: Path | None = None, home: Path | None = None) -> None:
        self.catalog = Catalog.load(skills_dir)
        self.home = Path(home) if home else paths.home_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.home / "jobs.db")

    # -- skills -------------------------------------------------------------------------

    def list_skills(self) -> list[SkillSummary]:
        """All skills in the bank, with their actions and which runtime engine implements which."""
        return [self._summary(s) for s in sorted(self.catalog.skills.values(), key=lambda s: s.name)]

    def get_skill(self, name: str) -> SkillDetail:
        """One skill: frontmatter, SKILL.md body, files, shorthand keys, metric contract, data
        sources, and ``runs_here`` (per action: engines/platforms that can run it here, or the
        one thing to do). Raises NotFound (with did-you-mean) for an unknown name.
        """
        skill = self.catalog.get(name)
        info = skill.info
        return SkillDetail(
            **self._summary(skill).model_dump(),
            frontmatter=skill.frontmatter,
            body=skill.body,
            files=skill.files(),
            shorthand=dict(info.shorthand),
            metrics=[m.model_dump() for m in info.metrics],
            data_sources={a: {k: d.model_dump() for k, d in act.data_sources.items()} for a, act in info.actions.items()},
            runs_here=placement.skill_placement(info),
        )

    def _summary(self, skill) -> SkillSummary:
        info = skill.info
        implements = {
            name: [a for a in info.actions if eng.why_not(info, a) is None] for name, eng in engine_registry.engines().items()
        }
        return SkillSummary(
            name=skill.name,
            kind=info.kind,
            network_arch=info.network_arch,
            description=info.description,
            actions=list(info.actions),
            automl_enabled=info.automl_enabled,
            builtin_engine_actions=implements.get("builtin", []),
            engine_actions=implements,
        )

    # -- routing ------------------------------------------------------------------------

    def route_request(self, text: str, *, action: str | None = None, automl_policy: str | None = None) -> RoutedRequest:
        """Request text -> skill, action, automl_policy, parameters, confidence, alternatives, and
        ``runs_here`` for the routed action (engines/platforms here, or the one thing to do).

        ``skill`` is None when no skill applies; ``no_skill_reason`` then names the nearest.
        """
        guard.check_request({"text": text, "action": action, "automl_policy": automl_policy})  # security: size caps
        routed = routing.route(text, self.catalog, action=action, automl_policy=automl_policy)
        where = None
        if routed.skill and routed.action:
            info = self.catalog.get(routed.skill).info
            if info.kind == "model" and routed.action in info.actions:
                where = placement.place(info, routed.action)
        return RoutedRequest(**routed.model_dump(), runs_here=where)

    # -- specs --------------------------------------------------------------------------

    def get_spec_template(self, skill: str, action: str) -> dict[str, Any]:
        """The packaged spec template (defaults from TAO Core 7.3.0) of ``skill`` ``action``."""
        return copy.deepcopy(self.catalog.get(skill).template(action))

    def build_spec(
        self, skill: str, action: str, *, results_dir: str | None = None, stage: bool = True, **request: Unpack[SpecRequest]
    ) -> SpecResult:
        """Build and validate a spec from a :class:`SpecRequest` (template, overrides, shorthand,
        data sources, parent/resume job, pretrained model, profile). Returns the spec, every
        inferred/staged value, and ``runs_here``. ``results_dir`` defaults to a preview folder;
        ``stage=False`` extracts no archives (a preview with no side effects).

        Validation problems come back in ``issues`` (``valid`` false) rather than raising,
        so an agent sees the whole spec and all problems at once; structural problems
        (unknown shorthand, missing parent, bad archive) raise.
        """
        sk = self.catalog.get(skill)
        sk.action(action)
        guard.check_request(request, schema=sk.schema(action))  # security: hostile values
        results = Path(results_dir) if results_dir else self.home / "preview" / "results"
        built = self._build(sk, action, results_dir=results, stage=stage, **request)
        issues = validator.validate_spec(sk.schema(action), built.spec, network_arch=sk.info.network_arch, action=action)
        return SpecResult(
            skill=sk.name,
            action=action,
            spec=built.spec,
            inferred=built.inferred,
            staged=built.staged,
            notes=built.notes,
            issues=[i.as_dict() for i in issues],
            valid=not [i for i in issues if i.code != "warning"],
            runs_here=placement.place(sk.info, action) if sk.info.kind == "model" else None,
        )

    def validate_spec(self, skill: str, action: str, spec: dict[str, Any], *, require_complete: bool = False) -> ValidationResult:
        """Check a spec against the action's schema and TAO's semantic constraints."""
        sk = self.catalog.get(skill)
        sk.action(action)
        issues = validator.validate_spec(
            sk.schema(action), spec, network_arch=sk.info.network_arch, action=action, require_complete=require_complete
        )
        errors = [i.as_dict() for i in issues if i.code != "warning"]
        warnings = [i.as_dict() for i in issues if i.code == "warning"]
        return ValidationResult(skill=sk.name, action=action, valid=not errors, issues=errors, warnings=warnings)

    # -- preflight ----------------------------------------------------------------------

    def preflight(
        self, skill: str, action: str, spec: dict[str, Any], *, engine: Engine = AUTO, platform: str = "local"
    ) -> pf.PreflightReport:
        """Data checks for every folder input of the action (the platform's input policy), plus
        the platform's host checks for the engine (tools, libraries, GPUs, hardware minimums,
        spec values the engine cannot honour here, e.g. fp16 without a GPU). Never launches.
        ``engine='auto'`` checks the engine a launch would pick.
        """
        sk = self.catalog.get(skill)
        sk.action(action)
        plat = get_platform(platform)
        eng = self._pick_engine(sk, action, engine, platform)
        return self._preflight(sk, action, spec, eng, plat)

    def _pick_engine(self, sk, action: str, engine: Engine, platform: str) -> RuntimeEngine:
        """The named engine, or for ``auto`` the one placement picks (else the one whose fix is shown)."""
        if engine not in (None, "", AUTO):
            return engine_registry.get_engine(engine)
        where = placement.place(sk.info, action, platform=platform)
        pick = where.engine or next((o.engine for o in where.options if o.fix == where.next), None)
        return engine_registry.get_engine(pick or next(iter(engine_registry.engines())))

    def _preflight(self, sk, action: str, spec: dict[str, Any], eng: RuntimeEngine, plat: Platform) -> pf.PreflightReport:
        data, host = self._checks(sk, action, spec, eng, plat)
        return pf.run_preflight(data, host, self._credential_checks(sk, action, spec, eng))

    # -- runner -------------------------------------------------------------------------

    def render_runner(
        self,
        skill: str,
        action: str,
        spec: dict[str, Any],
        *,
        engine: Engine = AUTO,
        platform: str = "local",
        job_id: str | None = None,
        workdir: str | None = None,
    ) -> RunnerResult:
        """Render the runner script (bash) that writes the spec and runs the engine; not launched.

        Each render gets its own job id (``job_id`` default: a new one) and folder
        ``<home>/jobs/<job_id>/``; paths of a preview spec under the shared preview results folder
        (``build_spec``'s default) move to ``<workdir>/results``. On the local platform the
        script, run by hand, registers with this job store when the runtime is importable
        (:mod:`taoskills.jobs.register`), so ``job_status`` follows it; it runs without it too.

        Errors: NotSupported when no engine (or not the named one) can run the action here; its
        ``fix`` is the one thing to do.
        """
        from taoskills.jobs import register

        sk = self.catalog.get(skill)
        eng, plat = self._place(sk, action, engine, platform)
        job_id = job_id or "job-" + uuid.uuid4().hex[:12]
        wd = Path(workdir) if workdir else self.home / "jobs" / job_id
        spec = register.reroot(spec, str(self.home / "preview" / "results"), str(wd / "results"))
        ctx = self._runner_context(sk, action, spec, eng, plat, job_id, wd)
        if plat.name == "local":
            ctx.register_command = register.register_argv(ctx.model_dump(), home=self.home)
            ctx.register_log = str(Path(ctx.workdir) / "log.txt")
        script = render_runner(ctx)
        return RunnerResult(
            skill=sk.name, action=action, engine=eng.name, platform=plat.name, script=script, job_id=job_id, workdir=str(wd)
        )

    def launch_job(
        self,
        skill: str,
        action: str,
        *,
        automl_policy: str | None = None,
        request_text: str = "",
        engine: Engine = AUTO,
        platform: str = "local",
        automl: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
        **request: Unpack[SpecRequest],
    ) -> JobHandle:
        """Place, build (from a :class:`SpecRequest`), validate, preflight, render
        (:meth:`prepare_job`), then record and submit a job; returns at once with a handle.

        ``engine``: ``auto`` (first engine that can run the action here), ``builtin``, ``tao``.
        When nothing can run the action here, NotSupported's ``fix`` is the one thing to do
        (checked before the AutoML policy). Train with automl_policy on (the default for
        AutoML-enabled skills) starts an AutoML run, itself a job (``automl``:
        taoskills.automl.service_hook.AutoMLSettings); automl_policy='off' (or "plain training"
        in request_text) trains directly. The reply's ``estimate`` is :meth:`estimate`'s (None
        where no throughput table covers the run); a run that would exceed the free disk (or the
        GPU memory, where measured) is refused with PreflightError naming the fix. Nothing is
        launched and no record is written when any check fails. ``labels``: extra labels
        written with the job record of a direct training (the AutoML controller's trial jobs).
        """
        sk = self.catalog.get(skill)
        sk.action(action)
        guard.check_request({**request, "request_text": request_text}, schema=sk.schema(action))  # security
        launch_guard.check_resume_source(self.store, request.get("resume_job_id"), refresh=self.job_status)  # security
        prep = self.prepare_job(
            sk.name, action, engine=engine, platform=platform, automl_policy=automl_policy, request_text=request_text, **request
        )
        decision = prep.decision
        if decision.policy == "on":  # the AutoML run is itself a job (taoskills.automl.service_hook)
            from taoskills.automl.service_hook import launch_automl

            return launch_automl(
                self, sk.name, action, decision=decision, engine=engine, platform=platform, settings=automl, **request
            )
        assert prep.built is not None and prep.context is not None  # for_launch: every stage ran
        eng, plat, ctx = prep.engine, prep.platform, prep.context
        job_id, workdir, results_dir = prep.job_id, prep.workdir, prep.results_dir
        # refused before anything is written when the run cannot fit (disk, GPU memory where measured)
        estimate = self.launch_estimate(sk, action, eng.name, plat.name, prep.built.spec, request.get("profile"), results_dir)
        if request.get("profile") == "smoke":
            ctx.env.update(sk.info.smoke_env)
        workdir.mkdir(parents=True, exist_ok=False)
        record = JobRecord(
            job_id=job_id,
            skill=sk.name,
            network_arch=sk.info.network_arch,
            action=action,
            platform=plat.name,
            engine=eng.name,
            status="PENDING",
            parent_job_id=request.get("parent_job_id"),
            spec=prep.built.spec,
            results_dir=str(results_dir),
            workdir=str(workdir),
            script_path=str(workdir / "run.sh"),
            log_path=str(workdir / "log.txt"),
            automl_policy=decision.policy,
            labels={**(labels or {}), **({"resume_job_id": request["resume_job_id"]} if request.get("resume_job_id") else {})},
        )
        self.store.create(record)
        try:  # submit
            (workdir / "spec.yaml").write_text(ctx.spec_yaml)
            write_runner(ctx, workdir / "run.sh")
            backend_id = plat.submit(record)
        except Exception as exc:  # the record exists: mark it, never lose it
            self.store.update_status(job_id, "ERROR", failure={"summary": f"launch failed: {exc}", "fault": "infrastructure"})
            raise JobError(
                f"launch of {job_id} failed: {exc}",
                field="platform",
                fix="check the platform (tao-skills preflight) and launch again",
            ) from exc
        self.store.update_status(job_id, "RUNNING", backend_id=backend_id)
        return JobHandle(
            job_id=job_id,
            skill=sk.name,
            action=action,
            status="RUNNING",
            engine=eng.name,
            platform=plat.name,
            results_dir=str(results_dir),
            log_path=record.log_path or "",
            script_path=record.script_path or "",
            automl_policy=decision.policy,
            automl_reason=decision.reason if decision.applies else None,
            estimate=estimate,
            next=f"poll job_status('{job_id}') until COMPLETE or ERROR",
        )


__all__ = [
    "CheckpointResult",
    "Issue",
    "JobHandle",
    "JobLogs",
    "JobStatus",
    "PreparedJob",
    "RoutedRequest",
    "RunnerResult",
    "Service",
    "SkillDetail",
    "SkillSummary",
    "SpecRequest",
    "SpecReply",
    "SpecResult",
    "ValidationResult",
    "dump_yaml",
]
