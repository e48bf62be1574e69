"""MAE inference action (finetune checkpoints only): one prediction per image.

Writes in ``<results_dir>/inference``: ``predictions.csv`` (columns ``image, path, class_id,
class_name, confidence``) and ``predictions.json`` (``[{"image", "path", "class_id", "class_name",
"confidence", "probabilities": {class_name: p}}]``), rows in the sorted order of the recursive
listing of ``dataset.test_data_sources``. Class names and ids are the training set's sorted class
folders (stored in the checkpoint). A pretrain checkpoint fails with the MAE skill's error and fix.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.mae import data as D
from taoskills.engine.mae.common import load_model, pick_device
from taoskills.engine.mae.spec import check

log = logging.getLogger("taoskills.engine.mae")


def run(ctx: ActionContext) -> None:
    """Classify every image of ``dataset.test_data_sources`` with ``inference.checkpoint``."""
    cfg = ctx.cfg
    check(cfg, "inference")
    inf = cfg["inference"]
    root = Path(str(cfg["dataset"]["test_data_sources"])).expanduser()
    files = D.list_images(root, field="dataset.test_data_sources")
    D.check_readable(files, field="dataset.test_data_sources")
    device = pick_device(want_gpu=True, gpu_id=(inf["gpu_ids"] or [0])[0], num_gpus=inf["num_gpus"], field="inference.num_gpus")
    loaded = load_model(cfg, str(inf["checkpoint"]), field_name="inference.checkpoint", want="classifier")
    net = loaded.model.to(device)
    names = loaded.classes or [str(i) for i in range(cfg["model"]["num_classes"])]
    bs = inf["batch_size"] if inf["batch_size"] > 0 else cfg["dataset"]["batch_size"]
    loader = torch.utils.data.DataLoader(
        D.ImageSet([(f, -1) for f in files], D.EvalTransform(cfg["dataset"]["augmentation"])), batch_size=bs, shuffle=False
    )
    probs = []
    with torch.no_grad():
        for x, _ in loader:
            probs.append(torch.softmax(net(x.to(device)).float(), dim=-1).cpu())
    p = torch.cat(probs)
    rows = []
    for i, f in enumerate(files):
        k = int(p[i].argmax())
        rows.append(
            {
                "image": str(f.relative_to(root)),
                "path": str(f.resolve()),
                "class_id": k,
                "class_name": names[k],
                "confidence": float(p[i, k]),
                "probabilities": {n: float(p[i, j]) for j, n in enumerate(names)},
            }
        )
    out = ctx.results_dir
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "path", "class_id", "class_name", "confidence"])
        for r in rows:
            w.writerow([r["image"], r["path"], r["class_id"], r["class_name"], f"{r['confidence']:.6f}"])
    (out / "predictions.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    msg = f"Wrote predictions for {len(rows)} images to predictions.csv and predictions.json."
    log.info(msg)
    ctx.status.write("RUNNING", msg)
    return None
