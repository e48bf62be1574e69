"""What an AutoML run writes: controller status lines, trial files, best_rec, report, cleanup.

``best_rec.json`` follows the skill bank's best_rec contract: ``schema_version``,
``experiment_id``, ``metric_name``, ``direction``, ``best {rec_id, score, specs (nested, the
epoch budget moved to observed_budget), observed_budget, checkpoint_uri, checkpoint_epoch,
job_id}``, ``all_recs [{rec_id, score, state, job_id}]``; plus ``budget`` (trial-epochs
used). Among multi-fidelity trials only complete ones (they ran the full epoch budget) are
eligible, so the best is always chosen at the largest budget.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from taoskills.automl.study import BEST_REC_FILE, BEST_REC_SCHEMA_VERSION, RunConfig, strip_budget, write_json
from taoskills.engine.contract import StatusLogger
from taoskills.errors import TaoSkillsError
from taoskills.jobs import checkpoints


class StatusWriter:
    """TAO status lines of the controller in ``<run_dir>/train/status.json`` (the AutoML job's
    status: ``cur_iter``/``max_iter`` = finished/maximum trials, ``kpi`` = best metric)."""

    def __init__(self, run_dir: Path) -> None:
        self.log = StatusLogger(Path(run_dir) / "train" / "status.json")
        self.lock = threading.Lock()

    def started(self, cfg: RunConfig) -> None:
        with self.lock:
            self.log.write("STARTED", f"Starting AutoML {cfg.algorithm} on {cfg.skill} train ({cfg.max_trials} trials).")

    def event(self, message: str) -> None:
        with self.lock:
            self.log.write("RUNNING", message)

    def progress(self, cfg: RunConfig, study: Any) -> dict[str, Any]:
        counts = summarize(study, cfg)
        best = counts.get("best")
        kpi = {cfg.objectives[0].name: best["value"]} if best and best.get("value") is not None else None
        msg = (
            f"AutoML {cfg.algorithm}: {counts['finished']}/{cfg.max_trials} trials finished "
            f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed), {counts['running']} running"
        )
        if best:
            msg += f"; best {cfg.objectives[0].name} {best['value']:.6g} (trial {best['number']})"
        with self.lock:
            self.log.write(
                "RUNNING",
                msg,
                kpi=kpi,
                cur_iter=counts["finished"],
                max_iter=cfg.max_trials,
                trials={k: counts[k] for k in ("complete", "pruned", "failed", "running")},
            )
        return counts

    def done(self, message: str, kpi: dict[str, float] | None) -> None:
        with self.lock:
            self.log.write("SUCCESS", message, kpi=kpi)

    def failed(self, message: str) -> None:
        with self.lock:
            self.log.write("FAILURE", message, verbosity="ERROR")


def summarize(study: Any, cfg: RunConfig) -> dict[str, Any]:
    """Counts per state, progress fraction, trial-epochs used and the best trial so far."""
    import optuna

    TS = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(1 for t in trials if t.state == s) for s in TS}
    finished = n[TS.COMPLETE] + n[TS.PRUNED] + n[TS.FAIL]
    best = None
    if len(cfg.objectives) == 1:
        obj = cfg.objectives[0]
        for t in trials:
            if t.state == TS.COMPLETE and t.value is not None and (best is None or obj.better(t.value, best.value)):
                best = t
    return {
        "trials": len(trials),
        "finished": finished,
        "complete": n[TS.COMPLETE],
        "pruned": n[TS.PRUNED],
        "failed": n[TS.FAIL],
        "running": n[TS.RUNNING] + n[TS.WAITING],
        "progress": min(1.0, finished / cfg.max_trials),
        "trial_epochs": sum(int(t.user_attrs.get("trial_epochs", 0)) for t in trials),
        "best": None if best is None else {"number": best.number, "value": best.value, "values": best.user_attrs.get("values")},
    }


def trial_dict(t: Any) -> dict[str, Any]:
    segs = t.user_attrs.get("segments", [])
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.user_attrs.get("values"),
        "value": t.values if t.values and len(t.values) > 1 else t.value,
        "segments": segs,
        "job_id": segs[-1]["job_id"] if segs else None,
        "trial_epochs": t.user_attrs.get("trial_epochs", 0),
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "reason": t.user_attrs.get("reason"),
        "recovered_by": t.user_attrs.get("recovered_by"),
    }


def write_trial(run_dir: Path, study: Any, number: int, service: Any = None) -> None:
    """``trials/<n>.json``: the trial (:func:`trial_dict`) plus, given ``service``, the spec
    of its last segment job."""
    t = study.get_trials(deepcopy=False)[number]
    data = trial_dict(t)
    if service is not None and data["job_id"]:
        try:
            data["spec"] = service.store.get(data["job_id"]).spec
        except TaoSkillsError:
            data["spec"] = None
    write_json(Path(run_dir) / "trials" / f"{number:04d}.json", data)


def remove_checkpoints(service: Any, t: Any) -> list[str]:
    """Delete the checkpoint files of every segment job of trial ``t``; returns the paths."""
    removed = []
    for seg in t.user_attrs.get("segments", []):
        try:
            rec = service.store.get(seg["job_id"])
            files = checkpoints.list_checkpoints(Path(rec.results_dir))
        except TaoSkillsError:
            continue
        for c in files:
            try:
                os.unlink(c.path)
                removed.append(str(c.path))
            except OSError:
                pass
    return removed


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def best_rec(ctl: Any) -> dict[str, Any] | None:
    """Build ``best_rec.json`` (None when no trial completed); links the best checkpoint
    files into ``<run_dir>/train/`` so ``resolve_checkpoint`` on the AutoML job finds them."""
    import optuna

    cfg: RunConfig = ctl.cfg
    study = ctl.study
    TS = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TS.COMPLETE]
    if not done:
        return None
    obj = cfg.objectives[0]
    if len(cfg.objectives) > 1:
        front = study.best_trials
        best = min(front, key=lambda t: t.number)
    else:
        best = done[0]
        for t in done[1:]:
            if obj.better(t.value, best.value):
                best = t
    job_id = best.user_attrs["segments"][-1]["job_id"]
    rec = ctl.service.store.get(job_id)
    specs, budget = strip_budget(rec.spec)
    choice = Path(ctl.service.resolve_checkpoint(job_id, cfg.checkpoint_action).path)
    train_dir = ctl.run_dir / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    linked = []
    for c in checkpoints.list_checkpoints(Path(rec.results_dir)):
        _link(c.path, train_dir / c.name)
        linked.append(c.name)
    out = {
        "schema_version": BEST_REC_SCHEMA_VERSION,
        "experiment_id": cfg.run_id,
        "skill": cfg.skill,
        "network_arch": cfg.network_arch,
        "algorithm": cfg.algorithm,
        "metric_name": obj.name,
        "direction": obj.direction,
        "objectives": [o.model_dump() for o in cfg.objectives],
        "best": {
            "rec_id": best.number,
            "score": best.value if len(cfg.objectives) == 1 else best.values,
            "values": best.user_attrs.get("values"),
            "specs": specs,
            "observed_budget": budget,
            "checkpoint_uri": str(train_dir / choice.name),
            "trial_checkpoint": str(choice),
            "checkpoint_epoch": checkpoints.parse_checkpoint_name(choice.name)[0],
            "checkpoint_for": cfg.checkpoint_action,
            "job_id": job_id,
            "linked_files": linked,
        },
        "budget": {"max_epochs": cfg.max_epochs, "trial_epochs_used": summarize(study, cfg)["trial_epochs"]},
        "all_recs": [
            {
                "rec_id": t.number,
                "score": t.value if len(cfg.objectives) == 1 else t.values,
                "state": t.state.name,
                "job_id": trial_dict(t)["job_id"],
            }
            for t in trials
        ],
    }
    if len(cfg.objectives) > 1:
        out["pareto_front"] = [t.number for t in study.best_trials]
    write_json(ctl.run_dir / BEST_REC_FILE, out)
    return out


def report(ctl: Any, best: dict[str, Any] | None) -> dict[str, Any]:
    """``report.json`` and ``report.md``: settings, search space, every trial, the best."""
    cfg: RunConfig = ctl.cfg
    counts = summarize(ctl.study, cfg)
    trials = [trial_dict(t) for t in ctl.study.get_trials(deepcopy=False)]
    data = {
        "run_id": cfg.run_id,
        "skill": cfg.skill,
        "algorithm": cfg.algorithm,
        "objectives": [o.model_dump() for o in cfg.objectives],
        "max_trials": cfg.max_trials,
        "max_epochs": cfg.max_epochs,
        "rungs": ctl.rungs,
        "space": cfg.space["params"],
        "counts": counts,
        "trials": trials,
        "best": best["best"] if best else None,
    }
    write_json(ctl.run_dir / "report.json", data)
    lines = [
        f"# AutoML report: {cfg.skill} ({cfg.algorithm})",
        "",
        f"- objective: {', '.join(f'{o.name} ({o.direction})' for o in cfg.objectives)}",
        f"- trials: {counts['trials']} ({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed)",
        f"- epoch budget per trial: {cfg.max_epochs} (rungs {ctl.rungs}); trial-epochs used: {counts['trial_epochs']}",
        "",
        "| trial | state | value | epochs | job | values |",
        "|---|---|---|---|---|---|",
    ]
    for t in trials:
        lines.append(f"| {t['number']} | {t['state']} | {t['value']} | {t['trial_epochs']} | {t['job_id']} | {t['values']} |")
    if best:
        b = best["best"]
        lines += [
            "",
            f"Best: trial {b['rec_id']} {cfg.objectives[0].name}={b['score']} job {b['job_id']}",
            f"checkpoint: {b['checkpoint_uri']}",
        ]
    (ctl.run_dir / "report.md").write_text("\n".join(lines) + "\n")
    return data


def finalize(ctl: Any) -> int:
    """best_rec, checkpoint links, losing trials' checkpoints removed (unless kept), report,
    plots (when matplotlib/plotly are installed), final status line and the AutoML job
    record's spec set to the best spec. Returns the exit code (1: no trial completed)."""
    cfg: RunConfig = ctl.cfg
    best = best_rec(ctl)
    if best and not cfg.keep_checkpoints:
        keep = best["best"]["rec_id"]
        for t in ctl.study.get_trials(deepcopy=False):
            if t.number != keep:
                remove_checkpoints(ctl.service, t)
    report(ctl, best)
    try:
        from taoskills.automl import plots

        plots.write_plots(ctl.study, ctl.run_dir / "plots")
    except ImportError:
        pass
    if best is None:
        ctl.status.failed("AutoML: all trials failed (all_recommendations_failed); see report.md and the first trial's job")
        return 1
    b = best["best"]
    if cfg.automl_job_id:
        try:
            rec = ctl.service.store.get(b["job_id"])
            ctl.service.store.update_fields(cfg.automl_job_id, spec=rec.spec)
        except TaoSkillsError:
            pass
    ctl.status.progress(cfg, ctl.study)
    kpi = {cfg.objectives[0].name: b["score"]} if not isinstance(b["score"], list) else None
    ctl.status.done(f"AutoML finished successfully. Best trial {b['rec_id']} (job {b['job_id']}).", kpi)
    return 0
