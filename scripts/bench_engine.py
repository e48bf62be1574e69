#!/usr/bin/env python
"""Benchmark the built-in engine's networks: training step time and images/s at a fixed config.

One entry per network in ``BENCHES`` (network_arch -> ``(cfg_builder(profile), batch_fn)``);
other networks add their own entry (a function here or imported from their package). Each run
times ``--steps`` optimiser steps (forward + loss + backward + AdamW) after ``--warmup`` steps and,
as the baseline in the same run, inference forward passes of the same batch, then prints
median/p90 step time, images/s and the train/inference ratio (ratios compare across machines).

Profiles (DINO): ``small`` — CPU-sized (ResNet with 1 block per stage, hidden 64, 1+2 layers,
20 queries, 128 px, batch 4); ``r50-640`` — TAO's DINO-R50 defaults (resnet_50, 300 queries,
6+6 layers, hidden 256, 4 levels, dn_number 100) at 640 px, batch 2, for a GPU
(``--device cuda --precision bf16``). Usage::

    python scripts/bench_engine.py dino [--profile small|r50-640] [--steps 10] [--warmup 3]
        [--device cpu|cuda] [--precision fp32|bf16] [--threads N] [--json]

Grounding DINO (``grounding_dino``, profiles small|swin_t|swin_t-800): scripts/bench_engine_parts_gdino.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from bench_engine_parts_gdino import bench_grounding_dino

TINY_RESNET = {"depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 16, "layer_type": "basic"}


def _dino_cfg(profile: str) -> tuple[dict[str, Any], int, int]:
    """(cfg, image size, batch size) for a DINO bench profile."""
    from taoskills.engine.dino import spec as S

    cfg = copy.deepcopy(S.DEFAULTS)
    cfg["dataset"]["num_classes"] = 4
    cfg["train"]["activation_checkpoint"] = False
    if profile == "small":
        S.BACKBONES.setdefault("resnet_bench_tiny", TINY_RESNET)
        cfg["model"].update(
            backbone="resnet_bench_tiny",
            hidden_dim=64,
            nheads=4,
            dim_feedforward=128,
            enc_layers=1,
            dec_layers=2,
            num_queries=20,
            num_select=20,
            dn_number=20,
            return_interm_indices=[2, 3, 4],
            num_feature_levels=3,
        )
        return cfg, 128, 4
    if profile == "r50-640":
        cfg["dataset"]["num_classes"] = 91
        return cfg, 640, 2
    raise SystemExit(f"unknown DINO profile {profile!r}; use small or r50-640")


def bench_dino(args: argparse.Namespace) -> dict[str, Any]:
    """Time DINO training steps and inference passes on a synthetic batch (3 boxes per image)."""
    from taoskills.engine.dino.criterion import SetCriterion
    from taoskills.engine.dino.model import DINO
    from taoskills.engine.dino.train import param_groups

    cfg, size, batch = _dino_cfg(args.profile)
    batch = args.batch or batch
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = DINO(cfg).to(dev)
    crit = SetCriterion(cfg["model"], cfg["dataset"]["num_classes"])
    opt = torch.optim.AdamW(param_groups(model, cfg["model"], cfg["train"]["optim"]), weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size, device=dev)
    mask = torch.zeros(batch, size, size, dtype=torch.bool, device=dev)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.2], [0.5, 0.2, 0.1, 0.1]], device=dev)
    targets = [{"labels": torch.tensor([1, 2, 3], device=dev), "boxes": boxes} for _ in range(batch)]
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(x, mask, targets)
            loss, _ = crit(out, targets, float(3 * batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            model(x, mask)

    def timed(fn: Callable[[], None], mode: str) -> list[float]:
        model.train(mode == "train")
        for _ in range(args.warmup):
            fn()
        sync()
        out = []
        for _ in range(args.steps):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
        return out

    tr = timed(train_step, "train")
    inf = timed(infer_step, "eval")
    med_tr, med_inf = statistics.median(tr), statistics.median(inf)
    result = {
        "network": "dino",
        "profile": args.profile,
        "device": str(dev)
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({platform.processor() or platform.machine()})"),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "image_size": size,
        "batch_size": batch,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "train_step_s_median": round(med_tr, 4),
        "train_step_s_p90": round(sorted(tr)[int(0.9 * (len(tr) - 1))], 4),
        "train_images_per_s": round(batch / med_tr, 2),
        "infer_step_s_median": round(med_inf, 4),
        "infer_images_per_s": round(batch / med_inf, 2),
        "train_over_infer": round(med_tr / med_inf, 2),
    }
    if dev.type == "cuda":
        result["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return result


#: network_arch -> bench function (args) -> result dict. Add an entry per network.
BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"dino": bench_dino}
BENCHES["grounding_dino"] = bench_grounding_dino  # scripts/bench_engine_parts_gdino.py


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("network", choices=sorted(BENCHES))
    p.add_argument("--profile", default="small")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=0, help="override the profile's batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = BENCHES[args.network](args)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
