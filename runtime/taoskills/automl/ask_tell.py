"""An agent in the loop: ask for a trial, propose one, report its result (Optuna ask/tell).

The calling agent (an LLM client over MCP) steers the search itself; no LLM runs inside
the runtime (TAO AutoML 7.2.0's llm/hybrid brains need one).

* :func:`suggest` — the next trial the algorithm proposes (``params=None``) or the agent's
  own ``params`` (validated against the search space and the train schema). The trial is
  marked as run by the agent (a controller never takes it over); the agent launches the
  returned overrides as a train job (``launch_job(..., automl_policy='off')``) or trains
  elsewhere.
* :func:`propose` — queue the agent's ``params`` for the run's controller to run next.
* :func:`tell` — the result: a ``value`` or a finished ``job_id`` (its metric is read from
  status.json with the run's metric contract), or ``state`` ``pruned``/``fail``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from taoskills.automl import query, results
from taoskills.automl.space import SearchSpace
from taoskills.automl.study import load_config, open_study
from taoskills.errors import NotFound, SpecError


def _validated(service: Any, cfg: Any, space: SearchSpace, values: dict[str, Any], epochs: int) -> dict[str, Any]:
    from taoskills.specs.dotted import set_dotted

    spec = copy.deepcopy(cfg.base_spec)
    for k, v in values.items():
        set_dotted(spec, k, v)
    set_dotted(spec, "train.num_epochs", epochs)
    check = service.validate_spec(cfg.skill, "train", spec)
    if not check.valid:
        issue = check.issues[0]
        raise SpecError(f"proposed trial is invalid: {issue['message']}", field=issue.get("field"), fix=issue.get("fix"))
    return spec


def suggest(service: Any, run: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trial for the agent to run: ``{trial_number, values, overrides, epochs, skill}``.

    ``overrides`` are the dotted keys to pass to ``launch_job`` (values + the epoch budget).
    Raises SpecError for a proposal outside the space or an invalid spec.
    """
    run_dir, _ = query.run_dir_of(service, run)
    cfg = load_config(run_dir)
    space = SearchSpace.from_dict(cfg.space)
    study = open_study(cfg)
    if params is not None:
        opt = space.to_optuna_params(params)
        _validated(service, cfg, space, params, cfg.max_epochs)
        study.enqueue_trial(opt)
    trial = study.ask()
    trial.set_user_attr("owner", {"agent": True})
    values = space.sample(trial)
    try:
        _validated(service, cfg, space, values, cfg.max_epochs)
    except SpecError:
        study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)
        raise
    trial.set_user_attr("values", values)
    return {
        "trial_number": trial.number,
        "values": values,
        "overrides": {**values, "train.num_epochs": cfg.max_epochs},
        "epochs": cfg.max_epochs,
        "skill": cfg.skill,
        "next": f"launch_job('{cfg.skill}', 'train', automl_policy='off', overrides=<overrides>), then automl_tell",
    }


def propose(service: Any, run: str, params: dict[str, Any]) -> dict[str, Any]:
    """Queue ``params`` (validated) for the run's controller; returns ``{queued, values}``."""
    run_dir, _ = query.run_dir_of(service, run)
    cfg = load_config(run_dir)
    space = SearchSpace.from_dict(cfg.space)
    opt = space.to_optuna_params(params)
    _validated(service, cfg, space, params, cfg.max_epochs)
    open_study(cfg).enqueue_trial(opt)
    return {"queued": True, "values": params}


def tell(
    service: Any,
    run: str,
    trial_number: int,
    *,
    value: float | list[float] | None = None,
    job_id: str | None = None,
    state: str = "complete",
) -> dict[str, Any]:
    """Report a trial's result; returns the run's counts and best so far.

    ``state``: ``complete`` (needs ``value`` or ``job_id``), ``pruned`` or ``fail``.
    Raises NotFound (unknown trial), SpecError (no metric, bad state, trial finished).
    """
    import optuna

    TS = optuna.trial.TrialState
    run_dir, _ = query.run_dir_of(service, run)
    cfg = load_config(run_dir)
    study = open_study(cfg)
    trials = study.get_trials(deepcopy=False)
    if not 0 <= trial_number < len(trials):
        raise NotFound(f"trial {trial_number} does not exist", field="trial_number", fix=f"use 0..{len(trials) - 1}")
    ft = trials[trial_number]
    if ft.state != TS.RUNNING:
        raise SpecError(f"trial {trial_number} is already {ft.state.name}", field="trial_number", fix="tell a RUNNING trial")
    if state not in ("complete", "pruned", "fail"):
        raise SpecError(f"state {state!r}", field="state", fix="use complete, pruned or fail")
    trial = optuna.trial.Trial(study, ft._trial_id)
    if state == "complete":
        if job_id is not None:
            from taoskills.jobs import monitor

            rec = service.store.get(job_id)
            kpis = monitor.progress(Path(rec.results_dir), "train").kpis
            vals = [o.read(kpis) for o in cfg.objectives]
            if any(v is None for v in vals):
                raise SpecError(
                    f"job {job_id} logged no {cfg.objectives[0].name} KPI", field="job_id", fix="tell a finished train job"
                )
            trial.set_user_attr(
                "segments", [{"job_id": job_id, "start": 0, "epochs": cfg.max_epochs, "state": "COMPLETE", "value": vals[0]}]
            )
            trial.set_user_attr("trial_epochs", cfg.max_epochs)
            value = vals if len(vals) > 1 else vals[0]
        if value is None:
            raise SpecError("a complete trial needs value or job_id", field="value", fix="pass the metric value or the job id")
        study.tell(trial, value)
    else:
        study.tell(trial, state=TS.PRUNED if state == "pruned" else TS.FAIL)
    results.write_trial(run_dir, study, trial_number, service)
    return results.summarize(study, cfg)
