"""NVDINOv2 in the built-in engine: DINOv2 self-distillation (DINO + iBOT + KoLeo, Sinkhorn-Knopp
centering, EMA teacher, multi-crop) on a Hugging Face ``Dinov2Model`` /
``Dinov2WithRegistersModel`` backbone, with TAO's spec keys and outputs.

Entry points (each takes an :class:`~taoskills.engine.contract.ActionContext`):
:func:`taoskills.engine.nvdinov2.train.run`, :func:`...inference.run`, :func:`...export.run`.
"""
