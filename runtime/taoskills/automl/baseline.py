"""The baseline trial: an AutoML run first trains the spec as given.

Trial 0 of a new study takes the base spec's value of every searched parameter (TAO's
defaults, or the user's own values) and trains to ``max_epochs``, rung by rung like any trial,
but is never stopped by the pruner. So:

* best_rec is never worse than the spec the user brought (the search can only improve on it);
* a full-budget result exists after ``max_epochs`` trial-epochs, where a multi-fidelity search
  otherwise needs ``eta`` trials per rung before it promotes anything to the top rung;
* the sampler's model starts from a known point (Optuna's ``Study.enqueue_trial``, the
  documented way to seed a study with a configuration worth trying);
* its value counts at every rung: the pruner is asked there as for any trial and only its
  answer is ignored, so searched trials are judged against it (``tpe_asha`` counts it in its
  bootstrap, :func:`taoskills.automl.algorithms.make_study_objects` ``baseline``).

Measured on ``scripts/bench_automl.py`` (MAE objective, TAO's defaults lr 2e-4, weight decay
0.05, beta1 0.9: val_loss 0.953 after 9 epochs, better than TAO 7.2.0's best on 4 of 5 seeds).
No baseline when a parameter has no base value or a custom range leaves it out.
"""

from __future__ import annotations

from typing import Any

from taoskills.errors import SpecError

#: Trial user attribute marking the baseline trial (never pruned).
BASELINE_ATTR = "baseline"


def never_pruned(user_attrs: dict[str, Any]) -> bool:
    """True for the baseline trial and for a trial that finishes a stopped one (budget reserve:
    :data:`taoskills.automl.budget.FINISHES_ATTR`), by their user attributes."""
    from taoskills.automl.budget import FINISHES_ATTR

    return BASELINE_ATTR in user_attrs or FINISHES_ATTR in user_attrs


def startup_trials(n_startup: int, enabled: bool) -> int:
    """The sampler's start-up trial count with the baseline on: ``n_startup`` random trials
    plus the baseline, which is not a random sample (Optuna's samplers count every trial
    toward ``n_startup_trials``; without this the baseline would take one random draw's place)."""
    return n_startup + 1 if enabled else n_startup


def baseline(space: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(spec values, Optuna parameters) of the baseline trial for ``space`` (a
    :class:`taoskills.automl.space.SearchSpace`): each parameter's base value (``Param.default``)
    and its Optuna encoding (:meth:`SearchSpace.to_optuna_params`). None when a value is unset
    or outside its search range."""
    values = {p.key: p.default for p in space.params}
    if not values or any(v is None for v in values.values()):
        return None
    try:
        return values, space.to_optuna_params(values)
    except SpecError:
        return None


def enqueue(study: Any, space: Any) -> bool:
    """Queue the baseline trial on an empty ``study`` (Optuna); True when queued. The trial
    carries its spec values (user attribute ``values``) and :data:`BASELINE_ATTR`."""
    found = baseline(space)
    if found is None or study.get_trials(deepcopy=False):
        return False
    values, params = found
    study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True, "values": values}, skip_if_exists=True)
    return True
