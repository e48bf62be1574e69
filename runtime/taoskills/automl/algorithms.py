"""AutoML algorithms: names users know from TAO AutoML 7.2.0 -> Optuna (5.x) configurations.

A registry (``ALGORITHMS``): a new algorithm is a new entry, not a branch elsewhere.

=============  =========================================================  ==================
name           Optuna configuration                                       epochs per trial
=============  =========================================================  ==================
bayesian (b)   ``GPSampler`` (Gaussian process, log expected improvement;  full budget
               TAO's bayesian is a GP with EI); ``TPESampler`` when torch
               or scipy (which GPSampler needs) is absent
gp             ``GPSampler``                                              full budget
tpe            ``TPESampler(multivariate, group, constant_liar)``         full budget
random         ``RandomSampler``                                          full budget
cmaes          ``CmaEsSampler`` (numeric parameters; categoricals fall    full budget
               back to independent sampling)
hyperband (h)  ``RandomSampler`` + ``HyperbandPruner(min, max, eta)``      rungs min*eta^k
               (TAO's hyperband draws configurations at random)
asha           ``RandomSampler`` + ``SuccessiveHalvingPruner(min, eta)``   rungs min*eta^k
               (Optuna's successive halving is asynchronous: ASHA), with
               ASHA's late promotions (:mod:`taoskills.automl.promote`)
bohb           ``TPESampler(multivariate, constant_liar)`` +              rungs min*eta^k
               ``HyperbandPruner`` (BOHB: a density model + Hyperband)
tpe_asha       ``TPESampler`` + ``SuccessiveHalvingPruner(min, eta,       rungs min*eta^k
               bootstrap_count=eta-1+b)``, b = 1 with the baseline trial
               (it reports at every rung and counts there), else 0: the
               first eta-1 searched trials to reach a rung stop there,
               later ones are promoted when in the top 1/eta; a stopped
               trial that later ranks in the top 1/eta of its rung is
               resumed (late promotion, as asha)
               (best on scripts/bench_automl.py)
nsga2          ``NSGAIISampler`` (multi-objective, e.g. mAP vs latency);  full budget
               no pruning (Optuna does not prune multi-objective studies)
=============  =========================================================  ==================

Multi-fidelity algorithms use epochs as the budget: a trial runs rung by rung, each rung
one train job that resumes from the previous rung's checkpoint; after each rung the pruner
decides whether the trial goes on. ``min_epochs`` (default 1), ``max_epochs`` and
``reduction_factor`` (eta, default 3, TAO's ``automl_reduction_factor``) set the rungs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taoskills.errors import SpecError

#: TAO AutoML 7.2.0 names not offered, with the nearest configuration here.
NOT_OFFERED = {
    "bfbo": "gp",
    "hyperband_es": "hyperband or bohb",
    "hes": "hyperband or bohb",
    "dehb": "bohb",
    "pbt": "asha or bohb",
    "llm": "ask/tell (automl_suggest / automl_tell)",
    "hybrid": "ask/tell (automl_suggest / automl_tell)",
    "autoresearch": "ask/tell (automl_suggest / automl_tell)",
}
ALIASES = {"b": "bayesian", "h": "hyperband", "random_search": "random", "cma": "cmaes", "nsgaii": "nsga2"}


@dataclass(frozen=True)
class Algorithm:
    """One registry entry. ``sampler(seed, n_startup)`` and ``pruner(min, max, eta, unpruned)``
    build the Optuna objects (``unpruned``: trials that report at every rung and are never
    pruned, i.e. the baseline); ``multi_fidelity``: trials run in rungs; ``multi_objective``: the
    only kind that accepts several objectives."""

    name: str
    summary: str
    sampler: Callable[[int | None, int], Any]
    pruner: Callable[[int, int, int, int], Any] | None = None
    multi_fidelity: bool = False
    multi_objective: bool = False
    promotes: bool = False


def _gp(seed: int | None, n_startup: int) -> Any:
    import optuna

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("scipy") is None:
        return _tpe(seed, n_startup)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup, deterministic_objective=False)


def _tpe(seed: int | None, n_startup: int) -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():  # multivariate/group/constant_liar are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=n_startup, multivariate=True, group=True, constant_liar=True
        )


def _random(seed: int | None, n_startup: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int | None, n_startup: int) -> Any:
    import optuna

    if importlib.util.find_spec("cmaes") is None:
        from taoskills.errors import NotSupported

        raise NotSupported("algorithm cmaes needs the cmaes package", field="algorithm", fix="pip install 'tao-skills[automl]'")

    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup, warn_independent_sampling=False)


def _nsga2(seed: int | None, n_startup: int) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


def _hyperband(min_e: int, max_e: int, eta: int, unpruned: int = 0) -> Any:
    """Optuna's ``HyperbandPruner``, with each trial's bracket chosen from its trial number alone.

    Optuna assigns a trial to a bracket by ``crc32(f"{study_name}_{number}")``; our study names
    carry the run's random job id, so the same seed gave a different bracket split (and a
    different search) on every run. Hashing the trial number keeps the split deterministic
    (trial numbers are unique within a study, so workers still share one split).
    """
    import binascii

    import optuna

    class _Hyperband(optuna.pruners.HyperbandPruner):
        def _get_bracket_id(self, study: Any, trial: Any) -> int:  # Optuna 5 private hook
            if len(self._pruners) == 0 or self._n_brackets is None:
                return 0
            n = binascii.crc32(f"trial_{trial.number}".encode()) % self._total_trial_allocation_budget
            for bracket_id in range(self._n_brackets):
                n -= self._trial_allocation_budgets[bracket_id]
                if n < 0:
                    return bracket_id
            return self._n_brackets - 1

    return _Hyperband(min_resource=min_e, max_resource=max_e, reduction_factor=eta)


def _sha(min_e: int, max_e: int, eta: int, unpruned: int = 0) -> Any:
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_e, reduction_factor=eta)


def _sha_bootstrap(min_e: int, max_e: int, eta: int, unpruned: int = 0) -> Any:
    """Successive halving that waits for ``eta - 1`` searched trials at a rung, plus the
    ``unpruned`` ones (the baseline, :mod:`taoskills.automl.baseline`): the baseline reports its
    value at every rung (the pruner is asked and its answer ignored), so it is one of the trials
    each promotion is judged against. Measured on ``scripts/bench_automl.py`` (Hartmann, 50
    seeds): the baseline counted, reach of TAO hyperband's best 113 trial-epochs with this
    count, 111 with ``eta - 1`` alone but a worse median best (-2.86 against -2.92)."""
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_e, reduction_factor=eta, bootstrap_count=eta - 1 + unpruned)


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("bayesian", "Gaussian-process Bayesian optimization (GPSampler, log EI)", _gp),
        Algorithm("gp", "Gaussian-process Bayesian optimization (GPSampler)", _gp),
        Algorithm("tpe", "Tree-structured Parzen estimator (multivariate TPE)", _tpe),
        Algorithm("random", "Random search", _random),
        Algorithm("cmaes", "CMA-ES on numeric parameters", _cmaes),
        Algorithm("hyperband", "Random sampling + Hyperband over epochs", _random, _hyperband, multi_fidelity=True),
        Algorithm(
            "asha",
            "Random sampling + asynchronous successive halving over epochs",
            _random,
            _sha,
            multi_fidelity=True,
            promotes=True,
        ),
        Algorithm("bohb", "TPE + Hyperband over epochs (BOHB)", _tpe, _hyperband, multi_fidelity=True),
        Algorithm(
            "tpe_asha",
            "TPE + asynchronous successive halving over epochs (first eta-1 trials at each rung stop there)",
            _tpe,
            _sha_bootstrap,
            multi_fidelity=True,
            promotes=True,
        ),
        Algorithm("nsga2", "NSGA-II multi-objective search (Pareto front)", _nsga2, multi_objective=True),
    )
}


def get_algorithm(name: str) -> Algorithm:
    """Registry lookup (TAO aliases ``b``, ``h`` accepted). SpecError (field ``algorithm``)."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key in NOT_OFFERED:
        from taoskills.errors import NotSupported

        raise NotSupported(
            f"TAO AutoML's {key} is not offered by the tao-skills runtime",
            field="algorithm",
            fix=f"use {NOT_OFFERED[key]} (available: {', '.join(ALGORITHMS)})",
        )
    if key not in ALGORITHMS:
        raise SpecError(
            f"unknown AutoML algorithm {name!r}",
            field="algorithm",
            fix=f"use one of {', '.join(ALGORITHMS)} (TAO aliases: b, h)",
        )
    return ALGORITHMS[key]


def rungs(algorithm: Algorithm, max_epochs: int, min_epochs: int = 1, eta: int = 3) -> list[int]:
    """Epoch counts at which a trial stops for a pruning decision (ascending; last = budget).

    Multi-fidelity: every ``min_epochs * eta**k`` below ``max_epochs`` (the union of the
    rungs of all Hyperband brackets), then ``max_epochs``. Others: ``[max_epochs]``.
    """
    if max_epochs < 1:
        raise SpecError(f"max_epochs {max_epochs} < 1", field="max_epochs", fix="give max_epochs >= 1")
    if not algorithm.multi_fidelity:
        return [max_epochs]
    if min_epochs < 1 or min_epochs > max_epochs or eta < 2:
        raise SpecError(
            f"rungs need 1 <= min_epochs <= max_epochs and reduction_factor >= 2 (got {min_epochs}, {max_epochs}, {eta})",
            field="min_epochs",
            fix="e.g. min_epochs 1, max_epochs 9, reduction_factor 3",
        )
    out, r = [], min_epochs
    while r < max_epochs:
        out.append(r)
        r *= eta
    return out + [max_epochs]


def make_study_objects(
    name: str,
    *,
    seed: int | None,
    n_startup: int,
    min_epochs: int,
    max_epochs: int,
    eta: int,
    n_objectives: int,
    baseline: bool = False,
) -> tuple[Any, Any]:
    """(sampler, pruner) for ``name``. ``baseline``: the study starts with the baseline trial
    (:mod:`taoskills.automl.baseline`), which the pruner counts at every rung. Several
    objectives need ``nsga2`` (SpecError)."""
    import optuna

    algo = get_algorithm(name)
    if n_objectives > 1 and not algo.multi_objective:
        raise SpecError(
            f"{n_objectives} objectives need a multi-objective algorithm; {algo.name} optimizes one",
            field="algorithm",
            fix="use algorithm 'nsga2' for several objectives, or give one metric",
        )
    pruner = algo.pruner(min_epochs, max_epochs, eta, int(baseline)) if algo.pruner else optuna.pruners.NopPruner()
    return algo.sampler(seed, n_startup), pruner
