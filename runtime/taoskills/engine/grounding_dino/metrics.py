"""COCO box mAP with faster-coco-eval (results identical to pycocotools, ~4x faster)."""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger("taoskills.engine.grounding_dino")


def check_eval_class_ids(ids: list[int] | None, gt: dict[str, Any], field: str) -> None:
    """``dataset.eval_class_ids`` must name category ids of the COCO file ``gt`` (Grounding DINO:
    ids from 0, so TAO Core 7.3.0's display default ``[1]`` scores the *second* category only).
    SpecError naming the key, the ids present and the fix; ``None``/``[]`` (every category) passes."""
    from taoskills.errors import SpecError

    if not ids:
        return
    have = sorted(int(c["id"]) for c in gt.get("categories", []))
    bad = [i for i in ids if int(i) not in have]
    if bad:
        raise SpecError(
            f"dataset.eval_class_ids={list(ids)} names category id(s) {bad} that {field} does not have "
            f"(its ids are {have[:12]}; Grounding DINO numbers categories from 0).",
            field="dataset.eval_class_ids",
            fix=f"use ids from {have[:12]} (0-based, as in the validation annotations), or null to score every category.",
        )


def coco_map(gt: dict[str, Any], dets: list[dict[str, Any]], cat_ids: list[int] | None = None) -> dict[str, float]:
    """``{"mAP": AP@[.5:.95], "mAP50": AP@.5}`` of ``dets`` against the COCO dict ``gt``.

    ``dets``: ``[{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}]``.
    ``cat_ids`` restricts the categories (``dataset.eval_class_ids``). No detections -> 0.0.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if not dets or not gt.get("annotations"):
        return {"mAP": 0.0, "mAP50": 0.0}
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=log.debug)
    if cat_ids:
        ev.params.catIds = list(cat_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = [max(float(s), 0.0) for s in ev.stats[:2]]
    return {"mAP": stats[0], "mAP50": stats[1]}
