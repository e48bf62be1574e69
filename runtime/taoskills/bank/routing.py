"""Deterministic request routing: request text -> skill, action, automl_policy, parameters.

How a request is scored (all matching is case-insensitive and on whole words; a space, a
hyphen or an underscore between the words of a phrase is optional, so "auto-encoder",
"auto encoder" and "autoencoder" are one phrase):

1. Paths and URIs are extracted first (they become parameters) and blanked out, so
   ``/data/coco/`` or ``dino_model_latest.pth`` never count as words of the request.
2. Every phrase is collected: each skill's ``routing.triggers`` (weight ``TRIGGER``; the
   skill name and its network_arch count as triggers too), ``routing.keywords``
   (``KEYWORD``), and the near misses of ``bank/near_misses.yaml`` (their own weight).
3. Overlaps are resolved longest-match-first, so "Grounding DINO" is one match (not a
   "DINO" match), "RT-DETR" is not "DETR", and "DINOv2"/"DINOv3" are never "DINO".
4. A match right after a negation ("not", "no", "without", "instead of", ...) does not
   count. A match within three words after an action verb ("train DINO") gets
   ``VERB_BONUS``. A near miss followed by "format/labels/annotations/dataset" is about
   data, not a model, and counts half.
5. Each skill's ``routing.negatives`` found elsewhere in the request cost ``NEGATIVE``
   each (at most ``MAX_NEGATIVE``).
6. The best model skill wins when its score is at least ``MIN_SCORE`` and beats every
   near miss and every other model skill; a tie gives no skill and says which to choose.
   AutoML/HPO words with no model give ``tao-run-automl`` and a reason asking which
   model; with a model they give the model skill, action train, policy on, and
   ``tao-run-automl`` as an alternative.

The action comes from action words (``DEFAULT_ACTION_WORDS`` plus the skill's
``routing.action_words``), restricted to the skill's actions; distill/quantize beat train,
otherwise the first one mentioned wins; TensorRT words turn evaluate/inference into
deploy_evaluate/deploy_inference where the skill has them. With a model and no action
word, the action is train. An explicit ``action`` argument wins over words.
Source of the phrases: the five seed SKILL.md descriptions (shared/seeds) and
anchor_report_skillbank.md §2, §7.1.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from taoskills.bank.automl_policy import (
    AUTOML_SKILL,
    PolicyDecision,
    normalize_policy_value,
    policy_from_text,
    resolve_automl_policy,
)
from taoskills.bank.skill_info import SkillInfo
from taoskills.errors import SpecError

# --- weights (tuned on evals/routing_cases.yaml) ---------------------------------------
TRIGGER = 3.0
KEYWORD = 1.0
VERB_BONUS = 0.5
NEGATIVE = 1.5
MAX_NEGATIVE = 3.0
MIN_SCORE = 1.0

#: Friendly names used in messages (fallback: the skill name).
DISPLAY = {"nvdinov2": "NVDINOv2", "dino": "DINO", "mae": "MAE", "grounding_dino": "Grounding DINO"}

#: Action words every model skill understands (the skill's routing.action_words add to
#: these). Keys are canonical action names; "gen_trt_engine" maps to the skill's
#: deploy_gen_trt_engine when that is what the skill calls it.
DEFAULT_ACTION_WORDS: dict[str, list[str]] = {
    "train": [
        "train",
        "trains",
        "training",
        "fine-tune",
        "finetune",
        "fine-tuning",
        "finetuning",
        "fine tune",
        "pretrain",
        "pre-train",
        "pretraining",
        "pre-training",
        "retrain",
        "resume training",
        "fit",
    ],
    "evaluate": [
        "evaluate",
        "evaluation",
        "eval",
        "validate",
        "compute metrics",
        "measure accuracy",
        "score the model",
        "benchmark",
    ],
    "inference": [
        "inference",
        "infer",
        "predict",
        "predictions",
        "run on images",
        "detect objects in",
        "run the detector on",
        "extract features",
        "feature extraction",
        "embeddings",
        "annotate images",
    ],
    "export": ["export", "onnx", "convert to onnx"],
    "distill": ["distill", "distillation", "knowledge distillation", "distil"],
    "quantize": ["quantize", "quantise", "quantization", "quantisation", "qat", "ptq", "int8 quantization", "modelopt"],
    "gen_trt_engine": [
        "gen_trt_engine",
        "trt engine",
        "tensorrt engine",
        "tensorrt",
        "trt",
        "build an engine",
        "build engine",
        "generate an engine",
        "deploy",
        "deployment",
    ],
}

# TensorRT context: turns evaluate/inference into deploy_evaluate/deploy_inference.
_TRT_CONTEXT = re.compile(r"(?<![a-z0-9])(?:tensorrt|trt|\.engine|engine\s+file|engine)(?![a-z0-9])", re.IGNORECASE)
# Only these words, alone, ask for an engine build (not "tensorrt inference").
_WEAK_ENGINE_WORDS = {
    "tensorrt",
    "trt",
    "engine",
    "deploy",
    "deployment",
    "trt engine",
    "tensorrt engine",
    "fp16",
    "fp32",
    "int8",
}
_ENGINE_BUILD = re.compile(
    r"(?<![a-z0-9])(?:gen_trt_engine|(?:build|generate|create|make|compile|convert|produce)\w*\s+(?:\w+\s+){0,4}?(?:tensorrt|trt|engine))(?![a-z0-9])",
    re.IGNORECASE,
)
_ACTION_VERBS = re.compile(
    r"(?:train|training|fine-?tune|finetune|pretrain|pre-train|evaluate|eval|export|run|use|launch|quantize|distill|deploy|infer|start|set\s+up)\s+(?:an?\s+|the\s+|my\s+|our\s+|a\s+new\s+)?(?:\S+\s+){0,1}$",
    re.IGNORECASE,
)
_VERB_LEAD = re.compile(r"(?:train|pretrain|pre-train|fine-?tune|finetune)\s", re.IGNORECASE)
_NEGATION = re.compile(
    r"(?:\bnot|\bno|\bnever|\bwithout|\binstead\s+of|\brather\s+than|\bexcept|\bunlike|\bother\s+than|n't|\bnor|\bdisable|\bskip|\bturn\s+off)"
    r"\s+(?:(?!(?:and|but|then|or|so|just)\b)[^\s,;.:!?]+\s+){0,2}$",
    re.IGNORECASE,
)
# "my COCO export", "the training data": an action word used as a noun
_NOUN_BEFORE = re.compile(
    r"(?:coco|odvg|kitti|voc|cvat|yolo|dataset|data|label|labels|annotation|annotations)\s+$", re.IGNORECASE
)
# "run the engine on my test images": asks for inference
_RUN_ON_IMAGES = re.compile(
    r"(?<![a-z0-9])(?:run|apply|use)\s+(?:it\s+|the\s+|my\s+|this\s+)?(?:[\w\-]+\s+){0,3}?on\s+(?:my\s+|the\s+|these\s+|some\s+|new\s+)?(?:[\w\-]+\s+){0,2}?(?:images|frames|photos|pictures|videos?|camera\s+feeds?)(?![a-z0-9])",
    re.IGNORECASE,
)
# "I want a detection model", "we need an open-vocabulary detector": asks to train one
_WANT_MODEL = re.compile(
    r"(?<![a-z0-9])(?:want|need|build|create|get|make|develop)\s+(?:me\s+)?(?:an?\s+|my\s+own\s+|our\s+own\s+)(?:[\w\-]+\s+){0,3}?(?:model|detector|classifier|backbone)s?(?![a-z0-9])",
    re.IGNORECASE,
)
_COMPONENT_BEFORE = re.compile(r"(?:\bwith|\busing|\bplus|\band)\s+(?:an?\s+|the\s+)?(?:pre-?trained\s+)?$", re.IGNORECASE)
_COMPONENT_AFTER = re.compile(r"^\W{0,2}(?:backbone|text\s+encoder|encoder|weights|features)\b", re.IGNORECASE)
_DATA_CONTEXT = re.compile(r"^\W{0,2}(?:format(?:ted)?|labels?|annotations?|annotated|dataset|data|style)\b", re.IGNORECASE)

_SEP = r"[\s\-_]*"
# whole words; "nvdinov2" inside the identifier "vit_large_nvdinov2" is not a word of its own
_W = r"(?<![A-Za-z0-9])(?<![A-Za-z0-9]_)"
_E = r"(?![A-Za-z0-9])(?!_[A-Za-z0-9])"


# --- result models ------------------------------------------------------------------------
class Parameter(BaseModel):
    """One value extracted from the request.

    ``name``: canonical name (num_epochs, batch_size, num_gpus, learning_rate, image_size,
    num_classes, backbone, stage, dataset, checkpoint, annotations, spec, path, or the key
    of a ``key=value`` pair). ``keys``: the dotted spec keys it maps to through the
    skill's ``shorthand`` (empty when the skill has no such shorthand). ``role`` for paths:
    train_datasets | eval_dataset | inference_dataset | calibration_dataset | checkpoint |
    pretrained_model | annotations | spec | output. ``span``: [start, end) in the request.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    value: Any
    keys: list[str] = []
    role: str | None = None
    span: tuple[int, int]
    text: str


class Match(BaseModel):
    """Evidence: a phrase found in the request, who it speaks for, and how it counted."""

    model_config = ConfigDict(frozen=True)

    owner: str  # skill name, or "near-miss:<name>"
    phrase: str
    kind: Literal["trigger", "keyword", "negative", "near_miss", "action"]
    span: tuple[int, int]
    weight: float
    negated: bool = False


class Alternative(BaseModel):
    model_config = ConfigDict(frozen=True)

    skill: str
    score: float
    reason: str


class NearMiss(BaseModel):
    """A known model or TAO network that is not in this bank."""

    model_config = ConfigDict(frozen=True)

    name: str
    display: str
    kind: Literal["tao_network", "other_model"]
    nearest: str | None
    score: float


class RouteResult(BaseModel):
    """What :func:`route` decided.

    ``skill`` is None when nothing applies; ``no_skill_reason`` then names the nearest known
    thing. ``confidence`` (0..1) is the confidence in ``skill`` (0 when None).
    ``actions_mentioned`` lists every action the text asks for, in text order (a chain
    such as train -> export); ``action`` is the one to run now.
    """

    model_config = ConfigDict(frozen=True)

    skill: str | None
    network_arch: str | None = None
    action: str | None = None
    action_source: Literal["explicit", "request text", "default"] | None = None
    actions_mentioned: list[str] = []
    unsupported_action: str | None = None
    automl_policy: PolicyDecision | None = None
    parameters: list[Parameter] = []
    confidence: float = 0.0
    scores: dict[str, float] = {}
    alternatives: list[Alternative] = []
    ambiguous: bool = False
    near_miss: NearMiss | None = None
    matches: list[Match] = []
    reason: str
    no_skill_reason: str | None = None

    def param(self, name: str) -> Parameter | None:
        """The first extracted parameter called ``name`` (None if absent)."""
        return next((p for p in self.parameters if p.name == name), None)


# --- catalog adapter ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    name: str
    info: SkillInfo
    dir: Path | None


def _entries(catalog: Any) -> list[_Entry]:
    """Accept a Catalog (``.skills`` dict of Skill), a dict, or an iterable of Skill/SkillInfo."""
    items: Iterable[Any]
    if hasattr(catalog, "skills"):
        items = catalog.skills.values() if isinstance(catalog.skills, dict) else catalog.skills
    elif isinstance(catalog, dict):
        items = catalog.values()
    else:
        items = catalog
    out = []
    for item in items:
        if isinstance(item, SkillInfo):
            out.append(_Entry(item.name, item, None))
        else:
            info = item.info
            d = getattr(item, "dir", None)
            out.append(_Entry(getattr(item, "name", info.name), info, Path(d) if d is not None else None))
    order = list(DISPLAY)
    return sorted(out, key=lambda e: (order.index(e.info.network_arch) if e.info.network_arch in order else len(order), e.name))


def _display(info: SkillInfo) -> str:
    return DISPLAY.get(info.network_arch or "", info.name)


# --- phrase matching -----------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _compile_phrase(phrase: str) -> re.Pattern[str]:
    tokens = [t for t in re.split(r"[\s\-_]+", phrase.strip()) if t]
    parts = []
    for t in tokens:
        # "DINOv2" also matches "DINO v2"/"DINO-v2"; "SAM2" also "SAM 2"
        m = re.fullmatch(r"(.*?[A-Za-z])(v?\d+)", t)
        parts.append(re.escape(m.group(1)) + _SEP + re.escape(m.group(2)) if m and len(m.group(1)) > 1 else re.escape(t))
    body = _SEP.join(parts)
    plural = "(?:e?s)?" if tokens and tokens[-1][-1].isalpha() and len(tokens[-1]) > 2 else ""
    return re.compile(_W + body + plural + _E, re.IGNORECASE)


def _find(phrase: str, text: str) -> Iterator[tuple[int, int]]:
    for m in _compile_phrase(phrase).finditer(text):
        yield m.start(), m.end()


@dataclass
class _Cand:
    owner: str
    phrase: str
    kind: str
    start: int
    end: int
    weight: float
    negated: bool = False
    bonus: float = 0.0
    component: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start


def _resolve_overlaps(cands: list[_Cand]) -> list[_Cand]:
    """Longest match first; candidates with exactly an accepted span share it."""
    accepted: list[_Cand] = []
    spans: list[tuple[int, int]] = []
    for c in sorted(cands, key=lambda c: (-c.length, -c.weight, c.start, c.owner)):
        if (c.start, c.end) in spans:
            accepted.append(c)
            continue
        if any(c.start < e and s < c.end for s, e in spans):
            continue
        spans.append((c.start, c.end))
        accepted.append(c)
    return sorted(accepted, key=lambda c: (c.start, c.owner))


@lru_cache(maxsize=1)
def load_near_misses() -> tuple[dict[str, Any], ...]:
    """The near-miss table (``taoskills/bank/near_misses.yaml``), validated lightly."""
    raw = resources.files("taoskills").joinpath("bank/near_misses.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(raw) or []
    for e in entries:
        for key in ("name", "kind", "display", "phrases", "weight"):
            if key not in e:
                raise ValueError(f"near_misses.yaml entry {e.get('name')!r} lacks {key}")
    return tuple(entries)


# --- parameter extraction ------------------------------------------------------------------------
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
_URI = re.compile(r"(?<![\w])(?:s3|gs|hf|ngc|az|abfs|https?|file|lustre)://[^\s'\"<>,;()\[\]]+", re.IGNORECASE)
_LOCAL = re.compile(r"(?<![\w/.~:])(?:~|\.{1,2})?/[\w.\-@+/=%]*[\w/]|(?<![\w/.])(?:~|\.{1,2})/[\w.\-@+/=%]*[\w/]")
_FILE = re.compile(
    r"(?<![\w/.\-])[\w.\-]+(?:/[\w.\-]+)*\.(?:tar\.gz|tgz|tar|zip|pth|pt|ckpt|tlt|onnx|engine|plan|jsonl|json|ya?ml|txt)(?![\w])",
    re.IGNORECASE,
)
_REL_DIR = re.compile(r"(?<![\w/.\-])[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+/(?![\w])")

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
    for rx in (_URI, _LOCAL, _FILE, _REL_DIR):
        for m in rx.finditer(text):
            s, e = m.start(), m.end()
            while e > s and text[e - 1] in ".,;:!?)'\"":
                e -= 1
            if e - s < 2 or any(s < fe and fs < e for fs, fe, _ in found):
                continue
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
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return not any(s < te and ts < e for ts, te in taken)

    def add(name: str, value: Any, s: int, e: int, role: str | None = None, keys: list[str] | None = None) -> None:
        taken.append((s, e))
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

    for s, e, value in extract_paths(text):
        name, role = _path_role(text, s, value, action)
        keys = []
        if role == "pretrained_model":
            keys = _shorthand_keys(info, "pretrained_model")
        elif role == "checkpoint":
            keys = _shorthand_keys(info, "checkpoint")
        add(name, value, s, e, role, keys)

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
        m = re.search(r"(?<![a-z0-9])(fine[\s\-]?tun(?:e|ing)|pre[\s\-]?train(?:ing)?)(?![a-z0-9])", text, re.IGNORECASE)
        if m and free(m.start(), m.end()):
            stage = "finetune" if m.group(1).lower().startswith("fine") else "pretrain"
            keys = _shorthand_keys(info, "stage") or ["train.stage"]
            params.append(Parameter(name="stage", value=stage, keys=keys, span=(m.start(), m.end()), text=m.group(0)))
    return sorted(params, key=lambda p: p.span)


# --- routing -----------------------------------------------------------------------------------
def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        for i in range(s, e):
            chars[i] = " "
    return "".join(chars)


@dataclass
class _Scored:
    score: float = 0.0
    phrases: set[str] = field(default_factory=set)
    evidence: list[str] = field(default_factory=list)


def _collect(masked: str, entries: list[_Entry]) -> list[_Cand]:
    cands: list[_Cand] = []
    for entry in entries:
        r = entry.info.routing
        implicit = [entry.name]
        if entry.info.network_arch:
            implicit.append(entry.info.network_arch)
        for kind, weight, phrases in (("trigger", TRIGGER, [*r.triggers, *implicit]), ("keyword", KEYWORD, r.keywords)):
            for phrase in dict.fromkeys(phrases):
                for s, e in _find(phrase, masked):
                    cands.append(_Cand(entry.name, phrase, kind, s, e, weight))
    for nm in load_near_misses():
        owner = f"near-miss:{nm['name']}"
        for phrase in nm["phrases"]:
            for s, e in _find(phrase, masked):
                cands.append(_Cand(owner, phrase, "near_miss", s, e, float(nm["weight"])))
        if nm.get("regex"):
            for m in re.finditer(nm["regex"], masked, re.IGNORECASE):
                cands.append(_Cand(owner, m.group(0), "near_miss", m.start(), m.end(), float(nm["weight"])))
    return cands


def _annotate(cands: list[_Cand], masked: str) -> None:
    for c in cands:
        before = masked[max(0, c.start - 40) : c.start]
        c.negated = bool(_NEGATION.search(before))
        if _ACTION_VERBS.search(before[-28:]) or _VERB_LEAD.match(c.phrase):
            c.bonus = VERB_BONUS
        if c.kind == "near_miss" and _DATA_CONTEXT.search(masked[c.end : c.end + 16]):
            c.weight /= 2
        # "DINO with a DINOv2 backbone", "Grounding DINO and its BERT text encoder": a part, not the model
        phrase_is_part = bool(re.search(r"(?:backbone|encoder)$", c.phrase, re.IGNORECASE))
        if _COMPONENT_BEFORE.search(before[-24:]) and (phrase_is_part or _COMPONENT_AFTER.search(masked[c.end : c.end + 16])):
            c.component = True
            c.weight = min(c.weight, KEYWORD) / 2
            c.bonus = 0.0


def _score(accepted: list[_Cand], masked: str, entries: list[_Entry]) -> tuple[dict[str, _Scored], list[_Cand]]:
    scored: dict[str, _Scored] = {}
    seen_spans: set[tuple[str, int, int]] = set()
    for c in accepted:
        if c.negated or (c.owner, c.start, c.end) in seen_spans:
            continue
        seen_spans.add((c.owner, c.start, c.end))
        s = scored.setdefault(c.owner, _Scored())
        if c.phrase.lower() in s.phrases:
            continue
        s.phrases.add(c.phrase.lower())
        s.score += c.weight + c.bonus
        s.evidence.append(f"{c.kind} {masked[c.start : c.end]!r}")
    negatives: list[_Cand] = []
    for entry in entries:
        own = [(c.start, c.end) for c in accepted if c.owner == entry.name or c.negated or c.component]
        penalty = 0.0
        for phrase in dict.fromkeys(entry.info.routing.negatives):
            for s_, e_ in _find(phrase, masked):
                if any(s_ < e and s < e_ for s, e in own):
                    continue
                negatives.append(_Cand(entry.name, phrase, "negative", s_, e_, -NEGATIVE))
                penalty += NEGATIVE
                break
        if penalty and entry.name in scored:
            sc = scored[entry.name]
            sc.score -= min(penalty, MAX_NEGATIVE)
            sc.evidence.append(f"negatives -{min(penalty, MAX_NEGATIVE):g}")
    return scored, negatives


def _confidence(top: float, second: float) -> float:
    if top <= 0:
        return 0.0
    strength = min(1.0, top / (TRIGGER + KEYWORD))
    margin = max(0.0, (top - max(second, 0.0)) / top)
    return round(strength * (0.5 + 0.5 * margin), 3)


def _canonical_action(name: str, actions: Iterable[str]) -> str | None:
    acts = set(actions)
    if name in acts:
        return name
    if f"deploy_{name}" in acts and name == "gen_trt_engine":
        return f"deploy_{name}"
    return None


def _action_mentions(
    masked: str, info: SkillInfo, skill_spans: list[tuple[int, int]]
) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(start, action, word) mentions valid for this skill, and unsupported actions asked for."""
    words: dict[str, set[str]] = {a: set(ws) for a, ws in DEFAULT_ACTION_WORDS.items()}
    for action, ws in info.routing.action_words.items():
        key = "gen_trt_engine" if action == "deploy_gen_trt_engine" else action
        words.setdefault(key, set()).update(ws)
    cands = [_Cand(action, w, "action", s, e, 0.0) for action, ws in words.items() for w in ws for s, e in _find(w, masked)]
    accepted = [c for c in _resolve_overlaps(cands) if not _NOUN_BEFORE.search(masked[max(0, c.start - 16) : c.start])]
    trt = bool(_TRT_CONTEXT.search(masked))
    build = bool(_ENGINE_BUILD.search(masked))
    found: list[tuple[int, str, str]] = []
    unsupported: list[str] = []
    run_on = [m for m in _RUN_ON_IMAGES.finditer(masked)]
    has_eval_or_infer = bool(run_on) or any(c.owner in ("evaluate", "inference") for c in accepted)
    for c in accepted:
        action = c.owner
        if action in ("evaluate", "inference") and trt and f"deploy_{action}" in info.actions:
            action = f"deploy_{action}"
        if action == "gen_trt_engine" and c.phrase.lower() in _WEAK_ENGINE_WORDS and has_eval_or_infer and not build:
            continue
        canon = _canonical_action(action, info.actions)
        if canon is None:
            inside_skill_phrase = any(c.start >= s and c.end <= e for s, e in skill_spans)
            if not inside_skill_phrase and action not in unsupported:
                unsupported.append(action)
            continue
        found.append((c.start, canon, masked[c.start : c.end]))
    for m in run_on:
        if not any(m.start() <= start < m.end() for start, _, _ in found):
            infer = "deploy_inference" if trt and "deploy_inference" in info.actions else "inference"
            if infer in info.actions:
                found.append((m.start(), infer, m.group(0)))
    if "train" in info.actions:
        for m in _WANT_MODEL.finditer(masked):
            found.append((m.start(), "train", m.group(0)))
    return found, unsupported


def _pick_action(mentions: list[tuple[int, str, str]]) -> tuple[str, str] | None:
    if not mentions:
        return None
    for special in ("distill", "quantize"):
        for _, action, word in mentions:
            if action == special:
                return action, word
    _, action, word = min(mentions)
    return action, word


def _no_skill_message(nm: dict[str, Any], entries: list[_Entry], bank: str) -> str:
    nearest = next((e for e in entries if e.name == nm.get("nearest")), None)
    near = f"; nearest: {_display(nearest.info)} ({nearest.name})" if nearest else ""
    hint = f" ({nm['hint']})" if nm.get("hint") else ""
    if nm["kind"] == "tao_network":
        return f"{nm['display']} is {nm['note']} not in this bank{near}{hint}. The bank covers {bank}."
    return f"{nm['display']} is not one of these skills; the bank covers {bank}{near}{hint}. ({nm['note']})"


def route(
    text: str,
    catalog: Any,
    *,
    action: str | None = None,
    automl_policy: str | None = None,
) -> RouteResult:
    """Route a request to a skill (deterministic; rules and weights in the module docstring).

    ``text``: the user's request. ``catalog``: a ``Catalog`` (``.skills`` name -> Skill with
    ``.info`` SkillInfo and ``.dir``), a dict of those, or an iterable of Skill/SkillInfo.
    ``action``: an explicit action; it wins over words and must be one of the skill's
    actions ("gen_trt_engine" also names "deploy_gen_trt_engine"). ``automl_policy``: an
    explicit on|off|auto (see taoskills.bank.automl_policy).
    Raises SpecError(field="action") for an action the routed skill does not have, and
    SpecError(field="automl_policy") for an invalid policy value.
    """
    if automl_policy is not None:
        normalize_policy_value(automl_policy)  # fail early, whatever the routing says
    entries = _entries(catalog)
    models = [e for e in entries if e.info.kind == "model"]
    apps = [e for e in entries if e.info.kind != "model"]
    bank = ", ".join(_display(e.info) for e in models) or "no model skills"
    if apps:
        bank += " and " + ", ".join(f"AutoML ({e.name})" if e.name == AUTOML_SKILL else e.name for e in apps)

    paths = extract_paths(text)
    masked = _mask(text, [(s, e) for s, e, _ in paths])
    cands = _collect(masked, entries)
    _annotate(cands, masked)
    accepted = _resolve_overlaps(cands)
    scored, negatives = _score(accepted, masked, entries)
    matches = [
        Match(
            owner=c.owner,
            phrase=c.phrase,
            kind=c.kind,
            span=(c.start, c.end),
            weight=round(c.weight + c.bonus, 3),
            negated=c.negated,
        )
        for c in [*accepted, *negatives]
    ]

    extra_off = [p for e in apps if e.info.automl for p in e.info.automl.policy_off_phrases]
    intent, intent_phrase = policy_from_text(masked, extra_off)
    app_hit = next((e for e in apps if e.name in scored and scored[e.name].score > 0), None)
    if app_hit is None and intent == "on":
        app_hit = next((e for e in apps if e.name == AUTOML_SKILL), None)
    automl_wanted = intent == "on" or (app_hit is not None and intent != "off")

    model_scores = {e.name: round(scored[e.name].score, 3) for e in models if e.name in scored}
    nm_table = {f"near-miss:{nm['name']}": nm for nm in load_near_misses()}
    nm_scores = {k: round(v.score, 3) for k, v in scored.items() if k in nm_table}
    scores = {**model_scores, **{e.name: round(scored[e.name].score, 3) for e in apps if e.name in scored}, **nm_scores}

    ranked = sorted(model_scores.items(), key=lambda kv: (-kv[1], kv[0]))
    best_nm = max(nm_scores.items(), key=lambda kv: (kv[1], kv[0]), default=(None, 0.0))
    nm_info = nm_table[best_nm[0]] if best_nm[0] else None
    near = (
        NearMiss(
            name=nm_info["name"],
            display=nm_info["display"],
            kind=nm_info["kind"],
            nearest=nm_info.get("nearest"),
            score=best_nm[1],
        )
        if nm_info
        else None
    )

    def alternatives(exclude: str | None) -> list[Alternative]:
        alts = [
            Alternative(skill=name, score=score, reason="; ".join(scored[name].evidence))
            for name, score in ranked
            if name != exclude and score > 0
        ]
        if automl_wanted and exclude != AUTOML_SKILL and any(e.name == AUTOML_SKILL for e in apps):
            alts.append(
                Alternative(
                    skill=AUTOML_SKILL,
                    score=scores.get(AUTOML_SKILL, TRIGGER),
                    reason=f"AutoML asked for ({intent_phrase or 'AutoML words'}): the train action can run through {AUTOML_SKILL}",
                )
            )
        if near and near.nearest and near.nearest != exclude and all(a.skill != near.nearest for a in alts):
            alts.append(Alternative(skill=near.nearest, score=0.0, reason=f"nearest skill to {near.display}"))
        return alts

    base = {"scores": scores, "matches": matches}
    top_name, top = ranked[0] if ranked else (None, 0.0)
    second = ranked[1][1] if len(ranked) > 1 else 0.0

    # 1. a model skill that clearly wins
    if top_name and top >= MIN_SCORE and top > best_nm[1] and top > second:
        entry = next(e for e in models if e.name == top_name)
        return _finish_model(
            text,
            masked,
            entry,
            top,
            max(second, best_nm[1]),
            scored,
            accepted,
            alternatives(top_name),
            base,
            action,
            automl_policy,
            automl_wanted,
            intent_phrase,
            extra_off,
            paths,
            near,
        )

    # 2. two model skills tie
    if top_name and top >= MIN_SCORE and top == second and top > best_nm[1]:
        tied = [n for n, s in ranked if s == top]
        msg = f"ambiguous: {' and '.join(tied)} match equally ({top:g}); name the model you want"
        return RouteResult(
            skill=None,
            ambiguous=True,
            alternatives=alternatives(None),
            near_miss=near,
            reason=msg,
            no_skill_reason=msg,
            parameters=extract_parameters(text, None, None),
            **base,
        )

    # 3. a near miss wins (or ties a model skill)
    if near and best_nm[1] >= MIN_SCORE and best_nm[1] >= top:
        msg = _no_skill_message(nm_info, entries, bank)
        if top_name and top == best_nm[1]:
            msg += f" ({top_name} also matched as strongly; name the model if you meant it)"
        return RouteResult(
            skill=None,
            near_miss=near,
            alternatives=alternatives(None),
            reason=msg,
            no_skill_reason=msg,
            ambiguous=bool(top_name and top == best_nm[1]),
            parameters=extract_parameters(text, None, None),
            **base,
        )

    # 4. AutoML with no model named
    if app_hit is not None and automl_wanted:
        info = app_hit.info
        act = None
        if action is not None:
            if info.actions and action not in info.actions:
                raise _bad_action(action, app_hit.name, list(info.actions))
            act = action
        msg = (
            f"{app_hit.name}: AutoML/HPO asked for ({intent_phrase!r}) but no model named; "
            f"which model should it tune? ({bank.split(' and AutoML')[0]})"
        )
        return RouteResult(
            skill=app_hit.name,
            network_arch=None,
            action=act,
            action_source="explicit" if act else None,
            confidence=round(_confidence(scores.get(app_hit.name, TRIGGER), 0.0) * 0.6, 3),
            alternatives=[
                Alternative(skill=e.name, score=0.0, reason="AutoML-enabled model skill") for e in models if e.info.automl_enabled
            ],
            reason=msg,
            parameters=extract_parameters(text, None, None),
            **base,
        )

    msg = f"No skill matches this request; the bank covers {bank}. Name one of those models (e.g. 'train DINO on my COCO data')."
    if top_name and top > 0:
        msg = f"Too little evidence ({top_name} scored {top:g} < {MIN_SCORE:g}); the bank covers {bank}. Name the model."
    return RouteResult(
        skill=None,
        reason=msg,
        no_skill_reason=msg,
        alternatives=alternatives(None),
        near_miss=None,
        parameters=extract_parameters(text, None, None),
        **base,
    )


def _bad_action(action: str, skill: str, allowed: list[str]) -> SpecError:
    return SpecError(
        f"action {action!r} is not an action of {skill}; allowed: {', '.join(allowed) or 'none'}",
        field="action",
        fix=f"use one of: {', '.join(allowed)}" if allowed else f"{skill} takes no action argument",
        details={"skill": skill, "allowed": allowed, "value": action},
    )


def _finish_model(
    text: str,
    masked: str,
    entry: _Entry,
    top: float,
    second: float,
    scored: dict[str, _Scored],
    accepted: list[_Cand],
    alternatives: list[Alternative],
    base: dict[str, Any],
    action: str | None,
    automl_policy: str | None,
    automl_wanted: bool,
    intent_phrase: str | None,
    extra_off: list[str],
    paths: list[tuple[int, int, str]],
    near: NearMiss | None,
) -> RouteResult:
    info = entry.info
    skill_spans = [(c.start, c.end) for c in accepted if c.owner == entry.name]
    mentions, unsupported = _action_mentions(masked, info, skill_spans)
    if automl_wanted and "train" in info.actions and intent_phrase:
        pos = masked.lower().find(intent_phrase.lower())
        mentions.append((pos if pos >= 0 else 0, "train", intent_phrase))
    mentioned = [a for _, a, _ in sorted(mentions)]
    mentioned = list(dict.fromkeys(mentioned))

    unsupported_action = None
    if action is not None:
        canon = _canonical_action(action, info.actions)
        if canon is None:
            raise _bad_action(action, entry.name, list(info.actions))
        act, source, why = canon, "explicit", f"action {canon} given explicitly"
    else:
        picked = _pick_action(mentions)
        if picked:
            act, source, why = picked[0], "request text", f"action {picked[0]} from {picked[1]!r}"
        elif unsupported:
            act, source = None, None
            unsupported_action = unsupported[0]
            why = f"{entry.name} has no {unsupported[0]} action (actions: {', '.join(info.actions)}); " + (
                "validate an NVDINOv2 backbone by inference instead"
                if info.network_arch == "nvdinov2" and unsupported[0] == "evaluate"
                else "choose one of those"
            )
        elif "train" in info.actions:
            act, source, why = "train", "default", "no action word: default train"
        else:
            act, source, why = None, None, "no action word and no train action"

    decision = None
    if act is not None:
        decision = resolve_automl_policy(
            info, act, explicit=automl_policy, text=masked, skill_dir=entry.dir, extra_off_phrases=extra_off
        )

    params = extract_parameters(text, info, act)
    evidence = "; ".join(scored[entry.name].evidence)
    reason = f"{entry.name} ({_display(info)}): {evidence}; score {top:g} vs next {second:g}. {why}."
    if decision is not None and decision.applies:
        reason += f" automl_policy {decision.policy}: {decision.reason}."
    if near:
        reason += f" Also mentioned: {near.display} (not in this bank)."
    return RouteResult(
        skill=entry.name,
        network_arch=info.network_arch,
        action=act,
        action_source=source,
        actions_mentioned=mentioned,
        unsupported_action=unsupported_action,
        automl_policy=decision,
        parameters=params,
        confidence=_confidence(top, second),
        alternatives=alternatives,
        near_miss=near,
        reason=reason,
        **base,
    )
