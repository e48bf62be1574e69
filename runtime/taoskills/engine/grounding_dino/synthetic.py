"""Synthetic captioned shape scenes for fast Grounding DINO overfit tests and demos.

Each image is a noisy grey background with 1-``max_objects`` solid shapes; each class is a
two-word phrase ``"<colour> <shape>"`` (default ``red circle``, ``green square``,
``blue triangle``), so the captions are built from words a small WordPiece vocabulary knows
and a prompt such as ``"red"`` (never a label) can be tested for open-vocabulary behaviour.

:func:`write_shapes` writes the skill's layout: ``images/``, ``annotations_odvg.jsonl`` (ODVG:
``detection.instances`` with ``[x1, y1, x2, y2]`` and 0-based ``label``),
``annotations_odvg_labelmap.json`` (``{"0": "red circle", ...}``) and ``annotations.json``
(COCO, category ids from 0, ``bbox`` ``[x, y, w, h]``).

Shapes: ``circle``, ``square``, ``triangle``, ``ring`` (a thick circle outline) and ``bar`` (a
wide rectangle, height :data:`BAR_ASPECT` x width); colours: :data:`COLOURS`.

``spans`` (``"words"`` / ``"pairs"`` / ``"shapes"``) writes attribute-level ODVG grounding rows
instead (TAO Grounding DINO's ODVG ``grounding`` format, :func:`span_caption`): every region carries
``tokens_positive`` = the spans of every occurrence of its colour word and of its shape word in the
caption (``"shapes"``: shape words only, the colour is drawn but never named), so a red circle is
positive for "red" and for "circle" wherever they appear (in ``"pairs"`` also for the "red" of
``red triangle`` and the "circle" of ``blue circle``) and is trained as no two-word phrase. With :func:`pairs` (colours x shapes minus held-out pairs) colour
and shape are decorrelated and a held-out pair such as "red square" is never drawn, never in a
caption, and made of known words only.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 235), "yellow": (230, 210, 40), "black": (30, 30, 30)}
CLASSES = ("red circle", "green square", "blue triangle")
#: Height / width of a "bar" (a wide rectangle: told from the other shapes by its box alone).
BAR_ASPECT = 0.4


def pairs(
    colours: tuple[str, ...] = ("red", "green", "blue"),
    shapes: tuple[str, ...] = ("circle", "square", "triangle"),
    *,
    without: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Every ``"<colour> <shape>"`` class except those in ``without``, colour-major order."""
    return tuple(f"{c} {s}" for c in colours for s in shapes if f"{c} {s}" not in without)


def span_caption(classes: tuple[str, ...], spans: str = "words") -> tuple[str, dict[str, list[list[int]]]]:
    """(caption, character spans [start, end) of every occurrence of each word in it).

    ``spans="words"``: the colour words then the shape words of ``classes``, sorted, one per phrase
    (``"blue . green . red . circle . square . triangle ."``); ``"pairs"``: the class phrases
    themselves (``"red circle . red triangle . ..."``), so each word also appears inside two-word phrases;
    ``"shapes"``: the shape words only (the colour is drawn but never named, e.g. black shapes).
    """
    if spans == "words":
        parts = [*sorted({c.split(" ", 1)[0] for c in classes}), *sorted({c.split(" ", 1)[1] for c in classes})]
    elif spans == "pairs":
        parts = list(classes)
    elif spans == "shapes":
        parts = sorted({c.split(" ", 1)[1] for c in classes})
    else:
        raise ValueError(f"spans={spans!r}: use words, pairs or shapes")
    where: dict[str, list[list[int]]] = {}
    start = 0
    for part in parts:
        for m in re.finditer(r"\S+", part):
            where.setdefault(m.group(), []).append([start + m.start(), start + m.end()])
        start += len(part) + len(" . ")
    return " . ".join(parts) + " .", where


def _draw(draw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":  # a circle outline a quarter of the width thick: the centre shows the background
        draw.ellipse(box, outline=fill, width=max(2, (x2 - x1) // 4))
    elif shape in ("square", "bar"):
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def write_shapes(
    root: str | Path,
    n: int = 32,
    size: int = 64,
    *,
    classes: tuple[str, ...] = CLASSES,
    max_objects: int = 2,
    seed: int = 0,
    spans: str | None = None,
    scale: tuple[float, float] = (0.3, 0.55),
) -> dict[str, Path]:
    """Write ``n`` ``size`` x ``size`` PNG scenes with ODVG + COCO annotations under ``root``.

    Objects are ``scale`` (fraction of ``size``, default 30-55 %) wide, placed at random (IoU with
    the others < 0.1 when 20 tries allow it).
    ``spans`` ("words" / "pairs" / "shapes"): ODVG grounding rows with colour / shape
    ``tokens_positive`` (module docstring) instead of detection rows. Boxes are ``[x1, y1, x2, y2]``
    (ODVG) / ``[x, y, w, h]`` (COCO) pixels. Same arguments -> same files. Returns ``{"images", "odvg", "label_map",
    "coco"}`` -> paths.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    root = Path(root)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    images: list[dict] = []
    anns: list[dict] = []
    odvg: list[dict] = []
    for i in range(n):
        bg = nrng.normal(128, 12, (size, size, 3)).clip(0, 255).astype("uint8")
        img = Image.fromarray(bg)
        draw = ImageDraw.Draw(img)
        instances: list[dict] = []
        for _ in range(rng.randint(1, max_objects)):
            label = rng.randrange(len(classes))
            colour, shape = classes[label].split(" ", 1)
            for _try in range(20):
                w = rng.randint(int(size * scale[0]), int(size * scale[1]))
                h = max(3, round(w * BAR_ASPECT)) if shape == "bar" else w
                x, y = rng.randint(0, size - w), rng.randint(0, size - h)
                box = (x, y, x + w - 1, y + h - 1)
                if all(_iou(box, tuple(o["bbox"])) < 0.1 for o in instances):
                    break
            _draw(draw, shape, box, COLOURS[colour])
            instances.append({"bbox": [x, y, x + w, y + h], "label": label, "category": classes[label]})
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": label,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        name = f"shapes_{i:04d}.png"
        img.save(img_dir / name)
        images.append({"id": i, "file_name": name, "width": size, "height": size})
        row = {"filename": name, "height": size, "width": size}
        if spans:
            caption, where = span_caption(classes, spans)
            regions = [
                {
                    "bbox": o["bbox"],
                    "phrase": o["category"],
                    "tokens_positive": [sp for w in o["category"].split() if w in where for sp in where[w]],
                }
                for o in instances
            ]
            row["grounding"] = {"caption": caption, "regions": regions}
        else:
            row["detection"] = {"instances": instances}
        odvg.append(row)
    out = {
        "images": img_dir,
        "odvg": root / "annotations_odvg.jsonl",
        "label_map": root / "annotations_odvg_labelmap.json",
        "coco": root / "annotations.json",
    }
    out["odvg"].write_text("".join(json.dumps(r) + "\n" for r in odvg), encoding="utf-8")
    out["label_map"].write_text(json.dumps({str(i): c for i, c in enumerate(classes)}), encoding="utf-8")
    cats = [{"id": i, "name": c, "supercategory": "shape"} for i, c in enumerate(classes)]
    out["coco"].write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    return out


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def vocabulary_texts(classes: tuple[str, ...] = CLASSES) -> list[str]:
    """Texts to train a small WordPiece vocabulary on: the class phrases, their words and a
    caption of all of them (plus the colour and shape words of every class)."""
    words = sorted({w for c in classes for w in c.split()} | set(COLOURS))
    return [*classes, *words, " . ".join(classes) + " ."]
