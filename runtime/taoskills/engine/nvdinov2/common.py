"""Helpers shared by NVDINOv2 inference and export: device choice, loading the student backbone."""

from __future__ import annotations

import logging
from typing import Any

import torch

from taoskills.engine.nvdinov2 import model as M
from taoskills.errors import NotSupported, PreflightError

log = logging.getLogger("taoskills.engine.nvdinov2")


def pick_device(*, want_gpu: bool, gpu_id: int, num_gpus: int = 1, field: str) -> torch.device:
    """cuda:<gpu_id> when wanted and present, else CPU (with a logged warning when a GPU was wanted).

    ``num_gpus > 1`` raises NotSupported (single-device inference/export only).
    """
    if num_gpus > 1:
        raise NotSupported(
            f"{field}={num_gpus}: the built-in engine runs this action on one device.", field=field, fix=f"set {field}=1."
        )
    if not want_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("No CUDA GPU found: running on the CPU.")
        return torch.device("cpu")
    if gpu_id >= torch.cuda.device_count():
        raise PreflightError(
            f"GPU {gpu_id} does not exist (this host has {torch.cuda.device_count()}).",
            field=field,
            fix="use a GPU id from 0 to device_count-1.",
        )
    return torch.device(f"cuda:{gpu_id}")


def load_student(cfg: dict[str, Any], path: str, *, field: str, attn: str | None = None) -> torch.nn.Module:
    """Backbone built from ``cfg`` (no drop-path, eval mode) with the weights of ``path`` loaded."""
    sd = M.backbone_weights(path, field=field)
    backbone = M.build_backbone(cfg, drop_path=0.0, attn=attn)
    M.load_backbone_weights(backbone, sd, field=field)
    return backbone.eval()
