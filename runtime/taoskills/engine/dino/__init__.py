"""Built-in DINO (DETR with Improved deNoising anchOr boxes) engine: train, evaluate, inference, export.

Model parts follow the DINO paper (Zhang et al., 2022) and TAO's DINO (public TAO PyTorch code
``nvidia_tao_pytorch/cv/dino``); building blocks come from transformers (ResNet backbone,
multi-scale deformable attention). Importing this package does not import torch.
"""
