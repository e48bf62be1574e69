"""MAE data: image folders, class sub-folders, train/eval transforms (PIL + torch).

Folder rules (MAE skill: ``dataset.*_data_sources`` are *extracted* image folders — a tar path
gives a zero-sample loader in TAO, so archives are refused here): pretraining reads every image
under ``train_data_sources`` (any depth, labels unused); finetune, evaluate and validation read
an ImageNet-style folder whose immediate sub-folders are the classes (sorted names = class ids);
inference reads every image under ``test_data_sources``.

Train transform: random-resized crop to ``input_size`` (area fraction in [min_scale, max_scale],
aspect in [min_ratio, max_ratio], log-uniform; a crop larger than the image is clamped to it),
horizontal flip ``hflip``; finetune adds colour jitter ``color_jitter``, RandAugment ``auto_aug``
and random erasing ``re_prob``. Eval transform: resize the short side to input_size / 0.875,
centre crop (the MAE / DeiT evaluation crop). Both normalise with ``mean``/``std``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taoskills.engine.common import IMAGE_EXTS, check_readable, list_images
from taoskills.engine.mae.augment import RandAugment, random_erase
from taoskills.errors import Issue, PreflightError

EVAL_CROP = 0.875

__all__ = ["IMAGE_EXTS", "ImageSet", "check_readable", "class_folders", "eval_transform", "list_images", "TrainTransform"]


def class_folders(root: str | Path, *, field: str) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image, class id)]) of an ImageNet-style folder ``root/<class>/<images>``.

    Raises PreflightError naming ``field`` when ``root`` is missing or an archive, has no class
    sub-folders, or a class folder has no image (all empty classes are listed).
    """
    files = list_images(root, field=field)
    base = Path(str(root)).expanduser()
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [f for f in files if f.parent == base]
    if not classes:
        raise PreflightError(
            f"{field}={base} has no class sub-folders (its {len(files)} images lie at the top level).",
            field=field,
            fix="put each class's images in its own sub-folder (root/<class_name>/*.jpg), as for ImageNet.",
        )
    index = {c: i for i, c in enumerate(classes)}
    samples = [(f, index[f.relative_to(base).parts[0]]) for f in files if f.parent != base]
    counts = np.bincount([y for _, y in samples], minlength=len(classes))
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise PreflightError(
            f"{field}={base}: class folder(s) {', '.join(empty[:10])} hold no images.",
            field=field,
            fix="add images to those folders or remove them (every sub-folder is a class).",
            issues=[Issue(f"{field}/{c}", "holds no images.", "add images or remove the folder.", "empty_class") for c in empty],
        )
    if loose:
        raise PreflightError(
            f"{field}={base} has {len(loose)} image(s) outside the class folders (e.g. {loose[0].name}).",
            field=field,
            fix="move every image into its class sub-folder.",
        )
    return classes, samples


def _interp(name: str):
    from PIL import Image

    if name == "random":
        name = random.choice(["bilinear", "bicubic"])
    return Image.BICUBIC if name == "bicubic" else Image.BILINEAR


def _to_tensor(img, mean, std) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def load_rgb(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def eval_transform(img, aug: dict[str, Any], size: int | None = None) -> torch.Tensor:
    """Resize short side to size/0.875 (``interpolation``; random -> bicubic), centre crop, normalise."""
    from PIL import Image

    size = size or aug["input_size"]
    w, h = img.size
    short = int(math.ceil(size / EVAL_CROP))
    scale = short / min(w, h)
    resample = Image.BICUBIC if aug["interpolation"] != "bilinear" else Image.BILINEAR
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return _to_tensor(img.crop((left, top, left + size, top + size)), aug["mean"], aug["std"])


class TrainTransform:
    """PIL image -> normalised tensor [3, S, S] with the spec's train augmentation (see module doc)."""

    def __init__(self, aug: dict[str, Any], *, finetune: bool) -> None:
        self.aug, self.finetune = aug, finetune
        policy = aug["auto_aug"]
        self.rand_aug = RandAugment(str(policy)) if finetune and policy and str(policy).lower() != "none" else None

    def _crop(self, img):
        a = self.aug
        w, h = img.size
        area = w * h
        log_r = (math.log(a["min_ratio"]), math.log(a["max_ratio"]))
        for _ in range(10):
            target = area * random.uniform(a["min_scale"], a["max_scale"])
            ratio = math.exp(random.uniform(*log_r))
            cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = random.randint(0, w - cw), random.randint(0, h - ch)
                return (x, y, x + cw, y + ch)
        side = min(w, h)  # fallback: largest centred square
        return ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)

    def __call__(self, img) -> torch.Tensor:
        from PIL import ImageEnhance, ImageOps

        a, size = self.aug, self.aug["input_size"]
        img = img.resize((size, size), _interp(a["interpolation"]), box=self._crop(img))
        if random.random() < a["hflip"]:
            img = ImageOps.mirror(img)
        if self.finetune:
            cj = float(a["color_jitter"])
            if cj > 0:
                for enh in random.sample([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color], 3):
                    img = enh(img).enhance(random.uniform(max(0.0, 1 - cj), 1 + cj))
            if self.rand_aug is not None:
                img = self.rand_aug(img)
        x = _to_tensor(img, a["mean"], a["std"])
        if self.finetune:
            x = random_erase(x, float(a["re_prob"]))
        return x


class ImageSet(torch.utils.data.Dataset):
    """(image tensor, label) pairs; ``label`` is -1 for unlabelled images."""

    def __init__(self, samples: list[tuple[Path, int]], transform) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return self.transform(load_rgb(path)), label


class EvalTransform:
    """Picklable wrapper of :func:`eval_transform` for DataLoader workers."""

    def __init__(self, aug: dict[str, Any], size: int | None = None) -> None:
        self.aug, self.size = aug, size

    def __call__(self, img) -> torch.Tensor:
        return eval_transform(img, self.aug, self.size)
