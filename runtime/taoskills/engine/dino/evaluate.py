"""DINO evaluate action: COCO bbox mAP of a checkpoint on ``dataset.test_data_sources`` (faster-coco-eval).

Writes ``<results_dir>/evaluate/detections.json`` (COCO results) and ``metrics.json``; the
SUCCESS status line carries ``test_mAP``, ``test_mAP50``, ``test_mAP75``, ``test_mAP_small/
medium/large`` KPIs (TAO's evaluate KPI names).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.dino import common as C
from taoskills.engine.dino import data as D
from taoskills.engine.dino.model import postprocess
from taoskills.engine.dino.spec import check

log = logging.getLogger("taoskills.engine.dino")


def predict(model, loader, device, num_select: int, category_of: dict[int, int], conf: float) -> list[dict[str, Any]]:
    """COCO detections of ``model`` over ``loader`` (batches from :class:`data.Collate`)."""
    dets: list[dict[str, Any]] = []
    with torch.no_grad():
        for images, mask, targets in loader:
            out = model(images.to(device), mask.to(device))
            sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
            preds = postprocess(out["pred_logits"].float(), out["pred_boxes"].float(), sizes, num_select)
            dets.extend(C.to_detections([{k: v.cpu() for k, v in p.items()} for p in preds], targets, category_of, conf))
    return dets


def run(ctx: ActionContext) -> dict[str, float]:
    """Evaluate ``evaluate.checkpoint`` (or the TensorRT ``evaluate.trt_engine``); returns the ``test_*`` KPIs."""
    cfg = ctx.cfg
    check(cfg, "evaluate")
    ev, ds = cfg["evaluate"], cfg["dataset"]
    gt = D.load_coco([ds["test_data_sources"]], "dataset.test_data_sources", contiguous=ds["contiguous_labels"])
    D.check_num_classes(gt, ds["num_classes"], "dataset.test_data_sources")
    wh = (ev["input_width"], ev["input_height"]) if ev["input_width"] and ev["input_height"] else None
    collate = D.collate_for(cfg)
    if ev["trt_engine"]:  # TensorRT evaluate: images at the engine's input size
        model, wh = C.trt_predictor(ev["trt_engine"], "evaluate")
        device, collate = torch.device("cuda"), D.Collate()
    else:
        device = C.pick_device(ev["num_gpus"], (ev["gpu_ids"] or [0])[0], "evaluate.num_gpus")
        model = C.load_model(cfg, ev["checkpoint"], field="evaluate.checkpoint").to(device)
    bs = ds["batch_size"] if ev["batch_size"] == -1 else ev["batch_size"]
    loader = torch.utils.data.DataLoader(
        D.CocoDetection(gt, ds["augmentation"], train=False, fixed_wh=wh),
        batch_size=bs,
        num_workers=ds["workers"],
        collate_fn=collate,
    )
    dets = predict(model, loader, device, cfg["model"]["num_select"], gt["category_of"], ev["conf_threshold"])
    stats = C.coco_map(gt, dets, ds["eval_class_ids"])
    kpis = {f"test_{k}": v for k, v in stats.items()}
    (ctx.results_dir / "detections.json").write_text(json.dumps(dets), encoding="utf-8")
    (ctx.results_dir / "metrics.json").write_text(json.dumps(kpis, indent=2), encoding="utf-8")
    log.info(
        "Test mAP: %.4f  Test mAP50: %.4f (%d images, %d detections)", stats["mAP"], stats["mAP50"], len(gt["images"]), len(dets)
    )
    ctx.status.write("RUNNING", "Evaluation metrics", kpi=kpis)
    return kpis
