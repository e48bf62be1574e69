"""MAE in the built-in engine: masked-image-modelling pretraining (ViT MAE, ConvNeXt-V2 FCMAE,
Hiera MAE on Hugging Face ``transformers`` modules) and classification fine-tuning, with TAO's
spec keys, checkpoints and status lines.

Entry points (each takes an :class:`~taoskills.engine.contract.ActionContext`):
:func:`taoskills.engine.mae.train.run`, :func:`...evaluate.run`, :func:`...inference.run`,
:func:`...export.run`. Output formats: ``README.md`` in this folder.
"""
