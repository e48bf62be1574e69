"""Grounding DINO data: ODVG training sources, COCO validation/evaluation, captions, TAO's
augmentation, batching with padding masks and tokenisation.

* ODVG (``json_file`` JSON Lines + ``label_map``): detection rows
  ``{"filename", "height", "width", "detection": {"instances": [{"bbox": [x1, y1, x2, y2], "label": int, "category"}]}}``;
  grounding rows (``"grounding": {"caption", "regions": [{"bbox", "phrase"}]}``) use their phrases as labels;
  a region with ``tokens_positive`` (``[[start, end], ...]`` character spans into the caption, TAO's
  ODVG grounding format) is positive for every span text at once (:func:`grounding_targets`).
* Caption per training image (TAO ODVG detection dataset): the image's categories plus negatives
  drawn from the label map until ``dataset.max_labels`` names, sorted (``deterministic_label_order``)
  then shuffled, joined as ``"a . b . c ."``; targets index the phrase position.
* COCO (``val_data_sources``/``test_data_sources``): category ids from 0 (TAO); the caption is every
  category name in id order.
* Augmentation (TAO Core 7.3.0 GDINOAugmentationConfig): horizontal flip, then either a random
  resize to ``scales`` (short side, long side <= ``random_resize_max_size``) or resize to
  ``train_random_resize`` -> random crop [``train_random_crop_min``, ``train_random_crop_max``] ->
  resize to ``scales``; ``fixed_random_crop`` F replaces that with scale jitter (0.5-1.5 x F on the
  long side) and an F x F crop. Evaluation: short side ``test_random_resize`` (long side <=
  ``random_resize_max_size``), or long side F with ``fixed_random_crop``. ``fixed_padding`` pads
  every batch to the largest size the resize can give.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from taoskills.engine.grounding_dino.spec import sources
from taoskills.errors import PreflightError, SpecError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def caption_of(names: list[str]) -> str:
    """TAO caption of phrase ``names``: ``"a . b . c ."``."""
    return " . ".join(n.strip() for n in names) + " ."


def _image_dir(value: Any, field: str) -> Path:
    p = Path(str(value)).expanduser()
    if p.is_file() and p.name.endswith((".tar", ".tar.gz", ".tgz", ".zip")):
        raise PreflightError(
            f"NotADirectoryError: {field}={value} is an archive, not an image folder.",
            field=field,
            fix="extract the archive and set the image_dir to the extracted folder (archive-backed skill data sources "
            "use runtime: extracted_folder, which the runtime's staging does for you).",
        )
    if not p.is_dir():
        raise PreflightError(f"{field}={value} is not a folder.", field=field, fix="set it to the folder holding the images.")
    return p


def load_label_map(path: Any, field: str) -> dict[int, str]:
    """ODVG label map ``{"0": "name", ...}`` -> ``{0: "name"}``; PreflightError when unreadable."""
    p = Path(str(path)).expanduser()
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.items()}
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(
            f"{field}={path} is not an ODVG label map ({type(exc).__name__}: {exc}).",
            field=field,
            fix='write a JSON object {"0": "name0", "1": "name1", ...}.',
        ) from exc


def read_odvg(cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """All training records of ``dataset.train_data_sources`` and the sorted label vocabulary.

    Record: ``{"path", "boxes": float [N, 4] x1y1x2y2 pixels, "names": [N tuples of (phrase, start, end)
    positives: all of one phrase (:func:`whole`) unless a grounding region has ``tokens_positive``],
    "pool": [label names]}`` (:func:`grounding_targets` for grounding rows).
    Raises PreflightError naming the source field for missing files, bad lines, labels outside
    the label map or images that do not exist.
    """
    records: list[dict[str, Any]] = []
    vocab: set[str] = set()
    for i, src in enumerate(sources(cfg["dataset"]["train_data_sources"])):
        field = f"dataset.train_data_sources[{i}]"
        root = _image_dir(src["image_dir"], f"{field}.image_dir")
        lm = load_label_map(src["label_map"], f"{field}.label_map") if src.get("label_map") not in (None, "") else None
        jf = Path(str(src["json_file"])).expanduser()
        if not jf.is_file():
            raise PreflightError(
                f"{field}.json_file={jf} does not exist.", field=f"{field}.json_file", fix="point it at the ODVG .jsonl file."
            )
        pool = sorted(set(lm.values())) if lm else []
        for n, line in enumerate(jf.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                boxes: list[list[float]] = []
                names: list[tuple[Positive, ...]] = []
                if "detection" in rec:
                    for inst in rec["detection"].get("instances", []):
                        label = int(inst["label"])
                        if lm is None or label not in lm:
                            raise KeyError(f"label {label} is not in the label map")
                        boxes.append([float(v) for v in inst["bbox"]])
                        names.append(whole(lm[label]))
                    rec_pool = pool
                else:
                    boxes, names, rec_pool = grounding_targets(rec["grounding"], f"{field}.json_file", n)
                path = root / rec["filename"]
            except PreflightError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PreflightError(
                    f"{field}.json_file line {n}: not an ODVG record ({type(exc).__name__}: {exc}).",
                    field=f"{field}.json_file",
                    fix="each line must be an ODVG detection (with a label map covering every label) or grounding record.",
                ) from exc
            if not path.is_file():
                raise PreflightError(
                    f"{field}: image {path} of line {n} does not exist.", field=f"{field}.image_dir", fix="check image_dir."
                )
            vocab.update(rec_pool)
            records.append(
                {"path": path, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "names": names, "pool": rec_pool}
            )
    if not records:
        raise PreflightError(
            "dataset.train_data_sources hold no ODVG records.", field="dataset.train_data_sources", fix="check json_file."
        )
    return records, sorted(vocab)


def _spans(reg: dict[str, Any], caption: str, where: str) -> list[tuple[int, int]]:
    spans = reg["tokens_positive"]
    ok = isinstance(spans, list) and spans and all(isinstance(s, (list, tuple)) and len(s) == 2 for s in spans)
    out = [(int(s[0]), int(s[1])) for s in spans] if ok else []

    def fault(s: int, e: int) -> str:
        if not 0 <= s < e <= len(caption):
            return f"span [{s}, {e}] is outside the caption (0..{len(caption)})"
        text = caption[s:e]
        if not text.strip() or "." in text or "?" in text:  # '.' and '?' split phrases (transformers SPECIAL_TOKENS)
            return f"span [{s}, {e}] = {text!r} is blank or holds '.'/'?', the phrase separators"
        return ""

    why = (
        next((f for f in (fault(s, e) for s, e in out) if f), "")
        if ok
        else f"{spans!r} is not a non-empty list of [start, end] pairs"
    )
    if why:
        raise PreflightError(
            f"{where}: grounding region tokens_positive {why}.",
            field=where.split(" line ")[0],
            fix="give each region tokens_positive as [[start, end], ...]: character offsets into the record's "
            "grounding.caption (end exclusive) covering words without '.', e.g. [[0, 3], [15, 21]] for 'red' and 'square' "
            "in 'red . circle . square .'.",
        )
    return out


#: A box's positives: (phrase, start, end) character spans inside caption phrases (end exclusive).
Positive = tuple[str, int, int]


def whole(phrase: str) -> tuple[Positive]:
    """The positives of a box labelled with all of ``phrase`` (detection rows, ``phrase`` regions)."""
    return ((phrase, 0, len(phrase)),)


def grounding_targets(
    g: dict[str, Any], field: str, line: int
) -> tuple[list[list[float]], list[tuple[Positive, ...]], list[str]]:
    """(boxes x1y1x2y2, positives per box, label pool) of an ODVG grounding row ``g = {"caption", "regions"}``.

    A region with ``tokens_positive`` (list of [start, end] character spans into ``caption``, TAO
    Grounding DINO's ODVG grounding format) is positive for exactly the tokens of its spans, which may
    lie in several of the caption's '.'-separated phrases and cover part of one (e.g. "red" in
    ``red triangle . blue circle .``): each span becomes (phrase, start, end) relative to its stripped
    phrase, and every phrase of the caption joins the pool (the others are the row's negatives, as the
    whole caption is in TAO). A region without ``tokens_positive`` is positive for all of its ``phrase``
    and the pool is the row's phrases, as before. Bad spans raise PreflightError naming ``field``.
    """
    caption = str(g.get("caption", ""))
    chunks = []  # (stripped phrase, its start in the caption)
    for m in re.finditer(r"[^.?]+", caption):
        text = m.group()
        if text.strip():
            chunks.append((text.strip(), m.start() + len(text) - len(text.lstrip())))
    boxes: list[list[float]] = []
    names: list[tuple[Positive, ...]] = []
    spans_seen = False
    for reg in g["regions"]:
        b = reg["bbox"]
        b = b[0] if b and isinstance(b[0], list) else b
        boxes.append([float(v) for v in b])
        if "tokens_positive" not in reg:
            names.append(whole(str(reg["phrase"]).strip()))
            continue
        spans_seen = True
        pos: list[Positive] = []
        for s, e in _spans(reg, caption, f"{field} line {line}"):
            text = caption[s:e]
            s, e = s + len(text) - len(text.lstrip()), e - len(text) + len(text.rstrip())
            phrase, start = next((c, c0) for c, c0 in chunks if c0 <= s and e <= c0 + len(c))
            pos.append((phrase, s - start, e - start))
        names.append(tuple(dict.fromkeys(pos)))
    pool = {p for ps in names for p, _, _ in ps}
    if spans_seen:
        pool.update(c for c, _ in chunks)
    return boxes, names, sorted(pool)


def read_coco(src: dict[str, Any], field: str, *, ids_from_zero: bool = True) -> tuple[dict[str, Any], Path, list[str]]:
    """(COCO dict, image folder, category names by id) of a validation/test data source.

    Category ids must be 0..K-1 (TAO Grounding DINO: "category id needs to start from 0");
    otherwise PreflightError with the skill's fix.
    """
    root = _image_dir(src.get("image_dir"), f"{field}.image_dir")
    jf = Path(str(src.get("json_file"))).expanduser()
    try:
        gt = json.loads(jf.read_text(encoding="utf-8"))
        cats = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    except Exception as exc:  # noqa: BLE001
        raise PreflightError(
            f"{field}.json_file={jf} is not a COCO annotation file ({type(exc).__name__}: {exc}).",
            field=f"{field}.json_file",
            fix="point it at a COCO json with images, annotations and categories.",
        ) from exc
    if ids_from_zero and sorted(cats) != list(range(len(cats))):
        raise PreflightError(
            f"Val annotation category IDs: {field}.json_file has category ids {sorted(cats)[:8]}; Grounding DINO "
            "validation annotations must use category ids starting from 0 (contiguous) for correct loss computation.",
            field=f"{field}.json_file",
            fix="convert the annotations to contiguous category ids from 0 (TAO annotation format conversion).",
        )
    missing = [im["file_name"] for im in gt.get("images", []) if not (root / im["file_name"]).is_file()]
    if missing:
        raise PreflightError(
            f"{field}: {len(missing)} image(s) of the COCO file are missing, e.g. {missing[0]}.",
            field=f"{field}.image_dir",
            fix="check image_dir.",
        )
    return gt, root, [cats[k] for k in sorted(cats)]


# ----------------------------------------------------------------------------- transforms


def _resize(img: Image.Image, boxes: np.ndarray, short: int, max_size: int) -> tuple[Image.Image, np.ndarray]:
    w, h = img.size
    s = short / min(w, h)
    if max(w, h) * s > max_size:
        s = max_size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return img.resize((nw, nh), Image.Resampling.BILINEAR), boxes * np.array([nw / w, nh / h, nw / w, nh / h], dtype=np.float32)


def _crop(img, boxes, names, x, y, cw, ch):
    img = img.crop((x, y, x + cw, y + ch))
    b = boxes - np.array([x, y, x, y], dtype=np.float32)
    b[:, 0::2] = b[:, 0::2].clip(0, cw)
    b[:, 1::2] = b[:, 1::2].clip(0, ch)
    keep = (b[:, 2] > b[:, 0] + 1) & (b[:, 3] > b[:, 1] + 1)
    return img, b[keep], [n for n, k in zip(names, keep) if k]


def train_transform(img: Image.Image, boxes: np.ndarray, names: list[str], aug: dict[str, Any], rng: random.Random):
    """TAO training augmentation (module docstring); boxes x1y1x2y2 pixels."""
    if rng.random() < aug["horizontal_flip_prob"]:
        w = img.size[0]
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes = boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32) + np.array([w, 0, w, 0], dtype=np.float32)
    fixed = aug["fixed_random_crop"]
    if fixed:
        s = rng.uniform(0.5, 1.5) * fixed
        img, boxes = _resize(img, boxes, 10**9, int(s))
        w, h = img.size
        cw, ch = min(w, fixed), min(h, fixed)
        return _crop(img, boxes, names, rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch)
    max_size = aug["random_resize_max_size"]
    if rng.random() < 0.5:
        img, boxes = _resize(img, boxes, rng.choice(aug["scales"]), max_size)
        return img, boxes, names
    img, boxes = _resize(img, boxes, rng.choice(aug["train_random_resize"]), 10**9)
    w, h = img.size
    cw = rng.randint(min(aug["train_random_crop_min"], w), min(w, aug["train_random_crop_max"]))
    ch = rng.randint(min(aug["train_random_crop_min"], h), min(h, aug["train_random_crop_max"]))
    img, boxes, names = _crop(img, boxes, names, rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch)
    img, boxes = _resize(img, boxes, rng.choice(aug["scales"]), max_size)
    return img, boxes, names


def eval_resize(img: Image.Image, aug: dict[str, Any], size: tuple[int, int] | None = None) -> Image.Image:
    """Evaluation resize (module docstring); ``size`` (width, height) overrides it."""
    if size:
        return img.resize(size, Image.Resampling.BILINEAR)
    if aug["fixed_random_crop"]:
        return _resize(img, np.zeros((0, 4), np.float32), 10**9, aug["fixed_random_crop"])[0]
    return _resize(img, np.zeros((0, 4), np.float32), aug["test_random_resize"], aug["random_resize_max_size"])[0]


def to_tensor(img: Image.Image, aug: dict[str, Any]) -> torch.Tensor:
    """float [3, H, W], normalised with ``input_mean``/``input_std``."""
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(aug["input_mean"]).view(3, 1, 1)
    std = torch.tensor(aug["input_std"]).view(3, 1, 1)
    return (x - mean) / std


def pad_size(aug: dict[str, Any], train: bool) -> int | None:
    """Side every batch is padded to with ``fixed_padding`` (None: pad to the batch maximum)."""
    if aug["fixed_random_crop"]:
        return int(aug["fixed_random_crop"] * (1.5 if train else 1.0))
    if not aug["fixed_padding"]:
        return None
    return int(aug["random_resize_max_size"])


class TrainSet(torch.utils.data.Dataset):
    """ODVG records -> (image tensor, target, caption); see the module docstring.

    target: ``class_labels`` long [N] (caption phrase index of each box's first positive), ``boxes``
    float [N, 4] cx,cy,w,h relative, ``positive_spans``: per box the [start, end) character spans of the
    caption it is positive for, or [] when that is exactly the phrase of ``class_labels`` (detection data).
    """

    def __init__(self, records: list[dict[str, Any]], cfg: dict[str, Any]) -> None:
        self.records, self.aug = records, cfg["dataset"]["augmentation"]
        self.max_labels = cfg["dataset"]["max_labels"]
        self.sorted_order = cfg["dataset"]["deterministic_label_order"]

    def __len__(self) -> int:
        return len(self.records)

    def labels_for(self, names: list[str], pool: list[str], rng: random.Random) -> list[str]:
        """Positives (dropping some if more than max_labels) plus negatives, shuffled."""
        pos = sorted(set(names)) if self.sorted_order else list(dict.fromkeys(names))
        if len(pos) > self.max_labels:
            pos = rng.sample(pos, self.max_labels)
        neg = [n for n in pool if n not in pos]
        neg = rng.sample(neg, min(len(neg), self.max_labels - len(pos)))
        out = pos + neg
        if self.sorted_order:
            out.sort()
        rng.shuffle(out)
        return out

    def __getitem__(self, i: int):
        rec = self.records[i]
        rng = random.Random(random.getrandbits(32))
        with Image.open(rec["path"]) as im:
            img = im.convert("RGB")
        img, boxes, names = train_transform(img, rec["boxes"].copy(), list(rec["names"]), self.aug, rng)
        phrases = self.labels_for([p for ps in names for p, _, _ in ps], rec["pool"], rng)
        w, h = img.size
        b = torch.from_numpy(boxes).reshape(-1, 4)
        cxcywh = torch.stack(
            [(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h, (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], -1
        )
        at = {p: sum(len(q.strip()) + 3 for q in phrases[:k]) for k, p in enumerate(phrases)}  # offsets in caption_of
        # a box stays when one of its phrases is in the caption; it is positive for its spans there
        present = [[(p, s, e) for p, s, e in ps if p in at] for ps in names]
        keep = [bool(ps) for ps in present]
        present = [ps for ps in present if ps]
        target = {
            "class_labels": torch.tensor([phrases.index(ps[0][0]) for ps in present], dtype=torch.long),
            "boxes": cxcywh[torch.tensor(keep, dtype=torch.bool)] if len(keep) else cxcywh,
            # character spans in the caption; [] = the whole phrase of class_labels (one row of the label map)
            "positive_spans": [
                [] if ps == list(whole(ps[0][0])) else [(at[p] + s, at[p] + e) for p, s, e in ps] for ps in present
            ],
        }
        return to_tensor(img, self.aug), target, caption_of(phrases)


class EvalSet(torch.utils.data.Dataset):
    """Images (COCO file entries or a file list) -> (image tensor, (orig h, w), image id or index)."""

    def __init__(self, items: list[tuple[Path, Any]], cfg: dict[str, Any], size: tuple[int, int] | None = None) -> None:
        self.items, self.aug, self.size = items, cfg["dataset"]["augmentation"], size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, key = self.items[i]
        with Image.open(path) as im:
            img = im.convert("RGB")
        w, h = img.size
        return to_tensor(eval_resize(img, self.aug, self.size), self.aug), (h, w), key


def pad_batch(images: list[torch.Tensor], side: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad to a common size (``side`` x ``side`` when given and large enough); pixel mask 1 = image."""
    h = max(x.shape[1] for x in images)
    w = max(x.shape[2] for x in images)
    if side:
        h, w = max(h, side), max(w, side)
    out = torch.zeros(len(images), 3, h, w)
    mask = torch.zeros(len(images), h, w, dtype=torch.long)
    for i, x in enumerate(images):
        out[i, :, : x.shape[1], : x.shape[2]] = x
        mask[i, : x.shape[1], : x.shape[2]] = 1
    return out, mask


def tokenize(tokenizer: Any, captions: list[str], max_text_len: int, offsets: bool = False) -> dict[str, torch.Tensor]:
    """``input_ids``/``attention_mask``/``token_type_ids`` padded to the longest caption (and
    ``offset_mapping`` [B, L, 2], each token's character span, (0, 0) for special tokens, when ``offsets``).

    A caption longer than ``max_text_len`` tokens raises SpecError with the skill's cause and fix
    (TAO fails later with "mat1 and mat2 shapes cannot be multiplied").
    """
    enc = tokenizer(captions, padding="longest", return_tensors="pt", return_offsets_mapping=offsets)
    n = enc["input_ids"].shape[1]
    if n > max_text_len:
        raise SpecError(
            f"The caption needs {n} tokens but model.max_text_len={max_text_len}: the text token length and the "
            "label position maps would disagree (TAO fails with 'mat1 and mat2 shapes cannot be multiplied').",
            field="model.max_text_len",
            fix=f"restore model.max_text_len (256) or at least {n}, or lower dataset.max_labels / shorten the captions.",
        )
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids", *(("offset_mapping",) if offsets else ()))}


def token_map(offsets: torch.Tensor, spans: list[list[tuple[int, int]]], width: int) -> torch.Tensor:
    """long [N, width]: 1 on the tokens whose character span (``offsets`` [L, 2], one caption) overlaps
    one of box n's ``spans`` (all zero for a box with none). Grounding DINO's positive map from
    ``tokens_positive`` (TAO / GLIP: character spans -> tokens through the tokenizer's offsets)."""
    out = torch.zeros(len(spans), width, dtype=torch.long)
    lo, hi = offsets[:width, 0], offsets[:width, 1]
    for n, box in enumerate(spans):
        for s, e in box:
            out[n, : len(lo)] |= ((lo < e) & (s < hi) & (hi > lo)).long()
    return out


class TrainCollate:
    """Batch of TrainSet items -> model inputs + ``labels``."""

    def __init__(self, tokenizer: Any, cfg: dict[str, Any]) -> None:
        self.tok, self.max_len = tokenizer, cfg["model"]["max_text_len"]
        self.side = pad_size(cfg["dataset"]["augmentation"], True)

    def __call__(self, items):
        images, targets, captions = zip(*items)
        pixel_values, pixel_mask = pad_batch(list(images), self.side)
        text = tokenize(self.tok, list(captions), self.max_len, offsets=True)
        offsets = text.pop("offset_mapping")
        # boxes stay relative to each unpadded image: the model scales by the valid ratios
        labels = [
            {
                "class_labels": t["class_labels"],
                "boxes": t["boxes"],
                "token_map": token_map(offsets[i], t["positive_spans"], self.max_len),  # see loss.py
            }
            for i, t in enumerate(targets)
        ]
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, **text, "labels": labels}


class EvalCollate:
    """Batch of EvalSet items -> model inputs for one fixed caption + original sizes and keys."""

    def __init__(self, tokenizer: Any, cfg: dict[str, Any], caption: str) -> None:
        self.side = pad_size(cfg["dataset"]["augmentation"], False)
        self.text = tokenize(tokenizer, [caption], cfg["model"]["max_text_len"])

    def __call__(self, items):
        images, sizes, keys = zip(*items)
        pixel_values, pixel_mask = pad_batch(list(images), self.side)
        n = len(images)
        text = {k: v.expand(n, -1).clone() for k, v in self.text.items()}
        return {
            "pixel_values": pixel_values,
            "pixel_mask": pixel_mask,
            **text,
            "sizes": list(sizes),
            "keys": list(keys),
        }


def list_images(dirs: list[Any], field: str) -> list[Path]:
    """Sorted image files under every folder of ``dirs`` (recursive)."""
    out: list[Path] = []
    for d in dirs:
        root = _image_dir(d, field)
        out.extend(sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
    if not out:
        raise PreflightError(f"{field} holds no images ({', '.join(IMAGE_SUFFIXES)}).", field=field, fix="check the folders.")
    return out
