"""The AutoML controller: runs a study's trials as normal train jobs through the Service API.

Each trial is launched with ``Service.launch_job(..., automl_policy="off")`` (so every
check a plain launch does applies), polled with ``job_status`` and read from its
``status.json`` per-epoch KPIs (Optuna intermediate values). Multi-fidelity algorithms run
a trial rung by rung (:func:`taoskills.automl.algorithms.rungs`): each rung is one job that
resumes from the previous rung's checkpoint (``resume_job_id``), and the pruner decides
after each rung whether the trial is promoted.

Crash safety: a trial's sampled values and every segment job id are stored in the study
(trial user attributes) before and right after launch; a controller that dies leaves its
trials RUNNING with its pid and heartbeat. The next controller on the study
(``python -m taoskills.automl run <run_dir>`` again) takes those trials over and waits for
their jobs (they run in their own sessions and survive the controller) or relaunches the
lost segment from its checkpoint — no trial is lost, none is run twice. A trial job that
fails is retried ``max_retries`` times from its own last checkpoint.

Budget reserve (:mod:`taoskills.automl.budget`): a run always ends with a full-budget best.
While no trial is complete, stopped trials keep their checkpoints, and the last trial slot
does not start a new configuration: it resumes the best stopped trial from its own last
rung checkpoint to ``max_epochs`` (a new trial with user attribute ``finishes_trial``, never
pruned). With no stopped trial to finish, the last trial is never pruned.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from taoskills.automl import baseline, budget, promote, results
from taoskills.automl.algorithms import get_algorithm, rungs
from taoskills.automl.space import SearchSpace
from taoskills.automl.study import RunConfig, load_config, open_study
from taoskills.errors import TaoSkillsError
from taoskills.jobs import monitor

TERMINAL = ("COMPLETE", "ERROR", "CANCELED")


class TrialFailed(Exception):
    """A trial could not produce its metric (reason in the message)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Controller:
    """Runs the trials of one AutoML run (one or several controllers may share a study)."""

    def __init__(self, run_dir: str | Path, *, recover: bool = True) -> None:
        from taoskills.service import Service

        self.run_dir = Path(run_dir).resolve()
        self.cfg: RunConfig = load_config(self.run_dir)
        self.service = Service(skills_dir=Path(self.cfg.skills_dir), home=Path(self.cfg.home))
        self.space = SearchSpace.from_dict(self.cfg.space)
        self.algo = get_algorithm(self.cfg.algorithm)
        self.rungs = rungs(self.algo, self.cfg.max_epochs, self.cfg.min_epochs, self.cfg.reduction_factor)
        self.study = open_study(self.cfg)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.recover = recover
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.active: dict[int, str] = {}  # trial number -> running job id
        self.status = results.StatusWriter(self.run_dir)
        self.multi = len(self.cfg.objectives) > 1

    # -- ownership ------------------------------------------------------------------------

    def _owner(self) -> dict[str, Any]:
        return {"worker": self.worker, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}

    def _orphaned(self, ft: Any) -> bool:
        owner = ft.user_attrs.get("owner")
        if not owner:
            return True
        if owner.get("agent"):
            return False  # an ask/tell trial the calling agent runs itself
        if owner.get("worker") == self.worker:
            return False
        if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
            return True
        return time.time() - float(owner.get("heartbeat", 0)) > self.cfg.stale_after_s

    def _claim_orphan(self) -> Any | None:
        import optuna

        if not self.recover:
            return None
        with self.lock:
            for ft in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if ft.number in self.active or not self._orphaned(ft):
                    continue
                trial = optuna.trial.Trial(self.study, ft._trial_id)
                trial.set_user_attr("owner", self._owner())
                trial.set_user_attr("recovered_by", self.worker)
                self.active[ft.number] = ""
                return trial
        return None

    def _next_trial(self) -> Any | None:
        """An orphaned trial to finish, else a new one while the trial budget allows."""
        import optuna

        trial = self._claim_orphan()
        if trial is not None:
            return trial
        with self.lock:
            trials = self.study.get_trials(deepcopy=False)
            # a queued trial another process's ask missed (Optuna's ask tries the queued trials it
            # listed, and starts a new one when another process took them) is taken first
            queued = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
            if self.stop.is_set() or (len(trials) >= self.cfg.max_trials and not queued):
                return None
            if not queued:
                if not trials and self.cfg.baseline and not self.multi and baseline.enqueue(self.study, self.space):
                    self.status.event("baseline: trial 0 trains the base spec's values to max_epochs")
                if not self.multi and self.algo.multi_fidelity and not self._enqueue_finish(trials) and self.algo.promotes:
                    self._enqueue_promotion(trials)
            trial = self.study.ask()
            trial.set_user_attr("owner", self._owner())
            self.active[trial.number] = ""
            return trial

    def _enqueue_finish(self, trials: list[Any]) -> bool:
        """Budget reserve: when the next trial takes the last slot and none is complete,
        queue the best stopped trial's values and rung segments, so the next trial resumes it."""
        stopped = budget.finish_instead(
            trials,
            max_epochs=self.cfg.max_epochs,
            direction=self.cfg.objectives[0].direction,
            trials_left=self.cfg.max_trials - len(trials),
        )
        if stopped is None:
            return False
        event = f"budget reserve: the last trial resumes stopped trial {stopped.number} after {stopped.epochs} epochs"
        return self._enqueue_resume(trials, stopped.number, stopped.epochs, budget.FINISHES_ATTR, event)

    def _enqueue_promotion(self, trials: list[Any]) -> bool:
        """ASHA's late promotion (:mod:`taoskills.automl.promote`): queue a stopped trial that is
        now in the top 1/eta of its rung, so the next trial resumes it (the pruner judges it at
        the next rungs)."""
        promo = promote.promotion(
            trials, rungs=self.rungs, eta=self.cfg.reduction_factor, direction=self.cfg.objectives[0].direction
        )
        if promo is None:
            return False
        event = f"promotion: stopped trial {promo.number} is in the top 1/{self.cfg.reduction_factor} after {promo.epochs} epochs"
        return self._enqueue_resume(trials, promo.number, promo.epochs, promote.PROMOTES_ATTR, event)

    def _enqueue_resume(self, trials: list[Any], number: int, epochs: int, attr: str, event: str) -> bool:
        """Queue trial ``number``'s values and its rung segments up to ``epochs``, marked with
        user attribute ``attr``, so the next trial resumes it from its own checkpoint."""
        old = next(t for t in trials if t.number == number)
        segs = [
            dict(s, copied_from=number)
            for s in old.user_attrs.get("segments", [])
            if s["state"] == "COMPLETE" and s["epochs"] <= epochs
        ]
        if not segs or "values" not in old.user_attrs or self._resumable(segs[-1]["job_id"]) is None:
            return False
        self.study.enqueue_trial(old.params, user_attrs={attr: number, "values": old.user_attrs["values"], "segments": segs})
        self.status.event(event)
        return True

    # -- one trial ------------------------------------------------------------------------

    def _launch(self, trial: Any, values: dict[str, Any], epochs: int, resume_job: str | None) -> str:
        """Launch the train job of ``trial`` to ``epochs``, or adopt the one an earlier (killed)
        controller launched for it and did not record: the trial's ``launching`` user attribute
        (written before each launch) names the token in that job's labels."""
        adopted = self._launched_before(trial, epochs)
        if adopted is not None:
            return adopted
        token = uuid.uuid4().hex
        trial.set_user_attr("launching", {"token": token, "epochs": epochs})
        req = dict(self.cfg.request)
        req.pop("resume_job_id", None)
        overrides = dict(req.pop("overrides", None) or {})
        overrides.update(values)
        overrides["train.num_epochs"] = epochs
        first = self.rungs[0]
        for key in ("train.checkpoint_interval", "train.validation_interval"):
            base = self._base(key)
            if isinstance(base, int) and base > first:
                overrides[key] = first
        handle = self.service.launch_job(
            self.cfg.skill,
            "train",
            automl_policy="off",
            engine=self.cfg.engine,  # type: ignore[arg-type]
            platform=self.cfg.platform,
            overrides=overrides,
            resume_job_id=resume_job,
            labels={
                "automl_run": self.cfg.run_id,
                "automl_job_id": self.cfg.automl_job_id,
                "trial": trial.number,
                "automl_launch": token,
            },
            **req,
        )
        return handle.job_id

    def _launched_before(self, trial: Any, epochs: int) -> str | None:
        """The job an earlier controller launched for ``trial`` to ``epochs`` and did not record
        (it died between the job record and the segment), or None. A record it left before its
        platform submitted anything (still PENDING, no backend id) is marked ERROR, never lost."""
        seen = self.study._storage.get_trial(trial._trial_id).user_attrs
        intent = seen.get("launching") or {}
        if intent.get("epochs") != epochs:
            return None
        recorded = {s["job_id"] for s in seen.get("segments", [])}
        for rec in self.service.store.list(skill=self.cfg.skill, action="train", limit=None):
            if rec.labels.get("automl_launch") != intent["token"] or rec.job_id in recorded:
                continue
            if rec.backend_id or self.service.job_status(rec.job_id).status != "PENDING":
                return rec.job_id
            self.service.store.update_status(
                rec.job_id,
                "ERROR",
                failure={
                    "summary": "never submitted: the AutoML controller stopped while launching it",
                    "fault": "infrastructure",
                },
            )
        return None

    def _base(self, key: str) -> Any:
        from taoskills.specs.dotted import get_dotted

        return get_dotted(self.cfg.base_spec, key, default=None)

    def _wait(self, trial: Any, job_id: str, start: int) -> tuple[str, list[tuple[int, float]], dict[str, Any]]:
        """Poll ``job_id`` to a terminal state; report per-epoch KPIs as they appear."""
        reported = set(self.study._storage.get_trial(trial._trial_id).intermediate_values)
        last_beat = 0.0
        while True:
            st = self.service.job_status(job_id)
            rec = self.service.store.get(job_id)
            summary = monitor.progress(Path(rec.results_dir), "train")
            curve = self._curve(summary, start)
            if not self.multi:
                for step, value in curve:
                    if step not in reported:
                        trial.report(value, step)
                        reported.add(step)
            if st.status in TERMINAL:
                return st.status, curve, {"failure": st.failure, "kpis": st.kpis}
            if time.time() - last_beat > self.cfg.heartbeat_s:
                trial.set_user_attr("owner", self._owner())
                last_beat = time.time()
            if self.stop.is_set():
                self.service.cancel_job(job_id)
            time.sleep(self.cfg.poll_s)

    def _curve(self, summary: monitor.StatusSummary, start: int) -> list[tuple[int, float]]:
        """(epochs done, value) of the primary objective; TAO's epoch field is 0-based."""
        obj = self.cfg.objectives[0]
        out = []
        for i, (epoch, value) in enumerate(obj.history(summary)):
            step = int(epoch) + 1 if epoch is not None else start + i + 1
            out.append((step, value))
        return out

    def _final_values(self, job_id: str) -> list[float]:
        rec = self.service.store.get(job_id)
        kpis = monitor.progress(Path(rec.results_dir), "train").kpis
        values = []
        for obj in self.cfg.objectives:
            v = obj.read(kpis)
            if v is None:
                raise TrialFailed(f"job {job_id} logged no {obj.name} KPI (metric_not_found)")
            values.append(v)
        return values

    def _save_segments(self, trial: Any, segments: list[dict[str, Any]]) -> None:
        trial.set_user_attr("segments", segments)
        new = [s for s in segments if s["state"] == "COMPLETE" and "copied_from" not in s]  # a resumed trial's own epochs
        trial.set_user_attr("trial_epochs", sum(s["epochs"] - s["start"] for s in new))

    def run_trial(self, trial: Any) -> tuple[str, list[float] | None, str | None]:
        """Run (or finish) one trial. Returns (state COMPLETE|PRUNED|FAIL, values, reason)."""
        ft = self.study._storage.get_trial(trial._trial_id)
        values = ft.user_attrs.get("values")
        if values is None:
            values = self.space.sample(trial)
            trial.set_user_attr("values", values)
        elif not ft.params:  # a queued trial (baseline, promotion, finish): record its Optuna parameters
            self.space.sample(trial)  # so the sampler sees the point
        segments: list[dict[str, Any]] = list(ft.user_attrs.get("segments", []))
        retries = int(ft.user_attrs.get("retries", 0))
        done = [s for s in segments if s["state"] == "COMPLETE"]
        epochs_done = done[-1]["epochs"] if done else 0
        resume_job = done[-1]["job_id"] if done else None
        final = self._final_values(resume_job) if resume_job else None
        finishing = baseline.never_pruned(ft.user_attrs)
        if done and epochs_done < self.cfg.max_epochs and not self.multi and not finishing and trial.should_prune():
            return "PRUNED", final, f"pruned after {epochs_done} epochs"
        for end in self.rungs:
            if end <= epochs_done:
                continue
            while True:
                pending = segments[-1] if segments and segments[-1]["state"] == "RUNNING" else None
                if pending and pending["epochs"] == end:
                    job_id = pending["job_id"]
                else:
                    job_id = self._launch(trial, values, end, resume_job)
                    segments.append({"job_id": job_id, "start": epochs_done, "epochs": end, "state": "RUNNING"})
                    self._save_segments(trial, segments)
                self.active[trial.number] = job_id
                state, curve, info = self._wait(trial, job_id, epochs_done)
                if state == "COMPLETE":
                    break
                segments[-1]["state"] = state
                self._save_segments(trial, segments)
                if self.stop.is_set():
                    return "FAIL", None, "canceled with the AutoML run"
                retries += 1
                trial.set_user_attr("retries", retries)
                summary = (info.get("failure") or {}).get("summary") or state
                if retries > self.cfg.max_retries:
                    raise TrialFailed(f"job {job_id} ended {state}: {summary}")
                resume_job = self._resumable(job_id) or resume_job
                self.status.event(f"trial {trial.number}: job {job_id} {state} ({summary}); retry {retries} from {resume_job}")
            final = self._final_values(job_id)
            segments[-1].update(state="COMPLETE", value=final[0])
            self._save_segments(trial, segments)
            if not self.multi and end not in {s for s, _ in curve}:
                trial.report(final[0], end)
            epochs_done, resume_job = end, job_id
            # the pruner is asked first, for every trial: a trial that must finish (the baseline)
            # still records its value at the rung, where the others are judged against it
            if end < self.cfg.max_epochs and not self.multi and trial.should_prune() and not self._must_finish(trial):
                return "PRUNED", final, f"pruned after {end} epochs"
        if final is None:
            raise TrialFailed("the trial ran no epochs")
        return "COMPLETE", final, None

    def _must_finish(self, trial: Any) -> bool:
        """True for the baseline trial (:mod:`taoskills.automl.baseline`), a trial that finishes a
        stopped one (budget reserve) and the last trial of a run that has no complete trial: it is
        never pruned, so every run ends with a best_rec at the full epoch budget."""
        import optuna

        TS = optuna.trial.TrialState
        if baseline.never_pruned(self.study._storage.get_trial(trial._trial_id).user_attrs):
            return True
        with self.lock:
            trials = self.study.get_trials(deepcopy=False)
            if any(t.state == TS.COMPLETE for t in trials) or len(trials) < self.cfg.max_trials:
                return False
            others = [t for t in trials if t.state == TS.RUNNING and t.number != trial.number]
            if others:
                return False
            trial.set_user_attr("promoted_as_last", True)
            return True

    def _resumable(self, job_id: str) -> str | None:
        try:
            self.service.resolve_checkpoint(job_id, "resume")
            return job_id
        except TaoSkillsError:
            return None

    def _finish(self, trial: Any) -> None:
        import optuna

        TS = optuna.trial.TrialState
        try:
            state, values, reason = self.run_trial(trial)
        except (TrialFailed, TaoSkillsError) as exc:
            state, values, reason = "FAIL", None, str(exc)
        except Exception as exc:  # an unexpected error must not leave the trial RUNNING
            state, values, reason = "FAIL", None, f"{type(exc).__name__}: {exc}"
        if reason:
            trial.set_user_attr("reason", reason)
        with self.lock:
            if state == "COMPLETE":
                self.study.tell(trial, values if self.multi else values[0], skip_if_finished=True)
            elif state == "PRUNED":
                self.study.tell(trial, state=TS.PRUNED, skip_if_finished=True)
            else:
                self.study.tell(trial, state=TS.FAIL, skip_if_finished=True)
            self.active.pop(trial.number, None)
        results.write_trial(self.run_dir, self.study, trial.number, self.service)
        if state == "PRUNED" and self._drop_checkpoints():
            results.remove_checkpoints(self.service, self.study.trials[trial.number])
        self.status.progress(self.cfg, self.study)

    # -- loop -----------------------------------------------------------------------------

    def _drop_checkpoints(self) -> bool:
        """Whether a trial pruned now loses its checkpoints at once: not when they are kept, not
        before a trial is complete (the budget reserve may finish it) and not when the algorithm
        promotes late (:mod:`taoskills.automl.promote` may resume any stopped trial, so its rung
        checkpoints stay until :func:`taoskills.automl.results.finalize` removes the losers')."""
        if self.cfg.keep_checkpoints or self.algo.promotes:
            return False
        return budget.any_complete(self.study.get_trials(deepcopy=False))

    def _worker(self) -> None:
        while not self.stop.is_set():
            trial = self._next_trial()
            if trial is None:
                return
            self._finish(trial)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop.set()

    def run(self, *, finalize: bool = True) -> int:
        """Run trials with ``parallel`` threads until the budget is used; returns an exit code
        (0 when at least one trial completed)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.status.started(self.cfg)
        threads = [threading.Thread(target=self._worker, name=f"automl-{i}") for i in range(self.cfg.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        if self.stop.is_set():
            self.status.failed("AutoML run canceled")
            return 2
        if not finalize:
            return 0
        return results.finalize(self)


def run(run_dir: str | Path, *, worker: bool = False) -> int:
    """Entry point of ``python -m taoskills.automl run|worker <run_dir>``.

    ``worker``: an extra process on the same study (no orphan recovery, no finalize).
    """
    ctl = Controller(run_dir, recover=not worker)
    return ctl.run(finalize=not worker)
