"""ASHA's late promotion (taoskills.automl.promote) on hand-made Optuna trial lists."""

from __future__ import annotations

import pytest

optuna = pytest.importorskip("optuna")

from automl_trials import make_trial  # noqa: E402

from taoskills.automl import promote  # noqa: E402
from taoskills.automl.budget import FINISHES_ATTR  # noqa: E402

TS = optuna.trial.TrialState
RUNGS = [1, 3, 9]


_trial = make_trial


def test_the_best_stopped_trial_in_the_top_third_of_its_rung_is_promoted():
    trials = [_trial(i, TS.PRUNED, {1: v}) for i, v in enumerate([0.5, 0.2, 0.9])]
    assert promote.promotion(trials, rungs=RUNGS, eta=3) == promote.Promotion(1, 1, 0.2)
    # maximize: the highest value is the best
    assert promote.promotion(trials, rungs=RUNGS, eta=3, direction="maximize").number == 2
    # fewer than eta trials at every rung: nothing is in a top 1/eta yet
    assert promote.promotion(trials[:2], rungs=RUNGS, eta=3) is None


def test_a_running_or_complete_leader_blocks_and_the_highest_rung_goes_first():
    trials = [_trial(i, TS.PRUNED, {1: v}) for i, v in enumerate([0.5, 0.2, 0.9])]
    # trial 3 promotes trial 1 and is running: configuration 1 is no longer stopped; the top 1 of
    # three configurations at rung 1 is that running one, so nothing else is promoted
    running = _trial(3, TS.RUNNING, {2: 0.19}, **{promote.PROMOTES_ATTR: 1})
    assert promote.promotion([*trials, running], rungs=RUNGS, eta=3) is None
    # three configurations at rung 3, the best stopped there: it goes before any rung-1 promotion
    higher = [
        _trial(4, TS.PRUNED, {1: 0.3, 3: 0.25}),
        _trial(5, TS.PRUNED, {1: 0.35, 3: 0.3}),
        _trial(6, TS.PRUNED, {1: 0.1, 3: 0.05}),
        _trial(7, TS.PRUNED, {1: 0.15}),
    ]
    assert promote.promotion([*trials, *higher], rungs=RUNGS, eta=3) == promote.Promotion(6, 3, 0.05)


def test_a_chain_of_resumed_trials_counts_once_with_merged_values():
    first = _trial(0, TS.PRUNED, {1: 0.4})
    promoted = _trial(1, TS.PRUNED, {2: 0.35, 3: 0.3}, **{promote.PROMOTES_ATTR: 0})
    finished = _trial(2, TS.COMPLETE, {4: 0.2, 9: 0.1}, **{FINISHES_ATTR: 1})
    other = _trial(3, TS.PRUNED, {1: 0.6})
    chains = promote.chains([first, promoted, finished, other])
    assert [(t.number, values) for t, values in chains] == [(2, {1: 0.4, 2: 0.35, 3: 0.3, 4: 0.2, 9: 0.1}), (3, {1: 0.6})]
    # two configurations at rung 1: no top third yet
    assert promote.promotion([first, promoted, finished, other], rungs=RUNGS, eta=3) is None
