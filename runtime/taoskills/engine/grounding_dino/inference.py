"""Grounding DINO inference action: text-prompted detection with ``dataset.infer_data_sources.captions``.

The captions are the vocabulary (position = label): they are joined as ``"a . b . c ."`` and every
image of ``dataset.infer_data_sources.image_dir`` (a list of folders) is scored against them.
Detections with score >= ``inference.conf_threshold`` are written to ``<results_dir>/inference``:

* ``images_annotated/<stem>.jpg`` - boxes (``inference.outline_width``, colours from
  ``inference.color_map`` {caption: colour} or a fixed palette) labelled ``caption score``;
* ``labels/<stem>.json`` - ``[{"caption", "label", "score", "bbox": [x1, y1, x2, y2]}]`` (pixels);
* ``detections.json`` - ``{"captions": [...], "images": [{"image", "path", "detections": [...]}]}``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PIL import Image, ImageDraw

from taoskills.engine.contract import ActionContext
from taoskills.engine.grounding_dino import common as C
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino.spec import check

log = logging.getLogger("taoskills.engine.grounding_dino")
PALETTE = ("red", "lime", "blue", "yellow", "cyan", "magenta", "orange", "white")


def captions_of(cfg: dict) -> list[str]:
    """The non-empty captions of ``dataset.infer_data_sources.captions`` (a string is one caption)."""
    caps = cfg["dataset"]["infer_data_sources"].get("captions") or []
    caps = [caps] if isinstance(caps, str) else caps
    return [str(c).strip().rstrip(".").strip() for c in caps if str(c).strip()]


def run(ctx: ActionContext) -> dict[str, float] | None:
    """Detect the captions in every image; returns None (no KPI)."""
    cfg = ctx.cfg
    check(cfg, "inference")
    inf = cfg["inference"]
    captions = captions_of(cfg)
    dirs = cfg["dataset"]["infer_data_sources"]["image_dir"]
    dirs = [dirs] if isinstance(dirs, str) else [d for d in dirs if d not in (None, "")]
    files = D.list_images(dirs, "dataset.infer_data_sources.image_dir")
    device = C.pick_device((inf["gpu_ids"] or [0])[0])
    tok, model = C.load_for_action(cfg, str(inf["checkpoint"]), "inference.checkpoint")
    model.to(device)
    bs = inf["batch_size"] if inf["batch_size"] > 0 else cfg["dataset"]["batch_size"]
    size = (inf["input_width"], inf["input_height"]) if inf["input_width"] else None
    colours = dict(inf["color_map"] or {})
    out_img, out_lab = ctx.results_dir / "images_annotated", ctx.results_dir / "labels"
    out_img.mkdir(exist_ok=True)
    out_lab.mkdir(exist_ok=True)
    report = []
    n_det = 0
    items = [(f, i) for i, f in enumerate(files)]
    for batch in C.eval_loader(cfg, tok, items, D.caption_of(captions), bs, size):
        preds = C.predict(model, batch, cfg["model"]["num_select"], device)
        for p, i in zip(preds, batch["keys"]):
            path: Path = files[i]
            dets = [
                {"caption": captions[lab], "label": lab, "score": round(s, 4), "bbox": [round(v, 2) for v in b]}
                for s, lab, b in zip(p["scores"].tolist(), p["labels"].tolist(), p["boxes"].tolist())
                if s >= inf["conf_threshold"]
            ]
            n_det += len(dets)
            with Image.open(path) as im:
                img = im.convert("RGB")
            draw = ImageDraw.Draw(img)
            for d in dets:
                col = colours.get(d["caption"], PALETTE[d["label"] % len(PALETTE)])
                draw.rectangle(d["bbox"], outline=col, width=inf["outline_width"])
                draw.text((d["bbox"][0] + 2, d["bbox"][1] + 1), f"{d['caption']} {d['score']:.2f}", fill=col)
            img.save(out_img / f"{path.stem}.jpg", quality=90)
            (out_lab / f"{path.stem}.json").write_text(json.dumps(dets, indent=1), encoding="utf-8")
            report.append({"image": path.name, "path": str(path.resolve()), "detections": dets})
    (ctx.results_dir / "detections.json").write_text(
        json.dumps({"captions": captions, "images": report}, indent=1), encoding="utf-8"
    )
    msg = f"Ran inference on {len(files)} images for captions {captions}: {n_det} detections >= {inf['conf_threshold']}."
    log.info(msg)
    ctx.status.write("RUNNING", msg)
    return None
