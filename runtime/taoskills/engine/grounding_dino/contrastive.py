"""TAO's contrastive class head options for transformers' Grounding DINO: ``model.log_scale`` and
``model.class_embed_bias`` (TAO Core 7.3.0 grounding_dino ModelConfig, "for training from scratch").

transformers' ``GroundingDinoContrastiveEmbedding`` scores query q against text token t as the raw
dot product ``<q, t>``. With random init that product has a standard deviation of about
``sqrt(d_model)`` (both sides are layer-normed), so the sigmoid starts saturated and the focal loss
fights it for many steps. TAO's two options fix the start:

* ``log_scale``: ``"auto"`` divides the similarity by ``sqrt(d_model)`` (fixed); a number ``s``
  divides by ``sqrt(d_model)`` and multiplies by a learnable scalar initialised to ``s``
  (parameter ``log_scale``); ``none``/null keeps the raw dot product.
* ``class_embed_bias``: adds a learnable scalar bias initialised to ``-log((1 - 0.01) / 0.01)``
  (prior probability 0.01, as DINO's class head; parameter ``bias``, hence the checkpoint keys
  ``class_embed.N.bias`` the skill's "Unexpected key(s)" error pattern names).

:func:`apply` swaps the decoder's and the two-stage encoder's class heads in place.
"""

from __future__ import annotations

import math
from typing import Any

import torch

PRIOR_PROB = 0.01


def log_scale_value(value: Any) -> str | float | None:
    """``model.log_scale`` -> ``None`` (no scaling), ``"auto"`` or a float; ValueError otherwise."""
    if value is None or str(value).strip().lower() in ("none", "null", ""):
        return None
    if str(value).strip().lower() == "auto":
        return "auto"
    return float(value)


class ScaledContrastiveEmbedding(torch.nn.Module):
    """Dot-product text/query logits [B, Q, max_text_len] (``-inf`` on padding and masked tokens),
    optionally scaled and biased (module docstring)."""

    def __init__(self, max_text_len: int, d_model: int, log_scale: str | float | None, bias: bool) -> None:
        super().__init__()
        self.max_text_len = max_text_len
        self.inv_sqrt_d = 1.0 / math.sqrt(d_model) if log_scale is not None else 1.0
        self.log_scale = torch.nn.Parameter(torch.tensor([float(log_scale)])) if isinstance(log_scale, float) else None
        self.bias = torch.nn.Parameter(torch.tensor([-math.log((1 - PRIOR_PROB) / PRIOR_PROB)])) if bias else None

    def forward(
        self, vision_hidden_state: torch.Tensor, text_hidden_state: torch.Tensor, text_token_mask: torch.Tensor
    ) -> torch.Tensor:
        out = vision_hidden_state @ text_hidden_state.transpose(-1, -2) * self.inv_sqrt_d
        if self.log_scale is not None:
            out = out * self.log_scale
        if self.bias is not None:
            out = out + self.bias
        out = out.masked_fill(~text_token_mask[:, None, :], float("-inf"))
        new = torch.full((*out.shape[:-1], self.max_text_len), float("-inf"), device=out.device, dtype=out.dtype)
        new[..., : out.shape[-1]] = out
        return new


def apply(model: torch.nn.Module, m: dict[str, Any]) -> None:
    """Replace the class heads of a ``GroundingDinoForObjectDetection`` per the TAO ``model`` keys
    ``log_scale`` / ``class_embed_bias``; no change when both are off (transformers' own head)."""
    scale, bias = log_scale_value(m.get("log_scale")), bool(m.get("class_embed_bias"))
    if scale is None and not bias:
        return

    def make() -> ScaledContrastiveEmbedding:
        return ScaledContrastiveEmbedding(int(m["max_text_len"]), int(m["hidden_dim"]), scale, bias)

    model.class_embed = torch.nn.ModuleList([make() for _ in model.class_embed])
    if getattr(model.model, "encoder_output_class_embed", None) is not None:
        model.model.encoder_output_class_embed = make()
