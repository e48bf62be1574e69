"""Read-only views of an AutoML run for the CLI and MCP: status, best, report.

A run is named by its AutoML job id or its run folder. Safe from any process while the
controller runs (reads the study and the run folder only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taoskills.automl.study import BEST_REC_FILE, RunConfig, load_config, open_study, read_json
from taoskills.errors import NotFound


def run_dir_of(service: Any, run: str) -> tuple[Path, str | None]:
    """(run folder, AutoML job id or None) for a job id or a run folder path."""
    path = Path(run)
    if (path / "automl.json").is_file():
        cfg = load_config(path)
        return path.resolve(), cfg.automl_job_id
    rec = service.store.get(run)
    if not rec.results_dir or not (Path(rec.results_dir) / "automl.json").is_file():
        raise NotFound(
            f"job {run} is not an AutoML run", field="run", fix="pass the job id launch_job returned with automl_policy on"
        )
    return Path(rec.results_dir), rec.job_id


def status(service: Any, run: str, *, trials: bool = True) -> dict[str, Any]:
    """``{job_id, status, run_dir, algorithm, objectives, max_trials, counts{trials, finished,
    complete, pruned, failed, running, progress (0..1), trial_epochs, best}, trials[...]}``."""
    from taoskills.automl import results

    run_dir, job_id = run_dir_of(service, run)
    cfg: RunConfig = load_config(run_dir)
    study = open_study(cfg)
    job = service.job_status(job_id).status if job_id else None
    out = {
        "job_id": job_id,
        "status": job,
        "run_dir": str(run_dir),
        "algorithm": cfg.algorithm,
        "objectives": [o.model_dump() for o in cfg.objectives],
        "max_trials": cfg.max_trials,
        "max_epochs": cfg.max_epochs,
        "counts": results.summarize(study, cfg),
        "best_rec": str(run_dir / BEST_REC_FILE) if (run_dir / BEST_REC_FILE).is_file() else None,
    }
    if trials:
        out["trials"] = [
            {k: t[k] for k in ("number", "state", "value", "job_id", "trial_epochs", "values", "reason")}
            for t in map(results.trial_dict, study.get_trials(deepcopy=False))
        ]
    return out


def best(service: Any, run: str) -> dict[str, Any]:
    """best_rec.json of a finished run; while it runs, the best complete trial so far."""
    from taoskills.automl import results

    run_dir, _ = run_dir_of(service, run)
    path = run_dir / BEST_REC_FILE
    if path.is_file():
        return read_json(path)
    cfg = load_config(run_dir)
    so_far = results.summarize(open_study(cfg), cfg)["best"]
    if so_far is None:
        raise NotFound("no trial has completed yet", field="run", fix="poll automl_status until a trial completes")
    return {
        "final": False,
        "best_so_far": so_far,
        "metric_name": cfg.objectives[0].name,
        "direction": cfg.objectives[0].direction,
    }


def report(service: Any, run: str) -> dict[str, Any]:
    """The run's report (report.json, and the markdown text) — written when the run ends."""
    run_dir, _ = run_dir_of(service, run)
    path = run_dir / "report.json"
    if not path.is_file():
        raise NotFound("the report is written when the run ends", field="run", fix="wait for the AutoML job to finish")
    data = read_json(path)
    data["markdown"] = (run_dir / "report.md").read_text() if (run_dir / "report.md").is_file() else ""
    plots = run_dir / "plots"
    data["plots"] = sorted(str(p) for p in plots.iterdir()) if plots.is_dir() else []
    return data
