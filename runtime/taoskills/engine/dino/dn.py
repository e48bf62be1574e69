"""Contrastive denoising (CDN) query construction, DINO §3.2 (TAO ``dn_components.prepare_for_cdn``).

Each ground-truth box is repeated in ``G`` groups; each group has a *positive* copy (box
corners moved by less than ``λ·w/2, λ·h/2``, λ = ``dn_box_noise_scale``) and a *negative* copy
(moved by between 1× and 2× that), and a fraction ``dn_label_noise_ratio/2`` of labels is
flipped to a random class. ``G = max(dn_number // max_gt, 1)``. The decoder's self-attention
mask keeps matching queries from seeing any denoising query and each denoising group from
seeing the other groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from taoskills.engine.dino.transformer import inverse_sigmoid


@dataclass
class DNMeta:
    """``pad_size`` = 2·G·single_pad denoising queries in front of the matching queries."""

    pad_size: int
    num_groups: int
    single_pad: int


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def noise_boxes(boxes: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Move box corners (``boxes`` cxcywh in [0,1]) by ``sign·u·scale·(w/2, h/2)`` with u ∈ [0,1)
    for positives and u ∈ [1,2) where ``negative``; clamp to the image."""
    if scale <= 0:
        return boxes
    xyxy = cxcywh_to_xyxy(boxes)
    half = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:] / 2], -1)
    sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
    part = torch.rand_like(boxes) + negative[:, None].to(boxes.dtype)
    xyxy = (xyxy + sign * part * half * scale).clamp(0.0, 1.0)
    return xyxy_to_cxcywh(xyxy)


def attention_mask(pad_size: int, num_queries: int, single_pad: int, num_groups: int, device=None) -> torch.Tensor:
    """Bool ``[pad+Q, pad+Q]``, True = blocked: matching queries cannot see denoising queries;
    a denoising group sees itself and the matching queries only."""
    n = pad_size + num_queries
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    for g in range(num_groups):
        s, e = single_pad * 2 * g, single_pad * 2 * (g + 1)
        mask[s:e, e:pad_size] = True
        mask[s:e, :s] = True
    return mask


def prepare_for_cdn(
    targets: list[dict[str, torch.Tensor]],
    *,
    dn_number: int,
    label_noise_ratio: float,
    box_noise_scale: float,
    num_queries: int,
    num_classes: int,
    label_enc: torch.nn.Embedding,
):
    """Denoising queries for a training batch.

    ``targets[b]``: ``labels [n_b]`` (long), ``boxes [n_b, 4]`` (cxcywh, normalised). Returns
    ``(content [B, pad, d], boxes as logits [B, pad, 4], attn_mask [pad+Q, pad+Q], DNMeta)``, or
    four ``None`` when ``dn_number <= 0`` or the batch has no box. Query ``2·g·single_pad + i``
    is the positive copy of target i of its image in group g; ``+ single_pad`` is its negative.
    """
    known = [len(t["labels"]) for t in targets]
    max_known = max(known) if known else 0
    if dn_number <= 0 or max_known == 0:
        return None, None, None, None
    device = label_enc.weight.device
    groups = max(dn_number // max_known, 1)
    labels = torch.cat([t["labels"] for t in targets])
    boxes = torch.cat([t["boxes"] for t in targets])
    bid = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(known)])
    total, reps = len(labels), 2 * groups
    k_labels = labels.repeat(reps)
    k_bid = bid.repeat(reps)
    k_boxes = boxes.repeat(reps, 1)
    if label_noise_ratio > 0:
        flip = torch.rand(k_labels.shape, device=device) < (label_noise_ratio * 0.5)
        k_labels = torch.where(flip, torch.randint_like(k_labels, 0, num_classes), k_labels)
    rep = torch.arange(reps, device=device).repeat_interleave(total)
    negative = rep % 2 == 1
    k_boxes = noise_boxes(k_boxes, negative, box_noise_scale)
    single_pad = max_known
    pad_size = single_pad * reps
    d = label_enc.weight.shape[1]
    bsz = len(targets)
    content = torch.zeros(bsz, pad_size, d, device=device, dtype=label_enc.weight.dtype)
    ref = torch.zeros(bsz, pad_size, 4, device=device, dtype=boxes.dtype)
    within = torch.cat([torch.arange(n, device=device) for n in known])
    slot = (within.repeat(reps) + rep * single_pad).long()
    content[k_bid, slot] = label_enc(k_labels)
    ref[k_bid, slot] = inverse_sigmoid(k_boxes)
    mask = attention_mask(pad_size, num_queries, single_pad, groups, device=device)
    return content, ref, mask, DNMeta(pad_size, groups, single_pad)


def dn_indices(targets: list[dict[str, torch.Tensor]], meta: DNMeta) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(query index, target index) of every positive denoising query, per image (no matching needed)."""
    out = []
    for t in targets:
        n = len(t["labels"])
        dev = t["labels"].device
        if n == 0:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            out.append((empty, empty))
            continue
        tgt = torch.arange(n, device=dev)
        starts = torch.arange(meta.num_groups, device=dev) * 2 * meta.single_pad
        out.append(((starts[:, None] + tgt[None]).flatten(), tgt.repeat(meta.num_groups)))
    return out
