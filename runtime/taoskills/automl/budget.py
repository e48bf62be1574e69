"""The budget reserve: an AutoML run never ends without a trial trained to ``max_epochs``.

Multi-fidelity algorithms stop most trials at a low rung. On a small budget a run can spend
everything on stopped rungs and end with no full-budget trial, hence no best_rec (seen on
scripts/bench_automl.py's MAE objective: tpe_asha, 12 trial-epochs of 3-epoch trials, one
seed in five). The rule, shared by the controller (:mod:`taoskills.automl.runner`) and the
benchmark:

* While no trial is COMPLETE, the run keeps in reserve what finishing its furthest stopped
  trial costs (:func:`reserve`). A rung that would eat into the reserve is not run: a
  running trial stops there (:func:`may_run`); a new trial is not started when it would
  take the last trial slot (trial-count budget) or its first rung would eat into the reserve
  (trial-epoch budget); the run resumes the best stopped trial (:func:`finish_instead`)
  from its own last rung checkpoint to ``max_epochs`` instead, exactly as a promotion does.
  That resumed trial is never pruned.
* The best stopped trial: the one that reached the highest rung (the pruner kept it longest),
  then the best value at that rung (TAO's "promote the best recommendation" idea applied to
  the last affordable promotion).

Pure functions over Optuna ``FrozenTrial`` lists; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Trial user attribute naming the stopped trial a resumed trial finishes.
FINISHES_ATTR = "finishes_trial"
#: Trial user attribute naming the stopped trial a late promotion resumes
#: (:mod:`taoskills.automl.promote`, which imports it from here).
PROMOTES_ATTR = "promotes_trial"


@dataclass(frozen=True)
class Stopped:
    """A PRUNED trial: its ``number``, the ``epochs`` it trained and its ``value`` there."""

    number: int
    epochs: int
    value: float


def any_complete(trials: Iterable[Any]) -> bool:
    """True when one of ``trials`` (Optuna FrozenTrials) is COMPLETE."""
    import optuna

    return any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def best_stopped(trials: Iterable[Any], max_epochs: int, direction: str = "minimize") -> Stopped | None:
    """The stopped trial to finish: PRUNED, below ``max_epochs``, not already resumed by
    another trial (finished, or promoted: :mod:`taoskills.automl.promote`); highest rung first,
    then the best intermediate value there (``direction`` minimize|maximize). None when there
    is none."""
    import optuna

    trials = list(trials)
    taken = {t.user_attrs.get(key) for t in trials for key in (FINISHES_ATTR, PROMOTES_ATTR)}
    sign = 1.0 if str(direction).lower().startswith("min") else -1.0
    best: tuple[tuple[float, float], Stopped] | None = None
    for t in trials:
        if t.state != optuna.trial.TrialState.PRUNED or t.number in taken or not t.intermediate_values:
            continue
        step = max(t.intermediate_values)
        if step >= max_epochs:
            continue
        cand = Stopped(t.number, int(step), float(t.intermediate_values[step]))
        key = (-float(step), sign * cand.value)
        if best is None or key < best[0]:
            best = (key, cand)
    return best[1] if best else None


def reserve(trials: Iterable[Any], max_epochs: int, *, at: int = 0) -> int:
    """Trial-epochs the run must keep unspent: 0 once a trial is COMPLETE, else the cost of
    finishing the furthest stopped trial, or the current trial once it has ``at`` epochs
    (``max_epochs - max(at, its epochs)``)."""
    import optuna

    trials = list(trials)
    if any_complete(trials):
        return 0
    furthest = at
    for t in trials:
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            furthest = max(furthest, min(max(t.intermediate_values), max_epochs))
    return max_epochs - furthest


def may_run(trials: Iterable[Any], *, max_epochs: int, epochs_left: int, start: int, end: int) -> bool:
    """May a trial at ``start`` epochs run its rung to ``end`` on ``epochs_left`` trial-epochs?
    Yes when the rung finishes the trial (``end >= max_epochs``) within the budget, or when
    the budget left after it still covers :func:`reserve` (with the trial stopped at ``end``).
    A trial refused a rung is stopped there; the run then finishes the best stopped trial."""
    cost = end - start
    if end >= max_epochs:
        return cost <= epochs_left
    return epochs_left - cost >= reserve(trials, max_epochs, at=end)


def finish_instead(
    trials: Iterable[Any],
    *,
    max_epochs: int,
    direction: str = "minimize",
    trials_left: int | None = None,
    epochs_left: int | None = None,
    first_rung: int = 1,
) -> Stopped | None:
    """The stopped trial to resume to ``max_epochs`` instead of starting a new trial, or None.

    ``trials_left``: trial slots left of a trial-count budget (TAO's
    ``automl_max_recommendations``); ``epochs_left``: trial-epochs left of a trial-epoch
    budget; give either or both. Returns the best stopped trial (:func:`best_stopped`) when
    no trial is COMPLETE and a new trial would take the last slot, or its first rung
    (``first_rung`` epochs) would eat into :func:`reserve` (:func:`may_run`), while the budget
    left can still pay for finishing that trial (``max_epochs - its epochs``).
    """
    trials = list(trials)
    if any_complete(trials):
        return None
    stopped = best_stopped(trials, max_epochs, direction)
    if stopped is None:
        return None
    if epochs_left is not None and epochs_left < max_epochs - stopped.epochs:
        return None
    if trials_left == 1:
        return stopped
    if epochs_left is not None and not may_run(trials, max_epochs=max_epochs, epochs_left=epochs_left, start=0, end=first_rung):
        return stopped
    return None
