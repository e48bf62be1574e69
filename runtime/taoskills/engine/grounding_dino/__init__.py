"""Grounding DINO in the built-in engine: transformers' ``GroundingDinoForObjectDetection``
(Swin or ResNet-50 backbone, BERT text encoder from a local folder) trained on ODVG data,
validated/evaluated with COCO mAP, prompted by captions, exported to ONNX and quantized to
INT8 ONNX with onnxruntime.

Entry points (each takes an :class:`~taoskills.engine.contract.ActionContext`):
``train.run``, ``evaluate.run``, ``inference.run``, ``export.run``, ``quantize.run``.
Formats and key mapping: ``README.md`` in this folder.
"""
