"""Benchmark: tao-skills AutoML (Optuna configurations of ``taoskills.automl.algorithms``)
side by side with nvidia-tao-automl 7.2.0's ``bayesian`` and ``hyperband`` brains, driven
in-process, on the same objectives, the same trial-epoch budget and several seeds.

Objectives (``--objective hartmann|mae|both``; both minimize):

* ``hartmann``: the multi-fidelity Hartmann-6 function. Constants A, P, alpha are the
  published ones (Dixon & Szegő 1978; Surjanovic & Bingham, "Virtual Library of Simulation
  Experiments"); the fidelity follows Kandasamy et al. 2017 (BOCA) as used by BoTorch's
  AugmentedHartmann: ``alpha_1(s) = alpha_1 - 0.1 * (1 - s)``, here with
  ``s = epochs / max_epochs``. Global minimum at s = 1: -3.32237.
* ``mae``: a real training on the built-in engine (:class:`MaeFinetune`): MAE finetune of
  ``convnextv2_atto`` at 32 px on the shipped sample photographs, every trial rung truly run
  (no cache), in-process, resumed from the trial's own checkpoint; value = ``val_loss``.
  Searched: learning rate and weight decay (log) and AdamW beta1.

Budget: trial-epochs (sum over trials of epochs actually run; a resumed rung costs only
its new epochs, for both libraries). Each method runs until the budget is used (or its
algorithm says it is done). The best of a run is the best value *at full fidelity*. Our
side follows the runtime's budget reserve (:mod:`taoskills.automl.budget`, as the AutoML
controller does): while no trial is complete, a rung that would leave less than finishing
the furthest stopped trial costs is not run, and when a new trial's first rung would, the
best stopped trial is resumed from its own checkpoint to max_epochs instead. Trial 0 is the
baseline (:mod:`taoskills.automl.baseline`): the objective's defaults trained to max_epochs,
never pruned (``--no-baseline`` leaves it out). TAO's brains get the same defaults in their schema.

Output, per objective (one block each; ``--json`` writes the same numbers and traces)::

    <objective>: budget B trial-epochs, max_epochs E, eta 3, N seeds
    method            median best  mean best  trial-epochs used  wall s
    ours:tpe_asha         ...
    tao:hyperband         ...
    pair (ours vs theirs): wins | ours reaches their best at | theirs reaches our best at (trial-epochs, median)
    tpe_asha  vs hyperband: W/N |   T (P% of theirs) |   T'

``wins``: seeds where our best <= theirs; "reaches": the trial-epochs each side used until
its best-so-far was at least as good as the other side's final best (median over seeds;
"never" when no seed did; "(k/N seeds)" when only some did); "% of theirs": the median over all
seeds of (ours reaches their best at) / (their trial-epochs used), a seed that never reached
counting as never, with a 95% bootstrap interval of that median (:func:`_median_ci`). The aim: our best >= theirs on
every objective, and their best reached in <= 50% of their trial-epochs.

Measured (2 cores shared with another training; Hartmann, 20 and 50 seeds, is in the skill's
references/algorithms.md)::

    MAE finetune val_loss (built-in engine, convnextv2_atto, minimize): budget 54 trial-epochs, max_epochs 9, eta 3, 5 seeds
    method            median best  mean best  trial-epochs used  wall s
    ours:tpe_asha          0.7793     0.7763                 54    83.8
    tao:hyperband          1.0141     1.2430                 36    48.2
    ours:bayesian          0.7680     0.7779                 54    48.4
    tao:bayesian           1.3583     1.3010                 54    49.3
    pair (ours vs theirs): wins | ours reaches their best at | theirs reaches our best at (trial-epochs, median)
    bayesian  vs bayesian : 5/5 |          9 (17% of theirs, 95% CI 17-17) |      never
    bayesian  vs hyperband: 5/5 |          9 (25% of theirs, 95% CI 25-150) |      never
    tpe_asha  vs hyperband: 5/5 |          9 (25% of theirs, 95% CI 25-69) |      never
    tpe_asha  vs bayesian : 5/5 |          9 (17% of theirs, 95% CI 17-17) |      never

(TAO's hyperband ends after one Hyperband iteration, 36 trial-epochs at max_epochs 9. TAO
seeds its brain from ``hash(session id)``: :func:`main` fixes ``PYTHONHASHSEED`` and sessions
are named by seed, so TAO's side repeats run for run; before, its hyperband median moved
between 0.87 and 1.43 over three runs of the same command.)

Sizes: the defaults (Hartmann 5 seeds x 20 x 27 trial-epochs; MAE 5 seeds x 6 x 9 trial-epochs,
4 methods) take about 3 and 8 minutes on two cores (the MAE part about 0.8 s per trial-epoch,
most of it the engine's per-call Lightning set-up).

Usage: ``python scripts/bench_automl.py [--objective both] [--seeds 5] [--budget-trials 20]
[--max-epochs 27] [--mae-seeds 5] [--mae-budget-trials 6] [--mae-max-epochs 9] [--no-baseline] [--json out.json]``.
Needs ``optuna``, the engine extra (torch, Lightning) for ``mae`` and, for the baseline,
``pip install --no-deps nvidia-tao-automl==7.2.0`` plus its imports (``pip install
'tao-skills[bench]'``: scikit-learn, pandas, requests).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

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


# ----------------------------------------------------------------------------- objectives


class Hartmann:
    """Multi-fidelity Hartmann-6 over ``train.x0..x5`` in [0, 1] (module docstring)."""

    name = "multi-fidelity Hartmann-6 (minimize; min -3.32237)"
    params = [(k, 0.0, 1.0, False, 0.5) for k in KEYS]

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def train(self, tid: str, x: dict[str, float], start: int, end: int) -> list[float]:
        xs = [x[k] for k in KEYS]
        return [hartmann6(xs, step / self.max_epochs) for step in range(start + 1, end + 1)]


class MaeFinetune:
    """A real built-in-engine training: MAE ``train.stage=finetune`` of ``convnextv2_atto``
    (TAO's smallest MAE arch) from scratch at 32 px on the shipped sample photographs
    (:func:`taoskills.engine.mae.sample.write_classification_set`: 4 classes, ``n_train`` /
    ``n_val`` images per class), batch 8, AdamW with the default MultiStep schedule (constant
    learning rate before epoch 88), ``train.seed`` 0, one torch thread. Each trial rung is one
    ``tao-skills-engine mae train`` call, in-process (``taoskills.engine.cli.main``), that
    resumes from the trial's previous rung checkpoint (``train.resume_training_checkpoint_path``),
    so a rung costs only its new epochs. The value is the epoch's ``val_loss`` (minimize;
    cross-entropy on the val images: finer than ``ACC_all`` on 16 images, which ties). A run
    that fails (e.g. the loss diverges at a high learning rate) scores ``FAILED_LOSS``.
    Searched: ``train.optim.lr`` (log, 1e-5..1e-1), ``train.optim.weight_decay`` (log,
    1e-4..0.5), ``train.optim.momentum`` (AdamW beta1, 0.5..0.99).
    """

    name = "MAE finetune val_loss (built-in engine, convnextv2_atto, minimize)"
    params = [
        ("train.optim.lr", 1e-5, 1e-1, True, 2e-4),  # (key, low, high, log scale, TAO default)
        ("train.optim.weight_decay", 1e-4, 0.5, True, 0.05),
        ("train.optim.momentum", 0.5, 0.99, False, 0.9),
    ]
    FAILED_LOSS = 10.0

    def __init__(self, max_epochs: int, n_train: int = 4, n_val: int = 4) -> None:
        self.max_epochs, self.n_train, self.n_val = max_epochs, n_train, n_val
        self.root: Path | None = None
        self.jobs = 0
        self.failures: list[str] = []  # the log tails of failed engine calls

    def open(self) -> None:
        import os

        import torch

        import taoskills.jobs.plots
        from taoskills.engine.mae.sample import write_classification_set

        torch.set_num_threads(1)
        # the engine draws kpi_curves.png after every call; an output only, skipped here (both sides)
        taoskills.jobs.plots.plot_status_file = lambda *a, **k: None
        os.environ["TAO_SKILLS_KEEP_CHECKPOINTS"] = "1"
        self.root = Path(tempfile.mkdtemp(prefix="bench-mae-"))
        data = write_classification_set(self.root / "data", num_classes=4, train=self.n_train, val=self.n_val, test=0, size=32)
        (self.root / "spec.yaml").write_text("{}\n")
        self.base = [
            "model.arch=convnextv2_atto",
            "model.num_classes=4",
            "train.stage=finetune",
            "train.seed=0",
            "train.precision=fp32",
            "train.num_gpus=1",
            "train.optim.warmup_epochs=0",
            "train.optim.backbone_multiplier=1.0",
            "dataset.augmentation.input_size=32",
            "dataset.augmentation.mixup=0",
            "dataset.augmentation.cutmix=0",
            "dataset.augmentation.auto_aug=''",
            "dataset.batch_size=8",
            "dataset.num_workers_per_gpu=0",
            "wandb.enable=false",
            f"dataset.train_data_sources={data['train']}",
            f"dataset.val_data_sources={data['val']}",
        ]

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def train(self, tid: str, x: dict[str, float], start: int, end: int) -> list[float]:
        import contextlib
        import io

        from taoskills.engine.cli import main

        assert self.root is not None, "open() first"
        out = self.root / tid
        args = ["mae", "train", "-e", str(self.root / "spec.yaml"), f"results_dir={out}", *self.base]
        args += [f"train.num_epochs={end}", f"train.checkpoint_interval={end}"]  # one checkpoint, after the rung
        args += [f"{k}={float(x[k])!r}" for k, *_ in self.params]
        if start:
            last = sorted((out / "train").glob("model_epoch_*.pth"))
            if not last:  # the previous rung failed: nothing to resume, the trial stays failed
                return [self.FAILED_LOSS] * (end - start)
            args.append(f"train.resume_training_checkpoint_path={last[-1]}")
        self.jobs += 1
        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            rc = main(args)
        if rc != 0:
            self.failures.append(log.getvalue()[-2000:])
        lines = [json.loads(line) for line in (out / "train" / "status.json").read_text().splitlines() if line.strip()]
        vals = [float(line["kpi"]["val_loss"]) for line in lines if "epoch" in line and "val_loss" in (line.get("kpi") or {})]
        vals = vals[-(end - start) :] if rc == 0 else []
        vals = [v if math.isfinite(v) else self.FAILED_LOSS for v in vals]
        return vals + [self.FAILED_LOSS] * (end - start - len(vals))


# ----------------------------------------------------------------------------- ours


def run_ours(algorithm: str, seed: int, budget: int, obj, eta: int, n_startup: int = 4, baseline: bool = True) -> Tracker:
    import optuna

    from taoskills.automl import baseline as first_trial
    from taoskills.automl.algorithms import get_algorithm, make_study_objects, rungs
    from taoskills.automl.budget import FINISHES_ATTR, finish_instead, may_run
    from taoskills.automl.promote import PROMOTES_ATTR, promotion
    from taoskills.automl.space import Param, SearchSpace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    max_epochs = obj.max_epochs
    space = SearchSpace(
        "bench", [Param(k, "float", low=lo, high=hi, log=log, default=d) for k, lo, hi, log, d in obj.params], max_epochs
    )
    sampler, pruner = make_study_objects(
        algorithm,
        seed=seed,
        n_startup=first_trial.startup_trials(n_startup, baseline),
        min_epochs=1,
        max_epochs=max_epochs,
        eta=eta,
        n_objectives=1,
        baseline=baseline,
    )
    study = optuna.create_study(sampler=sampler, pruner=pruner, direction="minimize")
    algo = get_algorithm(algorithm)
    plan = rungs(algo, max_epochs, 1, eta)
    tr = Tracker(budget)

    def trials() -> list:
        return study.get_trials(deepcopy=False)

    if baseline:  # as the controller does: trial 0 trains the objective's defaults, never pruned
        first_trial.enqueue(study, space)
    obj.open()
    try:
        while tr.left > 0:
            # the runtime's budget reserve (taoskills.automl.budget): never end without a full-budget trial
            stopped = finish_instead(
                study.get_trials(deepcopy=False), max_epochs=max_epochs, epochs_left=tr.left, first_rung=plan[0]
            )
            # ASHA's late promotion (taoskills.automl.promote): a stopped trial now in the top 1/eta goes on
            promo = promotion(trials(), rungs=plan, eta=eta) if stopped is None and algo.promotes else None
            resumed, attr = (stopped, FINISHES_ATTR) if stopped is not None else (promo, PROMOTES_ATTR)
            if resumed is not None:  # resume the stopped trial from its own checkpoint, with the same values
                old = study.trials[resumed.number]
                study.enqueue_trial(old.params, user_attrs={attr: resumed.number, "tid": old.user_attrs["tid"]})
                trial = study.ask()
                x, tid, done = space.sample(trial), old.user_attrs["tid"], resumed.epochs
            else:
                trial = study.ask()
                x, tid, done = space.sample(trial), f"t{trial.number}", 0
                trial.set_user_attr("tid", tid)  # the folder of its checkpoints
            # a finishing trial and the baseline skip the reserve check and are never pruned
            exempt = stopped is not None or first_trial.BASELINE_ATTR in trial.user_attrs
            pruned, value = False, math.inf
            for end in plan:  # one "job" per rung, resumed from the previous rung (costs end - done)
                if end <= done:
                    continue
                end = min(end, done + tr.left)
                if done and not exempt and not may_run(trials(), max_epochs=max_epochs, epochs_left=tr.left, start=done, end=end):
                    pruned = True  # the rung would eat into the budget reserve: stop here
                    break
                tr.spend(end - done)
                values = obj.train(tid, x, done, end)
                for step, value in zip(range(done + 1, end + 1), values):  # per-epoch KPI -> intermediate value
                    trial.report(value, step)
                done = end
                # the pruner is asked for every trial (an exempt one's value still counts at the
                # rung, as in the controller's Runner.run_trial) and obeyed for the others
                if end < max_epochs and (tr.left <= 0 or (trial.should_prune() and not exempt)):
                    pruned = True
                    break
            if pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                tr.full(value)
                study.tell(trial, value)
    finally:
        obj.close()
    return tr


# ----------------------------------------------------------------------------- theirs


def run_tao(algorithm: str, seed: int, budget: int, obj, eta: int) -> Tracker:
    from tao_automl import AutoML

    max_epochs = obj.max_epochs
    groups: dict[str, dict] = {}
    for k, lo, hi, _log, d in obj.params:  # TAO's schema: bounds and default (no log-scale flag for scalars)
        group, leaf = k.rsplit(".", 1)
        groups.setdefault(group, {})[leaf] = (lo, hi, d)
    props: dict = {}
    default: dict = {}
    for group, leaves in groups.items():
        node, dnode = props, default
        for part in group.split("."):
            node = node.setdefault(part, {"type": "object", "properties": {}})["properties"]
            dnode = dnode.setdefault(part, {})
        for leaf, (lo, hi, d) in leaves.items():
            node[leaf] = {"type": "float", "default": d, "minimum": lo, "maximum": hi, "automl_enabled": True}
            dnode[leaf] = d
    props.setdefault("train", {"type": "object", "properties": {}})["properties"]["num_epochs"] = {
        "type": "int",
        "default": max_epochs,
        "minimum": 1,
        "maximum": max_epochs,
    }
    default.setdefault("train", {})["num_epochs"] = max_epochs
    keys = [k for k, *_ in obj.params]
    schema = {"type": "object", "properties": props, "default": default, "automl_default_parameters": keys}
    settings = {
        "algorithm": algorithm,
        "metric": "loss",
        "direction": "minimize",
        "automl_max_recommendations": max(1, budget // max_epochs),
        "automl_max_epochs": max_epochs,
        "automl_reduction_factor": eta,
        "session_id": f"bench-seed-{seed}",  # TAO seeds its brain from hash(session id): see main()
    }
    np.random.seed(seed)
    aml = AutoML(
        tempfile.mkdtemp(prefix="taoaml-"),
        "bench",
        json.loads(json.dumps(default)),
        settings,
        automl_hyperparameters=keys,
        search_schema=schema,
    )
    tr = Tracker(budget)
    trained: dict[int, int] = {}
    obj.open()
    try:
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
                x = {k: float(rec.specs[k]) for k in keys}
                value = obj.train(f"r{rec.id}", x, start, end)[-1] if end > start else math.inf
                if end == max_epochs:
                    tr.full(value)
                aml.report_result(rec.id, value)
                if tr.left <= 0:
                    break
    finally:
        obj.close()
    return tr


# ----------------------------------------------------------------------------- report


def _median(xs: list[float | None], seeds: bool = True) -> str:
    """Median of the seeds that got a value ("never" when none did); with ``seeds``, "(k/N seeds)"
    when only k of N did."""
    vals = [x for x in xs if x is not None]
    if not vals:
        return "never"
    med = statistics.median(vals)
    return f"{med:.0f}" + ("" if len(vals) == len(xs) or not seeds else f" ({len(vals)}/{len(xs)} seeds)")


def _median_ci(fracs: list[float | None], n: int = 4000) -> tuple[float, float]:
    """95% bootstrap interval (percentile method, ``n`` resamples of the seeds, numpy seed 0) of
    the median of ``fracs``; a seed that never reached counts as infinitely late."""
    vals = np.array([math.inf if f is None else f for f in fracs])
    rng = np.random.default_rng(0)
    meds = np.median(rng.choice(vals, size=(n, len(vals))), axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5], method="nearest")
    return float(lo), float(hi)


def _pct(x: float) -> str:
    return f"{x * 100:.0f}" if math.isfinite(x) else "never"


PAIRS = [
    ("bayesian", "bayesian"),
    ("bayesian", "hyperband"),  # the skill's default algorithm against TAO's other brain
    ("tpe", "bayesian"),
    ("hyperband", "hyperband"),
    ("asha", "hyperband"),
    ("bohb", "hyperband"),
    ("tpe_asha", "hyperband"),
    ("tpe_asha", "bayesian"),  # against TAO's other brain: the strongest on the MAE objective
]


def bench(obj, algos: list[str], seeds: int, budget_trials: int, eta: int, n_startup: int, baseline: bool = True) -> dict:
    """Run every (ours or tao) algorithm in ``algos`` over ``seeds`` seeds on ``obj``; print the
    tables and return the JSON report."""
    budget = budget_trials * obj.max_epochs
    results: dict[str, list[Tracker]] = {}
    timing: dict[str, float] = {}
    for name in algos:
        side, algo = name.split(":")
        t0 = time.time()
        if side == "ours":
            results[name] = [run_ours(algo, seed, budget, obj, eta, n_startup, baseline) for seed in range(seeds)]
        else:
            results[name] = [run_tao(algo, seed, budget, obj, eta) for seed in range(seeds)]
        timing[name] = time.time() - t0
        bests = ", ".join(f"{t.best:.4f}" for t in results[name])
        print(f"  {name}: bests {bests} ({timing[name]:.0f} s)", file=sys.stderr, flush=True)
    return summarize(obj.name, obj.max_epochs, budget, seeds, eta, results, timing)


def summarize(name: str, max_epochs: int, budget: int, seeds: int, eta: int, results: dict, timing: dict) -> dict:
    """Print one objective's tables from ``results`` (method -> one Tracker per seed); return the report."""
    obj_name = name
    print(f"\n{obj_name}: budget {budget} trial-epochs, max_epochs {max_epochs}, eta {eta}, {seeds} seeds")
    print(f"{'method':16} {'median best':>12} {'mean best':>10} {'trial-epochs used':>18} {'wall s':>7}")
    for name, trs in results.items():
        bests = [t.best for t in trs]
        print(
            f"{name:16} {statistics.median(bests):12.4f} {statistics.mean(bests):10.4f} {statistics.mean(t.used for t in trs):18.0f} {timing[name]:7.1f}"
        )
    report = {
        "objective": obj_name,
        "max_epochs": max_epochs,
        "eta": eta,
        "budget": budget,
        "seeds": seeds,
        "methods": {},
        "timing": timing,
        "pairs": [],
    }
    for name, trs in results.items():
        report["methods"][name] = {"best": [t.best for t in trs], "used": [t.used for t in trs], "trace": [t.trace for t in trs]}
    print("pair (ours vs theirs): wins | ours reaches their best at | theirs reaches our best at (trial-epochs, median)")
    for ours, theirs in PAIRS:
        if f"ours:{ours}" not in results or f"tao:{theirs}" not in results:
            continue
        o, t = results[f"ours:{ours}"], results[f"tao:{theirs}"]
        wins = sum(a.best <= b.best for a, b in zip(o, t))
        ours_at = [a.reached(b.best) for a, b in zip(o, t)]
        theirs_at = [b.reached(a.best) for a, b in zip(o, t)]
        frac = [x / b.used if x is not None and b.used else None for x, b in zip(ours_at, t)]
        lo, hi = _median_ci(frac)
        mid = float(np.median([math.inf if f is None else f for f in frac]))  # a seed that never reached: last
        print(
            f"{ours:9} vs {theirs:9}: {wins}/{len(o)} | {_median(ours_at):>10} ({_pct(mid)}% of theirs, 95% CI {_pct(lo)}-{_pct(hi)}) | {_median(theirs_at):>10}"
        )
        report["pairs"].append(
            {
                "ours": ours,
                "theirs": theirs,
                "wins": wins,
                "ours_reach": ours_at,
                "theirs_reach": theirs_at,
                "ours_reach_frac": frac,
                "ours_reach_frac_median_ci95": [lo, hi],
            }
        )
    return report


def combine(paths: list[str]) -> list[dict]:
    """Print the tables of several ``--json`` reports of the same objective and sizes as one
    block (methods run in separate processes, e.g. one per method on a shared machine)."""
    blocks: dict[tuple, tuple[dict, dict]] = {}
    for path in paths:
        for rep in json.loads(Path(path).read_text()):
            key = (rep["objective"], rep["max_epochs"], rep["eta"], rep["budget"], rep["seeds"])
            results, timing = blocks.setdefault(key, ({}, {}))
            for name, m in rep["methods"].items():
                trs = []
                for best, used, trace in zip(m["best"], m["used"], m["trace"]):
                    t = Tracker(rep["budget"])
                    t.best, t.used, t.trace = best, used, [tuple(p) for p in trace]
                    trs.append(t)
                results[name] = trs
                timing[name] = rep.get("timing", {}).get(name, float("nan"))
    return [summarize(k[0], k[1], k[3], k[4], k[2], r, t) for k, (r, t) in blocks.items()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objective", choices=("hartmann", "mae", "both"), default="both")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-trials", type=int, default=20, help="Hartmann budget = this many full-budget trials' epochs")
    ap.add_argument("--max-epochs", type=int, default=27, help="Hartmann max epochs (fidelity steps)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--n-startup", type=int, default=4, help="our samplers' random start-up trials (Hartmann)")
    ap.add_argument("--mae-seeds", type=int, default=5)
    ap.add_argument("--mae-budget-trials", type=int, default=6)
    ap.add_argument("--mae-max-epochs", type=int, default=9)
    ap.add_argument("--mae-n-startup", type=int, default=2)
    ap.add_argument(
        "--algos",
        default="ours:bayesian,ours:tpe,ours:hyperband,ours:asha,ours:bohb,ours:tpe_asha,tao:bayesian,tao:hyperband",
        help="Hartmann methods (side:algorithm, comma-separated)",
    )
    ap.add_argument("--mae-algos", default="ours:tpe_asha,tao:hyperband,ours:bayesian,tao:bayesian")
    ap.add_argument("--no-baseline", action="store_true", help="our side without the baseline trial (taoskills.automl.baseline)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--combine", nargs="+", default=None, help="print the tables of these --json reports as one run")
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TAO AutoML 7.2.0 seeds numpy and random with hash(session id) (brain/base.py), and Python
        # randomizes str hashes per process: with the hash fixed, seed k gives the same TAO run each time.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    if args.combine:
        combine(args.combine)
        return 0
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    reports = []
    if args.objective in ("hartmann", "both"):
        obj = Hartmann(args.max_epochs)
        reports.append(
            bench(obj, args.algos.split(","), args.seeds, args.budget_trials, args.eta, args.n_startup, not args.no_baseline)
        )
    if args.objective in ("mae", "both"):
        obj = MaeFinetune(args.mae_max_epochs)
        reports.append(
            bench(
                obj,
                args.mae_algos.split(","),
                args.mae_seeds,
                args.mae_budget_trials,
                args.eta,
                args.mae_n_startup,
                not args.no_baseline,
            )
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(reports, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
