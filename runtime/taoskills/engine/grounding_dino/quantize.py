"""Grounding DINO quantize action: not implemented by the built-in engine yet.

TAO quantizes Grounding DINO with ModelOpt (``quantize.backend``: ``modelopt.onnx`` on the
exported ONNX with COCO calibration data, or ``modelopt.pytorch`` / ``torchao``). The built-in
engine raises NotSupported naming the TAO engine, before reading any data.
"""

from __future__ import annotations

from taoskills.engine.contract import ActionContext
from taoskills.errors import NotSupported


def run(ctx: ActionContext) -> None:
    """Always raises NotSupported (with the fix: the TAO engine, or export + TensorRT FP16)."""
    raise NotSupported(
        "Grounding DINO quantize is not implemented by the built-in engine (TAO uses ModelOpt / torchao).",
        field="quantize.backend",
        fix="run quantize with the TAO container engine (engine: tao), or export to ONNX and build an FP16 TensorRT "
        "engine with gen_trt_engine in TAO Deploy.",
    )
