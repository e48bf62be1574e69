"""Start an AutoML run as a job: what ``Service.launch_job`` does when automl_policy is on.

The AutoML run is itself a job (action ``train``, ``automl_policy: on``): its process is the
controller ``python -m taoskills.automl run <results_dir>`` on the local platform (the
control plane); its ``results_dir`` is the run folder (:mod:`taoskills.automl.study`);
``job_status`` reads the controller's status lines (trials finished, best so far);
``cancel_job`` stops it and its running trials; ``resolve_checkpoint`` on it returns
best_rec's checkpoint (linked into ``results_dir/train/``), so evaluate/export/inference
chain from it (``parent_job_id=<automl job>``) like from any train job. Trials run as normal
train jobs on the chosen engine and platform.

Nothing is launched and nothing is written when a check fails: settings, base spec
(validate_spec, complete), data and host preflight, search space (sampled specs validated).
"""

from __future__ import annotations

import copy
import difflib
import sys
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taoskills.automl.algorithms import get_algorithm, rungs
from taoskills.automl.metric import objectives_for
from taoskills.automl.space import SearchSpace, build_space
from taoskills.automl.study import RunConfig, default_storage, open_study, save_config
from taoskills.errors import JobError, SpecError


class AutoMLSettings(BaseModel):
    """User settings of an AutoML run (TAO AutoML names in parentheses).

    ``algorithm`` (algorithm): see :mod:`taoskills.automl.algorithms`; default from the
    tao-run-automl skill_info. ``max_trials`` (automl_max_recommendations): default from
    skill_info ``default_max_recommendations``. ``max_epochs`` (automl_max_epochs): epochs of
    a full trial, default the base spec's ``train.num_epochs``. ``min_epochs``,
    ``reduction_factor`` (automl_reduction_factor): rungs of multi-fidelity algorithms.
    ``parallel`` (automl_max_concurrent): trials at once. ``parameters``
    (automl_hyperparameters), ``disabled_parameters``, ``custom_param_ranges``: the search
    space. ``metric``: ``[{name, direction}]`` (default: the skill's contract). ``storage``:
    a SQLAlchemy URL or ``journal://<path>`` (default SQLite in the run folder).
    ``keep_checkpoints``: keep losing trials' checkpoints (automl_delete_intermediate_ckpt
    False). ``poll_s``: seconds between job polls. ``baseline`` (default true): trial 0 trains
    the base spec's values to max_epochs, never pruned (:mod:`taoskills.automl.baseline`).
    """

    model_config = ConfigDict(extra="forbid")

    algorithm: str | None = None
    max_trials: int | None = Field(default=None, ge=1)
    max_epochs: int | None = Field(default=None, ge=1)
    min_epochs: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2)
    parallel: int = Field(default=1, ge=1)
    parameters: list[str] | None = None
    disabled_parameters: list[str] | None = None
    custom_param_ranges: dict[str, dict[str, Any]] | None = None
    metric: list[dict[str, Any]] | None = None
    storage: str | None = None
    seed: int | None = None
    n_startup_trials: int = Field(default=4, ge=0)
    keep_checkpoints: bool = False
    poll_s: float = Field(default=2.0, gt=0)
    max_retries: int = Field(default=1, ge=0)
    baseline: bool = True


def parse_settings(settings: dict[str, Any] | None) -> AutoMLSettings:
    """Validate ``settings``; unknown keys raise SpecError with the nearest known key."""
    settings = dict(settings or {})
    if "max_recommendations" in settings:  # TAO's name
        settings.setdefault("max_trials", settings.pop("max_recommendations"))
    try:
        return AutoMLSettings.model_validate(settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        near = difflib.get_close_matches(key, list(AutoMLSettings.model_fields), n=1)
        raise SpecError(
            f"automl setting {key}: {err['msg']}" + (f" (did you mean {near[0]}?)" if near and near[0] != key else ""),
            field=f"automl.{key}",
            fix=f"use the settings {', '.join(AutoMLSettings.model_fields)}",
        ) from None


def _defaults(service: Any) -> tuple[str, int]:
    app = service.catalog.automl_skill()
    if app is not None and app.info.automl is not None:
        return app.info.automl.default_algorithm, app.info.automl.default_max_recommendations
    return "bayesian", 10


def check_space(service: Any, sk: Any, base_spec: dict, space: SearchSpace, epochs: list[int], n: int = 16) -> None:
    """Sample ``n`` specs at random and validate each (with every rung's epoch count).
    SpecError names the parameter when the space produces an invalid spec."""
    import optuna

    from taoskills.specs.dotted import set_dotted
    from taoskills.specs.validator import validate_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    schema = sk.schema("train")
    for i in range(n):
        values = space.sample(study.ask())
        spec = copy.deepcopy(base_spec)
        for k, v in values.items():
            set_dotted(spec, k, v)
        set_dotted(spec, "train.num_epochs", epochs[i % len(epochs)])
        errors = [
            x for x in validate_spec(schema, spec, network_arch=sk.info.network_arch, action="train") if x.code != "warning"
        ]
        if errors:
            e = errors[0]
            raise SpecError(
                f"the search space produced an invalid spec: {e.message}",
                field=e.field,
                fix=e.fix or "narrow custom_param_ranges",
            )


def prepare_run(
    service: Any,
    sk: Any,
    *,
    settings: AutoMLSettings,
    request: dict[str, Any],
    engine: str,
    platform: str,
    job_id: str,
    run_dir: Path,
) -> RunConfig:
    """Every check, then the RunConfig (not yet written). Raises SpecError/PreflightError.

    The base spec goes through :meth:`taoskills.service.Service.prepare_job` (place, build,
    validate, data and host preflight) as a plain train job (``automl_policy='off'``) built
    into ``run_dir/preview``; it is not prepared for launch (each trial is, by ``launch_job``).
    """
    default_algo, default_n = _defaults(service)
    algo = get_algorithm(settings.algorithm or default_algo)
    prep = service.prepare_job(
        sk.name,
        "train",
        engine=engine,
        platform=platform,
        automl_policy="off",  # the base spec of the trials is a plain train job
        job_id=job_id,
        results_dir=run_dir / "preview",
        for_launch=False,
        **request,
    )
    engine = prep.engine.name  # "auto" resolved: every trial runs on the engine placement picked
    built = prep.built
    from taoskills.specs.dotted import get_dotted

    max_epochs = settings.max_epochs or int(get_dotted(built.spec, "train.num_epochs", default=0) or 0)
    if max_epochs < 1:
        raise SpecError("no epoch budget", field="automl.max_epochs", fix="set automl max_epochs (epochs of a full trial)")
    epochs = rungs(algo, max_epochs, settings.min_epochs, settings.reduction_factor)
    space = build_space(
        sk.schema("train"),
        (sk.manifest.get("actions") or {}).get("train") or {},
        built.spec,
        sk.info.network_arch,
        max_epochs=max_epochs,
        parameters=settings.parameters,
        disabled=settings.disabled_parameters,
        custom_param_ranges=settings.custom_param_ranges,
    )
    if not space.params:
        raise SpecError("the search space is empty", field="automl.parameters", fix="list parameters to search")
    check_space(service, sk, built.spec, space, epochs)
    objectives = objectives_for(sk.info, built.spec, settings.metric)
    ckpt_action = next(
        (a for a in ("inference", "export", "evaluate") if a in sk.info.actions and sk.info.actions[a].checkpoint), "resume"
    )
    return RunConfig(
        run_id=job_id,
        skill=sk.name,
        network_arch=sk.info.network_arch,
        algorithm=algo.name,
        max_trials=settings.max_trials or default_n,
        max_epochs=max_epochs,
        min_epochs=settings.min_epochs,
        reduction_factor=settings.reduction_factor,
        parallel=settings.parallel,
        seed=settings.seed,
        n_startup_trials=settings.n_startup_trials,
        objectives=objectives,
        storage=settings.storage or default_storage(run_dir),
        study_name=f"automl-{job_id}",
        request={k: v for k, v in request.items() if v is not None},
        base_spec=built.spec,
        space=space.to_dict(),
        engine=engine,
        platform=platform,
        keep_checkpoints=settings.keep_checkpoints,
        home=str(service.home),
        skills_dir=str(service.catalog.root),
        automl_job_id=job_id,
        checkpoint_action=ckpt_action,
        poll_s=settings.poll_s,
        max_retries=settings.max_retries,
        baseline=settings.baseline,
    )


def _controller_job(service: Any, sk: Any, cfg: RunConfig, job_id: str, run_dir: Path, labels: dict, launch: bool) -> Any:
    """Record, script and (when ``launch``) start the controller job of ``cfg``'s run on the
    local platform; returns the JobRecord. JobError when the platform cannot start it."""
    from taoskills.jobs.store import JobRecord
    from taoskills.platforms import get_platform
    from taoskills.platforms.render import write_runner
    from taoskills.service import dump_yaml

    workdir = service.home / "jobs" / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    record = JobRecord(
        job_id=job_id,
        skill=sk.name,
        network_arch=sk.info.network_arch,
        action="train",
        platform="local",
        engine=cfg.engine,  # type: ignore[arg-type]
        status="PENDING",
        spec=cfg.base_spec,
        results_dir=str(run_dir),
        workdir=str(workdir),
        script_path=str(workdir / "run.sh"),
        log_path=str(workdir / "log.txt"),
        automl_policy="on",
        labels={"automl": {"run_dir": str(run_dir), "algorithm": cfg.algorithm, "max_trials": cfg.max_trials, **labels}},
    )
    service.store.create(record)
    local = get_platform("local")
    ctx = service.runner_context(
        sk.name, "train", cfg.base_spec, engine=cfg.engine, platform="local", job_id=job_id, workdir=workdir
    )
    command = [sys.executable, "-m", "taoskills.automl", "run", str(run_dir)]
    ctx = ctx.model_copy(update={"command": command, "results_dir": str(run_dir)})
    try:
        (workdir / "spec.yaml").write_text(dump_yaml(cfg.base_spec))
        write_runner(ctx, Path(record.script_path))
        if launch:
            backend_id = local.submit(record)
    except Exception as exc:
        service.store.update_status(job_id, "ERROR", failure={"summary": f"launch failed: {exc}", "fault": "infrastructure"})
        raise JobError(
            f"launch of AutoML job {job_id} failed: {exc}", field="platform", fix="check the platform and launch again"
        ) from exc
    if launch:
        record = service.store.update_status(job_id, "RUNNING", backend_id=backend_id)
    return record


def _handle(record: Any, cfg: RunConfig, reason: str | None, next_step: str) -> Any:
    from taoskills.service import JobHandle

    return JobHandle(
        job_id=record.job_id,
        skill=record.skill,
        action="train",
        status=record.status,
        engine=cfg.engine,
        platform=cfg.platform,
        results_dir=record.results_dir,
        log_path=record.log_path,
        script_path=record.script_path,
        automl_policy="on",
        automl_reason=reason,
        next=next_step,
    )


def launch_automl(
    service: Any,
    skill: str,
    action: str = "train",
    *,
    decision: Any = None,
    engine: str = "builtin",
    platform: str = "local",
    settings: dict[str, Any] | None = None,
    launch: bool = True,
    **request: Any,
) -> Any:
    """Start an AutoML run of ``skill``'s train action as a job; returns a JobHandle.

    ``request``: the SpecRequest every trial is built from (overrides, shorthand,
    data_sources, pretrained_model, profile). ``settings``: :class:`AutoMLSettings`.
    ``launch=False`` prepares the run folder and study without starting the controller
    (an agent then drives it with automl_suggest / automl_tell).
    Raises SpecError / PreflightError / NotSupported (nothing written), JobError (launch).
    """
    if action != "train":
        raise SpecError(f"AutoML searches the train action, not {action}", field="action", fix="use action='train'")
    sk = service.catalog.get(skill)
    opts = parse_settings(settings)
    if request.get("resume_job_id"):
        raise SpecError(
            "an AutoML run cannot resume a train job (each trial resumes only its own rungs)",
            field="resume_job_id",
            fix="launch the resume with automl_policy='off', or start AutoML without resume_job_id",
        )
    job_id = "job-" + uuid.uuid4().hex[:12]
    workdir = service.home / "jobs" / job_id
    run_dir = workdir / "results"
    cfg = prepare_run(
        service, sk, settings=opts, request=request, engine=engine, platform=platform, job_id=job_id, run_dir=run_dir
    )
    workdir.mkdir(parents=True, exist_ok=False)
    save_config(run_dir, cfg)
    open_study(cfg, create=True)
    record = _controller_job(service, sk, cfg, job_id, run_dir, {"trial_platform": platform}, launch)
    reason = getattr(decision, "reason", "automl_policy on")
    if launch:
        next_step = (
            f"AutoML {cfg.algorithm} ({cfg.max_trials} trials, {cfg.max_epochs} epochs each): poll job_status('{job_id}') "
            f"or automl_status; when COMPLETE, resolve_checkpoint('{job_id}') or use it as parent_job_id"
        )
    else:
        next_step = f"agent-driven run: call automl_suggest(run='{job_id}') and automl_tell"
    return _handle(record, cfg, reason, next_step)


def resume_automl(service: Any, run: str) -> Any:
    """Start a new controller job on an existing AutoML run (after the controller or the
    machine died, or after a cancel); returns its JobHandle.

    The new job's results_dir is the same run folder; trials the old controller left
    RUNNING are taken over (their jobs awaited or relaunched from their checkpoints), new
    trials fill the remaining budget. Refused (JobError) while a controller job of the run is
    still RUNNING.
    """
    from taoskills.automl import query
    from taoskills.automl.study import load_config

    run_dir, old_job = query.run_dir_of(service, run)
    launched = bool(old_job and service.store.get(old_job).backend_id)  # an agent-driven run never launched one
    if launched and service.job_status(old_job).status in ("PENDING", "RUNNING"):
        raise JobError(f"AutoML job {old_job} is still running", field="run", fix=f"cancel_job('{old_job}') first, or wait")
    cfg = load_config(run_dir)
    sk = service.catalog.get(cfg.skill)
    job_id = "job-" + uuid.uuid4().hex[:12]
    cfg.automl_job_id = job_id
    save_config(run_dir, cfg)
    record = _controller_job(service, sk, cfg, job_id, run_dir, {"resumed_from": old_job}, True)
    return _handle(record, cfg, "resume of an AutoML run", f"resumed AutoML run {cfg.run_id}: poll job_status('{job_id}')")
