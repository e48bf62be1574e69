"""Grounding DINO evaluate action: COCO mAP of ``evaluate.checkpoint`` on ``dataset.test_data_sources``.

The caption is every category name of the COCO file in id order (ids from 0); KPIs ``test_mAP``
(AP@[.5:.95]) and ``test_mAP50`` go to ``<results_dir>/evaluate/status.json``; the detections
are written to ``results.json`` (COCO result format). ``dataset.eval_class_ids``, when set,
restricts the categories scored.
"""

from __future__ import annotations

import json
import logging

from taoskills.engine.contract import ActionContext
from taoskills.engine.grounding_dino import common as C
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import metrics
from taoskills.engine.grounding_dino.spec import check, sources

log = logging.getLogger("taoskills.engine.grounding_dino")


def run(ctx: ActionContext) -> dict[str, float]:
    """Evaluate; returns ``{"test_mAP", "test_mAP50"}``."""
    cfg = ctx.cfg
    check(cfg, "evaluate")
    ev = cfg["evaluate"]
    gt, root, names = D.read_coco(sources(cfg["dataset"]["test_data_sources"])[0], "dataset.test_data_sources")
    metrics.check_eval_class_ids(cfg["dataset"]["eval_class_ids"], gt, "dataset.test_data_sources")
    device = C.pick_device((ev["gpu_ids"] or [0])[0])
    tok, model = C.load_for_action(cfg, str(ev["checkpoint"]), "evaluate.checkpoint")
    model.to(device)
    bs = ev["batch_size"] if ev["batch_size"] > 0 else cfg["dataset"]["batch_size"]
    size = (ev["input_width"], ev["input_height"]) if ev["input_width"] else None
    items = [(root / im["file_name"], im["id"]) for im in gt["images"]]
    cat_ids = sorted(int(c["id"]) for c in gt["categories"])
    dets = []
    for batch in C.eval_loader(cfg, tok, items, D.caption_of(names), bs, size):
        preds = C.predict(model, batch, cfg["model"]["num_select"], device)
        dets.extend(C.coco_dets(preds, batch["keys"], cat_ids))
    thr = ev["conf_threshold"]
    dets = [d for d in dets if d["score"] >= thr]
    (ctx.results_dir / "results.json").write_text(json.dumps(dets), encoding="utf-8")
    res = metrics.coco_map(gt, dets, cfg["dataset"]["eval_class_ids"])
    kpi = {"test_mAP": res["mAP"], "test_mAP50": res["mAP50"]}
    msg = f"Evaluated {len(items)} images, {len(names)} categories: test_mAP50 {res['mAP50']:.4f}, test_mAP {res['mAP']:.4f}."
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi=kpi)
    return kpi
