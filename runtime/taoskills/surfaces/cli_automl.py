"""``tao-skills automl run|status|best|plot|report|resume``: the AutoML sub-commands.

A thin skin over :mod:`taoskills.automl` (``Service.launch_job`` with automl_policy on, and
the read-only views in :mod:`taoskills.automl.query`); no logic lives here. Registered in
:mod:`taoskills.surfaces.cli` as ``app.add_typer(automl_app, name="automl")``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from taoskills.errors import TaoSkillsError

automl_app = typer.Typer(no_args_is_help=True, help="AutoML (Optuna): run a hyperparameter search, follow it, get the best.")
err = Console(stderr=True)
JSON = typer.Option(False, "--json", help="print JSON")


def _service():
    from taoskills.service import Service

    return Service()


def _emit(obj: Any, as_json: bool) -> None:
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(json.loads(json.dumps(obj, default=str)), sort_keys=False).rstrip())


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise TaoSkillsError(f"{what} {item!r} is not KEY=VALUE", field=what, fix=f"write {what} as key=value")
        key, _, raw = item.partition("=")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def _value(text: str) -> Any:
    """A number when it reads as one (YAML 1.1 leaves ``1e-6`` a string), else YAML."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _ranges(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``KEY=MIN:MAX`` or ``KEY=a,b,c`` -> custom_param_ranges."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise TaoSkillsError(
                f"--range {item!r} is not KEY=MIN:MAX", field="--range", fix="e.g. --range train.optim.lr=1e-5:1e-3"
            )
        if ":" in text:
            lo, _, hi = text.partition(":")
            out[key.strip()] = {"valid_min": _value(lo), "valid_max": _value(hi)}
        else:
            out[key.strip()] = {"valid_options": [_value(x) for x in text.split(",")]}
    return out


def follow_automl(svc, job_id: str, timeout_s: float = 7 * 24 * 3600):
    """Follow an AutoML job with a progress bar of finished trials; returns its final JobStatus."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from taoskills.automl import query

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err
    ) as progress:
        task = progress.add_task(job_id, total=None, detail="starting")

        def update(st) -> None:
            try:
                c = query.status(svc, job_id, trials=False)
            except TaoSkillsError:
                return
            n = c["counts"]
            best = n["best"]
            detail = f"{st.status} {n['finished']}/{c['max_trials']} trials ({n['pruned']} pruned, {n['failed']} failed)"
            if best:
                detail += f" best {c['objectives'][0]['name']}={best['value']:.4g}"
            progress.update(task, total=c["max_trials"], completed=n["finished"], detail=detail)

        return svc.wait_job(job_id, timeout_s=timeout_s, poll_s=2.0, on_update=update)


@automl_app.command("run")
def automl_run(
    skill: str,
    data: list[str] = typer.Option(None, "--data", "-d", help="data source ROLE=FOLDER (repeatable)"),
    set_: list[str] = typer.Option(None, "--set", "-s", help="dotted override of every trial KEY=VALUE (repeatable)"),
    profile: str | None = typer.Option(None, help="'smoke' for the skill's small settings"),
    pretrained: str | None = typer.Option(None, "--pretrained", help="pretrained model file"),
    algorithm: str | None = typer.Option(None, help="bayesian | tpe | gp | random | cmaes | hyperband | asha | bohb | nsga2"),
    trials: int | None = typer.Option(None, help="number of trials (default from the tao-run-automl skill)"),
    epochs: int | None = typer.Option(None, help="epochs of a full trial (default the spec's train.num_epochs)"),
    min_epochs: int = typer.Option(1, help="first rung (multi-fidelity algorithms)"),
    eta: int = typer.Option(3, help="reduction factor (multi-fidelity algorithms)"),
    parallel: int = typer.Option(1, help="trials at once"),
    param: list[str] = typer.Option(None, "--param", "-p", help="parameter to search (repeatable; default the schema's)"),
    disable: list[str] = typer.Option(None, "--disable", help="parameter not to search (repeatable)"),
    range_: list[str] = typer.Option(None, "--range", help="custom range KEY=MIN:MAX or KEY=a,b (repeatable)"),
    metric: list[str] = typer.Option(None, "--metric", help="NAME=minimize|maximize (repeatable; default the skill's)"),
    storage: str | None = typer.Option(None, help="study storage URL (SQLAlchemy or journal://PATH)"),
    keep_checkpoints: bool = typer.Option(False, help="keep losing trials' checkpoints"),
    baseline: bool = typer.Option(True, help="trial 0 trains the base spec's values to max_epochs, never pruned"),
    seed: int | None = typer.Option(None, help="sampler seed"),
    engine: str = typer.Option("builtin", help="'builtin' or 'tao'"),
    platform: str = typer.Option("local", help="where trials run"),
    follow: bool = typer.Option(True, help="follow with a progress bar until the run ends"),
    as_json: bool = JSON,
) -> None:
    """Start an AutoML run of SKILL's train action (itself a job) and follow it."""
    settings: dict[str, Any] = {
        "algorithm": algorithm,
        "max_trials": trials,
        "max_epochs": epochs,
        "min_epochs": min_epochs,
        "reduction_factor": eta,
        "parallel": parallel,
        "parameters": list(param) if param else None,
        "disabled_parameters": list(disable) if disable else None,
        "custom_param_ranges": _ranges(range_) or None,
        "metric": [{"name": k, "direction": v} for k, v in _pairs(metric, "--metric").items()] or None,
        "storage": storage,
        "keep_checkpoints": keep_checkpoints,
        "baseline": baseline,
        "seed": seed,
    }
    svc = _service()
    handle = svc.launch_job(
        skill,
        "train",
        automl_policy="on",
        engine=engine,  # type: ignore[arg-type]
        platform=platform,
        automl={k: v for k, v in settings.items() if v is not None},
        overrides=_pairs(set_, "--set"),
        data_sources={k: str(v) for k, v in _pairs(data, "--data").items()},
        profile=profile,
        pretrained_model=pretrained,
    )
    _emit(handle, as_json)
    if follow:
        final = follow_automl(svc, handle.job_id)
        _emit(final, as_json)
        if final.status != "COMPLETE":
            raise typer.Exit(1)


@automl_app.command("status")
def automl_status(run: str, trials: bool = typer.Option(True, help="list every trial"), as_json: bool = JSON) -> None:
    """Trials (complete / pruned / failed / running), progress and best so far of RUN (job id or run folder)."""
    from taoskills.automl import query

    _emit(query.status(_service(), run, trials=trials), as_json)


@automl_app.command("best")
def automl_best(run: str, as_json: bool = JSON) -> None:
    """best_rec of RUN: spec, metric, checkpoint, budget (best so far while it runs)."""
    from taoskills.automl import query

    _emit(query.best(_service(), run), as_json)


@automl_app.command("report")
def automl_report(run: str, as_json: bool = JSON) -> None:
    """The report of a finished RUN (markdown; --json for everything)."""
    from taoskills.automl import query

    data = query.report(_service(), run)
    if as_json:
        _emit(data, True)
    else:
        typer.echo(data["markdown"])


@automl_app.command("plot")
def automl_plot(
    run: str, out: Path | None = typer.Option(None, help="folder (default <run>/plots)"), as_json: bool = JSON
) -> None:
    """Optimization history, parameter importances, intermediate values as PNG and HTML."""
    from taoskills.automl import plots, query
    from taoskills.automl.study import load_config, open_study

    run_dir, _ = query.run_dir_of(_service(), run)
    _emit(plots.write_plots(open_study(load_config(run_dir)), out or run_dir / "plots"), as_json)


@automl_app.command("resume")
def automl_resume(run: str, follow: bool = typer.Option(True), as_json: bool = JSON) -> None:
    """Start a new controller on RUN after a crash or cancel (no trial lost or run twice)."""
    from taoskills.automl.service_hook import resume_automl

    svc = _service()
    handle = resume_automl(svc, run)
    _emit(handle, as_json)
    if follow and follow_automl(svc, handle.job_id).status != "COMPLETE":
        raise typer.Exit(1)
