"""DINO backbone: transformers' ResNet (no timm/torchvision), sine position encoding, pretrained-weight mapping.

* :class:`Backbone` — ``transformers.ResNetBackbone`` returning the stages named by
  ``model.return_interm_indices`` (1 = stride 4 … 4 = stride 32) with their padding masks.
* :func:`map_resnet_state_dict` — torchvision/timm ``resnet34``/``resnet50`` key layout
  (``conv1``, ``bn1``, ``layerN.B.convK``, ``downsample``) to transformers' ResNet layout.
* :class:`SinePositionEmbedding` — DINO's ``PositionEmbeddingSineHW`` (normalised, 2π scale,
  separate H/W temperatures ``model.pe_temperatureH/W``, default 20).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from taoskills.engine.dino.spec import BACKBONES
from taoskills.errors import SpecError

#: Common key prefixes of saved backbones (Lightning module, DINO body, timm/torchvision wrappers).
_PREFIXES = ("state_dict.", "model.", "module.", "backbone.0.body.", "backbone.0.", "backbone.body.", "backbone.", "body.")


class Backbone(nn.Module):
    """ResNet feature extractor. ``forward(images [B,3,H,W], mask [B,H,W] bool, True = padding)``
    returns ``[(feature [B,C_l,H_l,W_l], mask [B,H_l,W_l])]`` for each requested stage."""

    def __init__(self, name: str, return_interm_indices: list[int]) -> None:
        super().__init__()
        from transformers import ResNetBackbone, ResNetConfig

        arch = dict(BACKBONES[name])
        config = ResNetConfig(**arch, out_features=[f"stage{i}" for i in return_interm_indices])
        self.body = ResNetBackbone(config)
        self.channels = [config.hidden_sizes[i - 1] for i in return_interm_indices]
        self.frozen_bn = False

    def freeze_batchnorm(self) -> None:
        """Keep BatchNorm statistics and affine parameters fixed (DETR's FrozenBatchNorm, used with pretrained weights)."""
        self.frozen_bn = True
        for m in self.body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.frozen_bn:
            for m in self.body.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        feats = self.body(images).feature_maps
        out = []
        for f in feats:
            m = F.interpolate(mask[None].float(), size=f.shape[-2:]).to(torch.bool)[0]
            out.append((f, m))
        return out


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def map_resnet_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision/timm ResNet keys -> transformers ``ResNetBackbone`` keys; ``fc.*`` is dropped.

    ``conv1``/``bn1`` -> ``embedder.embedder.{convolution,normalization}``;
    ``layerS.B.convK``/``bnK`` -> ``encoder.stages.{S-1}.layers.B.layer.{K-1}.{convolution,normalization}``;
    ``layerS.B.downsample.0/1`` -> ``...shortcut.{convolution,normalization}``. Keys already in
    transformers' layout pass through (prefixes such as ``model.``/``backbone.0.body.`` are removed).
    """
    out: dict[str, torch.Tensor] = {}
    for raw, value in sd.items():
        key = _strip(raw)
        if key.startswith(("fc.", "head.", "classifier.")):
            continue
        if key.startswith(("embedder.", "encoder.")):
            out[key] = value
            continue
        m = re.fullmatch(r"(conv|bn)1\.(\w+)", key)
        if m:
            kind = "convolution" if m.group(1) == "conv" else "normalization"
            out[f"embedder.embedder.{kind}.{m.group(2)}"] = value
            continue
        m = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(\w+)", key)
        if m:
            s, b, kind, k, leaf = int(m.group(1)), m.group(2), m.group(3), int(m.group(4)), m.group(5)
            kind = "convolution" if kind == "conv" else "normalization"
            out[f"encoder.stages.{s - 1}.layers.{b}.layer.{k - 1}.{kind}.{leaf}"] = value
            continue
        m = re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.([01])\.(\w+)", key)
        if m:
            s, b, i, leaf = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            kind = "convolution" if i == "0" else "normalization"
            out[f"encoder.stages.{s - 1}.layers.{b}.shortcut.{kind}.{leaf}"] = value
    return out


def load_pretrained_backbone(backbone: Backbone, path: str, *, field: str = "model.pretrained_backbone_path") -> dict[str, Any]:
    """Load a torchvision/timm/transformers ResNet state dict into ``backbone`` and freeze its BatchNorm.

    Returns ``{"loaded": n, "missing": [...]}``. Raises SpecError naming ``field`` when the file
    is unreadable, no key matches, or a tensor shape differs (wrong depth, e.g. resnet_34 weights
    for resnet_50).
    """
    from taoskills.engine.lightning import load_checkpoint_file

    obj = load_checkpoint_file(path, field=field)
    if isinstance(obj, dict):
        for k in ("state_dict", "model", "model_state"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict):
        raise SpecError(f"{field}={path} does not hold a state dict.", field=field, fix="pass a ResNet .pth state dict.")
    mapped = map_resnet_state_dict({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})
    own = backbone.body.state_dict()
    usable = {k: v for k, v in mapped.items() if k in own}
    bad = [k for k, v in usable.items() if v.shape != own[k].shape]
    if not usable or bad:
        raise SpecError(
            f"{field}={path} does not fit the {len(own)}-tensor ResNet backbone "
            + (f"(shape mismatch at {bad[:3]})." if bad else "(no key matched)."),
            field=field,
            fix="pass ImageNet weights of the same depth as model.backbone (torchvision/timm resnet34 or resnet50 layout).",
        )
    result = backbone.body.load_state_dict(usable, strict=False)
    backbone.freeze_batchnorm()
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    return {"loaded": len(usable), "missing": missing}


class SinePositionEmbedding(nn.Module):
    """Sine/cosine encoding of normalised pixel coordinates (``dim`` = hidden_dim/2 per axis).

    ``forward(mask [B,H,W], True = padding) -> [B, 2*dim, H, W]``; coordinates are normalised by
    the valid (unpadded) extent, offset by 0.5 and scaled by 2π (DINO ``PositionEmbeddingSineHW``).
    """

    def __init__(self, dim: int, temperature_h: float = 20.0, temperature_w: float = 20.0) -> None:
        super().__init__()
        self.dim, self.th, self.tw = dim, float(temperature_h), float(temperature_w)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        not_mask = (~mask).to(torch.float32)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps, scale = 1e-6, 2 * math.pi
        y = (y - 0.5) / (y[:, -1:, :] + eps) * scale
        x = (x - 0.5) / (x[:, :, -1:] + eps) * scale
        i = torch.arange(self.dim, dtype=torch.float32, device=mask.device)
        ex = 2 * torch.div(i, 2, rounding_mode="floor") / self.dim
        px = x[..., None] / self.tw**ex
        py = y[..., None] / self.th**ex
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def sine_embed_boxes(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """Sine embedding of normalised boxes ``[..., 4]`` (cx, cy, w, h) -> ``[..., 4*dim]`` ordered
    (y, x, w, h), temperature 10000, 2π scale (DINO ``gen_sineembed_for_position``)."""
    scale = 2 * math.pi
    i = torch.arange(dim, dtype=torch.float32, device=boxes.device)
    t = 10000 ** (2 * torch.div(i, 2, rounding_mode="floor") / dim)
    parts = []
    for c in (1, 0, 2, 3):
        p = boxes[..., c, None] * scale / t
        parts.append(torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1)
