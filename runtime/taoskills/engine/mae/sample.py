"""A small real classification set for the MAE demo and tests, cut from photographs in the
scikit-image wheel (the licensed photos listed in :mod:`taoskills.data.sample_data`).

Each class is one photograph; its images are seeded random crops (30–80 % of the short side,
any position, mirrored half of the time, slight brightness jitter) resized to ``size`` px. Train,
val and test crops use different seeds, so the held-out images are new crops of the same scenes —
a task a small network learns in seconds, which makes "accuracy beats chance" a real check.

Layout (what TAO MAE data sources point at, extracted)::

    <dest>/images_train/<class>/<class>_NNN.jpg
    <dest>/images_val/<class>/<class>_NNN.jpg
    <dest>/images_test/<class>_NNN.jpg        (flat: inference input)
    <dest>/ATTRIBUTION.txt
"""

from __future__ import annotations

import random
from pathlib import Path

from taoskills.data.sample_data import PHOTOS, SAMPLE_ATTRIBUTION, skimage_data_dir

#: class name -> photo file in skimage/data (colour photos with distinct content).
CLASSES = {
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "astronaut": "astronaut.png",
    "retina": "retina.jpg",
    "galaxies": "hubble_deep_field.jpg",
}
SPLITS = {"images_train": 1, "images_val": 2, "images_test": 3}


def _crops(photo: Path, n: int, size: int, seed: int):
    from PIL import Image, ImageEnhance, ImageOps

    rng = random.Random(seed)
    with Image.open(photo) as im:
        img = im.convert("RGB")
    w, h = img.size
    for _ in range(n):
        side = int(min(w, h) * rng.uniform(0.3, 0.8))
        x, y = rng.randint(0, w - side), rng.randint(0, h - side)
        crop = img.resize((size, size), Image.BICUBIC, box=(x, y, x + side, y + side))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        yield ImageEnhance.Brightness(crop).enhance(rng.uniform(0.85, 1.15))


def write_classification_set(
    dest: str | Path, *, num_classes: int = 4, train: int = 16, val: int = 8, test: int = 4, size: int = 64
) -> dict[str, Path | list[str]]:
    """Write the sample set under ``dest``; returns ``{"train", "val", "test"}`` folders and ``"classes"``.

    ``num_classes`` (1–6) photos become classes (sorted names = TAO class ids); ``train``/``val``/``test``
    images per class. Same arguments -> same files. Raises ValueError for bad counts and
    FileNotFoundError when scikit-image lacks the photos.
    """
    if not 1 <= num_classes <= len(CLASSES) or min(train, val, test) < 0 or size < 8:
        raise ValueError(f"num_classes must be 1..{len(CLASSES)}, counts >= 0, size >= 8")
    base = skimage_data_dir()
    names = list(CLASSES)[:num_classes]
    missing = [CLASSES[c] for c in names if not (base / CLASSES[c]).is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image photos {missing} not found in {base}")
    dest = Path(dest)
    counts = {"images_train": train, "images_val": val, "images_test": test}
    for split, offset in SPLITS.items():
        for ci, name in enumerate(names):
            folder = dest / split if split == "images_test" else dest / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(_crops(base / CLASSES[name], counts[split], size, seed=1000 * offset + ci)):
                img.save(folder / f"{name}_{i:03d}.jpg", "JPEG", quality=90)
    lines = [f"- class {c}: {CLASSES[c]} ({PHOTOS[CLASSES[c]][0]}; {PHOTOS[CLASSES[c]][1]})" for c in names]
    (dest / "ATTRIBUTION.txt").write_text(SAMPLE_ATTRIBUTION + "\n\nClasses:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return {"train": dest / "images_train", "val": dest / "images_val", "test": dest / "images_test", "classes": sorted(names)}


def demo_overrides(stage: str, *, epochs: int | None = None) -> dict[str, object]:
    """TAO mae spec overrides for a CPU demo on the sample set (every key a TAO Core 7.3.0 mae key).

    ``convnextv2_atto`` (the smallest TAO arch, 3.4M parameters) at 64 px, batch 8; pretrain 3
    epochs, finetune 10 (cosine lr, no warm-up; mixup/cutmix/RandAugment off because 64 images are
    too few for them to help in 10 epochs). ``stage``: pretrain|finetune. The caller adds the
    data sources, ``model.num_classes`` and (finetune) the parent pretrain job, whose checkpoint
    becomes ``train.pretrained_model_path``.
    """
    common: dict[str, object] = {
        "model.arch": "convnextv2_atto",
        "dataset.augmentation.input_size": 64,
        "dataset.batch_size": 8,
        "dataset.num_workers_per_gpu": 1,
        "train.precision": "fp32",
        "train.optim.warmup_epochs": 0,
    }
    if stage == "pretrain":
        n = epochs or 3
        return {**common, "train.stage": "pretrain", "train.num_epochs": n, "train.optim.lr": 1e-3}
    n = epochs or 10
    return {
        **common,
        "train.stage": "finetune",
        "train.num_epochs": n,
        "train.optim.lr": 2e-3,
        "train.optim.lr_scheduler": "cosine",
        "train.optim.backbone_multiplier": 1.0,
        "dataset.augmentation.mixup": 0.0,
        "dataset.augmentation.cutmix": 0.0,
        "dataset.augmentation.auto_aug": "",
    }
