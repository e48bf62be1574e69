"""Parameters a request gives: paths and URIs (with their role), numbers (epochs, batch
size, GPUs, learning rate, image size, classes), backbones, MAE stage and ``key=value``.

Paths are matched with ASCII word characters only, so a Chinese word written straight
after a path ("/data/unlabeled上预训练") is not part of it. Every extractor is one regex
pass; overlaps are checked against a per-character occupancy map (linear in length).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml

from taoskills.bank.routing.lexicon import load_lexicon
from taoskills.bank.routing.models import Parameter
from taoskills.bank.skill_info import SkillInfo

_NUM_WORDS = {
    "a single": 1,
    "single": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "sixteen": 16,
    "a": 1,
}
_NUM = r"(\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
_URI = re.compile(
    r"(?<![\w])(?:s3|gs|hf|ngc|az|abfs|https?|file|lustre)://[^\s'\"<>,;()\[\]\u2e80-\u9fff\uff00-\uffef]+",
    re.IGNORECASE | re.ASCII,
)
_LOCAL = re.compile(r"(?<![\w/.~:])(?:~|\.{1,2})?/[\w.\-@+/=%]*[\w/]|(?<![\w/.])(?:~|\.{1,2})/[\w.\-@+/=%]*[\w/]", re.ASCII)
_FILE = re.compile(
    r"(?<![\w/.\-])[\w.\-]+(?:/[\w.\-]+)*\.(?:tar\.gz|tgz|tar|zip|pth|pt|ckpt|tlt|onnx|engine|plan|jsonl|json|ya?ml|txt)(?![\w])",
    re.IGNORECASE | re.ASCII,
)
_REL_DIR = re.compile(r"(?<![\w/.\-])[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+/(?![\w])", re.ASCII)

_BACKBONE = re.compile(
    r"(?<![A-Za-z0-9])(vit_(?:[sblgh]|small|base|large|huge|giant)(?:_\w+)?|vit_(?:tiny|base|large|huge)_patch\d+\w*|resnet_?\d+|swin_\w+|convnextv2_\w+|fan_(?:tiny|small|base|large|hybrid\w*)|hiera_\w+|efficientvit_\w+|gc_vit_\w+)(?![A-Za-z0-9])",
    re.IGNORECASE,
)

_NUMERIC_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("num_epochs", re.compile(r"(?<![\w.])(?:num_epochs|epochs?)\s*(?:=|:|of|to)?\s*(\d+)(?![\w.])", re.IGNORECASE)),
    ("num_epochs", re.compile(r"(?<![\w.])(\d+)\s*(?:-\s*)?epochs?(?![\w])", re.IGNORECASE)),
    ("batch_size", re.compile(r"(?<![\w.])(?:batch[\s_]?size|batch|bs)\s*(?:=|:|of|to)?\s*(\d+)(?![\w.])", re.IGNORECASE)),
    ("batch_size", re.compile(r"(?<![\w.])(\d+)\s*(?:images?\s+)?per\s+batch(?![\w])", re.IGNORECASE)),
    ("num_gpus", re.compile(r"(?<![\w.])(?:num_gpus|gpus)\s*(?:=|:)\s*(\d+)(?![\w.])", re.IGNORECASE)),
    (
        "num_gpus",
        re.compile(
            r"(?<![\w.])(\d+)\s*(?:x\s*)?(?:gpus?|a100s?|h100s?|h200s?|v100s?|l40s?|a10s?|a6000s?)(?![\w])", re.IGNORECASE
        ),
    ),
    (
        "num_gpus",
        re.compile(
            r"(?<![\w])(a single|single|one|two|three|four|five|six|seven|eight|sixteen)\s+(?:gpus?|a100s?|h100s?)(?![\w])",
            re.IGNORECASE,
        ),
    ),
    ("learning_rate", re.compile(r"(?<![\w.])(?:learning[\s_]rate|lr)\s*(?:=|:|of|to)?\s*" + _NUM + r"(?![\w.])", re.IGNORECASE)),
    (
        "image_size",
        re.compile(
            r"(?<![\w.])(?:img_size|image[\s_]size|input[\s_]size|resolution)\s*(?:=|:|of|to)?\s*(\d+)(?:\s*[x×]\s*(\d+))?(?![\w.])",
            re.IGNORECASE,
        ),
    ),
    ("image_size", re.compile(r"(?<![\w.])(\d{2,4})\s*[x×]\s*(\d{2,4})(?![\w.])", re.IGNORECASE)),
    ("image_size", re.compile(r"(?<![\w.])(\d{2,4})\s*(?:px|pixels?)(?![\w])", re.IGNORECASE)),
    ("num_classes", re.compile(r"(?<![\w.])(?:num_classes)\s*(?:=|:)\s*(\d+)(?![\w.])", re.IGNORECASE)),
    ("num_classes", re.compile(r"(?<![\w.])(\d+)\s+(?:object\s+)?(?:classes|categories|class)(?![\w])", re.IGNORECASE)),
    # Chinese: 类别数为10 (10 classes), 训练20轮 (20 epochs), 4块GPU (4 GPUs)
    ("num_classes", re.compile(r"(?:类别数量|类别数|类数|个类别)\s*(?:为|是|=|:|：)?\s*(\d+)(?![\d.])")),
    ("num_classes", re.compile(r"(?<![\d.])(\d+)\s*(?:个)?(?:类别|类)")),
    ("num_epochs", re.compile(r"(?<![\d.])(\d+)\s*(?:个)?(?:轮|周期)")),
    ("num_gpus", re.compile(r"(?<![\d.])(\d+)\s*(?:块|张|个)\s*(?:GPU|显卡)", re.IGNORECASE)),
]
_KV = re.compile(r"(?<![\w.\[\]/])([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?)*)\s*=\s*([^\s,;]+)")

#: canonical parameter -> shorthand names that may carry it in a skill's ``shorthand``.
SHORTHAND_ALIASES: dict[str, tuple[str, ...]] = {
    "num_epochs": ("num_epochs", "epochs"),
    "batch_size": ("batch_size", "batch", "bs"),
    "num_gpus": ("num_gpus", "gpus"),
    "learning_rate": ("learning_rate", "lr"),
    "image_size": ("image_size", "img_size", "input_size"),
    "num_classes": ("num_classes",),
    "backbone": ("backbone", "arch", "model_arch", "teacher_type", "student_type"),
    "stage": ("stage", "train_stage"),
    "checkpoint": ("checkpoint", "resume_checkpoint", "parent_model"),
    "pretrained_model": ("pretrained_model", "pretrained_model_path"),
}

_ARCHIVE_EXT = (".tar.gz", ".tgz", ".tar", ".zip")
_CKPT_EXT = (".pth", ".pt", ".ckpt", ".tlt", ".onnx", ".engine", ".plan")


def _scalar(value: str) -> Any:
    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return loaded if isinstance(loaded, (int, float, bool, str)) else value


def _number(text: str) -> int | float:
    f = float(text)
    return int(f) if f.is_integer() and "e" not in text.lower() and "." not in text else f


def _path_role(text: str, start: int, value: str, action: str | None) -> tuple[str, str]:
    """(name, role) of a path from its extension and the words just before it."""
    low = value.lower().rstrip("/")
    before = text[max(0, start - 48) : start].lower()
    if low.endswith(_CKPT_EXT):
        if re.search(r"pre-?trained|backbone|initiali[sz]e|init from|start from|teacher", before):
            return "checkpoint", "pretrained_model"
        return "checkpoint", "checkpoint"
    if low.endswith((".yaml", ".yml")):
        return "spec", "spec"
    if low.endswith((".json", ".jsonl")) and not re.search(r"label[\s_]?map", before[-20:]):
        return "annotations", "annotations"
    words = before[-32:]
    if re.search(r"output|results?[\s_]dir|save|write|results? (?:to|in)", words):
        return "path", "output"
    if re.search(r"calibrat", words):
        return "dataset", "calibration_dataset"
    if re.search(r"\bval(?:idation|idate)?\b|\beval(?:uation|uate)?\b|\bdev\b", words):
        return "dataset", "eval_dataset"
    if re.search(r"\btest\b|inference|predict|\binfer\b|run (?:it )?on", words):
        return "dataset", "inference_dataset"
    if re.search(r"\btrain(?:ing)?\b", words):
        return "dataset", "train_datasets"
    if action == "evaluate" or action == "deploy_evaluate":
        return "dataset", "eval_dataset"
    if action in ("inference", "deploy_inference"):
        return "dataset", "inference_dataset"
    if action in ("quantize", "deploy_gen_trt_engine", "gen_trt_engine") and re.search(r"calib", before):
        return "dataset", "calibration_dataset"
    return "dataset", "train_datasets"


def extract_paths(text: str) -> list[tuple[int, int, str]]:
    """URIs and filesystem paths in ``text``: (start, end, value), non-overlapping, in order.

    Recognised: scheme URIs (s3://, gs://, hf://, https://, ...), absolute or ~/ ./ ../
    paths, bare file names with a data/model extension (.tar.gz, .pth, .json, ...), and
    relative folders written with a trailing slash (data/coco/). Trailing punctuation is
    dropped.
    """
    found: list[tuple[int, int, str]] = []
    taken = bytearray(len(text))
    for rx in (_URI, _LOCAL, _FILE, _REL_DIR):
        for m in rx.finditer(text):
            s, e = m.start(), m.end()
            while e > s and text[e - 1] in ".,;:!?)'\"":
                e -= 1
            if e - s < 2 or any(taken[s:e]):
                continue
            taken[s:e] = b"\x01" * (e - s)
            found.append((s, e, text[s:e]))
    return sorted(found)


def _shorthand_keys(info: SkillInfo | None, name: str) -> list[str]:
    if info is None:
        return []
    keys: list[str] = []
    for alias in SHORTHAND_ALIASES.get(name, (name,)):
        target = info.shorthand.get(alias)
        if target and target not in keys:
            keys.append(target)
    return keys


def extract_parameters(text: str, info: SkillInfo | None = None, action: str | None = None) -> list[Parameter]:
    """Values a request gives: epochs, batch size, GPUs, learning rate, image size, classes,
    backbone names (vit_s, vit_l, resnet_50, ...), MAE stage, ``key=value`` pairs, and paths.

    ``keys`` of each parameter come from ``info.shorthand`` (SHORTHAND_ALIASES) or, for a
    dotted ``key=value``, the key itself. Returns parameters in text order.
    """
    params: list[Parameter] = []
    taken = bytearray(len(text))  # 1 where a parameter already took the character

    def free(s: int, e: int) -> bool:
        return not any(taken[s:e])

    def add(name: str, value: Any, s: int, e: int, role: str | None = None, keys: list[str] | None = None) -> None:
        taken[s:e] = b"\x01" * (e - s)
        params.append(
            Parameter(
                name=name,
                value=value,
                keys=keys if keys is not None else _shorthand_keys(info, name),
                role=role,
                span=(s, e),
                text=text[s:e],
            )
        )

    for s, e, path in extract_paths(text):
        name, role = _path_role(text, s, path, action)
        keys = []
        if role == "pretrained_model":
            keys = _shorthand_keys(info, "pretrained_model")
        elif role == "checkpoint":
            keys = _shorthand_keys(info, "checkpoint")
        add(name, path, s, e, role, keys)

    for m in _KV.finditer(text):
        if not free(m.start(), m.end()):
            continue
        key, raw = m.group(1), m.group(2).rstrip(".")
        if key.lower() in ("automl_policy", "action", "skill"):
            continue
        canon = next((c for c, aliases in SHORTHAND_ALIASES.items() if key in aliases), None)
        if "." in key:
            keys = [key]
        elif info is not None and key in info.shorthand:
            keys = [info.shorthand[key]]
        else:
            keys = _shorthand_keys(info, canon) if canon else []
        add(canon or key, _scalar(raw), m.start(), m.start(2) + len(raw), keys=keys)

    for name, rx in _NUMERIC_PATTERNS:
        for m in rx.finditer(text):
            if not free(m.start(), m.end()):
                continue
            raw = m.group(1)
            if name == "num_gpus" and raw.lower() in _NUM_WORDS:
                value: Any = _NUM_WORDS[raw.lower()]
            elif name == "image_size" and m.lastindex and m.lastindex >= 2 and m.group(2):
                w, h = int(m.group(1)), int(m.group(2))
                value = w if w == h else [w, h]
            else:
                value = _number(raw)
            add(name, value, m.start(), m.end())

    for m in _BACKBONE.finditer(text):
        if free(m.start(), m.end()):
            add("backbone", m.group(1).lower(), m.start(), m.end())

    if info is not None and (_shorthand_keys(info, "stage") or info.network_arch == "mae"):
        sm = _stage_pattern().search(text)
        if sm and free(sm.start(), sm.end()):
            stage = _stage_of(sm.group(1))
            keys = _shorthand_keys(info, "stage") or ["train.stage"]
            params.append(Parameter(name="stage", value=stage, keys=keys, span=(sm.start(), sm.end()), text=sm.group(0)))
    return sorted(params, key=lambda p: p.span)


@lru_cache(maxsize=1)
def _stage_pattern() -> re.Pattern[str]:
    """MAE train.stage words: English, plus routing_lexicon.yaml ``stage_words``."""
    words = [w for ws in load_lexicon().stage_words.values() for w in ws]
    # 预训练权重 / 预训练模型 are "pretrained weights / model", not the pretrain stage
    extra = "|".join(re.escape(w) + "(?!权重|模型|的)" for w in sorted(words, key=len, reverse=True))
    english = r"(?<![a-z0-9])(?:fine[\s\-]?tun(?:e|ing)|pre[\s\-]?train(?:ing)?)(?![a-z0-9])"
    return re.compile(f"({english}{'|' + extra if extra else ''})", re.IGNORECASE)


def _stage_of(word: str) -> str:
    low = word.lower()
    if low.startswith("fine") or low in load_lexicon().stage_words.get("finetune", ()):
        return "finetune"
    return "pretrain"
