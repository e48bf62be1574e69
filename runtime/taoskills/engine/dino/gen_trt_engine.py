"""DINO gen_trt_engine action: a TensorRT engine from the export job's ONNX (:mod:`taoskills.engine.tensorrt`).

Needs TensorRT and a CUDA GPU; otherwise a NotSupported error naming the TAO deploy container.
"""

from __future__ import annotations

from taoskills.engine.contract import ActionContext
from taoskills.engine.tensorrt import run_gen_trt_engine


def run(ctx: ActionContext) -> dict[str, float]:
    """Build ``gen_trt_engine.trt_engine``; INT8 calibrates on ``cal_image_dir`` (DINO's image normalisation)."""
    return run_gen_trt_engine(ctx)
