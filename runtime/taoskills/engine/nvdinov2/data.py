"""NVDINOv2 data: image folders, DINOv2 multi-crop augmentation, iBOT block masks (PIL + torch).

Folder rules (TAO Core 7.3.0 nvdinov2 ``DataPathFormat.images_dir`` description; docs/tao-contract.md
§4.5 C13): ``images_dir`` is an *extracted* folder; images are found recursively by extension
(``taoskills.tao.IMAGE_EXTENSIONS``: jpg, jpeg, png, bmp, webp, tif, tiff, any case; hidden entries
skipped). Augmentations follow the DINOv2 paper recipe (Oquab et al. 2023, §4 / Appendix): random-resized crop (bicubic), horizontal flip 0.5, colour jitter
(0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale p=0.2, Gaussian blur (p=1.0 first global crop, 0.1
second, 0.5 local), solarisation p=0.2 on the second global crop, ImageNet normalisation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taoskills.errors import PreflightError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_rgb(path: Path):
    """PIL RGB image; raises PreflightError naming the file when decoding fails."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:
        raise PreflightError(
            f"Image {path} cannot be decoded: {exc}", field=str(path), fix="remove or replace the file."
        ) from exc


def to_tensor(img):
    """PIL RGB -> float32 tensor [3, H, W], ImageNet-normalised."""
    import numpy as np
    import torch

    arr = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


def random_resized_crop(img, size: int, scale: Sequence[float], rng: random.Random, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
    """Crop a random area fraction in ``scale`` and aspect in ``ratio``, resize to size×size (bicubic)."""
    from PIL import Image

    w, h = img.size
    area = w * h
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_r))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((size, size), Image.BICUBIC, box=(x, y, x + cw, y + ch))
    side = min(w, h)  # fallback: centre square
    x, y = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.BICUBIC, box=(x, y, x + side, y + side))


def _color_jitter(img, rng: random.Random):
    import numpy as np
    from PIL import Image, ImageEnhance

    ops = [0, 1, 2, 3]
    rng.shuffle(ops)
    for op in ops:
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(rng.uniform(0.8, 1.2))
        else:
            hsv = np.array(img.convert("HSV"))
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.uniform(-0.1, 0.1) * 255)) % 256
            img = Image.fromarray(hsv, "HSV").convert("RGB")
    return img


def augment(img, size: int, scale: Sequence[float], rng: random.Random, *, blur_p: float, solarize_p: float):
    """One DINOv2 view of ``img``: crop, flip, colour jitter, grayscale, blur, solarise -> tensor."""
    from PIL import ImageFilter, ImageOps

    view = random_resized_crop(img, size, scale, rng)
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    if rng.random() < 0.8:
        view = _color_jitter(view, rng)
    if rng.random() < 0.2:
        view = view.convert("L").convert("RGB")
    if rng.random() < blur_p:
        view = view.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0)))
    if rng.random() < solarize_p:
        view = ImageOps.solarize(view, threshold=128)
    return to_tensor(view)


class MultiCropDataset:
    """Map-style dataset: item i -> {"global": [n_global tensors], "local": [n_local tensors]}.

    ``transform`` is the spec's ``dataset.transform`` dict. Randomness comes from Python's
    ``random`` (seeded per worker by Lightning's ``seed_everything(workers=True)``).
    """

    def __init__(self, files: Sequence[Path], transform: dict[str, Any]) -> None:
        self.files = list(files)
        self.t = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, list]:
        t = self.t
        rng = random.Random(random.getrandbits(64))
        img = load_rgb(self.files[i])
        glob = [
            augment(
                img,
                t["global_crops_size"],
                t["global_crops_scale"],
                rng,
                blur_p=1.0 if k == 0 else 0.1,
                solarize_p=0.2 if k == 1 else 0.0,
            )
            for k in range(t["n_global_crops"])
        ]
        loc = [
            augment(img, t["local_crops_size"], t["local_crops_scale"], rng, blur_p=0.5, solarize_p=0.0)
            for _ in range(t["n_local_crops"])
        ]
        return {"global": glob, "local": loc}


def block_mask(h: int, w: int, n_mask: int, rng: random.Random, min_block: int = 4):
    """Boolean [h*w] tensor with about ``n_mask`` True entries placed as random rectangles.

    Blocks have an aspect ratio within [0.3, 1/0.3] (BEiT / iBOT block-wise masking); a grid too
    small for blocks is topped up with random single patches so the count is exact.
    """
    import torch

    mask = torch.zeros(h, w, dtype=torch.bool)
    count, tries = 0, 0
    while count < n_mask and tries < 100:
        tries += 1
        remaining = n_mask - count
        target = rng.uniform(min(min_block, remaining), max(min_block, remaining))
        ar = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        bh, bw = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if not (1 <= bh <= h and 1 <= bw <= w):
            continue
        y, x = rng.randint(0, h - bh), rng.randint(0, w - bw)
        region = mask[y : y + bh, x : x + bw]
        new = int((~region).sum())
        if 0 < new <= remaining:
            region[:] = True
            count += new
    if count < n_mask:
        free = (~mask).flatten().nonzero().flatten().tolist()
        for idx in rng.sample(free, n_mask - count):
            mask.view(-1)[idx] = True
    return mask.flatten()


class Collate:
    """Batch multi-crop items crop-major and draw iBOT masks for the global crops.

    Output: ``global`` [n_g*B, 3, G, G], ``local`` [n_l*B, 3, L, L] (or None), ``masks``
    [n_g*B, (G/p)^2] bool. As in DINOv2, half of the global crops (``mask_probability`` 0.5)
    get a mask whose ratio is spread over ``mask_ratio`` (0.1, 0.5); ``masking=False`` gives
    no masks (``model.distill.disable_masking``).
    """

    def __init__(
        self,
        patch_size: int,
        global_size: int,
        *,
        masking: bool = True,
        mask_ratio: tuple[float, float] = (0.1, 0.5),
        mask_probability: float = 0.5,
    ) -> None:
        self.grid = global_size // patch_size
        self.masking = masking
        self.mask_ratio = mask_ratio
        self.mask_probability = mask_probability

    def __call__(self, items: list[dict[str, list]]) -> dict[str, Any]:
        import torch

        n_g, n_l = len(items[0]["global"]), len(items[0]["local"])
        glob = torch.stack([it["global"][k] for k in range(n_g) for it in items])
        loc = torch.stack([it["local"][k] for k in range(n_l) for it in items]) if n_l else None
        n, n_tok = glob.shape[0], self.grid * self.grid
        masks = torch.zeros(n, n_tok, dtype=torch.bool)
        if self.masking and n_tok > 0:
            rng = random.Random(random.getrandbits(64))
            n_masked = int(n * self.mask_probability)
            lo, hi = self.mask_ratio
            probs = [lo + (hi - lo) * i / max(n_masked, 1) for i in range(n_masked + 1)]
            for i in range(n_masked):
                ratio = rng.uniform(probs[i], probs[i + 1])
                masks[i] = block_mask(self.grid, self.grid, max(1, int(n_tok * ratio)), rng)
            masks = masks[torch.randperm(n)]
        return {"global": glob, "local": loc, "masks": masks}


def eval_transform(img, size: int):
    """Inference view: resize the short side to ``size`` (bicubic), centre-crop size×size, normalise."""
    from PIL import Image

    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.BICUBIC)
    x, y = (nw - size) // 2, (nh - size) // 2
    return to_tensor(img.crop((x, y, x + size, y + size)))
