"""COCO detection data for DINO: reading data sources, TAO's augmentation block, padded batches.

Data sources (TAO Core 7.3.0 dino DatasetConfig): ``train_data_sources`` / ``val_data_sources``
are lists of ``{image_dir, json_file}``; ``test_data_sources`` one such dict;
``infer_data_sources`` ``{image_dir: str | [str], classmap}``. Labels are the COCO
``category_id`` itself (``num_classes >= max(category_id) + 1``), or their rank when
``dataset.contiguous_labels`` is true. Augmentation (DETR/DINO recipe, ``dataset.augmentation``):
horizontal flip (``horizontal_flip_prob``), then with probability 1/2 either a resize of the
shorter side to one of ``scales`` (longer side ≤ ``random_resize_max_size``) or a resize to one
of ``train_random_resize``, a random crop with sides in ``[train_random_crop_min,
train_random_crop_max]`` and a resize to ``scales``; evaluation resizes to
``test_random_resize``. Images are normalised with ``input_mean``/``input_std``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from taoskills.engine.dino.coco import check_num_classes, load_coco
from taoskills.errors import SpecError

__all__ = ["CocoDetection", "Collate", "check_num_classes", "collate_for", "list_images", "load_coco", "random_crop", "resize"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _size(w: int, h: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(new_w, new_h) with the shorter side ``size`` and the longer side at most ``max_size``."""
    if max_size is not None:
        lo, hi = float(min(w, h)), float(max(w, h))
        if hi / lo * size > max_size:
            size = int(round(max_size * lo / hi))
    if w <= h:
        return size, max(int(size * h / w), 1)
    return max(int(size * w / h), 1), size


def resize(img: Image.Image, boxes: np.ndarray, size: int, max_size: int | None):
    """Resize so the shorter side is ``size`` (longer side ≤ ``max_size``); boxes (xyxy px) follow."""
    w, h = img.size
    nw, nh = _size(w, h, size, max_size)
    img = img.resize((nw, nh), Image.BILINEAR)
    return img, boxes * np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)


def random_crop(img: Image.Image, boxes: np.ndarray, labels: np.ndarray, lo: int, hi: int, rng: random.Random):
    """Crop a random ``[lo, hi]``-sided window (bounded by the image); boxes are clipped, empty ones dropped."""
    w, h = img.size
    cw = rng.randint(min(lo, w), min(w, hi))
    ch = rng.randint(min(lo, h), min(h, hi))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    b = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
    b = np.clip(b, 0, [cw, ch, cw, ch]).astype(np.float32)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return img, b[keep], labels[keep]


class CocoDetection(torch.utils.data.Dataset):
    """Items ``(image [3,H,W] normalised, target)``; target: ``labels [n]`` long, ``boxes [n,4]``
    (cxcywh normalised to the resized image), ``image_id``, ``orig_size`` (h, w), ``size`` (h, w)."""

    def __init__(
        self,
        gt: dict[str, Any],
        aug: dict[str, Any],
        *,
        train: bool,
        seed: int | None = None,
        fixed_wh: tuple[int, int] | None = None,
    ):
        self.gt, self.aug, self.train, self.fixed_wh = gt, aug, train, fixed_wh
        self.ids = [img["id"] for img in gt["images"]]
        self.by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in self.ids}
        for a in gt["annotations"]:
            if not a.get("iscrowd", 0):
                self.by_image[a["image_id"]].append(a)
        self.mean = np.array(aug["input_mean"], dtype=np.float32)
        self.std = np.array(aug["input_std"], dtype=np.float32)
        # The module-level generator: Lightning's seed_everything(workers=True) seeds it per loader worker.
        self.rng = random if seed is None else random.Random(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        image_id = self.ids[i]
        img = Image.open(self.gt["paths"][image_id]).convert("RGB")
        w0, h0 = img.size
        anns = self.by_image[image_id]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes = np.clip(boxes, 0, [w0, h0, w0, h0]).astype(np.float32)
        labels = np.array([self.gt["label_of"][a["category_id"]] for a in anns], dtype=np.int64)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, labels = boxes[keep], labels[keep]
        a, rng, max_size = self.aug, self.rng, self.aug["random_resize_max_size"]
        if self.fixed_wh:
            fw, fh = self.fixed_wh
            img = img.resize((fw, fh), Image.BILINEAR)
            boxes = boxes * np.array([fw / w0, fh / h0, fw / w0, fh / h0], dtype=np.float32)
        elif self.train:
            if rng.random() < a["horizontal_flip_prob"]:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
                boxes = boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32) + np.array(
                    [w0, 0, w0, 0], dtype=np.float32
                )
            if rng.random() < 0.5:
                img, boxes = resize(img, boxes, rng.choice(a["scales"]), max_size)
            else:
                img, boxes = resize(img, boxes, rng.choice(a["train_random_resize"]), None)
                img, boxes, labels = random_crop(img, boxes, labels, a["train_random_crop_min"], a["train_random_crop_max"], rng)
                img, boxes = resize(img, boxes, rng.choice(a["scales"]), max_size)
            if a.get("fixed_random_crop"):
                c = int(a["fixed_random_crop"])
                img, boxes, labels = random_crop(img, boxes, labels, c, c, rng)
        else:
            img, boxes = resize(img, boxes, a["test_random_resize"], max_size)
        w, h = img.size
        arr = (np.asarray(img, dtype=np.float32) / 255.0 - self.mean) / self.std
        x = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        b = torch.from_numpy(boxes) / torch.tensor([w, h, w, h], dtype=torch.float32)
        cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], -1)
        target = {
            "labels": torch.from_numpy(labels),
            "boxes": cxcywh.reshape(-1, 4),
            "image_id": torch.tensor(image_id),
            "orig_size": torch.tensor([h0, w0]),
            "size": torch.tensor([h, w]),
        }
        return x, target


class Collate:
    """Pad a list of ``(image, target)`` to one ``[B,3,H,W]`` batch plus ``mask [B,H,W]`` (True =
    padding). ``fixed`` pads to ``fixed × fixed`` (``augmentation.fixed_padding``: static shapes);
    ``divisor`` rounds H and W up (``dataset.pad_size_divisor``)."""

    def __init__(self, fixed: int | None = None, divisor: int | None = None) -> None:
        self.fixed, self.divisor = fixed, divisor

    def __call__(self, items):
        imgs, targets = zip(*items)
        h = max(i.shape[1] for i in imgs)
        w = max(i.shape[2] for i in imgs)
        if self.fixed:
            h, w = max(h, self.fixed), max(w, self.fixed)
        if self.divisor:
            d = self.divisor
            h, w = (h + d - 1) // d * d, (w + d - 1) // d * d
        batch = torch.zeros(len(imgs), 3, h, w)
        mask = torch.ones(len(imgs), h, w, dtype=torch.bool)
        for k, im in enumerate(imgs):
            batch[k, :, : im.shape[1], : im.shape[2]] = im
            mask[k, : im.shape[1], : im.shape[2]] = False
        return batch, mask, list(targets)


def collate_for(cfg: dict[str, Any]) -> Collate:
    """The Collate that ``dataset.augmentation.fixed_padding`` / ``dataset.pad_size_divisor`` ask for."""
    aug = cfg["dataset"]["augmentation"]
    fixed = aug["random_resize_max_size"] if aug["fixed_padding"] else None
    return Collate(fixed=fixed, divisor=aug.get("pad_size_divisor"))


def list_images(image_dirs: Any, field: str) -> list[Path]:
    """Image files under one folder or a list of folders (sorted). SpecError when none is found."""
    dirs = image_dirs if isinstance(image_dirs, list) else [image_dirs]
    files: list[Path] = []
    for d in dirs:
        p = Path(str(d)).expanduser()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            raise SpecError(f"{field}={d} does not exist.", field=field, fix="point it at an extracted folder of images.")
    if not files:
        raise SpecError(f"{field} holds no images ({', '.join(IMAGE_SUFFIXES)}).", field=field, fix="add images.")
    return files
