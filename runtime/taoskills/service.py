"""The service API: the one place where the runtime's steps are composed.

The CLI (:mod:`taoskills.surfaces.cli`) and the MCP server (:mod:`taoskills.surfaces.mcp`) are thin
skins over :class:`Service`; no logic lives in them. Every method returns a pydantic
model (MCP structured output) or raises a :class:`taoskills.errors.TaoSkillsError` whose
``fix`` says what to do next.

Flow of a launch (DESIGN.md): catalog -> automl_policy -> spec builder -> validator ->
preflight -> job record (PENDING, written before launch) -> runner script -> platform.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from pydantic import BaseModel, Field
from typing_extensions import Unpack

from taoskills import paths
from taoskills.bank import routing
from taoskills.bank.automl_policy import resolve_automl_policy
from taoskills.bank.catalog import Catalog
from taoskills.data import preflight as pf
from taoskills.engine import capabilities
from taoskills.errors import Issue, JobError, NotFound, NotSupported, SpecError
from taoskills.jobs import checkpoints, monitor
from taoskills.jobs import failure as failure_mod
from taoskills.jobs.store import JobRecord, JobStore
from taoskills.platforms import get_platform
from taoskills.platforms.base import TRUNCATION_MARKER
from taoskills.platforms.render import RunnerContext, render_runner, write_runner
from taoskills.specs import validator
from taoskills.specs.builder import ENCRYPTION_KEY_ENV, BuiltSpec, ParentJob, build_spec

TERMINAL = ("COMPLETE", "ERROR", "CANCELED")
Engine = Literal["builtin", "tao"]


# ----------------------------------------------------------------------------- requests


class SpecRequest(TypedDict, total=False):
    """What a spec is built from (build_spec and launch_job take the same keys).

    ``overrides``: dotted key -> value. ``shorthand``: skill shorthand name -> value
    (``num_epochs``). ``data_sources``: dataset role (``train_datasets``, ``eval_dataset``,
    ``inference_dataset``, ``calibration_dataset``) -> local root folder. ``parent_job_id``:
    the job whose checkpoint and structure this action consumes (train for export).
    ``resume_job_id``: a train job to resume. ``pretrained_model``: PTM file used when not
    resuming. ``profile``: ``"smoke"`` for the skill's small, representative settings.
    """

    overrides: dict[str, Any] | None
    shorthand: dict[str, Any] | None
    data_sources: dict[str, str] | None
    parent_job_id: str | None
    resume_job_id: str | None
    pretrained_model: str | None
    profile: str | None


# ----------------------------------------------------------------------------- results


class SkillSummary(BaseModel):
    name: str
    kind: str
    network_arch: str | None
    description: str
    actions: list[str]
    automl_enabled: bool
    builtin_engine_actions: list[str]


class SkillDetail(SkillSummary):
    frontmatter: dict[str, Any]
    body: str
    files: list[str]
    shorthand: dict[str, str]
    metrics: list[dict[str, Any]]
    data_sources: dict[str, dict[str, Any]]


class SpecResult(BaseModel):
    skill: str
    action: str
    spec: dict[str, Any]
    spec_yaml: str
    inferred: dict[str, dict[str, Any]] = Field(default_factory=dict)
    staged: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    issues: list[dict[str, str]] = Field(default_factory=list)
    valid: bool = True


class ValidationResult(BaseModel):
    skill: str
    action: str
    valid: bool
    issues: list[dict[str, str]]
    warnings: list[dict[str, str]]


class RunnerResult(BaseModel):
    skill: str
    action: str
    engine: str
    platform: str
    script: str
    script_path: str | None = None


class JobHandle(BaseModel):
    job_id: str
    skill: str
    action: str
    status: str
    engine: str
    platform: str
    results_dir: str
    log_path: str
    script_path: str
    automl_policy: str
    automl_reason: str | None = None  # why automl_policy resolved as it did (train only)
    next: str


class JobStatus(BaseModel):
    job_id: str
    skill: str
    network_arch: str | None
    action: str
    status: str
    parent_job_id: str | None
    results_dir: str
    log_path: str
    exit_code: int | None = None
    epoch: int | None = None
    max_epoch: int | None = None
    eta: str | None = None
    kpis: dict[str, float] = Field(default_factory=dict)
    message: str | None = None
    failure: dict[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    next: str = ""


class JobLogs(BaseModel):
    """A bounded slice of a job's log."""

    job_id: str
    tail: int
    grep: str | None
    max_bytes: int
    lines: int = Field(description="log lines in text (the truncation marker not counted)")
    truncated: bool = Field(description="earlier log output was left out (text starts with a marker line)")
    text: str


class CheckpointResult(BaseModel):
    job_id: str
    for_action: str
    path: str
    reason: str
    candidates: list[str]


# ----------------------------------------------------------------------------- service


class Service:
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
        """All skills in the bank, with their actions and what the built-in engine runs."""
        return [self._summary(s) for s in sorted(self.catalog.skills.values(), key=lambda s: s.name)]

    def get_skill(self, name: str) -> SkillDetail:
        """One skill: frontmatter, SKILL.md body, files, shorthand keys, metric contract, data sources.

        Raises NotFound (with did-you-mean) for an unknown name.
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
        )

    def _summary(self, skill) -> SkillSummary:
        info = skill.info
        arch = info.network_arch
        return SkillSummary(
            name=skill.name,
            kind=info.kind,
            network_arch=arch,
            description=info.description,
            actions=list(info.actions),
            automl_enabled=info.automl_enabled,
            builtin_engine_actions=[a for a in info.actions if arch and capabilities.supports(arch, a)],
        )

    # -- routing ------------------------------------------------------------------------

    def route_request(self, text: str, *, action: str | None = None, automl_policy: str | None = None) -> routing.RouteResult:
        """Request text -> skill, action, automl_policy, parameters, confidence, alternatives.

        ``skill`` is None when no skill applies; ``no_skill_reason`` then names the nearest.
        """
        return routing.route(text, self.catalog, action=action, automl_policy=automl_policy)

    # -- specs --------------------------------------------------------------------------

    def get_spec_template(self, skill: str, action: str) -> dict[str, Any]:
        """The packaged spec template (defaults from TAO Core 7.3.0) of ``skill`` ``action``."""
        return copy.deepcopy(self.catalog.get(skill).template(action))

    def build_spec(
        self, skill: str, action: str, *, results_dir: str | None = None, stage: bool = True, **request: Unpack[SpecRequest]
    ) -> SpecResult:
        """Build and validate a spec from a :class:`SpecRequest` (template, overrides, shorthand,
        data sources, parent/resume job, pretrained model, profile). Returns the spec and every
        inferred/staged value. ``results_dir`` defaults to a preview folder; ``stage=False``
        extracts no archives (a preview with no side effects).

        Validation problems come back in ``issues`` (``valid`` false) rather than raising,
        so an agent sees the whole spec and all problems at once; structural problems
        (unknown shorthand, missing parent, bad archive) raise.
        """
        sk = self.catalog.get(skill)
        built = self._build(
            sk,
            action,
            results_dir=Path(results_dir) if results_dir else self.home / "preview" / "results",
            stage=stage,
            **request,
        )
        issues = validator.validate_spec(sk.schema(action), built.spec, network_arch=sk.info.network_arch, action=action)
        errors = [i for i in issues if i.code != "warning"]
        return SpecResult(
            skill=sk.name,
            action=action,
            spec=built.spec,
            spec_yaml=dump_yaml(built.spec),
            inferred=built.inferred,
            staged=built.staged,
            notes=built.notes,
            issues=[i.as_dict() for i in issues],
            valid=not errors,
        )

    def _build(self, sk, action, *, results_dir: Path, parent_job_id=None, resume_job_id=None, **kw) -> BuiltSpec:
        parent = None
        if parent_job_id:
            rec = self.store.get(parent_job_id)
            act = sk.action(action)
            if act.parent_action and rec.action != act.parent_action:
                raise SpecError(
                    f"parent job {parent_job_id} ran {rec.action}; {sk.name} {action} needs a {act.parent_action} job",
                    field="parent_job_id",
                    fix=f"pass the id of a {act.parent_action} job (tao-skills jobs list)",
                )
            if rec.status != "COMPLETE":
                self.job_status(parent_job_id)
                rec = self.store.get(parent_job_id)
            if rec.status != "COMPLETE":
                raise SpecError(
                    f"parent job {parent_job_id} is {rec.status}, not COMPLETE",
                    field="parent_job_id",
                    fix="wait for the parent job to finish (job_status) or pick a COMPLETE one",
                )
            parent = ParentJob(job_id=rec.job_id, spec=rec.spec, results_dir=Path(rec.results_dir), action=rec.action)
        resume_from = Path(self.store.get(resume_job_id).results_dir) if resume_job_id else None
        return build_spec(
            sk, action, results_dir=results_dir, parent=parent, resume_from=resume_from, cache_dir=self.home / "staging", **kw
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
        self, skill: str, action: str, spec: dict[str, Any], *, engine: Engine = "builtin", platform: str = "local"
    ) -> pf.PreflightReport:
        """Data checks for every folder input of the action, plus host and engine checks.

        Image folders: exists, is a folder (not an archive), enough readable images for one
        batch, corrupt files listed. Host: the engine's tools, GPUs, and spec values the
        built-in engine cannot honour here (fp16 without a GPU). Never launches anything.
        """
        sk = self.catalog.get(skill)
        return pf.run_preflight(
            self._data_checks(sk, action, spec, platform), self._host_checks(sk, action, spec, engine, platform)
        )

    def _data_checks(self, sk, action: str, spec: dict[str, Any], platform: str) -> list[pf.CheckResult]:
        act = sk.action(action)
        results: list[pf.CheckResult] = []
        batch = _get(spec, "dataset.batch_size") if action == "train" else None
        batch = batch if isinstance(batch, int) and batch > 0 else None
        for key, io in act.inputs.items():
            if io.type != "folder":
                continue
            value = _get(spec, key)
            if value in (None, "", "???") and io.optional:
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and "://" in item:
                    results.append(
                        pf.CheckResult(
                            name="remote_input",
                            ok=False,
                            field=key,
                            severity="error",
                            message=f"{item} is a remote URI; the {platform} platform reads local folders only",
                            fix="download the data to a local folder (or its archive) and pass that path",
                        )
                    )
                    continue
                results.extend(pf.check_image_folder(item, field=key, batch_size=batch))
        return results

    def _host_checks(self, sk, action: str, spec: dict[str, Any], engine: str, platform: str) -> list[pf.CheckResult]:
        results = pf.check_host(engine, platform, network=sk.info.network_arch)
        if engine == "builtin":
            gpu = next((c.details for c in results if c.name == "host.gpu"), {})
            for issue in capabilities.host_issues(
                sk.info.network_arch, action, spec, cuda=bool(gpu.get("cuda")), gpus=int(gpu.get("gpus", 0))
            ):
                results.append(
                    pf.CheckResult(
                        name="engine.host",
                        ok=False,
                        severity="error",
                        message=issue["reason"],
                        field=issue["field"],
                        fix=issue["fix"],
                    )
                )
        return results

    # -- runner -------------------------------------------------------------------------

    def render_runner(
        self,
        skill: str,
        action: str,
        spec: dict[str, Any],
        *,
        engine: Engine = "builtin",
        platform: str = "local",
        job_id: str = "job-preview",
        workdir: str | None = None,
    ) -> RunnerResult:
        """Render the runner script (bash) that writes the spec and runs the engine; not launched."""
        sk = self.catalog.get(skill)
        self._check_engine(sk, action, engine)
        wd = Path(workdir) if workdir else self.home / "jobs" / job_id
        ctx = self._runner_context(sk, action, spec, engine, platform, job_id, wd)
        return RunnerResult(skill=sk.name, action=action, engine=engine, platform=platform, script=render_runner(ctx))

    def _runner_context(self, sk, action, spec, engine, platform, job_id, workdir: Path) -> RunnerContext:
        arch = sk.info.network_arch
        spec_path = workdir / "spec.yaml"
        if engine == "builtin":
            command = [sys.executable, "-m", "taoskills.engine", arch, action.removeprefix("deploy_"), "-e", str(spec_path)]
        else:
            command = sk.action(action).command.format(config_path=str(spec_path)).split()
        return RunnerContext(
            job_id=job_id,
            skill=sk.name,
            network_arch=arch,
            action=action,
            engine=engine,
            platform=platform,
            workdir=str(workdir),
            results_dir=str(_get(spec, "results_dir") or workdir / "results"),
            spec_path=str(spec_path),
            spec_yaml=dump_yaml(spec),
            command=command,
            env={"PYTHONUNBUFFERED": "1"},
            secret_env_names=[n for n in (ENCRYPTION_KEY_ENV,) if os.environ.get(n)],
        )

    def _check_engine(self, sk, action: str, engine: str) -> None:
        arch = sk.info.network_arch
        if sk.info.kind != "model":
            raise NotSupported(
                f"{sk.name} is an application skill; launch a model skill's train action",
                field="skill",
                fix="route the request to a model skill (route_request)",
            )
        sk.action(action)
        if engine == "builtin":
            if not capabilities.supports(arch, action):
                have = ", ".join(f"{n} {'/'.join(a)}" for n, a in capabilities.SUPPORTED.items())
                raise NotSupported(
                    f"the built-in engine does not run {arch} {action} yet (it runs: {have})",
                    field="engine",
                    fix=f"use engine='tao' on a host with the TAO container/CLI for {arch} {action}",
                )
        elif engine == "tao":
            if shutil.which(arch) is None:
                raise NotSupported(
                    f"engine 'tao' needs the TAO CLI entrypoint '{arch}' on PATH (TAO container); it is not here",
                    field="engine",
                    fix="run inside the TAO container, or use engine='builtin' where it supports the action",
                )
        else:
            raise SpecError(f"unknown engine {engine!r}", field="engine", fix="use 'builtin' or 'tao'")

    # -- jobs ---------------------------------------------------------------------------

    def launch_job(
        self,
        skill: str,
        action: str,
        *,
        automl_policy: str | None = None,
        request_text: str = "",
        engine: Engine = "builtin",
        platform: str = "local",
        automl: dict[str, Any] | None = None,
        **request: Unpack[SpecRequest],
    ) -> JobHandle:
        """Build (from a :class:`SpecRequest`), validate, preflight, record and launch a job;
        returns at once with a handle.

        Train with automl_policy on (the default for AutoML-enabled skills) starts an AutoML
        run, itself a job (``automl``: taoskills.automl.service_hook.AutoMLSettings);
        automl_policy='off' (or "plain training" in request_text) trains directly. Nothing is
        launched and no record is written when any check fails.
        """
        sk = self.catalog.get(skill)
        sk.action(action)
        decision = resolve_automl_policy(sk.info, action, explicit=automl_policy, text=request_text, skill_dir=sk.dir)
        if decision.policy == "on":  # the AutoML run is itself a job (taoskills.automl.service_hook)
            from taoskills.automl.service_hook import launch_automl

            return launch_automl(
                self, sk.name, action, decision=decision, engine=engine, platform=platform, settings=automl, **request
            )
        platform_impl = get_platform(platform)
        self._check_engine(sk, action, engine)

        job_id = "job-" + uuid.uuid4().hex[:12]
        workdir = self.home / "jobs" / job_id
        results_dir = workdir / "results"
        built = self._build(sk, action, results_dir=results_dir, stage=True, **request)
        # Data first (a missing or empty folder is a preflight error), then the spec itself,
        # then what the host and engine can run.
        pf.run_preflight(self._data_checks(sk, action, built.spec, platform)).raise_if_failed()
        validator.assert_valid(
            sk.schema(action), built.spec, network_arch=sk.info.network_arch, action=action, require_complete=True
        )
        pf.run_preflight(self._host_checks(sk, action, built.spec, engine, platform)).raise_if_failed()

        workdir.mkdir(parents=True, exist_ok=False)
        ctx = self._runner_context(sk, action, built.spec, engine, platform, job_id, workdir)
        script_path = workdir / "run.sh"
        record = JobRecord(
            job_id=job_id,
            skill=sk.name,
            network_arch=sk.info.network_arch,
            action=action,
            platform=platform,
            engine=engine,
            status="PENDING",
            parent_job_id=request.get("parent_job_id"),
            spec=built.spec,
            results_dir=str(results_dir),
            workdir=str(workdir),
            script_path=str(script_path),
            log_path=str(workdir / "log.txt"),
            automl_policy=decision.policy,
        )
        self.store.create(record)
        try:
            (workdir / "spec.yaml").write_text(ctx.spec_yaml)
            write_runner(ctx, script_path)
            backend_id = platform_impl.submit(record)
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
            engine=engine,
            platform=platform,
            results_dir=str(results_dir),
            log_path=record.log_path,
            script_path=str(script_path),
            automl_policy=decision.policy,
            automl_reason=decision.reason if decision.applies else None,
            next=f"poll job_status('{job_id}') until COMPLETE or ERROR",
        )

    def job_status(self, job_id: str) -> JobStatus:
        """State (PENDING/RUNNING/COMPLETE/ERROR/CANCELED/UNKNOWN), epoch/max_epoch, ETA, KPIs,
        and a failure analysis from the skill's error patterns when the job failed."""
        rec = self.store.get(job_id)
        state = get_platform(rec.platform).poll(rec) if rec.status not in TERMINAL else None
        summary = _progress(rec)  # read once, after the poll, so a finished job's last lines are in
        if state is not None:
            rec = self._record_state(rec, state, summary)
        return JobStatus(
            job_id=rec.job_id,
            skill=rec.skill,
            network_arch=rec.network_arch,
            action=rec.action,
            status=rec.status,
            parent_job_id=rec.parent_job_id,
            results_dir=rec.results_dir,
            log_path=rec.log_path,
            exit_code=rec.exit_code,
            epoch=summary.epoch,
            max_epoch=summary.max_epoch,
            eta=summary.eta,
            kpis=dict(summary.kpis),
            message=summary.message,
            failure=rec.failure,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            next=_next_step(rec),
        )

    def _record_state(self, rec: JobRecord, state, summary: monitor.StatusSummary) -> JobRecord:
        """Persist what the platform saw (monotonic in the store), with a failure analysis on ERROR."""
        if state.state == rec.status and state.state not in TERMINAL:
            return rec
        status = state.state
        if status == "COMPLETE" and summary.failed:
            status = "ERROR"  # exit 0 but TAO logged FAILURE: trust status.json
        fields: dict[str, Any] = {"exit_code": state.exit_code}
        if status == "ERROR":
            sk = self.catalog.get(rec.skill)
            fields["failure"] = failure_mod.analyze_failure(
                _log_tail(rec.log_path),
                list(sk.info.error_patterns),
                rec.action,
                state.exit_code,
                lost=state.lost,
                status_message=summary.failure_message,
            ).model_dump()
        return self.store.update_status(rec.job_id, status, **fields)

    def job_logs(self, job_id: str, *, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> JobLogs:
        """The job's log: last ``tail`` lines, optionally only lines matching regex ``grep``, at most
        ``max_bytes`` bytes (a first marker line says when earlier output was cut)."""
        rec = self.store.get(job_id)
        text = get_platform(rec.platform).logs(rec, tail=tail, grep=grep, max_bytes=max_bytes)
        truncated = text.startswith(TRUNCATION_MARKER)
        return JobLogs(
            job_id=job_id,
            tail=tail,
            grep=grep,
            max_bytes=max_bytes,
            lines=len(text.splitlines()) - int(truncated),
            truncated=truncated,
            text=text,
        )

    def cancel_job(self, job_id: str) -> JobStatus:
        """Stop a job (process group SIGTERM, then SIGKILL). A finished job is left as it is."""
        rec = self.store.get(job_id)
        if rec.status in TERMINAL:
            return self.job_status(job_id)
        self.store.update_status(job_id, "CANCELED")
        get_platform(rec.platform).cancel(rec)
        return self.job_status(job_id)

    def list_jobs(
        self, *, status: str | None = None, skill: str | None = None, action: str | None = None, limit: int = 50
    ) -> list[JobStatus]:
        """Jobs newest first, refreshed; filters by status, skill, action."""
        return [self.job_status(r.job_id) for r in self.store.list(status=status, skill=skill, action=action, limit=limit)]

    def wait_job(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0, on_update=None) -> JobStatus:
        """Poll until the job is terminal or ``timeout_s`` passes; ``on_update(JobStatus)`` per poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.job_status(job_id)
            if on_update:
                on_update(status)
            if status.status in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(poll_s)

    # -- checkpoints --------------------------------------------------------------------

    def resolve_checkpoint(
        self, job_id: str, for_action: str = "inference", *, epoch: int | None = None, allow_latest: bool = False
    ) -> CheckpointResult:
        """The model file that ``for_action`` should consume from job ``job_id``'s results.

        Uses the skill's checkpoint rule for that action (NVDINOv2: ``student_epoch_*`` for
        inference/export, ``model_epoch_*`` for resume — pass for_action='resume').
        """
        rec = self.store.get(job_id)
        sk = self.catalog.get(rec.skill)
        if for_action == "resume":
            rule = checkpoints.resume_rule(sk.info)
        else:
            act = sk.action(for_action)
            if act.checkpoint is None:
                raise NotFound(
                    f"{sk.name} {for_action} takes no checkpoint from a parent job",
                    field="for_action",
                    fix=f"use one of: {', '.join(a for a, x in sk.info.actions.items() if x.checkpoint)} or 'resume'",
                )
            rule = act.checkpoint
        choice = checkpoints.select_checkpoint(
            Path(rec.results_dir), rule, latest_alias=sk.info.latest_checkpoint_alias, epoch=epoch, allow_latest=allow_latest
        )
        return CheckpointResult(
            job_id=job_id,
            for_action=for_action,
            path=str(choice.path),
            reason=choice.reason,
            candidates=[str(c.path) for c in choice.candidates],
        )


# ----------------------------------------------------------------------------- helpers


def dump_yaml(spec: dict[str, Any]) -> str:
    """Spec -> YAML text (key order kept, block style)."""
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False)


def _get(spec: dict, key: str) -> Any:
    from taoskills.specs.dotted import get_dotted

    return get_dotted(spec, key, default=None)


def _progress(rec: JobRecord) -> monitor.StatusSummary:
    """The job's status.json summary (deploy actions write under their TAO action name)."""
    return monitor.progress(Path(rec.results_dir), rec.action.removeprefix("deploy_"))


def _log_tail(path: str) -> str:
    """The last :data:`failure_mod.SCAN_BYTES` of a log (all failure analysis looks at)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - failure_mod.SCAN_BYTES))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _next_step(rec: JobRecord) -> str:
    if rec.status == "COMPLETE":
        if rec.action == "train":
            return f"resolve_checkpoint('{rec.job_id}', 'inference') or launch inference/export with parent_job_id='{rec.job_id}'"
        return "done: results are in results_dir"
    if rec.status == "ERROR":
        return "read failure.fix, then job_logs for detail; fix the spec or data and launch again"
    if rec.status == "CANCELED":
        return "launch again when ready"
    return f"poll job_status('{rec.job_id}') again in a few seconds"


__all__ = ["Service", "Issue"]
