"""Late promotions: asynchronous successive halving as ASHA defines it.

Optuna's ``SuccessiveHalvingPruner`` decides once, when a trial reaches a rung: it goes on if
it is in the top ``1/eta`` of the trials seen at that rung so far, else it stops for good. So
the first trials at a rung stop whatever their value (with ``bootstrap_count``), and a trial
that later turns out to be in the top ``1/eta`` of its rung is never trained further. ASHA
(Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020,
https://arxiv.org/abs/1810.05934, Algorithm 2) instead looks for a promotion each time a
worker is free: the highest rung holding a stopped trial that is now in the top
``floor(n/eta)`` of the ``n`` trials at that rung, and not yet promoted, sends that trial on;
only when there is none does a new configuration start.

:func:`promotion` finds that trial among Optuna ``FrozenTrial`` lists. The caller resumes it
from its own rung checkpoint, as a new trial with the same parameters and the user attribute
:data:`PROMOTES_ATTR` naming the stopped trial, and the pruner judges it at the next rungs as
usual. A chain of resumed trials (promotions, the budget reserve's finish) counts as one
configuration: its intermediate values are merged. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taoskills.automl.budget import FINISHES_ATTR, PROMOTES_ATTR

__all__ = ["PROMOTES_ATTR", "Promotion", "chains", "promotion"]


@dataclass(frozen=True)
class Promotion:
    """Resume trial ``number`` (PRUNED after ``epochs``, its value there ``value``)."""

    number: int
    epochs: int
    value: float


def _parent(t: Any) -> int | None:
    for key in (PROMOTES_ATTR, FINISHES_ATTR):
        if key in t.user_attrs:
            return int(t.user_attrs[key])
    return None


def chains(trials: Iterable[Any]) -> list[tuple[Any, dict[int, float]]]:
    """One entry per configuration: (its latest trial, its intermediate values merged over the
    chain of trials that resume one another; step -> value)."""
    by_number = {t.number: t for t in trials}
    resumed = {p for t in by_number.values() if (p := _parent(t)) is not None}
    out = []
    for t in by_number.values():
        if t.number in resumed:
            continue
        values: dict[int, float] = {}
        link: Any = t
        while link is not None:
            for step, value in link.intermediate_values.items():
                values.setdefault(int(step), float(value))
            parent = _parent(link)
            link = by_number.get(parent) if parent is not None else None
        out.append((t, values))
    return out


def promotion(trials: Iterable[Any], *, rungs: Sequence[int], eta: int, direction: str = "minimize") -> Promotion | None:
    """The stopped trial to resume before a new configuration starts, or None.

    ``rungs``: the ascending epoch counts of :func:`taoskills.automl.algorithms.rungs` (the
    last is ``max_epochs``); ``eta``: the reduction factor; ``direction`` minimize|maximize.
    From the highest rung below ``max_epochs`` down: among the ``n`` configurations with a
    value at that rung (running, stopped or complete, the baseline included), the top
    ``n // eta``; the best of those whose latest trial is PRUNED exactly at that rung is
    returned.
    """
    import optuna

    sign = 1.0 if str(direction).lower().startswith("min") else -1.0
    found = chains(trials)
    for rung in sorted(rungs[:-1], reverse=True):
        at = [(sign * values[rung], t) for t, values in found if rung in values]
        keep = len(at) // eta
        if keep < 1:
            continue
        for score, t in sorted(at, key=lambda p: p[0])[:keep]:
            stopped = t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values and max(t.intermediate_values) == rung
            if stopped:
                return Promotion(t.number, rung, sign * score)
    return None
