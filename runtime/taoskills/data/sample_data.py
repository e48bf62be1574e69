"""Real sample photographs for demos and tests, taken from the scikit-image wheel.

The photos ship inside ``skimage/data`` (scikit-image is in the ``engine`` extra). Only
photographs whose licence allows redistribution are used (public domain or CC0, per the
docstrings of the matching ``skimage.data`` functions, scikit-image 0.26); drawn or synthetic
images (logo, horse, text, chessboard, colorwheel, page) are skipped. The files are read with
Pillow straight from the package folder, so ``skimage`` itself is not imported.

``write_sample_images`` writes ``n`` JPEGs: deterministic crops (varied position and scale,
optional mirror) of those photos, resized to ``size``×``size``.
"""

from __future__ import annotations

import importlib.util
import random
import tarfile
from pathlib import Path

#: file in skimage/data -> (title, credit and licence). Source: skimage.data docstrings.
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("Astronaut Eileen Collins", "NASA; public domain"),
    "chelsea.png": ("Chelsea the cat", "Stefan van der Walt; CC0"),
    "coffee.png": ("Coffee cup", "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    "rocket.jpg": ("Launch of DSCOVR on Falcon 9", "SpaceX; public domain"),
    "hubble_deep_field.jpg": ("Hubble eXtreme Deep Field", "NASA; public domain"),
    "retina.jpg": ("Fundus photograph of a human retina", "Mikael Häggström; CC0 1.0"),
    "camera.png": ("Cameraman (grey)", "Lav Varshney; CC0"),
    "coins.png": ("Greek coins from Pompeii (grey)", "Brooklyn Museum; no known copyright restrictions"),
    "clock_motion.png": ("Motion-blurred wall clock (grey)", "Stefan van der Walt; public domain"),
    "brick.png": ("Brick wall (grey)", "CC0Textures; CC0"),
    "grass.png": ("Grass (grey)", "linolafett via DeviantArt; CC0"),
    "gravel.png": ("Gravel (grey)", "CC0Textures; CC0"),
}

SAMPLE_ATTRIBUTION = (
    "Sample photographs from the scikit-image data folder (scikit-image, BSD-3-Clause; image licences "
    "as stated by scikit-image):\n" + "\n".join(f"- {name}: {title} — {credit}" for name, (title, credit) in PHOTOS.items())
)


def skimage_data_dir() -> Path:
    """Folder of scikit-image's bundled data files; raises ImportError with a fix if absent."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("scikit-image is not installed; pip install 'tao-skills[engine]' (or scikit-image).")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def available_photos() -> list[Path]:
    """Paths of the licensed photos that exist in this scikit-image install (sorted as PHOTOS)."""
    base = skimage_data_dir()
    return [base / name for name in PHOTOS if (base / name).is_file()]


def write_sample_images(dest: Path, n: int = 32, size: int = 160) -> list[Path]:
    """Write ``n`` RGB JPEGs of ``size``×``size`` px into ``dest``; return their paths (sorted).

    Image i comes from photo ``i % len(photos)``: round 0 is the centred largest square, later
    rounds are seeded random square crops (40–100 % of the short side), mirrored on odd rounds.
    Same arguments -> same files. Names: ``<photo>_<i:03d>.jpg``.
    """
    from PIL import Image, ImageOps

    if n < 1 or size < 8:
        raise ValueError("n must be >= 1 and size >= 8")
    photos = available_photos()
    if not photos:
        raise FileNotFoundError(f"none of {list(PHOTOS)} found in {skimage_data_dir()}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261121)
    out = []
    for i in range(n):
        src = photos[i % len(photos)]
        rnd = i // len(photos)
        with Image.open(src) as im:
            img = im.convert("RGB")
        w, h = img.size
        if rnd == 0:
            side = min(w, h)
            x, y = (w - side) // 2, (h - side) // 2
        else:
            side = max(8, int(min(w, h) * rng.uniform(0.4, 1.0)))
            x, y = rng.randint(0, w - side), rng.randint(0, h - side)
        crop = img.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + side, y + side))
        if rnd % 2 == 1:
            crop = ImageOps.mirror(crop)
        path = dest / f"{src.stem}_{i:03d}.jpg"
        crop.save(path, "JPEG", quality=90)
        out.append(path)
    return sorted(out)


def write_sample_archive(dest_dir: Path, name: str = "images_train.tar.gz", n: int = 32, size: int = 160) -> Path:
    """Write ``n`` sample JPEGs into a gzip tarball ``dest_dir/name`` (members at the top level).

    The archive has the shape TAO data sources use (``images_train.tar.gz``, ``images_test.tar.gz``;
    docs/tao-contract.md §3.7); it also holds ``ATTRIBUTION.txt``. Returns the archive path.
    """
    import tempfile

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    archive = dest_dir / name
    with tempfile.TemporaryDirectory() as tmp:
        files = write_sample_images(Path(tmp), n=n, size=size)
        note = Path(tmp) / "ATTRIBUTION.txt"
        note.write_text(SAMPLE_ATTRIBUTION + "\n", encoding="utf-8")
        with tarfile.open(archive, "w:gz") as tar:
            for f in [*files, note]:
                tar.add(f, arcname=f.name)
    return archive


#: Object classes drawn by :func:`write_sample_detection`: name -> (RGB colour, shape).
DETECTION_CLASSES: dict[str, tuple[tuple[int, int, int], str]] = {
    "red_box": ((220, 30, 30), "rectangle"),
    "green_disc": ((30, 200, 60), "ellipse"),
    "blue_diamond": ((40, 70, 230), "diamond"),
}


def write_sample_detection(
    root: Path, n: int = 8, size: int = 128, *, first_category_id: int = 1, image_folder: str = "images"
) -> dict[str, Path]:
    """Write a small object-detection data source in the skills' layout under ``root``.

    ``root/<image_folder>/`` holds ``n`` JPEG photo crops (:func:`write_sample_images`) with 1-3
    solid shapes drawn on each (classes :data:`DETECTION_CLASSES`, seeded, deterministic);
    ``annotations.json`` is COCO (category ids ``first_category_id``... in class order: DINO
    uses 1-based ids, Grounding DINO validation 0-based; ``bbox`` ``[x, y, w, h]`` in pixels);
    ``annotations_odvg.jsonl`` is ODVG (one record per image, ``detection.instances`` with
    ``[x1, y1, x2, y2]`` boxes and 0-based ``label``) and ``annotations_odvg_labelmap.json``
    its label map ``{"0": "red_box", ...}`` (file names as in the DINO and Grounding DINO
    skill_info data sources). Returns ``{"images", "coco", "odvg", "label_map"}`` -> paths.
    """
    import json

    from PIL import Image, ImageDraw

    root = Path(root)
    img_dir = root / image_folder
    files = write_sample_images(img_dir, n=n, size=size)
    rng = random.Random(7)
    names = list(DETECTION_CLASSES)
    images: list[dict] = []
    annotations: list[dict] = []
    odvg: list[dict] = []
    for image_id, path in enumerate(files, 1):
        with Image.open(path) as im:
            img = im.convert("RGB")
        draw = ImageDraw.Draw(img)
        instances = []
        for _ in range(rng.randint(1, 3)):
            label = rng.randrange(len(names))
            colour, shape = DETECTION_CLASSES[names[label]]
            w, h = rng.randint(size // 6, size // 3), rng.randint(size // 6, size // 3)
            x, y = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
            box = (x, y, x + w, y + h)
            if shape == "rectangle":
                draw.rectangle(box, fill=colour)
            elif shape == "ellipse":
                draw.ellipse(box, fill=colour)
            else:
                draw.polygon([(x + w / 2, y), (x + w, y + h / 2), (x + w / 2, y + h), (x, y + h / 2)], fill=colour)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": first_category_id + label,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            instances.append({"bbox": [x, y, x + w, y + h], "label": label, "category": names[label]})
        img.save(path, "JPEG", quality=90)
        images.append({"id": image_id, "file_name": path.name, "width": size, "height": size})
        odvg.append({"filename": path.name, "height": size, "width": size, "detection": {"instances": instances}})
    categories = [{"id": first_category_id + i, "name": name, "supercategory": "shape"} for i, name in enumerate(names)]
    coco = root / "annotations.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    jsonl = root / "annotations_odvg.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in odvg))
    label_map = root / "annotations_odvg_labelmap.json"
    label_map.write_text(json.dumps({str(i): name for i, name in enumerate(names)}))
    return {"images": img_dir, "coco": coco, "odvg": jsonl, "label_map": label_map}
