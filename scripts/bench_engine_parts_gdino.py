"""Grounding DINO entry of ``scripts/bench_engine.py`` (``python scripts/bench_engine.py grounding_dino``).

Fixed configs, random init, one synthetic batch of captioned shapes (two boxes per image, the
caption of :data:`taoskills.engine.grounding_dino.synthetic.CLASSES`). Profiles:

* ``small``: basic-block ResNet, one block per stage (a local config folder,
  ``model.write_backbone(kind="resnet")``), d_model 64, 1 encoder / 2 decoder layers, 30 queries,
  log_scale auto + class_embed_bias, 2-layer BERT of width 64, 64 px, batch 4 (the size of the CI
  learning test, tests/e2e/test_engine_grounding_dino.py);
* ``swin_t``: TAO's ``swin_tiny_224_1k`` with the same small transformer, 64 px, batch 4 (the size
  the runtime chain tests run);
* ``swin_t-800``: ``swin_tiny_224_1k`` + a BERT-base-sized text encoder (random init) and TAO Core
  7.3.0's transformer defaults (d_model 256, 6+6 layers, 900 queries, 4 levels), 800 px, batch 2:
  for a GPU (``--device cuda --precision bf16``).

Times ``--steps`` optimiser steps (forward + TAO loss weighting + backward + AdamW) after
``--warmup`` steps and, as the baseline in the same run, inference forward passes of the same
batch; returns the same fields as the other networks' entries plus the process CPU seconds per
step (``*_cpu_s_median``: on a shared, loaded host the wall times overstate the cost).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SMALL = {
    "hidden_dim": 64,
    "nheads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 128,
    "num_queries": 30,
    "num_select": 30,
    "max_text_len": 32,
    "return_interm_indices": [2, 3, 4],
    "num_feature_levels": 3,
}
PROFILES = ("small", "swin_t", "swin_t-800")


def _cfg(profile: str, tmp: Path) -> tuple[dict[str, Any], int, int]:
    """(cfg, image size, batch size) of a profile; writes the small text encoder / backbone to ``tmp``."""
    from taoskills.engine.grounding_dino import model as M
    from taoskills.engine.grounding_dino import spec as S
    from taoskills.engine.grounding_dino import synthetic as Y
    from taoskills.engine.grounding_dino import text_encoder as T

    cfg = copy.deepcopy(S.DEFAULTS)
    if profile == "swin_t-800":
        bert = T.write_text_encoder(
            tmp / "bert_base", Y.vocabulary_texts(), hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072
        )
        cfg["model"].update(text_encoder_type=str(bert))
        return cfg, 800, 2
    if profile not in PROFILES:
        raise SystemExit(f"unknown Grounding DINO profile {profile!r}; use one of {', '.join(PROFILES)}")
    bert = T.write_text_encoder(tmp / "bert", Y.vocabulary_texts())
    backbone = "swin_tiny_224_1k" if profile == "swin_t" else str(M.write_backbone(tmp / "resnet", kind="resnet"))
    cfg["model"].update(SMALL, text_encoder_type=str(bert), backbone=backbone, log_scale="auto", class_embed_bias=True)
    return cfg, 64, 4


def _batch(tok: Any, cfg: dict[str, Any], n: int, size: int, dev: torch.device) -> dict[str, Any]:
    from taoskills.engine.grounding_dino import data as D
    from taoskills.engine.grounding_dino import synthetic as Y

    g = torch.Generator().manual_seed(0)
    text = D.tokenize(tok, [D.caption_of(list(Y.CLASSES))] * n, cfg["model"]["max_text_len"])
    boxes = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.7, 0.6, 0.4, 0.4]], device=dev)
    return {
        "pixel_values": torch.randn(n, 3, size, size, generator=g).to(dev),
        "pixel_mask": torch.ones(n, size, size, dtype=torch.long, device=dev),
        **{k: v.to(dev) for k, v in text.items()},
        "labels": [{"class_labels": torch.tensor([0, 2], device=dev), "boxes": boxes} for _ in range(n)],
    }


def bench_grounding_dino(args: argparse.Namespace) -> dict[str, Any]:
    """Time Grounding DINO training steps and inference passes (module docstring); ``args`` as
    parsed by ``scripts/bench_engine.py`` (profile, steps, warmup, batch, device, precision)."""
    from taoskills.engine.grounding_dino import model as M
    from taoskills.engine.grounding_dino import text_encoder as T

    profile = "small" if args.profile in (None, "", "default") else args.profile
    tmp = Path(tempfile.mkdtemp(prefix="bench_gdino_"))
    cfg, size, batch = _cfg(profile, tmp)
    batch = args.batch or batch
    dev = torch.device(args.device or "cpu")
    torch.manual_seed(0)
    tok = T.load_tokenizer(cfg["model"]["text_encoder_type"])
    model = M.build_model(cfg).to(dev)
    opt = torch.optim.AdamW(M.param_groups(model, cfg), lr=1e-4, weight_decay=1e-4)
    inputs = _batch(tok, cfg, batch, size, dev)
    no_labels = {k: v for k, v in inputs.items() if k != "labels"}
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = M.weighted_loss(model(**inputs).loss_dict, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            model(**no_labels)

    cpu: dict[bool, list[float]] = {True: [], False: []}

    def timed(fn: Callable[[], None], train: bool) -> list[float]:
        model.train(train)
        for _ in range(args.warmup):
            fn()
        sync()
        out = []
        for _ in range(args.steps):
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            out.append(time.perf_counter() - t)
            cpu[train].append(time.process_time() - c)
        return out

    tr = timed(train_step, True)
    inf = timed(infer_step, False)
    med_tr, med_inf = statistics.median(tr), statistics.median(inf)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    result = {
        "network": "grounding_dino",
        "profile": profile,
        "device": f"{dev} ({name})",
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
        # process CPU seconds per step (all threads): on a shared host this is what the step costs
        "train_step_cpu_s_median": round(statistics.median(cpu[True]), 4),
        "infer_step_cpu_s_median": round(statistics.median(cpu[False]), 4),
    }
    if dev.type == "cuda":
        result["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return result
