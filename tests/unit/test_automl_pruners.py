"""SharedModelHyperband: Hyperband's decisions, with the sampler seeing every trial (BOHB)."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from optuna.pruners import _filter_study  # noqa: E402

from taoskills.automl.pruners import SharedModelHyperband  # noqa: E402


def _run(pruner, n=30):
    """Trials over x in [0, 1]; value at step s is (x - 0.3)^2 + 1/s. Returns (study, pruned steps)."""
    # the bracket of a trial hashes the study name: the same name for both
    study = optuna.create_study(study_name="s", sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)
    stops = []
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 10):
            trial.report((x - 0.3) ** 2 + 1.0 / step, step)
            if trial.should_prune():
                stops.append(step)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            stops.append(None)
            study.tell(trial, (x - 0.3) ** 2)
    return study, stops


def test_decisions_equal_hyperband_and_the_sampler_sees_all_trials():
    kw = {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}
    plain, plain_stops = _run(optuna.pruners.HyperbandPruner(**kw))
    shared, shared_stops = _run(SharedModelHyperband(**kw))
    assert shared_stops == plain_stops and any(s is not None for s in shared_stops)  # same pruning, some pruned
    probe = shared.ask()
    assert len(_filter_study(shared, probe).get_trials()) == len(shared.get_trials())  # the whole study
    probe = plain.ask()
    assert len(_filter_study(plain, probe).get_trials()) < len(plain.get_trials())  # Optuna's: one bracket
