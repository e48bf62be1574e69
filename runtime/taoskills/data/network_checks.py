"""The network's own data checks, by ``network_arch`` (called by the service's preflight).

``dino`` / ``grounding_dino``: annotations (:mod:`taoskills.data.annotations`); ``dino`` quantize
with ``quantize.backend: modelopt.onnx``: the ONNX model path; ``mae``: class folders
(:mod:`taoskills.data.classification`). Never raises on a malformed spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taoskills.data.annotations import check_detection_datasets
from taoskills.data.checks import CheckResult


def check_network_datasets(network: str, action: str, spec: Mapping[str, Any]) -> list[CheckResult]:
    """The network's own data checks for one action's spec (empty list for networks without any).

    ``dino`` / ``grounding_dino``: COCO/ODVG annotations, ``dataset.num_classes`` and the
    validation split (:func:`check_detection_datasets`); ``mae``: class folders, class count vs
    ``model.num_classes``, pretrain-checkpoint inference and local archives
    (:func:`taoskills.data.classification.check_mae_datasets`). Never raises.
    """
    if network == "mae":
        from taoskills.data.classification import check_mae_datasets

        return check_mae_datasets(action, spec)
    results = check_detection_datasets(network, action, spec)
    if network == "dino" and action == "quantize":
        results += _check_onnx_quantize(spec)
    return results


def _check_onnx_quantize(spec: Mapping[str, Any]) -> list[CheckResult]:
    """``quantize.backend: modelopt.onnx`` quantizes an ONNX model: ``quantize.model_path`` must be the
    ``.onnx`` an export job wrote (TAO Core 7.3.0 dino QuantizeConfig; the parent train job's
    ``.pth`` is what the PyTorch backends take)."""
    from taoskills.specs.dotted import get_dotted

    if get_dotted(dict(spec), "quantize.backend", default=None) != "modelopt.onnx":
        return []
    path = get_dotted(dict(spec), "quantize.model_path", default=None)
    ok = isinstance(path, str) and path.lower().endswith(".onnx")
    return [
        CheckResult(
            name="quantize.onnx_model",
            ok=ok,
            field="quantize.model_path",
            message=f"quantize.model_path={path!r} "
            + ("is an ONNX file." if ok else "is not an .onnx file; backend modelopt.onnx quantizes ONNX."),
            fix=None
            if ok
            else "set quantize.model_path to the export job's export.onnx_file (run export from the train job first).",
        )
    ]


__all__ = ["check_network_datasets"]
