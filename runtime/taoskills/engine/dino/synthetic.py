"""Synthetic COCO detection scenes for fast learning tests and benchmarks (PIL + numpy, torch-free).

``write_shapes_coco(root, n_images, size)`` draws 1-3 objects per image — red rectangles
(category 1), green ellipses (2), blue triangles (3) — on a noise background and writes
``root/images/*.png`` plus ``root/annotations.json`` (COCO: boxes ``[x, y, w, h]`` in pixels,
category ids 1..3, so ``dataset.num_classes`` = 4 as TAO counts ``max(category_id) + 1``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}, {"id": 3, "name": "triangle"}]
_COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (50, 80, 230)}


def write_shapes_coco(root: str | Path, n_images: int = 32, size: int = 128, seed: int = 0) -> dict[str, str]:
    """Write the scenes; returns ``{"image_dir", "json_file"}`` (a TAO data source)."""
    root = Path(root)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_images):
        bg = nrng.integers(60, 160, size=(size, size, 3), dtype=np.uint8)
        img = Image.fromarray(bg)
        draw = ImageDraw.Draw(img)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(rng.randint(1, 3)):
            for _try in range(20):
                w, h = rng.randint(size // 6, size // 3), rng.randint(size // 6, size // 3)
                x, y = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
                if all(x + w < a or a + c < x or y + h < b or b + d < y for a, b, c, d in placed):
                    break
            else:
                continue
            placed.append((x, y, w, h))
            cat = rng.randint(1, 3)
            colour = _COLOURS[cat]
            if cat == 1:
                draw.rectangle([x, y, x + w, y + h], fill=colour)
            elif cat == 2:
                draw.ellipse([x, y, x + w, y + h], fill=colour)
            else:
                draw.polygon([(x + w / 2, y), (x, y + h), (x + w, y + h)], fill=colour)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [float(x), float(y), float(w + 1), float(h + 1)],
                    "area": float((w + 1) * (h + 1)),
                    "iscrowd": 0,
                }
            )
        name = f"scene_{i:04d}.png"
        img.save(img_dir / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
    doc = {"images": images, "annotations": anns, "categories": CATEGORIES}
    json_file = root / "annotations.json"
    json_file.write_text(json.dumps(doc), encoding="utf-8")
    return {"image_dir": str(img_dir), "json_file": str(json_file)}
