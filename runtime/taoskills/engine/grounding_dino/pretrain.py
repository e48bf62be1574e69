"""Offline backbone pretraining on synthetic shapes, for ``model.pretrained_backbone_path``.

Real Grounding DINO starts from a pretrained Swin; a tiny ResNet trained from scratch inside a
few hundred detector steps learns colour long before shape (engine README, "Why red square
fails"). :func:`pretrain_backbone` gives a small run the same start: the ResNet of a
``model.backbone`` config folder (:func:`taoskills.engine.grounding_dino.model.write_backbone`) is
trained to label every cell of its stride-8 and stride-16 feature maps with the shape and the
colour of the object covering it (or background), on scenes drawn here in memory where every
colour of :data:`synthetic.COLOURS` meets every shape (so shape and colour are learnt apart).
The result is the backbone's state dict (transformers ``ResNetBackbone`` keys), saved with
``torch.save``: the format :func:`model.load_backbone_weights` reads.

CPU cost: about 10-20 s for the default 400 steps of batch 32 at 64 px on one thread
(engine README, "Deterministic vocabulary and a pretrained backbone").
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taoskills.engine.grounding_dino import synthetic as Y

SHAPES = ("circle", "square", "triangle")


def _scene(
    rng: random.Random, nrng: np.random.Generator, size: int, colours: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, shape map HxW, colour map HxW); map values 0 = background, else index + 1.
    The background is grey noise as in :func:`synthetic.write_shapes`."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(nrng.normal(128, 12, (size, size, 3)).clip(0, 255).astype("uint8"))
    shape_map, colour_map = Image.new("L", (size, size)), Image.new("L", (size, size))
    draws = (ImageDraw.Draw(img), ImageDraw.Draw(shape_map), ImageDraw.Draw(colour_map))
    for _ in range(rng.randint(1, 2)):
        w = int(size * rng.uniform(0.3, 0.55))
        x, y = rng.randint(0, size - w), rng.randint(0, size - w)
        s, c = rng.randrange(len(SHAPES)), rng.randrange(len(colours))
        fills: list[Any] = [Y.COLOURS[colours[c]], s + 1, c + 1]  # RGB, then the "L" maps' label values
        for draw, fill in zip(draws, fills):
            Y._draw(draw, SHAPES[s], (x, y, x + w, y + w), fill)
    return np.asarray(img), np.asarray(shape_map), np.asarray(colour_map)


def pretrain_backbone(
    backbone_folder: str | Path,
    out: str | Path,
    *,
    steps: int = 400,
    batch: int = 32,
    size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Pretrain the ResNet of ``backbone_folder`` (a transformers ``ResNetConfig`` folder) and
    save its state dict to ``out``.

    ``steps`` AdamW steps of ``batch`` scenes ``size`` x ``size`` px (drawn on the fly, seeded by
    ``seed``; cross-entropy of 1x1-conv shape and colour heads on stages 2 and 3, the maps
    downsampled by nearest neighbour). Returns ``{"shape_acc", "colour_acc", "loss"}``: cell
    accuracies (object cells only) and loss over the last 20 steps.
    """
    from transformers import AutoBackbone, ResNetConfig

    torch.manual_seed(seed)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    cfg = ResNetConfig.from_pretrained(str(backbone_folder), out_features=["stage2", "stage3"], out_indices=None)
    net = AutoBackbone.from_config(cfg)
    widths = net.channels
    colours = sorted(Y.COLOURS)
    heads = torch.nn.ModuleList(torch.nn.Conv2d(ch, 1 + len(SHAPES) + 1 + len(colours), 1) for ch in widths)
    opt = torch.optim.AdamW([*net.parameters(), *heads.parameters()], lr=lr, weight_decay=1e-4)
    from taoskills.engine.grounding_dino.spec import DEFAULTS

    aug = DEFAULTS["dataset"]["augmentation"]  # the detector's own input normalisation (data.py)
    mean, std = (torch.tensor(aug[k]).view(1, 3, 1, 1) for k in ("input_mean", "input_std"))
    hist: list[tuple[float, float, float]] = []
    net.train()
    for _ in range(steps):
        scenes = [_scene(rng, nrng, size, colours) for _ in range(batch)]
        x = (torch.from_numpy(np.stack([s[0] for s in scenes])).permute(0, 3, 1, 2).float() / 255 - mean) / std
        shape_t = torch.from_numpy(np.stack([s[1] for s in scenes])).long()
        colour_t = torch.from_numpy(np.stack([s[2] for s in scenes])).long()
        loss, hits = torch.zeros(()), []
        for fmap, head in zip(net(pixel_values=x).feature_maps, heads):
            logits = head(fmap)
            h = fmap.shape[-1]
            st = torch.nn.functional.interpolate(shape_t[:, None].float(), size=(h, h), mode="nearest")[:, 0].long()
            ct = torch.nn.functional.interpolate(colour_t[:, None].float(), size=(h, h), mode="nearest")[:, 0].long()
            ls, lc = logits[:, : 1 + len(SHAPES)], logits[:, 1 + len(SHAPES) :]
            loss = loss + torch.nn.functional.cross_entropy(ls, st) + torch.nn.functional.cross_entropy(lc, ct)
            obj = st > 0
            hits.append(((ls.argmax(1) == st)[obj].float().mean().item(), (lc.argmax(1) == ct)[obj].float().mean().item()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((hits[0][0], hits[0][1], loss.item()))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), str(out))
    last = np.asarray(hist[-20:])
    return {"shape_acc": float(last[:, 0].mean()), "colour_acc": float(last[:, 1].mean()), "loss": float(last[:, 2].mean())}
