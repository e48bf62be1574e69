#!/usr/bin/env python
"""Benchmark of the built-in Grounding DINO engine: training step time and images/s.

Fixed configs, random init, synthetic captioned shapes (``engine/grounding_dino/synthetic.py``):

* ``tiny``: 4-stage Swin of width 32 (local config folder), d_model 64, 1/2 layers, 30 queries,
  2-layer BERT of width 64, 64 px, batch 4 (the CI learning test's size);
* ``swin_t``: TAO's ``swin_tiny_224_1k`` + the same tiny transformer, 64 px, batch 4 (what the
  runtime chain tests run);
* ``--real``: Swin-T + BERT-base-sized text encoder (random init), TAO's transformer defaults
  (d_model 256, 6/6 layers, 900 queries), 800 px, batch 2, bf16 autocast on a GPU.

Prints one JSON line per config: ``step_s`` (median of the timed steps: forward + TAO loss +
backward + AdamW step), ``images_per_s`` and, as the baseline ratio, ``ratio_vs_tiny``.
Usage: ``python scripts/bench_engine_gdino.py [--steps 8] [--real] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import spec as S
from taoskills.engine.grounding_dino import synthetic as Y
from taoskills.engine.grounding_dino import text_encoder as T

TINY = {
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


def _batch(tok, cfg, n: int, size: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    text = D.tokenize(tok, [D.caption_of(list(Y.CLASSES))] * n, cfg["model"]["max_text_len"])
    labels = [
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.7, 0.6, 0.4, 0.4]])}
        for _ in range(n)
    ]
    return {
        "pixel_values": x.to(device),
        "pixel_mask": torch.ones(n, size, size, dtype=torch.long, device=device),
        **{k: v.to(device) for k, v in text.items()},
        "labels": [{k: v.to(device) for k, v in t.items()} for t in labels],
    }


def bench(name: str, cfg: dict, tok, size: int, bs: int, steps: int, device: str, bf16: bool) -> dict:
    model = M.build_model(cfg).to(device).train()
    opt = torch.optim.AdamW(M.param_groups(model, cfg), lr=1e-4)
    batch = _batch(tok, cfg, bs, size, device)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch)
            loss = M.weighted_loss(out.loss_dict, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "config": name,
        "device": device,
        "image_px": size,
        "batch": bs,
        "params_m": round(params, 2),
        "bf16": bf16,
        "step_s": round(step, 4),
        "images_per_s": round(bs / step, 2),
        "loss": round(float(loss), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--real", action="store_true", help="also time Swin-T + BERT-base at 800 px, batch 2")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    small_bert = T.write_text_encoder(tmp / "bert", Y.vocabulary_texts())
    tok = T.load_tokenizer(str(small_bert))
    base = copy.deepcopy(S.DEFAULTS)
    base["model"].update(TINY, text_encoder_type=str(small_bert), backbone=str(M.write_backbone(tmp / "swin")))
    rows = [bench("tiny", base, tok, 64, 4, args.steps, args.device, False)]
    swin = copy.deepcopy(base)
    swin["model"]["backbone"] = "swin_tiny_224_1k"
    rows.append(bench("swin_t", swin, tok, 64, 4, args.steps, args.device, False))
    if args.real:
        big_bert = T.write_text_encoder(
            tmp / "bert_base", Y.vocabulary_texts(), hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072
        )
        real = copy.deepcopy(S.DEFAULTS)
        real["model"].update(text_encoder_type=str(big_bert))
        rows.append(bench("swin_t_real_800", real, tok, 800, 2, args.steps, args.device, args.device == "cuda"))
    for r in rows:
        r["ratio_vs_tiny"] = round(r["step_s"] / rows[0]["step_s"], 2)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
