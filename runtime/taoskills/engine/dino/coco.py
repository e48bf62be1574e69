"""COCO data sources for DINO, torch-free (the runtime's preflight can use it before launch).

``load_coco`` merges ``{image_dir, json_file}`` sources into one ground truth and checks that
every listed image exists; ``check_num_classes`` applies TAO's ``num_classes >= max(category_id)
+ 1`` rule (``category_id`` is the class index unless ``dataset.contiguous_labels``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taoskills.errors import PreflightError


def load_coco(sources: list[dict[str, str]], field: str, *, contiguous: bool = False) -> dict[str, Any]:
    """Merge COCO files into one ground-truth dict with fresh image/annotation ids.

    Returns ``{"images": [...], "annotations": [...], "categories": [...], "paths": {image_id: path},
    "label_of": {category_id: label}, "category_of": {label: category_id}}``. Raises
    PreflightError naming ``field`` for unreadable JSON or an image file that does not exist.
    """
    images, anns, cats, paths = [], [], {}, {}
    for si, src in enumerate(sources):
        key = f"{field}[{si}]" if len(sources) > 1 or field.endswith("sources") else field
        jf, root = Path(str(src["json_file"])).expanduser(), Path(str(src["image_dir"])).expanduser()
        try:
            doc = json.loads(jf.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PreflightError(
                f"{key}.json_file={jf} cannot be read as COCO JSON ({exc}).",
                field=f"{key}.json_file",
                fix="point json_file at an existing COCO annotations file (images, annotations, categories).",
            ) from exc
        if not root.is_dir():
            raise PreflightError(
                f"{key}.image_dir={root} is not a directory (FileNotFoundError in TAO).",
                field=f"{key}.image_dir",
                fix="extract the images (e.g. images.tar.gz -> images/) and point image_dir at that folder.",
            )
        remap = {}
        for img in doc.get("images", []):
            p = root / img["file_name"]
            if not p.is_file():
                raise PreflightError(
                    f"{key}: image {img['file_name']} listed in {jf.name} is missing under {root} (FileNotFoundError in TAO).",
                    field=f"{key}.image_dir",
                    fix="make image_dir the folder the file_name entries are relative to, or remove the missing images.",
                )
            new_id = len(images) + 1
            remap[img["id"]] = new_id
            images.append({**img, "id": new_id})
            paths[new_id] = str(p)
        for a in doc.get("annotations", []):
            if a.get("image_id") in remap:
                anns.append({**a, "id": len(anns) + 1, "image_id": remap[a["image_id"]]})
        for c in doc.get("categories", []):
            cats.setdefault(c["id"], c)
    ids = sorted(cats) or sorted({a["category_id"] for a in anns})
    label_of = {c: (i if contiguous else c) for i, c in enumerate(ids)}
    return {
        "images": images,
        "annotations": anns,
        "categories": [cats.get(c, {"id": c, "name": str(c)}) for c in ids],
        "paths": paths,
        "label_of": label_of,
        "category_of": {v: k for k, v in label_of.items()},
    }


def check_num_classes(gt: dict[str, Any], num_classes: int, field: str) -> None:
    """PreflightError when a label does not fit ``dataset.num_classes`` (the CUDA device-side assert in TAO)."""
    labels = [gt["label_of"].get(a["category_id"], -1) for a in gt["annotations"]]
    top = max(labels, default=-1)
    if top >= num_classes or min(labels, default=0) < 0:
        raise PreflightError(
            f"{field} has label {top} but dataset.num_classes={num_classes}; it must be >= max(category_id) + 1 "
            "(too low gives 'CUDA error: device-side assert triggered' in TAO).",
            field="dataset.num_classes",
            fix=f"set dataset.num_classes to at least {top + 1}.",
        )
