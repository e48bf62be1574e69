"""Finetune augmentations written for the engine (PIL + torch; no timm, no torchvision).

* :class:`RandAugment` — Cubuk et al. 2020, with the ``rand-m<M>-n<N>-mstd<S>-inc<0|1>`` spelling
  TAO's ``dataset.augmentation.auto_aug`` uses (timm convention: N ops per image, each applied with
  probability 0.5, magnitude M of 10 jittered by a Gaussian of std S; ``inc1`` makes every op
  stronger as M grows).
* :func:`random_erase` — Zhong et al. 2020 random erasing (per-pixel normal noise), ``re_prob``.
* :class:`Mixup` — mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch with soft,
  label-smoothed targets; ``mixup_mode`` batch (one lambda per batch), pair (per pair of
  samples) or elem (per sample); ``mixup_switch_prob`` picks CutMix over mixup when both are on.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

import numpy as np
import torch

_FILL = (128, 128, 128)


def _level(m: float, top: float, signed: bool = True) -> float:
    v = m / 10.0 * top
    return -v if signed and random.random() < 0.5 else v


def _ops(inc: bool):
    from PIL import Image, ImageEnhance, ImageOps

    def enhance(cls):
        def f(img, m):
            factor = 1.0 + _level(m, 0.9) if inc else 0.1 + m / 10.0 * 1.8
            return cls(img).enhance(max(0.0, factor))

        return f

    def affine(kind):
        def f(img, m):
            w, h = img.size
            if kind == "shear_x":
                data = (1, _level(m, 0.3), 0, 0, 1, 0)
            elif kind == "shear_y":
                data = (1, 0, 0, _level(m, 0.3), 1, 0)
            elif kind == "translate_x":
                data = (1, 0, _level(m, 0.45) * w, 0, 1, 0)
            else:
                data = (1, 0, 0, 0, 1, _level(m, 0.45) * h)
            return img.transform(img.size, Image.AFFINE, data, resample=Image.BILINEAR, fillcolor=_FILL)

        return f

    def posterize(img, m):
        bits = int(8 - m / 10.0 * 4) if inc else int(4 + m / 10.0 * 4)
        return ImageOps.posterize(img, max(1, min(8, bits)))

    def solarize(img, m):
        thr = 256 - m / 10.0 * 256 if inc else m / 10.0 * 256
        return ImageOps.solarize(img, int(thr))

    def solarize_add(img, m):
        add = int(m / 10.0 * 110)
        lut = [min(255, i + add) if i < 128 else i for i in range(256)] * len(img.getbands())
        return img.point(lut)

    return [
        lambda img, m: ImageOps.autocontrast(img),
        lambda img, m: ImageOps.equalize(img),
        lambda img, m: ImageOps.invert(img),
        lambda img, m: img.rotate(_level(m, 30.0), resample=Image.BILINEAR, fillcolor=_FILL),
        posterize,
        solarize,
        solarize_add,
        enhance(ImageEnhance.Color),
        enhance(ImageEnhance.Contrast),
        enhance(ImageEnhance.Brightness),
        enhance(ImageEnhance.Sharpness),
        affine("shear_x"),
        affine("shear_y"),
        affine("translate_x"),
        affine("translate_y"),
    ]


class RandAugment:
    """``RandAugment("rand-m9-mstd0.5-inc1")(pil_image) -> pil_image`` (RGB)."""

    def __init__(self, policy: str) -> None:
        self.m, self.n, self.mstd, self.inc, self.p = 9.0, 2, 0.0, False, 0.5
        for part in policy.split("-")[1:]:
            key, val = re.match(r"([a-z]+)([\d.]+)", part).groups()
            if key == "m":
                self.m = float(val)
            elif key == "n":
                self.n = int(val)
            elif key == "mstd":
                self.mstd = float(val)
            elif key == "inc":
                self.inc = bool(int(val))
            elif key == "p":
                self.p = float(val)
        self.ops = _ops(self.inc)

    def __call__(self, img):
        for op in random.sample(self.ops, k=min(self.n, len(self.ops))):
            if random.random() > self.p:
                continue
            m = self.m if self.mstd <= 0 else random.gauss(self.m, self.mstd)
            img = op(img, max(0.0, min(10.0, m)))
        return img


def random_erase(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Erase one random rectangle (2–33 % of the area, aspect 0.3–3.3) with normal noise, with probability ``prob``."""
    if prob <= 0 or random.random() > prob:
        return x
    _, h, w = x.shape
    for _ in range(10):
        area = random.uniform(0.02, 1 / 3) * h * w
        ratio = math.exp(random.uniform(math.log(0.3), math.log(1 / 0.3)))
        eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < eh < h and 0 < ew < w:
            top, left = random.randint(0, h - eh), random.randint(0, w - ew)
            x = x.clone()
            x[:, top : top + eh, left : left + ew] = torch.randn(x.shape[0], eh, ew)
            return x
    return x


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """One-hot [B, C] with label smoothing ``smoothing`` (off-class mass smoothing / C)."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


class Mixup:
    """Mix a batch: ``Mixup(aug, num_classes)(x, labels) -> (x, soft targets [B, C])``.

    ``aug`` is ``dataset.augmentation`` (``mixup``, ``cutmix``, ``cutmix_minmax``, ``mixup_prob``,
    ``mixup_switch_prob``, ``mixup_mode``, ``smoothing``). ``active`` is False when both alphas are 0.
    Sample i is mixed with sample B-1-i; in pair mode both get the same lambda and CutMix box.
    """

    def __init__(self, aug: dict[str, Any], num_classes: int) -> None:
        self.mixup, self.cutmix = float(aug["mixup"]), float(aug["cutmix"])
        self.minmax = aug["cutmix_minmax"]
        if self.minmax is not None:
            self.cutmix = self.cutmix or 1.0
        self.prob, self.switch = float(aug["mixup_prob"]), float(aug["mixup_switch_prob"])
        self.mode, self.smoothing, self.num_classes = aug["mixup_mode"], float(aug["smoothing"]), num_classes
        self.active = self.mixup > 0 or self.cutmix > 0

    def _lam(self) -> tuple[float, bool]:
        if np.random.rand() > self.prob:
            return 1.0, False
        use_cut = self.cutmix > 0 and (self.mixup <= 0 or np.random.rand() < self.switch)
        alpha = self.cutmix if use_cut else self.mixup
        return float(np.random.beta(alpha, alpha)), use_cut

    def _box(self, h: int, w: int, lam: float) -> tuple[int, int, int, int]:
        if self.minmax is not None:
            ch = int(np.random.randint(int(h * self.minmax[0]), int(h * self.minmax[1]) + 1))
            cw = int(np.random.randint(int(w * self.minmax[0]), int(w * self.minmax[1]) + 1))
        else:
            cut = math.sqrt(1 - lam)
            ch, cw = int(h * cut), int(w * cut)
        cy, cx = np.random.randint(h), np.random.randint(w)
        y0, y1 = int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h))
        x0, x1 = int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w))
        return y0, y1, x0, x1

    def _mix_one(self, dst: torch.Tensor, src: torch.Tensor, lam: float, box) -> float:
        """Mix ``src`` into ``dst`` in place (CutMix inside ``box`` or blend); returns dst's share."""
        if lam >= 1.0:
            return 1.0
        if box is not None:
            h, w = dst.shape[-2:]
            y0, y1, x0, x1 = box
            dst[..., y0:y1, x0:x1] = src[..., y0:y1, x0:x1]
            return 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        dst.mul_(lam).add_(src * (1.0 - lam))
        return lam

    def _draw(self, h: int, w: int):
        lam, cut = self._lam()
        return lam, (self._box(h, w, lam) if cut and lam < 1.0 else None)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = soft_targets(labels, self.num_classes, self.smoothing)
        if not self.active:
            return x, target
        flipped, out = x.flip(0).clone(), x.clone()
        b, (h, w) = x.shape[0], x.shape[-2:]
        lams = torch.ones(b, 1, device=x.device)
        if self.mode == "batch":
            lam, box = self._draw(h, w)
            lams[:] = self._mix_one(out, flipped, lam, box)
        else:
            drawn: dict[int, tuple] = {}
            for i in range(b):
                j = b - 1 - i
                # pair: sample j mixes with sample i using i's lambda and box (complementary mix)
                lam, box = drawn[j] if self.mode == "pair" and j in drawn else self._draw(h, w)
                drawn[i] = (lam, box)
                lams[i] = self._mix_one(out[i], flipped[i], lam, box)
        target = target * lams + target.flip(0) * (1.0 - lams)
        return out, target
