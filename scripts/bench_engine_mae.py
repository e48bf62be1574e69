#!/usr/bin/env python
"""Benchmark the built-in MAE engine's training step: pretraining vs finetuning, per arch.

For each arch of the config, times ``steps`` optimiser steps (after ``warmup``) of

- ``pretrain`` — the masked-reconstruction model (ViT MAE / dense FCMAE / Hiera MAE) at
  ``mask_ratio``, AdamW, as ``train.stage: pretrain`` runs it;
- ``finetune`` — the classifier on the full image (the baseline in the same run).

Reports median step time (ms), images/s and the ratio pretrain/finetune step time (MAE's ViT
encoder sees 25 % of the tokens, so its ratio is < 1; the dense FCMAE runs the whole image, so its
ratio is about 1 + decoder cost). Inputs are random tensors: this measures compute, not data loading.

CPU default (fixed small config): ``convnextv2_atto`` and ``vit_base_patch16`` at 64 px, batch 4,
fp32. With ``--gpu`` (CUDA host): ``vit_base_patch16`` and ``convnextv2_base`` at 224 px,
batch 64, bf16 autocast. Usage::

    python scripts/bench_engine_mae.py [--gpu] [--steps 10] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from typing import Any

CPU_CONFIG = {
    "archs": ["convnextv2_atto", "vit_base_patch16"],
    "input_size": 64,
    "batch": 4,
    "steps": 5,
    "warmup": 2,
    "bf16": False,
}
GPU_CONFIG = {
    "archs": ["vit_base_patch16", "convnextv2_base"],
    "input_size": 224,
    "batch": 64,
    "steps": 20,
    "warmup": 5,
    "bf16": True,
}


def _time_steps(net, step, n: int, warmup: int, sync) -> list[float]:
    out = []
    for i in range(warmup + n):
        t = time.perf_counter()
        step()
        sync()
        if i >= warmup:
            out.append(time.perf_counter() - t)
    return out


def bench(config: dict[str, Any]) -> dict[str, Any]:
    """Run the benchmark described by ``config`` (keys as in ``CPU_CONFIG``; optional ``device``).

    Returns ``{"config", "host", "results": [{"arch", "stage", "step_ms", "images_per_s"}],
    "ratios": {arch: pretrain_ms / finetune_ms}}``.
    """
    import torch

    from taoskills.engine.mae import model as M
    from taoskills.engine.mae import spec as S

    device = torch.device(config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bs, size = config["batch"], config["input_size"]
    results, ratios = [], {}
    for arch in config["archs"]:
        cfg = copy.deepcopy(S.DEFAULTS)
        cfg["model"]["arch"] = arch
        cfg["dataset"]["augmentation"]["input_size"] = size
        times = {}
        for stage in ("pretrain", "finetune"):
            torch.manual_seed(0)
            net = (M.build_pretrain(cfg) if stage == "pretrain" else M.build_classifier(cfg, num_classes=10)).to(device).train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            x = torch.randn(bs, 3, size, size, device=device)
            y = torch.randint(0, 10, (bs,), device=device)

            def step(net=net, opt=opt, x=x, y=y, stage=stage):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(config["bf16"])):
                    loss = net(x)[0] if stage == "pretrain" else torch.nn.functional.cross_entropy(net(x).float(), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            ts = _time_steps(net, step, config["steps"], config["warmup"], sync)
            med = statistics.median(ts)
            times[stage] = med
            results.append({"arch": arch, "stage": stage, "step_ms": round(med * 1000, 2), "images_per_s": round(bs / med, 1)})
            del net, opt
        ratios[arch] = round(times["pretrain"] / times["finetune"], 3)
    host = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
    }
    return {"config": config, "host": host, "results": results, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="ViT-B/16 and ConvNeXt-V2-base at 224, bf16 (needs CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per arch and stage")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    config = dict(GPU_CONFIG if args.gpu else CPU_CONFIG)
    if args.steps:
        config["steps"] = args.steps
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("--gpu needs a CUDA device", file=sys.stderr)
            return 2
    report = bench(config)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"MAE engine step benchmark ({report['host']['device']}, torch {report['host']['torch']})")
    for r in report["results"]:
        print(f"  {r['arch']:<20} {r['stage']:<9} {r['step_ms']:>9.1f} ms/step {r['images_per_s']:>9.1f} img/s")
    for arch, ratio in report["ratios"].items():
        print(f"  {arch:<20} pretrain/finetune step time: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
