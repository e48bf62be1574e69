"""Grounding DINO training loss with multi-span positives (TAO's ODVG grounding ``tokens_positive``).

transformers' ``GroundingDinoForObjectDetection.forward`` builds one label map row per
'.'-separated caption phrase (``build_label_maps``: int [num_phrases, max_text_len], 1 on the
phrase's tokens) and hands it, with ``labels``, to ``model.loss_function``. A box there can be
positive for one phrase only. In Grounding DINO (and TAO's ODVG grounding data) a region's
positive map is the union of the tokens of all its ``tokens_positive`` spans, e.g. a red square
positive for "red" and "square" in ``red . circle . square .``.

:func:`grounding_loss` is installed per model instance through transformers' public
``loss_function`` setter (:func:`install`; no global patching). It receives the label maps built
by the model and each target's ``token_map`` (long [N, max_text_len], the tokens of the box's
``tokens_positive`` spans, :func:`~.data.token_map`); a box with a token map gets it as an extra row
and its ``class_labels`` entry points at that row. The matcher (row normalised to sum 1,
transformers' ``GroundingDinoHungarianMatcher``) and the focal loss (row as the binary target) then
work unchanged. Boxes without one (detection data, ``phrase`` regions) keep their phrase row: the
targets of transformers' own loss, apart from the fix below.

It also fixes the focal-loss target lookup of transformers 5.23
(``GroundingDinoImageLoss._get_target_classes_one_hot``), which offsets sample i's class labels by
``len(label_maps[i])`` instead of the rows of all samples before it: from the third image of a
batch on, the targets were read from another image's caption (phrase order is shuffled per image,
so those targets were wrong tokens). :class:`PerImageLoss` looks each image's rows up in its own map.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.loss.loss_grounding_dino import GroundingDinoHungarianMatcher, GroundingDinoImageLoss


class PerImageLoss(GroundingDinoImageLoss):
    """transformers' Grounding DINO criterion with the focal-loss targets read from each image's own
    label map (module docstring)."""

    def _get_target_classes_one_hot(self, outputs, targets, indices):
        logits = outputs["logits"]  # [B, Q, T]
        onehot = torch.zeros_like(logits, dtype=torch.long)
        for b, (target, (src, tgt)) in enumerate(zip(targets, indices)):
            onehot[b, src] = outputs["label_maps"][b][target["class_labels"][tgt]].to(torch.long)
        return onehot


def span_rows(label_maps: tuple[torch.Tensor, ...], labels: list[dict[str, Any]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Label maps with one row per box that has its own token map, and targets pointing at them.

    ``label_maps[b]``: int [C_b, T] (one row per caption phrase); ``labels[b]``: ``class_labels`` [N],
    ``boxes`` [N, 4], optional ``token_map`` long [N, T'] (1 = token positive for the box; an all-zero
    row keeps the phrase row of ``class_labels``; :func:`~.data.token_map`). Returns (maps
    [C_b + K_b, T], targets ``{"class_labels" [N], "boxes" [N, 4]}``); K_b = boxes with a token map.
    """
    maps, targets = [], []
    for mp, lab in zip(label_maps, labels):
        cls = lab["class_labels"].clone()
        own = lab.get("token_map")
        extra: list[torch.Tensor] = []
        if own is not None and own.numel():
            own = torch.nn.functional.pad(own, (0, max(0, mp.shape[1] - own.shape[1])))[:, : mp.shape[1]].to(mp.dtype)
            for i in torch.nonzero(own.sum(-1) > 0).flatten().tolist():
                cls[i] = mp.shape[0] + len(extra)
                extra.append(own[i])
        maps.append(torch.cat([mp, torch.stack(extra)]) if extra else mp)
        targets.append({"class_labels": cls, "boxes": lab["boxes"]})
    return maps, targets


def grounding_loss(
    logits,
    labels,
    device,
    pred_boxes,
    config,
    label_maps,
    text_mask,
    outputs_class=None,
    outputs_coord=None,
    encoder_logits=None,
    encoder_pred_boxes=None,
):
    """``model.loss_function`` for ``GroundingDinoForObjectDetection`` (same call and return as
    transformers' ``GroundingDinoForObjectDetectionLoss``: total loss, loss dict with ``loss_ce`` /
    ``loss_bbox`` / ``loss_giou`` / ``cardinality_error`` plus ``_0``.. (auxiliary decoder layers) and
    ``_enc`` (two-stage encoder) terms, auxiliary outputs). ``logits`` [B, Q, T], ``pred_boxes``
    [B, Q, 4], ``outputs_class`` [L, B, Q, T], ``outputs_coord`` [L, B, Q, 4]; rows per :func:`span_rows`.
    The total uses transformers' weights; the engine trains on ``model.weighted_loss`` of the dict."""
    maps, targets = span_rows(label_maps, labels)
    matcher = GroundingDinoHungarianMatcher(class_cost=config.class_cost, bbox_cost=config.bbox_cost, giou_cost=config.giou_cost)
    criterion = PerImageLoss(matcher=matcher, focal_alpha=config.focal_alpha, losses=["labels", "boxes", "cardinality"]).to(
        device
    )
    outputs: dict[str, Any] = {"logits": logits, "pred_boxes": pred_boxes, "label_maps": maps, "text_mask": text_mask}
    aux = None
    if config.auxiliary_loss:
        aux = [
            {"logits": c, "pred_boxes": b, "label_maps": maps, "text_mask": text_mask}
            for c, b in zip(outputs_class[:-1], outputs_coord[:-1])
        ]
        outputs["auxiliary_outputs"] = aux
    loss_dict = criterion(outputs, targets)
    if config.two_stage:
        enc = {"logits": encoder_logits, "pred_boxes": encoder_pred_boxes, "label_maps": maps, "text_mask": text_mask}
        loss_dict.update({k + "_enc": v for k, v in criterion(enc, targets).items()})
    weight = {"loss_ce": 2.0, "loss_bbox": config.bbox_loss_coefficient, "loss_giou": config.giou_loss_coefficient}
    total = sum(v * weight[b] for k, v in loss_dict.items() for b in weight if k == b or k.startswith(b + "_"))
    return total, loss_dict, aux


def install(model: torch.nn.Module) -> None:
    """Use :func:`grounding_loss` for ``model`` (a ``GroundingDinoForObjectDetection``) only, through
    transformers' ``PreTrainedModel.loss_function`` setter."""
    model.loss_function = grounding_loss
