"""Shared set-up of the AutoML controller tests: a fake ``nvdinov2`` TAO entrypoint on PATH
(tests/automl_fake_engine.py), sample photos and a Service on a temporary home."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine_settings import TINY_TRAIN_OVERRIDES
from gpu_helpers import A100, install_fake_nvidia_smi

SKILL = "tao-train-nvdinov2"
LR = "train.schedulers.learning_rate.val_base"
SEARCH = [LR, "dataset.batch_size"]


def install_fake_engine(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve().parent / "automl_fake_engine.py"
    exe = bin_dir / "nvdinov2"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(0o755)
    # The TAO engine's host checks read GPUs from nvidia-smi (skill_info hardware minimums): a
    # stand-in reporting 8 x 80 GB lets the fake TAO entrypoint pass them on this CPU host.
    install_fake_nvidia_smi(bin_dir, [A100] * 8)


def request(photos: Path) -> dict:
    return {"data_sources": {"train_datasets": str(photos)}, "profile": "smoke", "overrides": dict(TINY_TRAIN_OVERRIDES)}


def settings(**kw) -> dict:
    out = {"algorithm": "hyperband", "max_trials": 6, "max_epochs": 9, "parameters": SEARCH, "poll_s": 0.1, "seed": 3}
    out.update(kw)
    return out


def wait_for(predicate, timeout: float = 60.0, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
