#!/usr/bin/env python
"""Measure the estimate rows of DINO, MAE and Grounding DINO on this host (``engine/throughput.yaml``).

For each network: run ``tao-skills demo --network N`` (real sample data, the demo's CPU-sized
spec) and read its train job:

* ``train_step_s``: 1 / ``steps_per_s`` of the last progress line in ``status.json`` (the engine's
  rate since the first step, so validation passes at the reference's ratio are included);
* ``fixed_s``: the job's wall time (``created_at`` to ``ended_at`` in its record) minus steps x
  ``train_step_s`` (runner script, interpreter, torch and Lightning start, model build, data
  loading, the end-of-run curves);
* ``reference.checkpoint_mb``: size of the newest ``model_epoch_*.pth`` (MB, 1e6 bytes);
* ``save_s_per_gb``: not separable from the step times here; reported as 0 (saves are inside
  the measured wall time of the reference);
* ``peak_rss_gb``: the peak resident set of the same spec run again by the engine alone
  (``python -m taoskills.engine N train -e spec.yaml``, ``getrusage(RUSAGE_CHILDREN)`` in a
  wrapper process), GB; ``--no-rss`` skips that run.

The reference (structure keys, batch size, image side) is read from the same spec. The output is
the YAML rows to paste under each network in ``runtime/taoskills/engine/throughput.yaml``.

Usage::

    python scripts/bench_estimate.py [dino mae grounding_dino] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from taoskills.jobs.estimate_measured import side
from taoskills.specs.dotted import get_dotted

#: The spec keys that fix each network's model size (and so its checkpoint size).
_DETR_STRUCTURE = (
    "model.backbone",
    "model.hidden_dim",
    "model.num_queries",
    "model.enc_layers",
    "model.dec_layers",
    "model.num_feature_levels",
    "model.dim_feedforward",
)
STRUCTURE: dict[str, tuple[str, ...]] = {
    "dino": _DETR_STRUCTURE,
    "grounding_dino": _DETR_STRUCTURE,
    "mae": ("model.arch", "train.stage"),
}
#: The summary key of the demo's train job.
TRAIN_JOB = {"dino": "train_job", "grounding_dino": "train_job", "mae": "pretrain_job"}


#: Runs argv[1:] and prints, last on stderr, its children's peak resident set (KiB): a wrapper so
#: the figure is the engine's alone, not the demo's.
_PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)"
)


def _seconds(record: dict[str, Any]) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(record["ended_at"]) - datetime.fromisoformat(record["created_at"])).total_seconds()


def measure(network: str, out: Path, *, rss: bool = True) -> dict[str, Any]:
    """Run the demo; read its train job; with ``rss``, run that job's spec again with the engine
    alone for the peak resident set. Returns ``{"reference": ..., "cpu": row}``."""
    demo = out / network
    env = {**os.environ, "TAO_SKILLS_HOME": str(demo / "home-cli")}
    subprocess.run(["tao-skills", "demo", "--network", network, "--out", str(demo)], check=True, env=env)
    summary = json.loads((demo / "summary.json").read_text())
    job_dir = next((demo / "home" / "jobs").glob(summary[TRAIN_JOB[network]]))
    spec = yaml.safe_load((job_dir / "spec.yaml").read_text())
    wall = _seconds(json.loads((job_dir / "job.json").read_text()))
    lines = [json.loads(x) for x in (job_dir / "results" / "train" / "status.json").read_text().splitlines()]
    last = [x for x in lines if x.get("steps_per_s")][-1]
    step_s = 1.0 / float(last["steps_per_s"])
    ckpt = max((job_dir / "results" / "train").glob("model_epoch_*.pth"), key=lambda p: p.stat().st_mtime, default=None)
    row: dict[str, Any] = {
        "measured_on": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}",
        "train_step_s": round(step_s, 3),
        "fixed_s": round(wall - last["max_step"] * step_s, 1),
        "save_s_per_gb": 0.0,
        "peak_rss_gb": None,
    }
    if rss:
        cmd = [sys.executable, "-m", "taoskills.engine", network, "train", "-e", str(job_dir / "spec.yaml")]
        cmd.append(f"results_dir={out / (network + '-rerun')}")
        done = subprocess.run([sys.executable, "-c", _PEAK, *cmd], check=True, stderr=subprocess.PIPE, text=True)
        row["peak_rss_gb"] = round(int(done.stderr.strip().splitlines()[-1]) * 1024 / 1e9, 2)
    reference = {
        "structure": {k: get_dotted(spec, k, default=None) for k in STRUCTURE[network]},
        "batch_size": int(spec["dataset"]["batch_size"]),
        "side": side(network, spec),
        "steps": int(last["max_step"]),
        "checkpoint_mb": round(ckpt.stat().st_size / 1e6, 1) if ckpt else None,
        "wall_s": round(wall, 1),
    }
    return {"reference": reference, "cpu": row}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("networks", nargs="*", default=["dino", "mae", "grounding_dino"])
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--no-rss", action="store_true", help="skip the second train run that measures peak memory")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    rows = {n: measure(n, out, rss=not args.no_rss) for n in args.networks}
    print(yaml.safe_dump(rows, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
