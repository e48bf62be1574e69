"""The AutoML budget reserve (taoskills.automl.budget): while no trial is complete, the run
keeps what finishing its best stopped trial costs and, at the end of the budget, resumes
that trial to max_epochs instead of starting a new one, so it never ends without a
full-budget trial. Synthetic trials, and scripts/bench_automl.py's multi-fidelity
Hartmann-6 loop (no training)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from automl_trials import make_trial  # noqa: E402

from taoskills.automl import budget  # noqa: E402

TS = optuna.trial.TrialState


_trial = make_trial


def test_best_stopped_is_the_furthest_then_the_best_value():
    trials = [
        _trial(0, TS.PRUNED, {1: 0.2}),
        _trial(1, TS.PRUNED, {1: 0.9, 3: 0.7}),
        _trial(2, TS.PRUNED, {1: 0.5, 3: 0.4}),
        _trial(3, TS.FAIL, {1: 0.0, 3: 0.0}),
    ]
    assert budget.best_stopped(trials, 9) == budget.Stopped(2, 3, 0.4)
    assert budget.best_stopped(trials, 9, "maximize").number == 1
    # a stopped trial already finished by another is not picked twice
    taken = [*trials, _trial(4, TS.RUNNING, {}, **{budget.FINISHES_ATTR: 2})]
    assert budget.best_stopped(taken, 9).number == 1
    # nor one a late promotion resumes (the same configuration would train twice)
    promoted = [*trials, _trial(4, TS.RUNNING, {}, promotes_trial=2)]
    assert budget.best_stopped(promoted, 9).number == 1
    assert budget.best_stopped([_trial(0, TS.COMPLETE, {9: 0.1})], 9) is None


def test_finish_instead_takes_the_last_trial_slot_or_the_last_affordable_epochs():
    stopped = [_trial(0, TS.PRUNED, {1: 0.3}), _trial(1, TS.PRUNED, {1: 0.6})]
    pick = budget.Stopped(0, 1, 0.3)
    # trial-count budget: the last slot finishes the best stopped trial
    assert budget.finish_instead(stopped, max_epochs=3, trials_left=1) == pick
    assert budget.finish_instead(stopped, max_epochs=3, trials_left=2) is None
    # trial-epoch budget: finishing trial 0 costs 2; a new trial's first rung costs 1
    assert budget.finish_instead(stopped, max_epochs=3, epochs_left=3) is None
    assert budget.finish_instead(stopped, max_epochs=3, epochs_left=2) == pick
    assert budget.finish_instead(stopped, max_epochs=3, epochs_left=1) is None  # cannot pay for it
    # once a trial is complete the reserve is released
    done = [*stopped, _trial(2, TS.COMPLETE, {1: 0.5, 3: 0.2})]
    assert budget.finish_instead(done, max_epochs=3, trials_left=1, epochs_left=2) is None
    assert budget.reserve(done, 3) == 0 and budget.reserve(stopped, 3) == 2


def test_may_run_refuses_a_rung_that_eats_into_the_reserve():
    trials = [_trial(0, TS.PRUNED, {1: 0.3, 3: 0.2, 9: 0.1})]  # finishing it costs 18 of 27
    assert budget.may_run(trials, max_epochs=27, epochs_left=30, start=0, end=1)
    assert budget.may_run(trials, max_epochs=27, epochs_left=20, start=1, end=3)  # 18 left: exactly the reserve
    assert not budget.may_run(trials, max_epochs=27, epochs_left=19, start=1, end=3)
    # a rung to max_epochs finishes the trial: allowed whenever the budget pays for it
    assert budget.may_run(trials, max_epochs=27, epochs_left=18, start=9, end=27)
    assert not budget.may_run(trials, max_epochs=27, epochs_left=17, start=9, end=27)
    # the current trial past every stopped one sets the reserve itself
    assert budget.may_run([], max_epochs=27, epochs_left=27, start=3, end=9)  # 27-6 >= 27-9


def _bench():
    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_automl.py"
    spec = importlib.util.spec_from_file_location("bench_automl", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("algorithm", ["tpe_asha", "asha", "hyperband"])
def test_a_small_budget_run_always_ends_with_a_full_budget_trial(algorithm, monkeypatch):
    bench = _bench()
    # without the baseline trial (taoskills.automl.baseline), which alone would give a full-budget trial
    runs = [bench.run_ours(algorithm, seed, 2 * 27, bench.Hartmann(27), 3, baseline=False) for seed in range(4)]
    assert all(math.isfinite(t.best) and t.used <= 54 for t in runs)
    assert all(-3.33 < t.best < 0 for t in runs)  # a real Hartmann-6 value at full fidelity
    if algorithm == "tpe_asha":  # without the reserve the same runs end with no full-budget trial
        monkeypatch.setattr(budget, "finish_instead", lambda *a, **k: None)
        monkeypatch.setattr(budget, "may_run", lambda *a, **k: True)
        bare = [bench.run_ours(algorithm, seed, 2 * 27, bench.Hartmann(27), 3, baseline=False) for seed in range(4)]
        assert any(math.isinf(t.best) for t in bare)
