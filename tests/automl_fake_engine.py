"""A fake TAO entrypoint (``nvdinov2 train -e spec.yaml``) for the AutoML controller tests.

It honours TAO's results contract (status.json JSON Lines with a per-epoch ``train_loss``
KPI, ``model_epoch_*``/``student_epoch_*`` checkpoints, resume from
``train.resume_training_checkpoint_path``) and trains nothing: the loss is a deterministic
function of the searched learning rate and batch size that decays with the epoch count,
so pruning and best selection have a known answer. Env: ``TAO_SKILLS_FAKE_EPOCH_S`` seconds per
epoch; ``TAO_SKILLS_FAKE_CRASH_DIR``: the first job that finds no marker there dies after one epoch.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path

import yaml


def loss(lr: float, batch: int, epoch: int) -> float:
    """Minimum at lr 1e-4 / batch 4; epoch counts from 1."""
    base = 0.1 * (math.log10(lr) + 4.0) ** 2 + 0.01 * abs(batch - 4)
    return base + 0.7**epoch


def status(path: Path, status: str, message: str, **extra) -> None:
    now = dt.datetime.now()
    line = {"date": f"{now.month}/{now.day}/{now.year}", "time": f"{now.hour}:{now.minute}:{now.second}"}
    line.update(status=status, verbosity="INFO", message=message, **extra)
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "train" or argv[1] != "-e":
        print("usage: nvdinov2 train -e spec.yaml", file=sys.stderr)
        return 2
    spec = yaml.safe_load(Path(argv[2]).read_text())
    out = Path(spec["results_dir"]) / "train"
    out.mkdir(parents=True, exist_ok=True)
    st = out / "status.json"
    tr = spec["train"]
    lr = float(tr["schedulers"]["learning_rate"]["val_base"])
    batch = int(spec["dataset"]["batch_size"])
    epochs = int(tr["num_epochs"])
    start = 0
    resume = tr.get("resume_training_checkpoint_path")
    if resume:
        start = pickle.loads(Path(resume).read_bytes())["epoch"]
    status(st, "STARTED", "Starting NVDINOv2 train.")
    crash_dir = os.environ.get("TAO_SKILLS_FAKE_CRASH_DIR")
    crash = False
    if crash_dir:
        try:
            os.close(os.open(os.path.join(crash_dir, "crashed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            crash = True
        except FileExistsError:
            pass
    for e in range(start, epochs):
        time.sleep(float(os.environ.get("TAO_SKILLS_FAKE_EPOCH_S", "0.05")))
        value = loss(lr, batch, e + 1)
        kpi = {"train_loss": value, "latency_ms": 1.5 * batch}  # latency: a second objective for nsga2
        status(st, "RUNNING", "Training loop in progress", epoch=e, max_epoch=epochs, kpi=kpi)
        for kind in ("model", "student"):
            (out / f"{kind}_epoch_{e:03d}_step_{(e + 1) * 10:05d}.pth").write_bytes(
                pickle.dumps({"backbone.embeddings": None, "epoch": e + 1, "lr": lr}, protocol=2)
            )  # a pickle with NVDINOv2 key names: passes the launch-time checkpoint header check
        print(f"epoch {e} train_loss={value:.5f}", flush=True)
        if crash:
            print("RuntimeError: injected crash", flush=True)
            return 1
    status(st, "SUCCESS", "Train finished successfully.")
    print("Execution status: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
