"""Pruners that Optuna (5.x) does not ship as such.

``SharedModelHyperband``: Hyperband's pruning decisions, with the sampler fitted on every
trial. Optuna's ``HyperbandPruner`` also narrows what the sampler sees to the trials of the
new trial's bracket (``optuna.pruners._filter_study``: an ``isinstance`` check), so with 4
brackets a TPE model in BOHB learns from about a quarter of the trials. BOHB (Falkner et al.
2018, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale") fits one density
model on all observations instead; this wrapper delegates ``prune`` to a ``HyperbandPruner``
(the bracket logic is unchanged) but is not one, so the sampler sees the whole study.
Measured by scripts/bench_automl.py (see ``taoskills.automl.algorithms``).
"""

from __future__ import annotations

from typing import Any

import optuna


class SharedModelHyperband(optuna.pruners.BasePruner):
    """``optuna.pruners.HyperbandPruner(**kwargs)`` decisions; the sampler sees all trials."""

    def __init__(self, **kwargs: Any) -> None:
        self._hyperband = optuna.pruners.HyperbandPruner(**kwargs)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """True when the trial's bracket says stop at this step (see ``HyperbandPruner.prune``)."""
        return self._hyperband.prune(study, trial)
