"""Hand-made Optuna trials for the AutoML unit tests (budget reserve, late promotions)."""

from __future__ import annotations

from typing import Any


def make_trial(number: int, state: Any, curve: dict[int, float], **attrs: Any) -> Any:
    """A FrozenTrial numbered ``number`` in ``state`` with intermediate values ``curve``
    (step -> value; a COMPLETE trial's value is its last one) and user attributes ``attrs``."""
    import optuna

    t = optuna.trial.create_trial(
        state=state,
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        value=curve[max(curve)] if state == optuna.trial.TrialState.COMPLETE else None,
        intermediate_values=curve,
        user_attrs=attrs,
    )
    t.number = number
    return t
