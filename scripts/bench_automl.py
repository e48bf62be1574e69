"""Benchmark: tao-skills AutoML (Optuna configurations of ``taoskills.automl.algorithms``)
side by side with nvidia-tao-automl 7.2.0's ``bayesian`` and ``hyperband`` brains, driven
in-process, on the same objective, the same trial-epoch budget and several seeds.

Objective: the multi-fidelity Hartmann-6 function (minimize). Hartmann-6 constants A, P,
alpha are the published ones (Dixon & Szegő 1978; Surjanovic & Bingham, "Virtual Library of
Simulation Experiments"); the fidelity follows Kandasamy et al. 2017 (BOCA) as used by
BoTorch's AugmentedHartmann: ``alpha_1(s) = alpha_1 - 0.1 * (1 - s)``, here with
``s = epochs / max_epochs`` so a trial "trained" e epochs is the fidelity-e/E function.
Global minimum at s = 1: -3.32237.

Budget: trial-epochs (sum over trials of epochs actually run; a resumed rung costs only
its new epochs, for both libraries). Each method runs until the budget is used (or its
algorithm says it is done). The best of a run is the best value *at full fidelity*.

Reported per pair (ours vs theirs): median best over seeds, wins, and the trial-epochs
each needed to reach the other's final best (median; "never" when it did not).

Usage: ``python scripts/bench_automl.py [--seeds 5] [--budget-trials 20] [--max-epochs 27]
[--json out.json]``. Needs ``optuna`` and, for the baseline, ``pip install --no-deps
nvidia-tao-automl==7.2.0`` plus its imports (scikit-learn, pandas, requests).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
import uuid
import warnings

import numpy as np

A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
F_MIN = -3.32237
KEYS = [f"train.x{i}" for i in range(6)]


def hartmann6(x: list[float], s: float = 1.0) -> float:
    """Multi-fidelity Hartmann-6 at fidelity ``s`` in [0, 1] (module docstring)."""
    alpha = ALPHA.copy()
    alpha[0] -= 0.1 * (1.0 - s)
    x = np.asarray(x, dtype=float)
    return float(-np.sum(alpha * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))


class Tracker:
    """Cumulative trial-epochs and the best full-fidelity value, as a trace."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used, self.best, self.trace = budget, 0, math.inf, []

    def spend(self, epochs: int) -> None:
        self.used += epochs

    def full(self, value: float) -> None:
        if value < self.best:
            self.best = value
            self.trace.append((self.used, value))

    @property
    def left(self) -> int:
        return self.budget - self.used

    def reached(self, target: float) -> int | None:
        for used, value in self.trace:
            if value <= target + 1e-12:
                return used
        return None


# ----------------------------------------------------------------------------- ours


def run_ours(algorithm: str, seed: int, budget: int, max_epochs: int, eta: int) -> Tracker:
    import optuna

    from taoskills.automl.algorithms import get_algorithm, make_study_objects, rungs
    from taoskills.automl.space import Param, SearchSpace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = SearchSpace("hartmann", [Param(k, "float", low=0.0, high=1.0, default=0.5) for k in KEYS], max_epochs)
    sampler, pruner = make_study_objects(
        algorithm, seed=seed, n_startup=4, min_epochs=1, max_epochs=max_epochs, eta=eta, n_objectives=1
    )
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction="minimize")
    plan = rungs(get_algorithm(algorithm), max_epochs, 1, eta)
    tr = Tracker(budget)
    while tr.left > 0:
        trial = study.ask()
        x = [space.sample(trial)[k] for k in KEYS]
        done, pruned = 0, False
        for end in plan:  # one "job" per rung, resumed from the previous rung (costs end - done)
            end = min(end, done + tr.left)
            tr.spend(end - done)
            for step in range(done + 1, end + 1):  # per-epoch KPI -> intermediate value
                trial.report(hartmann6(x, step / max_epochs), step)
            done = end
            if end < max_epochs and (tr.left <= 0 or trial.should_prune()):
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            value = hartmann6(x, 1.0)
            tr.full(value)
            study.tell(trial, value)
    return tr


# ----------------------------------------------------------------------------- theirs


def run_tao(algorithm: str, seed: int, budget: int, max_epochs: int, eta: int) -> Tracker:
    from tao_automl import AutoML

    schema = {
        "type": "object",
        "properties": {
            "train": {
                "type": "object",
                "properties": {
                    **{
                        k.split(".")[1]: {"type": "float", "default": 0.5, "minimum": 0.0, "maximum": 1.0, "automl_enabled": True}
                        for k in KEYS
                    },
                    "num_epochs": {"type": "int", "default": max_epochs, "minimum": 1, "maximum": max_epochs},
                },
            }
        },
        "default": {"train": {**{k.split(".")[1]: 0.5 for k in KEYS}, "num_epochs": max_epochs}},
        "automl_default_parameters": KEYS,
    }
    spec = {"train": {**{k.split(".")[1]: 0.5 for k in KEYS}, "num_epochs": max_epochs}}
    settings = {
        "algorithm": algorithm,
        "metric": "loss",
        "direction": "minimize",
        "automl_max_recommendations": max(1, budget // max_epochs),
        "automl_max_epochs": max_epochs,
        "automl_reduction_factor": eta,
        "session_id": f"s{seed}-{uuid.uuid4().hex[:6]}",
    }
    np.random.seed(seed)
    aml = AutoML(
        tempfile.mkdtemp(prefix="taoaml-"), "hartmann", spec, settings, automl_hyperparameters=KEYS, search_schema=schema
    )
    tr = Tracker(budget)
    trained: dict[int, int] = {}
    while tr.left > 0 and not aml.is_complete():
        recs = aml.next_recommendation()
        if not recs:
            break
        for rec in recs:
            epochs = int(rec.specs.get("train.num_epochs", max_epochs))
            start = trained.get(rec.id, 0)
            end = min(epochs, start + tr.left)
            tr.spend(end - start)
            trained[rec.id] = end
            x = [float(rec.specs[k]) for k in KEYS]
            value = hartmann6(x, end / max_epochs)
            if end == max_epochs:
                tr.full(value)
            aml.report_result(rec.id, value)
            if tr.left <= 0:
                break
    return tr


# ----------------------------------------------------------------------------- report


def _median(xs: list[float | None]) -> str:
    vals = [x for x in xs if x is not None]
    if not vals:
        return "never"
    med = statistics.median(vals)
    return f"{med:.0f}" + ("" if len(vals) == len(xs) else f" ({len(vals)}/{len(xs)} seeds)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-trials", type=int, default=20, help="budget = this many full-budget trials' epochs")
    ap.add_argument("--max-epochs", type=int, default=27)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    budget = args.budget_trials * args.max_epochs
    ours_algos = ("bayesian", "tpe", "hyperband", "asha", "bohb", "tpe_asha")
    pairs = [
        ("bayesian", "bayesian"),
        ("tpe", "bayesian"),
        ("hyperband", "hyperband"),
        ("asha", "hyperband"),
        ("bohb", "hyperband"),
        ("tpe_asha", "hyperband"),
    ]
    results: dict[str, list[Tracker]] = {}
    timing: dict[str, float] = {}
    for name, runner in [(f"ours:{a}", run_ours) for a in ours_algos] + [
        (f"tao:{a}", run_tao) for a in ("bayesian", "hyperband")
    ]:
        algo = name.split(":")[1]
        t0 = time.time()
        results[name] = [runner(algo, seed, budget, args.max_epochs, args.eta) for seed in range(args.seeds)]
        timing[name] = time.time() - t0
    print(
        f"multi-fidelity Hartmann-6 (min {F_MIN}), budget {budget} trial-epochs, max_epochs {args.max_epochs}, eta {args.eta}, {args.seeds} seeds"
    )
    print(f"{'method':16} {'median best':>12} {'mean best':>10} {'trial-epochs used':>18} {'wall s':>7}")
    for name, trs in results.items():
        bests = [t.best for t in trs]
        print(
            f"{name:16} {statistics.median(bests):12.4f} {statistics.mean(bests):10.4f} {statistics.mean(t.used for t in trs):18.0f} {timing[name]:7.1f}"
        )
    report = {"budget": budget, "seeds": args.seeds, "methods": {}, "pairs": []}
    for name, trs in results.items():
        report["methods"][name] = {"best": [t.best for t in trs], "used": [t.used for t in trs], "trace": [t.trace for t in trs]}
    print("\npair (ours vs theirs): wins | ours reaches their best at | theirs reaches our best at (trial-epochs, median)")
    for ours, theirs in pairs:
        o, t = results[f"ours:{ours}"], results[f"tao:{theirs}"]
        wins = sum(a.best <= b.best for a, b in zip(o, t))
        ours_at = [a.reached(b.best) for a, b in zip(o, t)]
        theirs_at = [b.reached(a.best) for a, b in zip(o, t)]
        frac = [x / b.used if x is not None and b.used else None for x, b in zip(ours_at, t)]
        print(
            f"{ours:9} vs {theirs:9}: {wins}/{len(o)} | {_median(ours_at):>10} ({_median([f * 100 if f is not None else None for f in frac])}% of theirs) | {_median(theirs_at):>10}"
        )
        report["pairs"].append(
            {
                "ours": ours,
                "theirs": theirs,
                "wins": wins,
                "ours_reach": ours_at,
                "theirs_reach": theirs_at,
                "ours_reach_frac": frac,
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
