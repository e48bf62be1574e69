#!/usr/bin/env python
"""Benchmark the built-in engine's networks: training step time and images/s at a fixed config.

One entry per network in ``BENCHES`` (network_arch -> bench function (args) -> result dict);
other networks add their own entry (a function here or imported from a helper module). Inputs
are random tensors: this measures compute, not data loading. Each bench also times a baseline
in the same run, so its ratios compare across machines.

DINO: times ``--steps`` optimiser steps (forward + loss + backward + AdamW) after ``--warmup``
steps and, as the baseline, inference forward passes of the same batch; prints median/p90 step
time, images/s and the train/inference ratio. Profiles: ``small`` - CPU-sized (ResNet with 1
block per stage, hidden 64, 1+2 layers, 20 queries, 128 px, batch 4); ``r50-640`` - TAO's
DINO-R50 defaults (resnet_50, 300 queries, 6+6 layers, hidden 256, 4 levels, dn_number 100) at
640 px, batch 2, for a GPU (``--device cuda --precision bf16``).

MAE: for each arch of the profile, ``pretrain`` (the masked-reconstruction model: ViT MAE, dense
FCMAE, Hiera MAE at ``train.mask_ratio``) and, as the baseline, ``finetune`` (the classifier on
the full image) optimiser steps; prints ms/step, images/s and the pretrain/finetune step-time
ratio (the ViT encoder sees 25 % of the tokens, so its ratio is < 1; the dense FCMAE runs the whole
image, so its ratio is about 1 + decoder cost). Profiles (``MAE_PROFILES``):
``small`` - ``convnextv2_atto`` and ``vit_base_patch16`` at 64 px, batch 4, fp32 (CPU);
``gpu`` - ``vit_base_patch16`` and ``convnextv2_base`` at 224 px, batch 64. Without
``--profile``/``--device``/``--precision`` MAE picks ``gpu`` on CUDA with bf16 autocast, else
``small`` on the CPU in fp32.

NVDINOv2: ``scripts/bench_engine_nvdinov2.py`` (profiles ``smoke``, ``demo``, ``default``). Usage::

    python scripts/bench_engine.py dino|mae|nvdinov2 [--profile P] [--steps N] [--warmup N] [--batch N]
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
from pathlib import Path
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

    args = argparse.Namespace(**{**vars(args), "profile": args.profile or "small", "device": args.device or "cpu"})
    args.precision, args.steps, args.warmup = args.precision or "fp32", args.steps or 10, args.warmup or 3
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

    model.train()
    tr = _timed(train_step, args.steps, args.warmup, dev)
    model.eval()
    inf = _timed(infer_step, args.steps, args.warmup, dev)
    med_tr, med_inf = statistics.median(tr), statistics.median(inf)
    result = {
        "network": "dino",
        "profile": args.profile,
        "device": _host(dev),
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


#: MAE bench profiles: archs, input size (px), batch size, timed and warm-up steps (defaults).
MAE_PROFILES: dict[str, dict[str, Any]] = {
    "small": {"archs": ["convnextv2_atto", "vit_base_patch16"], "input_size": 64, "batch": 4, "steps": 5, "warmup": 2},
    "gpu": {"archs": ["vit_base_patch16", "convnextv2_base"], "input_size": 224, "batch": 64, "steps": 20, "warmup": 5},
}


def _host(dev: torch.device) -> str:
    return str(dev) + (
        f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({platform.processor() or platform.machine()})"
    )


def _mae_setup(args: argparse.Namespace) -> tuple[str, dict[str, Any], torch.device, str]:
    """(profile, its settings with --steps/--warmup/--batch applied, device, precision).

    Unset ``--profile``/``--device``/``--precision``: the ``gpu`` profile on CUDA with bf16, else
    ``small`` on the CPU in fp32.
    """
    cuda = torch.cuda.is_available()
    profile = args.profile or ("gpu" if cuda else "small")
    if profile not in MAE_PROFILES:
        raise SystemExit(f"unknown MAE profile {profile!r}; use {' or '.join(MAE_PROFILES)}")
    prof = dict(MAE_PROFILES[profile])
    for key in ("steps", "warmup", "batch"):
        if getattr(args, key):
            prof[key] = getattr(args, key)
    dev = torch.device(args.device or ("cuda" if cuda else "cpu"))
    precision = args.precision or ("bf16" if dev.type == "cuda" else "fp32")
    return profile, prof, dev, precision


def bench_mae(args: argparse.Namespace) -> dict[str, Any]:
    """Time MAE pretrain and finetune optimiser steps per arch (AdamW, random images, 10 classes).

    Returns the run's settings plus ``rows`` (``arch``, ``stage``, ``step_ms`` median, ``images_per_s``,
    ``params_M``) and ``pretrain_over_finetune`` (arch -> ratio of median step times).
    """
    from taoskills.engine.mae import model as M
    from taoskills.engine.mae import spec as S

    profile, prof, dev, precision = _mae_setup(args)
    bs, size = prof["batch"], prof["input_size"]
    dtype = torch.bfloat16 if precision == "bf16" else None
    rows, ratios = [], {}
    for arch in prof["archs"]:
        cfg = copy.deepcopy(S.DEFAULTS)
        cfg["model"]["arch"] = arch
        cfg["dataset"]["augmentation"]["input_size"] = size
        median = {}
        for stage in ("pretrain", "finetune"):
            torch.manual_seed(0)
            net = (M.build_pretrain(cfg) if stage == "pretrain" else M.build_classifier(cfg, num_classes=10)).to(dev).train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            x = torch.randn(bs, 3, size, size, device=dev)
            y = torch.randint(0, 10, (bs,), device=dev)

            def step(net=net, opt=opt, x=x, y=y, stage=stage) -> None:
                with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                    loss = net(x)[0] if stage == "pretrain" else torch.nn.functional.cross_entropy(net(x).float(), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            ts = _timed(step, prof["steps"], prof["warmup"], dev)
            median[stage] = statistics.median(ts)
            rows.append(
                {
                    "arch": arch,
                    "stage": stage,
                    "step_ms": round(median[stage] * 1000, 2),
                    "images_per_s": round(bs / median[stage], 1),
                    "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
                }
            )
            del net, opt
        ratios[arch] = round(median["pretrain"] / median["finetune"], 3)
    result = {
        "network": "mae",
        "profile": profile,
        "device": _host(dev),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "image_size": size,
        "batch_size": bs,
        "steps": prof["steps"],
        "mask_ratio": S.DEFAULTS["train"]["mask_ratio"],
        "rows": rows,
        "pretrain_over_finetune": ratios,
    }
    if dev.type == "cuda":
        result["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return result


def _timed(fn: Callable[[], None], steps: int, warmup: int, dev: torch.device) -> list[float]:
    """Seconds per call of ``fn`` for ``steps`` calls after ``warmup`` untimed ones (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(dev)
        out.append(time.perf_counter() - t)
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


#: network_arch -> bench function (args) -> result dict. Add an entry per network.
BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {"dino": bench_dino, "mae": bench_mae}
BENCHES["grounding_dino"] = bench_grounding_dino  # scripts/bench_engine_parts_gdino.py


def _print(result: dict[str, Any]) -> None:
    for k, v in result.items():
        if k == "rows":
            for r in v:
                print(f"{'':>22}  " + "  ".join(f"{c}={r[c]}" for c in r))
        else:
            print(f"{k:>22}: {v}")


def _register_nvdinov2() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine_nvdinov2 import bench_nvdinov2

    BENCHES["nvdinov2"] = bench_nvdinov2


_register_nvdinov2()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("network", choices=sorted(BENCHES))
    p.add_argument(
        "--profile",
        default=None,
        help="dino: small (default) | r50-640; mae: small | gpu (default: gpu on CUDA); nvdinov2: smoke (default) | default",
    )
    p.add_argument("--steps", type=int, default=0, help="timed steps (0 = the bench's default: 10; mae: per profile)")
    p.add_argument("--warmup", type=int, default=0, help="untimed steps first (0 = the bench's default: 3; mae: per profile)")
    p.add_argument("--batch", type=int, default=0, help="override the profile's batch size")
    p.add_argument("--device", default=None, help="cpu | cuda (dino default cpu; mae default cuda when present)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="dino default fp32; mae: bf16 on CUDA")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.profile = args.profile or {"dino": "small", "nvdinov2": "smoke"}.get(args.network)  # mae chooses by device
    if args.network in ("nvdinov2", "grounding_dino"):
        args.steps, args.warmup = args.steps or 10, args.warmup or 3
    if args.threads:
        torch.set_num_threads(args.threads)
    result = BENCHES[args.network](args)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
