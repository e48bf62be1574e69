"""Helpers shared by NVDINOv2 inference and export: loading the student backbone (the device
choice, :func:`pick_device`, is the engine-wide one in :mod:`taoskills.engine.common`)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from taoskills.engine.nvdinov2 import model as M

log = logging.getLogger("taoskills.engine.nvdinov2")


def load_student(cfg: dict[str, Any], path: str, *, field: str, attn: str | None = None) -> torch.nn.Module:
    """Backbone built from ``cfg`` (no drop-path, eval mode) with the weights of ``path`` loaded."""
    sd = M.backbone_weights(path, field=field)
    backbone = M.build_backbone(cfg, drop_path=0.0, attn=attn)
    M.load_backbone_weights(backbone, sd, field=field)
    return backbone.eval()
