"""Grounding DINO gen_trt_engine action: a TensorRT engine from the export job's ONNX (image and
token inputs; :mod:`taoskills.engine.tensorrt`). INT8 needs the quantize job's QDQ ONNX (calibrating
text inputs is not in the built-in engine). Without TensorRT or a GPU: NotSupported naming the
TAO deploy container.
"""

from __future__ import annotations

from taoskills.engine.contract import ActionContext
from taoskills.engine.tensorrt import run_gen_trt_engine


def run(ctx: ActionContext) -> dict[str, float]:
    """Build ``gen_trt_engine.trt_engine`` from ``gen_trt_engine.onnx_file``."""
    return run_gen_trt_engine(ctx, calibrate_images=False)
