"""Routing data: weights, limits and the word lists of ``bank/routing_lexicon.yaml`` and
``bank/near_misses.yaml`` (loaded once, validated lightly)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

# --- weights (tuned on evals/routing_cases.yaml) ---------------------------------------
TRIGGER = 3.0
KEYWORD = 1.0
VERB_BONUS = 0.5
NEGATIVE = 1.5
MAX_NEGATIVE = 3.0
MIN_SCORE = 1.0

#: Only the first this many characters of a request are scored and searched for
#: parameters (a request is a sentence or a paragraph; this keeps routing linear and
#: bounded whatever an MCP client sends). Longer requests set ``RouteResult.truncated``.
MAX_SCORED_CHARS = 8192

#: Friendly names used in messages (fallback: the skill name).
DISPLAY = {"nvdinov2": "NVDINOv2", "dino": "DINO", "mae": "MAE", "grounding_dino": "Grounding DINO"}

# CJK ideographs (and compatibility forms): a run of them is one token; phrases made of
# them match as substrings.
CJK = "\u2e80-\u2fff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK}]")


def has_cjk(text: str) -> bool:
    """True when ``text`` holds a CJK character."""
    return bool(_CJK_CHAR.search(text))


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files("taoskills").joinpath(f"bank/{name}").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class FuzzyRules:
    """How close a typo must be (``fuzzy`` of routing_lexicon.yaml)."""

    min_length: int
    max_edits: tuple[tuple[int, int], ...]  # (phrase length from, edits), ascending
    substitution_min_length: int
    weight: float
    max_words: int

    def edits_for(self, length: int) -> int:
        """Most edits allowed for a phrase of ``length`` letters+digits (0 = exact only)."""
        if length < self.min_length:
            return 0
        allowed = 0
        for start, edits in self.max_edits:
            if length >= start:
                allowed = edits
        return allowed


@dataclass(frozen=True)
class Lexicon:
    """The parsed routing_lexicon.yaml."""

    action_words: dict[str, tuple[str, ...]]
    weak_engine_words: frozenset[str]
    use_trained_action: str
    use_trained: tuple[re.Pattern[str], ...]
    not_actions: tuple[str, ...]
    policy_off: tuple[str, ...]
    policy_on: tuple[str, ...]
    negations: tuple[str, ...]
    stage_words: dict[str, tuple[str, ...]]
    fuzzy: FuzzyRules


def _spaced_variants(phrases: list[str]) -> tuple[str, ...]:
    """Each phrase, plus the form with a space where Chinese meets Latin ("关闭 AutoML")."""
    out: list[str] = []
    for p in phrases:
        out.append(p)
        spaced = re.sub(f"(?<=[{CJK}])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9])(?=[{CJK}])", " ", p)
        if spaced != p:
            out.append(spaced)
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """``taoskills/bank/routing_lexicon.yaml`` as a :class:`Lexicon` (cached).

    Raises ValueError when a required section is missing."""
    raw = _read("routing_lexicon.yaml") or {}
    for key in ("action_words", "use_trained", "policy", "fuzzy"):
        if key not in raw:
            raise ValueError(f"routing_lexicon.yaml lacks {key}")
    fz = raw["fuzzy"]
    ut = raw["use_trained"]
    return Lexicon(
        action_words={a: tuple(ws) for a, ws in raw["action_words"].items()},
        weak_engine_words=frozenset(w.lower() for w in raw.get("weak_engine_words", [])),
        use_trained_action=ut.get("action", "inference"),
        use_trained=tuple(re.compile(p, re.IGNORECASE) for p in ut.get("patterns", [])),
        not_actions=tuple(ut.get("not_actions", [])),
        policy_off=_spaced_variants(raw["policy"].get("off", [])),
        policy_on=_spaced_variants(raw["policy"].get("on", [])),
        negations=tuple(raw.get("negations", [])),
        stage_words={k: tuple(v) for k, v in (raw.get("stage_words") or {}).items()},
        fuzzy=FuzzyRules(
            min_length=int(fz["min_length"]),
            max_edits=tuple(sorted((int(k), int(v)) for k, v in fz["max_edits"].items())),
            substitution_min_length=int(fz["substitution_min_length"]),
            weight=float(fz["weight"]),
            max_words=int(fz["max_words"]),
        ),
    )


#: Action words every model skill understands (routing_lexicon.yaml ``action_words``).
DEFAULT_ACTION_WORDS: dict[str, list[str]] = {a: list(ws) for a, ws in load_lexicon().action_words.items()}


@lru_cache(maxsize=1)
def load_near_misses() -> tuple[dict[str, Any], ...]:
    """The near-miss table (``taoskills/bank/near_misses.yaml``), validated lightly.

    Each entry: name, kind, display, phrases (case-insensitive), weight; optional
    ``cased`` (phrases matched case-sensitively: "SAM", "CLIP"), ``regex``, nearest,
    note, hint. Raises ValueError for an entry lacking a required key."""
    entries = _read("near_misses.yaml") or []
    for e in entries:
        for key in ("name", "kind", "display", "phrases", "weight"):
            if key not in e:
                raise ValueError(f"near_misses.yaml entry {e.get('name')!r} lacks {key}")
    return tuple(entries)
