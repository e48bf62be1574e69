"""DINO inference action: detections on ``dataset.infer_data_sources.image_dir`` drawn and listed.

Writes ``<results_dir>/inference/images_annotated/<name>`` (boxes with class name and score,
``inference.outline_width`` px, colours from ``inference.color_map`` {class name: colour}) and
``detections.json`` — ``[{file, width, height, detections: [{label, class_name, score, bbox
[x0, y0, x1, y1] px}]}]`` — keeping scores ≥ ``inference.conf_threshold``. Class names come
from ``infer_data_sources.classmap`` (one name per line; line i names label i, TAO's
label_map.txt) or ``class_<label>``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from taoskills.engine.contract import ActionContext
from taoskills.engine.dino import common as C
from taoskills.engine.dino import data as D
from taoskills.engine.dino.model import postprocess
from taoskills.engine.dino.spec import check, unset
from taoskills.errors import SpecError

log = logging.getLogger("taoskills.engine.dino")
_PALETTE = ["red", "lime", "blue", "yellow", "cyan", "magenta", "orange", "white"]


def class_names(classmap: Any, num_classes: int) -> list[str]:
    """Names per label from a label_map.txt (one per line) or ``class_<i>``. SpecError when unreadable."""
    if unset(classmap):
        return [f"class_{i}" for i in range(num_classes)]
    p = Path(str(classmap)).expanduser()
    try:
        names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise SpecError(
            f"dataset.infer_data_sources.classmap={classmap} cannot be read ({exc}).",
            field="dataset.infer_data_sources.classmap",
            fix="point it at a label_map.txt with one class name per line, or remove it.",
        ) from exc
    return names + [f"class_{i}" for i in range(len(names), num_classes)]


def _prepare(path: Path, aug: dict[str, Any], wh: tuple[int, int] | None) -> tuple[torch.Tensor, Image.Image]:
    img = Image.open(path).convert("RGB")
    if wh:
        resized = img.resize(wh, Image.BILINEAR)
    else:
        resized, _ = D.resize(img, np.zeros((0, 4), np.float32), aug["test_random_resize"], aug["random_resize_max_size"])
    arr = (np.asarray(resized, dtype=np.float32) / 255.0 - np.array(aug["input_mean"], np.float32)) / np.array(
        aug["input_std"], np.float32
    )
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()), img


def run(ctx: ActionContext) -> dict[str, float]:
    """Run inference with ``inference.checkpoint`` (or the TensorRT ``inference.trt_engine``); returns ``{"num_images", "num_detections"}``."""
    cfg = ctx.cfg
    check(cfg, "inference")
    inf, ds = cfg["inference"], cfg["dataset"]
    src = ds["infer_data_sources"]
    files = D.list_images(src["image_dir"], "dataset.infer_data_sources.image_dir")
    names = class_names(src.get("classmap"), ds["num_classes"])
    colours = dict(inf["color_map"] or {})
    wh = (inf["input_width"], inf["input_height"]) if inf["input_width"] and inf["input_height"] else None
    collate = D.collate_for(cfg)
    if inf["trt_engine"]:  # TensorRT inference: images at the engine's input size
        model, wh = C.trt_predictor(inf["trt_engine"], "inference")
        device, collate = torch.device("cuda"), D.Collate()
    else:
        device = C.pick_device(inf["num_gpus"], (inf["gpu_ids"] or [0])[0], "inference.num_gpus")
        model = C.load_model(cfg, inf["checkpoint"], field="inference.checkpoint").to(device)
    bs = ds["batch_size"] if inf["batch_size"] == -1 else inf["batch_size"]
    out_dir = ctx.results_dir / "images_annotated"
    out_dir.mkdir(parents=True, exist_ok=True)
    records, total = [], 0
    for start in range(0, len(files), bs):
        chunk = files[start : start + bs]
        items = [_prepare(f, ds["augmentation"], wh) for f in chunk]
        images, mask, _ = collate([(x, {}) for x, _ in items])
        with torch.no_grad():
            out = model(images.to(device), mask.to(device))
        sizes = torch.tensor([[im.height, im.width] for _, im in items], device=device)
        preds = postprocess(out["pred_logits"].float(), out["pred_boxes"].float(), sizes, cfg["model"]["num_select"])
        for f, (_, img), p in zip(chunk, items, preds):
            draw = ImageDraw.Draw(img)
            dets = []
            for s, lab, b in zip(p["scores"].tolist(), p["labels"].tolist(), p["boxes"].tolist()):
                if s < inf["conf_threshold"]:
                    continue
                name = names[lab] if lab < len(names) else f"class_{lab}"
                colour = colours.get(name, _PALETTE[lab % len(_PALETTE)])
                draw.rectangle(b, outline=colour, width=inf["outline_width"])
                draw.text((b[0] + 2, b[1] + 1), f"{name} {s:.2f}", fill=colour)
                dets.append({"label": lab, "class_name": name, "score": s, "bbox": b})
            img.save(out_dir / f.name)
            records.append({"file": str(f), "width": img.width, "height": img.height, "detections": dets})
            total += len(dets)
    (ctx.results_dir / "detections.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    log.info("annotated %d images (%d detections >= %.2f) in %s", len(files), total, inf["conf_threshold"], out_dir)
    return {"num_images": float(len(files)), "num_detections": float(total)}
