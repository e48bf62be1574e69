"""DINO's deformable transformer: encoder, mixed query selection, decoder with look-forward-twice refinement.

Built on transformers' ``DeformableDetrMultiscaleDeformableAttention`` (pure-PyTorch
``grid_sample`` path; exports as ONNX GridSample) and ``DeformableDetrEncoderLayer``. The
query selection (``two_stage_type: standard``), the decoder layer with a denoising attention
mask and the refinement follow the DINO paper (Zhang et al. 2022, §3.3-3.5) and TAO's DINO
(public TAO PyTorch code ``nvidia_tao_pytorch/cv/dino/model/deformable_transformer.py``).
Shapes: B batch, S = sum(H_l*W_l) encoder tokens, Q queries, d hidden_dim, L levels.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from taoskills.engine.dino.backbone import sine_embed_boxes


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both terms clamped at ``eps``."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box head)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, num_layers: int) -> None:
        super().__init__()
        dims = [d_in] + [d_hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [d_out]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def msda_config(d: int, nheads: int, levels: int, enc_points: int, dec_points: int, ffn: int, dropout: float):
    """A transformers ``DeformableDetrConfig`` carrying only what the attention/encoder layers read."""
    from transformers import DeformableDetrConfig

    return DeformableDetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        d_model=d,
        encoder_attention_heads=nheads,
        decoder_attention_heads=nheads,
        num_feature_levels=levels,
        encoder_n_points=enc_points,
        decoder_n_points=dec_points,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        dropout=dropout,
        activation_dropout=dropout,
        attention_dropout=0.0,
        activation_function="relu",
        disable_custom_kernels=True,
    )


@torch.no_grad()
def reset_msda(m: nn.Module) -> None:
    """Deformable DETR's init of a deformable attention: offsets on a ring per head, uniform weights."""
    nn.init.constant_(m.sampling_offsets.weight, 0.0)
    thetas = torch.arange(m.n_heads, dtype=torch.float32) * (2.0 * math.pi / m.n_heads)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(m.n_heads, 1, 1, 2).repeat(1, m.n_levels, m.n_points, 1)
    for i in range(m.n_points):
        grid[:, :, i, :] *= i + 1
    m.sampling_offsets.bias.copy_(grid.view(-1))
    nn.init.constant_(m.attention_weights.weight, 0.0)
    nn.init.constant_(m.attention_weights.bias, 0.0)
    for lin in (m.value_proj, m.output_proj):
        nn.init.xavier_uniform_(lin.weight)
        nn.init.constant_(lin.bias, 0.0)


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of each level that is image, not padding: ``mask [B,H,W]`` -> ``[B, 2]`` (w, h)."""
    _, h, w = mask.shape
    vh = (~mask[:, :, 0]).sum(1).to(torch.float32) / h
    vw = (~mask[:, 0, :]).sum(1).to(torch.float32) / w
    return torch.stack([vw, vh], -1)


def encoder_reference_points(shapes: list[tuple[int, int]], ratios: torch.Tensor) -> torch.Tensor:
    """Pixel-centre reference points of every level, in each level's valid frame: ``[B, S, L, 2]``."""
    refs = []
    for lvl, (h, w) in enumerate(shapes):
        ys = (torch.arange(h, dtype=torch.float32, device=ratios.device) + 0.5).view(h, 1).expand(h, w).reshape(-1)
        xs = (torch.arange(w, dtype=torch.float32, device=ratios.device) + 0.5).view(1, w).expand(h, w).reshape(-1)
        ref_y = ys[None] / (ratios[:, None, lvl, 1] * h)
        ref_x = xs[None] / (ratios[:, None, lvl, 0] * w)
        refs.append(torch.stack((ref_x, ref_y), -1))
    ref = torch.cat(refs, 1)
    return ref[:, :, None] * ratios[:, None]


def encoder_proposals(memory: torch.Tensor, pad: torch.Tensor, shapes: list[tuple[int, int]]):
    """One anchor per encoder token (centre of its pixel, side 0.05·2^level), DINO/Deformable-DETR two-stage.

    ``memory [B,S,d]``, ``pad [B,S]`` (True = padding). Returns ``(memory with padded/border
    tokens zeroed [B,S,d], proposals in logit space [B,S,4] with +inf where invalid)``.
    """
    b = memory.shape[0]
    props, cur = [], 0
    for lvl, (h, w) in enumerate(shapes):
        m = pad[:, cur : cur + h * w].view(b, h, w)
        vh = (~m[:, :, 0]).sum(1).to(torch.float32)
        vw = (~m[:, 0, :]).sum(1).to(torch.float32)
        gy = (torch.arange(h, dtype=torch.float32, device=memory.device) + 0.5).view(1, h, 1).expand(b, h, w)
        gx = (torch.arange(w, dtype=torch.float32, device=memory.device) + 0.5).view(1, 1, w).expand(b, h, w)
        cx = gx / vw.view(b, 1, 1)
        cy = gy / vh.view(b, 1, 1)
        wh = torch.full_like(cx, 0.05 * (2.0**lvl))
        props.append(torch.stack([cx, cy, wh, wh], -1).view(b, -1, 4))
        cur += h * w
    p = torch.cat(props, 1)
    ok = ((p > 0.01) & (p < 0.99)).all(-1, keepdim=True)
    p = torch.log(p / (1 - p))
    bad = pad[..., None] | ~ok
    p = p.masked_fill(bad, float("inf"))
    out = memory.masked_fill(bad, 0.0)
    return out, p


def select_queries(cls_all: torch.Tensor, box_all: torch.Tensor, memory: torch.Tensor, k: int):
    """Mixed query selection: the ``k`` encoder tokens with the highest class logit give the anchors.

    ``cls_all [B,S,C]``, ``box_all [B,S,4]`` (refined proposals, logit space), ``memory [B,S,d]``.
    Returns ``(indices [B,k], anchors [B,k,4] logit space with gradient, token features [B,k,d])``.
    """
    top = torch.topk(cls_all.max(-1)[0], k, dim=1)[1]
    anchors = torch.gather(box_all, 1, top[..., None].expand(-1, -1, box_all.shape[-1]))
    feats = torch.gather(memory, 1, top[..., None].expand(-1, -1, memory.shape[-1]))
    return top, anchors, feats


class DecoderLayer(nn.Module):
    """Post-norm DINO decoder layer: self-attention (with the denoising mask), deformable
    cross-attention to the encoder memory (4-d reference boxes), FFN."""

    def __init__(self, config, d: int, nheads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrMultiscaleDeformableAttention

        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.cross_attn = DeformableDetrMultiscaleDeformableAttention(config, num_heads=nheads, n_points=config.decoder_n_points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm3 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt, query_pos, ref, memory, mem_valid, shapes_t, shapes, level_start, attn_mask):
        q = k = tgt + query_pos
        tgt = self.norm2(tgt + self.drop(self.self_attn(q, k, tgt, attn_mask=attn_mask, need_weights=False)[0]))
        out, _ = self.cross_attn(
            hidden_states=tgt,
            attention_mask=mem_valid,
            encoder_hidden_states=memory,
            position_embeddings=query_pos,
            reference_points=ref,
            spatial_shapes=shapes_t,
            spatial_shapes_list=shapes,
            level_start_index=level_start,
        )
        tgt = self.norm1(tgt + self.drop(out))
        return self.norm3(tgt + self.drop(self.linear2(self.drop(torch.relu(self.linear1(tgt))))))


class Decoder(nn.Module):
    """Stack of :class:`DecoderLayer` with iterative box refinement and look-forward-twice.

    Layer i predicts ``box_i = σ(Δ_i(norm(h_i)) + σ⁻¹(b_{i-1}))`` where ``b_{i-1}`` is the previous
    layer's refined box *with* its gradient, while the layer's own reference (input) is the
    detached ``b_{i-1}`` — so the loss at layer i also trains layer i-1's Δ (DINO §3.5).
    ``bbox_embed`` is shared by all layers (TAO/DINO ``dec_pred_bbox_embed_share``).
    """

    def __init__(self, config, d: int, nheads: int, ffn: int, dropout: float, num_layers: int, bbox_embed: MLP) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, d, nheads, ffn, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d)
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.bbox_embed = bbox_embed
        self.d = d

    def forward(self, tgt, ref_unsig, memory, mem_valid, shapes_t, shapes, level_start, ratios, attn_mask):
        """``tgt [B,Q,d]``, ``ref_unsig [B,Q,4]`` (logits of the initial boxes). Returns
        ``(hidden states [n_layers] of [B,Q,d] (normed), boxes [n_layers] of [B,Q,4] in [0,1])``."""
        reference = ref_unsig.sigmoid()
        prev = reference
        hs, boxes = [], []
        out = tgt
        r4 = torch.cat([ratios, ratios], -1)[:, None]
        for layer in self.layers:
            ref_in = reference[:, :, None] * r4
            query_pos = self.ref_point_head(sine_embed_boxes(ref_in[:, :, 0, :], self.d // 2))
            out = layer(out, query_pos, ref_in, memory, mem_valid, shapes_t, shapes, level_start, attn_mask)
            normed = self.norm(out)
            boxes.append((self.bbox_embed(normed) + inverse_sigmoid(prev)).sigmoid())
            new_ref = (self.bbox_embed(out) + inverse_sigmoid(reference)).sigmoid()
            hs.append(normed)
            prev, reference = new_ref, new_ref.detach()
        return hs, boxes


class Encoder(nn.Module):
    """``num_layers`` transformers ``DeformableDetrEncoderLayer`` (multi-scale deformable self-attention + FFN)."""

    def __init__(self, config, num_layers: int, activation_checkpoint: bool = False) -> None:
        super().__init__()
        from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrEncoderLayer

        self.layers = nn.ModuleList(DeformableDetrEncoderLayer(config) for _ in range(num_layers))
        self.activation_checkpoint = activation_checkpoint

    def forward(self, src, pos, valid, shapes_t, shapes, level_start, ratios):
        ref = encoder_reference_points(shapes, ratios)
        out = src
        for layer in self.layers:

            def run(x, layer=layer):
                return layer(
                    x,
                    attention_mask=valid,
                    spatial_position_embeddings=pos,
                    reference_points=ref,
                    spatial_shapes=shapes_t,
                    spatial_shapes_list=shapes,
                    level_start_index=level_start,
                )

            if self.activation_checkpoint and self.training and out.requires_grad:
                out = checkpoint(run, out, use_reentrant=False)
            else:
                out = run(out)
        return out
