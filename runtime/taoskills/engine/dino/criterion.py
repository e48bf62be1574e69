"""DINO's Hungarian matcher and set criterion (TAO ``matcher.py`` / ``criterion.py`` semantics).

Costs and loss weights share coefficients (TAO Core 7.3.0 dino ModelConfig ``cls_loss_coef``
2, ``bbox_loss_coef`` 5, ``giou_loss_coef`` 2; ``focal_alpha`` 0.25, γ = 2):

* class cost: focal cost ``α(1-p)^γ(-log p) - (1-α)p^γ(-log(1-p))`` at the target class;
* box cost: L1 between (cx, cy, w, h); GIoU cost: ``-GIoU``.

Losses per output set: sigmoid focal loss summed over queries × classes / num_boxes
(``loss_ce``), L1 / num_boxes (``loss_bbox``), (1 - GIoU) / num_boxes (``loss_giou``). Sets:
the last decoder layer, every other layer (``_<i>``, when ``aux_loss``), the encoder proposals
(``_interm``, weighted by ``interm_loss_coef``) and the denoising queries (``_dn`` / ``_dn_<i>``).
"""

from __future__ import annotations

from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F
from transformers.loss.loss_for_object_detection import generalized_box_iou

from taoskills.engine.dino.dn import DNMeta, cxcywh_to_xyxy, dn_indices


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0):
    """Σ over all elements of ``α_t (1-p_t)^γ BCE(logit, target)`` divided by ``num_boxes`` (Lin et al. 2017)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum() / num_boxes


@torch.no_grad()
def match_cost(logits, boxes, tgt_labels, tgt_boxes, *, cost_class, cost_bbox, cost_giou, alpha=0.25, gamma=2.0):
    """Cost matrix ``[Q, T]`` of one image: ``logits [Q,C]``, ``boxes [Q,4]`` cxcywh, targets ``[T]``, ``[T,4]``."""
    p = logits.sigmoid()
    neg = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    c_cls = pos[:, tgt_labels] - neg[:, tgt_labels]
    c_l1 = torch.cdist(boxes, tgt_boxes, p=1)
    c_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt_boxes))
    return cost_bbox * c_l1 + cost_class * c_cls + cost_giou * c_giou


class HungarianMatcher:
    """One-to-one assignment of queries to targets minimising :func:`match_cost` (scipy ``linear_sum_assignment``)."""

    def __init__(self, cost_class: float, cost_bbox: float, cost_giou: float, alpha: float = 0.25) -> None:
        self.kw = {"cost_class": cost_class, "cost_bbox": cost_bbox, "cost_giou": cost_giou, "alpha": alpha}

    @torch.no_grad()
    def __call__(self, logits, boxes, targets) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``logits [B,Q,C]``, ``boxes [B,Q,4]`` -> per image (query indices, target indices), int64."""
        out = []
        for b, t in enumerate(targets):
            dev = logits.device
            if len(t["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.long, device=dev)
                out.append((empty, empty))
                continue
            c = match_cost(logits[b].float(), boxes[b].float(), t["labels"], t["boxes"].float(), **self.kw)
            c = torch.nan_to_num(c, nan=1e6, posinf=1e6, neginf=-1e6)
            i, j = linear_sum_assignment(c.cpu().numpy())
            out.append((torch.as_tensor(i, dtype=torch.long, device=dev), torch.as_tensor(j, dtype=torch.long, device=dev)))
        return out


class SetCriterion:
    """Weighted DINO loss. ``__call__(outputs, targets, num_boxes) -> (total, {name: value})``.

    ``outputs``: ``pred_logits [B,Q,C]``, ``pred_boxes [B,Q,4]``, ``aux_outputs`` (list of the
    same for layers 0..n-2), ``interm_outputs`` (encoder proposals), ``dn_outputs`` (list per
    layer, last = final layer) and ``dn_meta`` (:class:`DNMeta`).
    """

    def __init__(self, m: dict[str, Any], num_classes: int) -> None:
        self.num_classes = num_classes
        self.alpha = m["focal_alpha"]
        self.w = {"loss_ce": m["cls_loss_coef"], "loss_bbox": m["bbox_loss_coef"], "loss_giou": m["giou_loss_coef"]}
        self.interm_coef = m["interm_loss_coef"]
        self.no_interm_box = m["no_interm_box_loss"]
        self.types = set(m["loss_types"])
        self.matcher = HungarianMatcher(m["cls_loss_coef"], m["bbox_loss_coef"], m["giou_loss_coef"], m["focal_alpha"])

    def set_losses(self, logits, boxes, targets, indices, num_boxes, *, boxes_too: bool = True) -> dict[str, torch.Tensor]:
        """loss_ce / loss_bbox / loss_giou of one output set for given (query, target) indices."""
        out: dict[str, torch.Tensor] = {}
        bidx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
        qidx = torch.cat([q for q, _ in indices])
        if "labels" in self.types:
            onehot = torch.zeros_like(logits)
            cls = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
            onehot[bidx, qidx, cls] = 1.0
            out["loss_ce"] = sigmoid_focal_loss(logits, onehot, num_boxes, self.alpha)
        if "boxes" in self.types and boxes_too:
            src = boxes[bidx, qidx]
            tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
            out["loss_bbox"] = F.l1_loss(src, tgt, reduction="sum") / num_boxes
            if len(src):
                giou = torch.diag(generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)))
                out["loss_giou"] = (1 - giou).sum() / num_boxes
            else:
                out["loss_giou"] = src.sum()
        return out

    def __call__(self, outputs: dict[str, Any], targets, num_boxes: float):
        named: dict[str, torch.Tensor] = {}
        sets = [("", outputs["pred_logits"], outputs["pred_boxes"])]
        sets += [(f"_{i}", a["pred_logits"], a["pred_boxes"]) for i, a in enumerate(outputs.get("aux_outputs", []))]
        for suffix, logits, boxes in sets:
            idx = self.matcher(logits, boxes, targets)
            named.update({k + suffix: v for k, v in self.set_losses(logits, boxes, targets, idx, num_boxes).items()})
        interm = outputs.get("interm_outputs")
        if interm is not None:
            idx = self.matcher(interm["pred_logits"], interm["pred_boxes"], targets)
            part = self.set_losses(
                interm["pred_logits"], interm["pred_boxes"], targets, idx, num_boxes, boxes_too=not self.no_interm_box
            )
            named.update({k + "_interm": v for k, v in part.items()})
        meta: DNMeta | None = outputs.get("dn_meta")
        if meta is not None:
            idx = dn_indices(targets, meta)
            n_dn = len(outputs["dn_outputs"])
            for i, d in enumerate(outputs["dn_outputs"]):
                suffix = "_dn" if i == n_dn - 1 else f"_dn_{i}"
                part = self.set_losses(d["pred_logits"], d["pred_boxes"], targets, idx, num_boxes * meta.num_groups)
                named.update({k + suffix: v for k, v in part.items()})
        total = None
        for k, v in named.items():
            base = "_".join(k.split("_")[:2])
            weight = self.w[base] * (self.interm_coef if k.endswith("_interm") else 1.0)
            total = v * weight if total is None else total + v * weight
        return total, named
