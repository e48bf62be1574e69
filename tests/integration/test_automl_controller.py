"""The AutoML controller on a fake TAO entrypoint (tests/automl_fake_engine.py): trials run
as normal train jobs through the Service, multi-fidelity rungs resume from their own
checkpoints, pruning, best_rec and the checkpoint chain, losing checkpoints removed, a
killed controller resumed (no trial lost or duplicated), two worker processes on one
study, a crashed trial retried from its checkpoint, cancel, and ask/tell."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from automl_helpers import LR, SEARCH, SKILL, alive, install_fake_engine, request, settings, wait_for  # noqa: E402
from taoskills.automl import ask_tell, query  # noqa: E402
from taoskills.automl.service_hook import launch_automl, resume_automl  # noqa: E402
from taoskills.automl.study import load_config, open_study  # noqa: E402
from taoskills.errors import SpecError  # noqa: E402
from taoskills.jobs import checkpoints  # noqa: E402
from taoskills.service import Service  # noqa: E402

TS = optuna.trial.TrialState


@pytest.fixture()
def env(tmp_path, monkeypatch):
    from taoskills.data.sample_data import write_sample_images

    install_fake_engine(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TAO_SKILLS_FAKE_EPOCH_S", "0.02")
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    write_sample_images(tmp_path / "data" / "images_train", n=8)
    return Service(home=tmp_path / "home"), tmp_path / "data"


def _launch(svc, photos, **kw):
    return svc.launch_job(SKILL, "train", engine="tao", automl=settings(**kw), **request(photos))


def _trial_jobs(svc, run_id):
    return [r for r in svc.store.list(limit=1000) if r.labels.get("automl_run") == run_id]


def test_hyperband_prunes_resumes_rungs_and_chains_the_best_checkpoint(env):
    svc, photos = env
    handle = _launch(svc, photos)  # no policy words: automl_policy resolves to on
    assert handle.automl_policy == "on"
    final = svc.wait_job(handle.job_id, timeout_s=240, poll_s=0.5)
    assert final.status == "COMPLETE", svc.job_logs(handle.job_id).text
    st = query.status(svc, handle.job_id)
    c = st["counts"]
    assert c["trials"] == 6 and c["complete"] + c["pruned"] == 6 and c["pruned"] >= 1 and c["failed"] == 0
    assert c["progress"] == 1.0
    run_dir = Path(handle.results_dir)
    best = json.loads((run_dir / "best_rec.json").read_text())
    assert best["metric_name"] == "train_loss" and best["direction"] == "minimize"
    complete = [t for t in st["trials"] if t["state"] == "COMPLETE"]
    assert best["best"]["score"] == min(t["value"] for t in complete)
    assert final.kpis["train_loss"] == pytest.approx(best["best"]["score"])
    # budget moved out of the spec; the spec is the trial's own
    assert "num_epochs" not in best["best"]["specs"]["train"] and best["best"]["observed_budget"] == {"train.num_epochs": 9}
    assert best["best"]["specs"]["train"]["schedulers"]["learning_rate"]["val_base"] == best["best"]["values"][LR]
    # the AutoML job chains like a train job: its checkpoint is best_rec's
    ck = svc.resolve_checkpoint(handle.job_id, "inference")
    assert Path(ck.path).name == "student_epoch_008_step_00090.pth" and Path(ck.path).parent == run_dir / "train"
    assert pickle.loads(Path(ck.path).read_bytes())["lr"] == best["best"]["values"][LR]
    # promoted trials resumed from their own rung checkpoints: 9 epochs trained, not 1+3+9
    study = open_study(load_config(run_dir))
    for t in study.get_trials():
        segs = t.user_attrs["segments"]
        if t.state == TS.COMPLETE:
            assert [s["epochs"] for s in segs][-1] == 9 and t.user_attrs["trial_epochs"] == 9
            assert sorted(t.intermediate_values) == list(range(1, 10))
            for prev, seg in zip(segs, segs[1:]):
                spec = svc.store.get(seg["job_id"]).spec
                resume = spec["train"]["resume_training_checkpoint_path"]
                assert resume.startswith(svc.store.get(prev["job_id"]).results_dir) and "model_epoch_" in resume
        else:
            assert t.state == TS.PRUNED and t.user_attrs["trial_epochs"] < 9
    # losing trials' checkpoints were removed, the best trial's kept
    for t in study.get_trials():
        files = [
            c for s in t.user_attrs["segments"] for c in checkpoints.list_checkpoints(svc.store.get(s["job_id"]).results_dir)
        ]
        assert (len(files) > 0) == (t.number == best["best"]["rec_id"])
    # every trial job was a normal train job with automl_policy off
    jobs = _trial_jobs(svc, handle.job_id)
    assert jobs and all(j.automl_policy == "off" and j.status == "COMPLETE" for j in jobs)
    assert (run_dir / "report.md").is_file() and len(list((run_dir / "trials").glob("*.json"))) == 6
    trial0 = json.loads((run_dir / "trials" / "0000.json").read_text())
    assert trial0["spec"]["train"]["schedulers"]["learning_rate"]["val_base"] == trial0["values"][LR] and trial0["job_id"]
    plots = {p.name for p in (run_dir / "plots").iterdir()}
    assert {"optimization_history.png", "optimization_history.html", "intermediate_values.png"} <= plots
    # export chains from the AutoML job like from any train job
    built = svc.build_spec(SKILL, "export", parent_job_id=handle.job_id, stage=False)
    assert built.spec["export"]["checkpoint"] == ck.path


def test_killed_controller_resumes_without_losing_or_duplicating_trials(env, monkeypatch):
    svc, photos = env
    monkeypatch.setenv("TAO_SKILLS_FAKE_EPOCH_S", "0.25")
    handle = _launch(svc, photos, algorithm="tpe", max_trials=5, max_epochs=4, parallel=2, n_startup_trials=2)
    run_dir = Path(handle.results_dir)
    cfg = load_config(run_dir)

    def mid_study():
        trials = open_study(cfg).get_trials()
        done = [t for t in trials if t.state == TS.COMPLETE]
        # a trial with epochs still to train: the kill lands mid-trial under load too
        running = [
            t for t in trials if t.state == TS.RUNNING and t.user_attrs.get("segments") and len(t.intermediate_values) <= 1
        ]
        return done and running

    wait_for(mid_study, timeout=120)
    pid = int(svc.store.get(handle.job_id).backend_id)
    ctl = int(subprocess.check_output(["pgrep", "-P", str(pid), "-f", "taoskills.automl"]).split()[0])
    os.kill(ctl, signal.SIGKILL)  # the runtime dies; its trial jobs run on in their own sessions
    wait_for(lambda: not alive(ctl))
    assert svc.wait_job(handle.job_id, timeout_s=30).status == "ERROR"
    orphans = [t.number for t in open_study(cfg).get_trials() if t.state == TS.RUNNING]
    assert orphans

    again = resume_automl(svc, handle.job_id)
    assert svc.wait_job(again.job_id, timeout_s=240, poll_s=0.5).status == "COMPLETE", svc.job_logs(again.job_id).text
    trials = open_study(load_config(run_dir)).get_trials()
    assert [t.number for t in trials] == list(range(5))
    assert all(t.state == TS.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs.get("reason")) for t in trials]
    for n in orphans:
        assert trials[n].user_attrs.get("recovered_by")
    # no segment ran twice: one job per (trial, epochs), all recorded
    # (a record the killed controller wrote before its platform submitted anything is marked ERROR)
    jobs = [j for j in _trial_jobs(svc, handle.job_id) if "never submitted" not in (j.failure or {}).get("summary", "")]
    per_trial = Counter(j.labels["trial"] for j in jobs)
    assert all(per_trial[t.number] == len(t.user_attrs["segments"]) == 1 for t in trials), per_trial
    assert svc.resolve_checkpoint(again.job_id, "inference").path.startswith(str(run_dir))


def test_two_worker_processes_share_one_study(env):
    svc, photos = env
    handle = launch_automl(
        svc, SKILL, engine="tao", settings=settings(algorithm="asha", max_trials=8), launch=False, **request(photos)
    )
    run_dir = handle.results_dir
    procs = [subprocess.Popen([sys.executable, "-m", "taoskills.automl", "worker", run_dir]) for _ in range(2)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    trials = open_study(load_config(run_dir)).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and 8 <= len(numbers) <= 9  # the budget check and ask race by at most one
    owners = {t.user_attrs["owner"]["pid"] for t in trials}
    assert len(owners) == 2  # both processes ran trials
    for t in trials:
        assert t.state in (TS.COMPLETE, TS.PRUNED), (t.number, t.user_attrs.get("reason"), t.user_attrs.get("promotes_trial"))
        last = t.user_attrs["segments"][-1]
        kpis = svc.job_status(last["job_id"]).kpis
        assert kpis["train_loss"] == pytest.approx(last["value"])  # no result lost
        if t.state == TS.COMPLETE:
            assert t.value == pytest.approx(last["value"])


def test_crashed_trial_is_retried_from_its_own_checkpoint(env, monkeypatch, tmp_path):
    svc, photos = env
    monkeypatch.setenv("TAO_SKILLS_FAKE_CRASH_DIR", str(tmp_path))
    handle = _launch(svc, photos, algorithm="random", max_trials=2, max_epochs=3)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE"
    trials = open_study(load_config(handle.results_dir)).get_trials()
    assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE]
    crashed = next(t for t in trials if t.user_attrs.get("retries"))
    first, retry = crashed.user_attrs["segments"]
    assert first["state"] == "ERROR" and retry["state"] == "COMPLETE"
    resume = svc.store.get(retry["job_id"]).spec["train"]["resume_training_checkpoint_path"]
    assert resume.startswith(svc.store.get(first["job_id"]).results_dir)
    assert sorted(crashed.intermediate_values) == [1, 2, 3]


def test_cancel_stops_the_run_and_its_trials(env, monkeypatch):
    svc, photos = env
    monkeypatch.setenv("TAO_SKILLS_FAKE_EPOCH_S", "0.5")
    handle = _launch(svc, photos, algorithm="random", max_trials=4, max_epochs=20)
    running = wait_for(lambda: [j for j in _trial_jobs(svc, handle.job_id) if j.status == "RUNNING"], timeout=60)
    assert svc.cancel_job(handle.job_id).status == "CANCELED"
    wait_for(lambda: svc.job_status(running[0].job_id).status == "CANCELED", timeout=30)


def test_ask_tell_with_an_agent_in_the_loop(env):
    svc, photos = env
    handle = launch_automl(
        svc, SKILL, engine="tao", settings=settings(algorithm="tpe", max_epochs=2), launch=False, **request(photos)
    )
    run = handle.job_id
    sug = ask_tell.suggest(svc, run)
    assert set(sug["values"]) == {LR, "dataset.batch_size"} and sug["overrides"]["train.num_epochs"] == 2
    job = svc.launch_job(
        SKILL,
        "train",
        automl_policy="off",
        engine="tao",
        **{**request(photos), "overrides": {**request(photos)["overrides"], **sug["overrides"]}},
    )
    assert svc.wait_job(job.job_id, timeout_s=60).status == "COMPLETE"
    counts = ask_tell.tell(svc, run, sug["trial_number"], job_id=job.job_id)
    assert counts["complete"] == 1 and counts["best"]["number"] == sug["trial_number"]
    mine = {LR: 1e-5, "dataset.batch_size": 4}
    own = ask_tell.suggest(svc, run, params=mine)
    assert own["values"][LR] == pytest.approx(1e-5) and own["values"]["dataset.batch_size"] == 4
    ask_tell.tell(svc, run, own["trial_number"], value=0.5)
    with pytest.raises(SpecError) as exc:
        ask_tell.suggest(svc, run, params={LR: 5.0, "dataset.batch_size": 4})
    assert exc.value.field == LR
    with pytest.raises(SpecError):
        ask_tell.tell(svc, run, own["trial_number"], value=0.1)  # already told
    assert query.best(svc, run)["best_so_far"]["number"] in (sug["trial_number"], own["trial_number"])


def test_multi_objective_nsga2_keeps_a_pareto_front(env):
    svc, photos = env
    metric = [{"name": "train_loss", "direction": "minimize"}, {"name": "latency_ms", "direction": "minimize"}]
    handle = _launch(svc, photos, algorithm="nsga2", max_trials=5, max_epochs=2, metric=metric)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE", svc.job_logs(handle.job_id).text
    best = json.loads((Path(handle.results_dir) / "best_rec.json").read_text())
    assert [o["name"] for o in best["objectives"]] == ["train_loss", "latency_ms"]
    assert best["pareto_front"] and best["best"]["rec_id"] in best["pareto_front"]
    assert len(best["best"]["score"]) == 2
    study = open_study(load_config(handle.results_dir))
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2 and len(study.trials) == 5
    assert svc.resolve_checkpoint(handle.job_id, "inference").path.startswith(handle.results_dir)


def test_trial_0_trains_the_base_spec_values_to_max_epochs_unpruned(env):
    from taoskills.specs.dotted import get_dotted

    svc, photos = env
    # tpe_asha with eta 3 stops the first 2 trials to reach a rung: trial 0 completes only as the baseline
    handle = _launch(svc, photos, algorithm="tpe_asha", max_trials=3, max_epochs=3)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE"
    cfg = load_config(handle.results_dir)
    trials = open_study(cfg).get_trials()
    first = trials[0]
    assert first.user_attrs["baseline"] is True and first.state == TS.COMPLETE
    assert first.user_attrs["values"] == {k: get_dotted(cfg.base_spec, k) for k in SEARCH}
    assert first.user_attrs["segments"][-1]["epochs"] == 3 and first.user_attrs["trial_epochs"] == 3
    assert len(first.params) == len(cfg.space["params"])  # the sampler sees the point (Optuna parameters)
    assert not any(t.user_attrs.get("baseline") for t in trials[1:])


def test_the_last_trial_finishes_the_stopped_one_when_none_completed(env):
    svc, photos = env
    # tpe_asha with eta 3 stops the first 2 trials at every rung: both would be pruned
    handle = _launch(svc, photos, algorithm="tpe_asha", max_trials=2, max_epochs=3, baseline=False)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE"
    trials = open_study(load_config(handle.results_dir)).get_trials()
    assert [t.state for t in trials] == [TS.PRUNED, TS.COMPLETE]
    # budget reserve: the last slot resumes trial 0 from its rung-1 checkpoint (2 new epochs)
    first, last = trials[0].user_attrs, trials[1].user_attrs
    assert last["finishes_trial"] == 0 and last["values"] == first["values"]
    assert last["trial_epochs"] == 2 and last["segments"][0]["job_id"] == first["segments"][0]["job_id"]
    assert last["segments"][-1]["start"] == 1 and last["segments"][-1]["epochs"] == 3
    best = json.loads((Path(handle.results_dir) / "best_rec.json").read_text())
    assert best["best"]["rec_id"] == 1 and best["budget"]["trial_epochs_used"] == 3


def test_a_stopped_trial_in_the_top_third_of_its_rung_is_promoted_later(env):
    svc, photos = env
    # tpe_asha with eta 3: trials 0 and 1 stop at rung 1 (bootstrap); once 3 trials have a rung-1
    # value the best of them is in the top 1/3, and the next trial resumes it (ASHA's promotion)
    handle = _launch(svc, photos, algorithm="tpe_asha", max_trials=5, max_epochs=3, baseline=False)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE"
    trials = open_study(load_config(handle.results_dir)).get_trials()
    promoted = [t for t in trials if "promotes_trial" in t.user_attrs]
    assert promoted, [(t.number, t.state, t.intermediate_values) for t in trials]
    for t in promoted:
        old = trials[t.user_attrs["promotes_trial"]]
        assert old.state == TS.PRUNED and max(old.intermediate_values) == 1 and old.number < t.number
        earlier = [u for u in trials[: t.number] if 1 in u.intermediate_values and "promotes_trial" not in u.user_attrs]
        assert sorted(u.intermediate_values[1] for u in earlier)[: len(earlier) // 3][-1] >= old.intermediate_values[1]
        # resumed from its own rung-1 checkpoint with the same values: only the 2 new epochs are spent
        assert t.user_attrs["values"] == old.user_attrs["values"] and t.params == old.params
        assert t.user_attrs["segments"][0]["job_id"] == old.user_attrs["segments"][0]["job_id"]
        assert t.user_attrs["segments"][-1]["start"] == 1 and t.user_attrs["trial_epochs"] == 2
    assert sum(t.user_attrs.get("trial_epochs", 0) for t in trials) < 3 * len(trials)


def test_promotion_after_a_complete_trial_resumes_a_kept_checkpoint(env):
    svc, photos = env
    # the baseline completes first; a trial pruned after that keeps its rung checkpoint (it may be
    # promoted later), so its promotion resumes instead of failing on a removed checkpoint
    handle = _launch(svc, photos, algorithm="tpe_asha", max_trials=9, max_epochs=3)
    assert svc.wait_job(handle.job_id, timeout_s=120, poll_s=0.5).status == "COMPLETE"
    trials = open_study(load_config(handle.results_dir)).get_trials()
    assert trials[0].state == TS.COMPLETE
    assert [t.number for t in trials if t.state not in (TS.COMPLETE, TS.PRUNED)] == []
    promoted = [t for t in trials if "promotes_trial" in t.user_attrs]
    assert promoted and all(t.user_attrs["promotes_trial"] > 0 for t in promoted), [
        (t.number, t.state, t.intermediate_values) for t in trials
    ]
    # at the end the losers' checkpoints are removed, the best one's kept
    best = json.loads((Path(handle.results_dir) / "best_rec.json").read_text())["best"]
    for t in trials:
        job = svc.store.get(t.user_attrs["segments"][-1]["job_id"])
        left = checkpoints.list_checkpoints(Path(job.results_dir))
        assert bool(left) == (t.number == best["rec_id"]), (t.number, best["rec_id"])


def test_a_job_launched_but_not_recorded_by_a_killed_controller_is_adopted(env, tmp_path):
    from taoskills.automl.runner import Controller

    svc, photos = env
    handle = launch_automl(
        svc,
        SKILL,
        engine="tao",
        settings=settings(algorithm="random", max_trials=2, max_epochs=2),
        launch=False,
        **request(photos),
    )
    ctl = Controller(handle.results_dir)
    trial = ctl._next_trial()
    values = ctl.space.sample(trial)
    trial.set_user_attr("values", values)
    # a controller killed between launch_job and recording the segment: the job runs, the trial
    # holds only the launch intent
    orphan = ctl._launch(trial, values, 2, None)
    assert "segments" not in ctl.study._storage.get_trial(trial._trial_id).user_attrs
    state, final, _ = ctl.run_trial(trial)
    assert state == "COMPLETE" and final is not None
    segs = ctl.study._storage.get_trial(trial._trial_id).user_attrs["segments"]
    assert [s["job_id"] for s in segs] == [orphan]
    assert [j.job_id for j in _trial_jobs(svc, ctl.cfg.run_id)] == [orphan]  # not launched twice
    # killed after the job record and before the platform submitted it: that record is marked
    # ERROR (never lost) and the trial launches its own job
    trial = ctl._next_trial()
    values = ctl.space.sample(trial)
    trial.set_user_attr("values", values)
    rec = svc.store.get(orphan)
    stale = rec.model_copy(
        update={
            "job_id": "job-00000000abcd",
            "status": "PENDING",
            "backend_id": None,
            "workdir": str(tmp_path / "stale"),
            "results_dir": str(tmp_path / "stale" / "results"),
            "labels": {**rec.labels, "trial": trial.number, "automl_launch": "f" * 32},
        }
    )
    svc.store.create(stale)
    trial.set_user_attr("launching", {"token": "f" * 32, "epochs": 2})
    assert ctl.run_trial(trial)[0] == "COMPLETE"
    after = svc.store.get(stale.job_id)
    assert after.status == "ERROR" and "never submitted" in after.failure["summary"]
    segs = ctl.study._storage.get_trial(trial._trial_id).user_attrs["segments"]
    assert len(segs) == 1 and segs[0]["job_id"] not in (stale.job_id, orphan)
