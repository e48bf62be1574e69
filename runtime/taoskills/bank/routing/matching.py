"""Phrase matching: exact phrases, fuzzy (typo) matches with rapidfuzz, overlap resolution
and skill scoring. All work is linear in the length of the (capped) request text.

Exact: each phrase is one compiled regex, matched on whole words, case-insensitive, with
an optional space/hyphen/underscore between its words ("auto-encoder" = "autoencoder");
a CJK phrase matches as a substring. Fuzzy: the text is tokenised once; every run of
1..``max_words`` adjacent words, written together, is compared (rapidfuzz OSA distance)
with the phrases of the same first letter and similar length; the rules are the
``fuzzy`` block of ``bank/routing_lexicon.yaml``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rapidfuzz.distance import OSA

from taoskills.bank.routing.lexicon import (
    CJK,
    KEYWORD,
    MAX_NEGATIVE,
    NEGATIVE,
    TRIGGER,
    VERB_BONUS,
    load_lexicon,
    load_near_misses,
)
from taoskills.bank.skill_info import SkillInfo

_SEP = r"[\s\-_]*"
# whole words; "nvdinov2" inside the identifier "vit_large_nvdinov2" is not a word of its own
_W = r"(?<![A-Za-z0-9])(?<![A-Za-z0-9]_)"
_E = r"(?![A-Za-z0-9])(?!_[A-Za-z0-9])"

_ACTION_VERBS = re.compile(
    r"(?:train|training|fine-?tune|finetune|pretrain|pre-train|evaluate|eval|export|run|use|launch|quantize|distill|deploy|infer|start|set\s+up)\s+(?:an?\s+|the\s+|my\s+|our\s+|a\s+new\s+)?(?:\S+\s+){0,1}$",
    re.IGNORECASE,
)
_VERB_LEAD = re.compile(r"(?:train|pretrain|pre-train|fine-?tune|finetune)\s", re.IGNORECASE)
_COMPONENT_BEFORE = re.compile(r"(?:\bwith|\busing|\bplus|\band)\s+(?:an?\s+|the\s+)?(?:pre-?trained\s+)?$", re.IGNORECASE)
_COMPONENT_AFTER = re.compile(r"^\W{0,2}(?:backbone|text\s+encoder|encoder|weights|features)\b", re.IGNORECASE)
_DATA_CONTEXT = re.compile(r"^\W{0,2}(?:format(?:ted)?|labels?|annotations?|annotated|dataset|data|style)\b", re.IGNORECASE)
_TOKEN = re.compile(f"[A-Za-z0-9]+|[{CJK}]+")
_GAP = re.compile(r"[\s\-_]{1,3}")
_CJK_AT = re.compile(f"[{CJK}]")


@lru_cache(maxsize=1)
def _negation() -> re.Pattern[str]:
    """A negation word right before a match: English, plus routing_lexicon ``negations``."""
    zh = "|".join(re.escape(w) for w in load_lexicon().negations)
    return re.compile(
        r"(?:(?:\bnot|\bno|\bnever|\bwithout|\binstead\s+of|\brather\s+than|\bexcept|\bunlike|\bother\s+than|n't|\bnor|\bdisable|\bskip|\bturn\s+off)"
        r"\s+(?:(?!(?:and|but|then|or|so|just)\b)[^\s,;.:!?]+\s+){0,2}" + (f"|(?:{zh})\\s*" if zh else "") + ")$",
        re.IGNORECASE,
    )


@dataclass(frozen=True)
class Entry:
    """One skill of the catalog, as routing sees it."""

    name: str
    info: SkillInfo
    dir: Path | None


@dataclass
class Cand:
    """A phrase found at [start, end) for ``owner`` (a skill, a near miss or an action)."""

    owner: str
    phrase: str
    kind: str
    start: int
    end: int
    weight: float
    negated: bool = False
    bonus: float = 0.0
    component: bool = False
    fuzzy: bool = False

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Work:
    """Operation counts of one routing call (reported in RouteResult.work)."""

    chars_scored: int = 0
    tokens: int = 0
    fuzzy_queries: int = 0
    candidates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# --- exact phrases ---------------------------------------------------------------------------
@lru_cache(maxsize=8192)
def compile_phrase(phrase: str, cased: bool = False) -> re.Pattern[str]:
    """The regex of one phrase (rules in the module docstring)."""
    tokens = [t for t in re.split(r"[\s\-_]+", phrase.strip()) if t]
    parts = []
    for t in tokens:
        # "DINOv2" also matches "DINO v2"/"DINO-v2"; "SAM2" also "SAM 2"
        m = re.fullmatch(r"(.*?[A-Za-z])(v?\d+)", t)
        parts.append(re.escape(m.group(1)) + _SEP + re.escape(m.group(2)) if m and len(m.group(1)) > 1 else re.escape(t))
    body = _SEP.join(parts)
    plural = "(?:e?s)?" if tokens and tokens[-1][-1].isascii() and tokens[-1][-1].isalpha() and len(tokens[-1]) > 2 else ""
    # a phrase that starts or ends with a CJK character needs no word boundary there
    head = "" if tokens and _CJK_AT.match(tokens[0][0]) else _W
    tail = "" if tokens and _CJK_AT.match(tokens[-1][-1]) else _E
    return re.compile(head + body + plural + tail, 0 if cased else re.IGNORECASE)


@lru_cache(maxsize=8192)
def _probe(phrase: str) -> str:
    """A literal, lower-case prefix every match of ``phrase`` starts with."""
    first = next((t for t in re.split(r"[\s\-_]+", phrase.strip()) if t), "")
    m = re.fullmatch(r"(.*?[A-Za-z])(v?\d+)", first)
    return (m.group(1) if m and len(m.group(1)) > 1 else first).lower()


def find(phrase: str, text: str, cased: bool = False, low: str | None = None) -> Iterator[tuple[int, int]]:
    """Spans of ``phrase`` in ``text``. ``low``: ``text.lower()``, when the caller has it,
    lets a phrase whose first word is absent be skipped without a regex scan."""
    if low is not None and _probe(phrase) not in low:
        return
    for m in compile_phrase(phrase, cased).finditer(text):
        yield m.start(), m.end()


def resolve_overlaps(cands: list[Cand]) -> list[Cand]:
    """Longest match first; candidates with exactly an accepted span share it.

    Linear in the total matched length: an occupancy map replaces pairwise checks."""
    if not cands:
        return []
    size = max(c.end for c in cands)
    taken = bytearray(size)
    spans: set[tuple[int, int]] = set()
    accepted: list[Cand] = []
    for c in sorted(cands, key=lambda c: (-c.length, c.fuzzy, -c.weight, c.start, c.owner)):
        if (c.start, c.end) in spans:
            accepted.append(c)
            continue
        if any(taken[c.start : c.end]):
            continue
        spans.add((c.start, c.end))
        taken[c.start : c.end] = b"\x01" * c.length
        accepted.append(c)
    return sorted(accepted, key=lambda c: (c.start, c.owner))


# --- fuzzy ------------------------------------------------------------------------------------
def tokenize(text: str) -> list[tuple[int, int, str]]:
    """Words of ``text``: (start, end, lower-case word); a CJK run is one word."""
    return [(m.start(), m.end(), m.group(0).lower()) for m in _TOKEN.finditer(text)]


def _words_of(phrase: str) -> tuple[str, ...] | None:
    """Lower-case ASCII words of a phrase as the tokenizer splits text (None: not ASCII)."""
    words = tuple(w for w in re.split(r"[^a-z0-9]+", phrase.lower()) if w)
    return words if words and phrase.isascii() else None


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


@dataclass
class FuzzyIndex:
    """Phrases by (first letter, letters+digits length, words) for fuzzy lookup.

    ``exact`` holds every phrase written together, with its plurals (never a typo)."""

    by_head: dict[tuple[str, int, int], list[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(list))
    owners: dict[tuple[str, ...], list[tuple[str, str, str, float]]] = field(default_factory=lambda: defaultdict(list))
    exact: set[str] = field(default_factory=set)


@lru_cache(maxsize=64)
def fuzzy_index(vocab: tuple[tuple[str, str, str, float], ...]) -> FuzzyIndex:
    """Index of (owner, phrase, kind, weight) entries; only ASCII phrases of at least
    ``fuzzy.min_length`` letters+digits are matched fuzzily (all count as exact keys)."""
    rules = load_lexicon().fuzzy
    idx = FuzzyIndex()
    for owner, phrase, kind, weight in vocab:
        words = _words_of(phrase)
        if words is None:
            continue
        key = "".join(words)
        idx.exact.update((key, key + "s", key + "es"))
        if rules.edits_for(len(key)) == 0:
            continue
        if words not in idx.owners:
            idx.by_head[(key[0], len(key), len(words))].append(words)
        idx.owners[words].append((owner, phrase, kind, weight))
    return idx


_NOT_TYPOS = ("d", "ed", "r", "er", "n")  # trained, finetuned, trainer: other words, not typos


def word_typo(query: str, key: str) -> int | None:
    """Edits from ``key`` to ``query`` when ``query`` reads as a typo of ``key``, else None.

    Rules (``fuzzy`` of routing_lexicon.yaml): at most ``edits_for(len(key))`` OSA edits;
    the same digits and the same first letter; below ``substitution_min_length`` only a
    dropped letter, an adjacent swap or a doubled letter ("expert" is not "export",
    "dingo" is not "DINO"); never the key plus a suffix ("trained" is not "train")."""
    if query == key:
        return 0
    rules = load_lexicon().fuzzy
    allowed = rules.edits_for(len(key))
    if not allowed or query[0] != key[0] or _digits(query) != _digits(key):
        return None
    if query.startswith(key) and query[len(key) :] in _NOT_TYPOS:
        return None
    d = int(OSA.distance(query, key, score_cutoff=allowed))
    if d > allowed:
        return None
    if len(key) < rules.substitution_min_length:
        if len(query) == len(key) and sorted(query) != sorted(key):
            return None  # a different letter: another word
        if len(query) == len(key) + 1:
            doubled = any(
                query[:i] + query[i + 1 :] == key
                and ((i > 0 and query[i] == query[i - 1]) or (i + 1 < len(query) and query[i] == query[i + 1]))
                for i in range(len(query))
            )
            if not doubled:
                return None
        if abs(len(query) - len(key)) > 1:
            return None
    return d


def fuzzy_candidates(
    text: str,
    tokens: list[tuple[int, int, str]],
    vocab: tuple[tuple[str, str, str, float], ...],
    work: Work,
    exact: Iterable[Cand] = (),
) -> list[Cand]:
    """Fuzzy matches of ``vocab`` phrases in ``text`` (one lookup per word run).

    A run of n words matches a phrase of n words, word by word (:func:`word_typo`, at
    least one word misspelled). ``exact``: the exact matches already found; a run holding
    one of them only matches a phrase that contains it ("grouding dino" may be
    "Grounding DINO"; "fine-tune MAE" is never "fine-tune SAM")."""
    rules = load_lexicon().fuzzy
    idx = fuzzy_index(vocab)
    out: list[Cand] = []
    exact_at: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for c in exact:
        exact_at[c.start].append((c.end, re.sub(r"[^a-z0-9]+", "", text[c.start : c.end].lower())))
    # single letters ("G" of "G-DINO") never join a fuzzy run
    ascii_tok = [t[2].isascii() and len(t[2]) > 1 for t in tokens]
    for i in range(len(tokens)):
        if not ascii_tok[i]:
            continue
        run: list[str] = []
        known: list[str] = []  # exact matches inside the run
        for j in range(i, min(len(tokens), i + rules.max_words)):
            if j > i and (not ascii_tok[j] or not _GAP.fullmatch(text[tokens[j - 1][1] : tokens[j][0]])):
                break
            run.append(tokens[j][2])
            for k in range(i, j + 1):
                known.extend(w for end, w in exact_at.get(tokens[k][0], ()) if end <= tokens[j][1] and w)
            query = "".join(run)
            if len(query) < rules.min_length or query in idx.exact:
                continue
            work.fuzzy_queries += 1
            best: list[tuple[int, tuple[str, ...]]] = []
            for length in range(len(query) - 2, len(query) + 3):
                for words in idx.by_head.get((query[0], length, len(run)), ()):
                    key = "".join(words)
                    if key in known or any(w not in key for w in known):
                        continue
                    edits = [word_typo(q, w) for q, w in zip(run, words)]
                    if any(e is None for e in edits) or not any(edits):
                        continue
                    best.append((sum(e or 0 for e in edits), words))
            if not best:
                continue
            low = min(d for d, _ in best)
            for d, words in best:
                if d == low:
                    for owner, phrase, kind, weight in idx.owners[words]:
                        out.append(Cand(owner, phrase, kind, tokens[i][0], tokens[j][1], weight * rules.weight, fuzzy=True))
    return out


# --- skills -------------------------------------------------------------------------------------
def skill_vocab(entries: list[Entry]) -> tuple[tuple[str, str, str, float], ...]:
    """(owner, phrase, kind, weight) of every trigger, keyword and near-miss phrase."""
    out: list[tuple[str, str, str, float]] = []
    for entry in entries:
        r = entry.info.routing
        implicit = [entry.name]
        if entry.info.network_arch:
            implicit.append(entry.info.network_arch)
        for kind, weight, phrases in (("trigger", TRIGGER, [*r.triggers, *implicit]), ("keyword", KEYWORD, r.keywords)):
            out.extend((entry.name, p, kind, weight) for p in dict.fromkeys(phrases))
    for nm in load_near_misses():
        owner = f"near-miss:{nm['name']}"
        out.extend((owner, p, "near_miss", float(nm["weight"])) for p in nm["phrases"])
    return tuple(out)


def collect(masked: str, entries: list[Entry], tokens: list[tuple[int, int, str]], work: Work) -> list[Cand]:
    """Every exact and fuzzy candidate of the skills and near misses in ``masked``."""
    cands: list[Cand] = []
    vocab = skill_vocab(entries)
    low = masked.lower()
    for owner, phrase, kind, weight in vocab:
        cands.extend(Cand(owner, phrase, kind, s, e, weight) for s, e in find(phrase, masked, low=low))
    for nm in load_near_misses():
        owner = f"near-miss:{nm['name']}"
        weight = float(nm["weight"])
        for phrase in nm.get("cased", []):
            cands.extend(Cand(owner, phrase, "near_miss", s, e, weight) for s, e in find(phrase, masked, cased=True))
        if nm.get("regex"):
            for m in re.finditer(nm["regex"], masked, re.IGNORECASE):
                cands.append(Cand(owner, m.group(0), "near_miss", m.start(), m.end(), weight))
    exact_spans = {(c.start, c.end) for c in cands}
    fuzzy = fuzzy_candidates(masked, tokens, vocab, work, exact=cands)
    cands.extend(c for c in fuzzy if (c.start, c.end) not in exact_spans)
    work.candidates += len(cands)
    return cands


def annotate(cands: list[Cand], masked: str) -> None:
    """Negation, verb bonus, data context and component (backbone/encoder) marks."""
    negation = _negation()
    for c in cands:
        before = masked[max(0, c.start - 40) : c.start]
        c.negated = bool(negation.search(before))
        if _ACTION_VERBS.search(before[-28:]) or _VERB_LEAD.match(c.phrase):
            c.bonus = VERB_BONUS
        if c.kind == "near_miss" and _DATA_CONTEXT.search(masked[c.end : c.end + 16]):
            c.weight /= 2
        # "DINO with a DINOv2 backbone", "Grounding DINO and its BERT text encoder": a part, not the model
        # (a part: "DINOv2 backbone", "BERT text encoder"; never the model: "masked auto-encoder")
        phrase_is_part = bool(re.search(r"(?:backbone|(?<!auto)(?<!auto[\s\-_])encoder)$", c.phrase, re.IGNORECASE))
        if _COMPONENT_BEFORE.search(before[-24:]) and (phrase_is_part or _COMPONENT_AFTER.search(masked[c.end : c.end + 16])):
            c.component = True
            c.weight = min(c.weight, KEYWORD) / 2
            c.bonus = 0.0


@dataclass
class Scored:
    """A skill's (or near miss's) score and the evidence for it."""

    score: float = 0.0
    phrases: set[str] = field(default_factory=set)
    evidence: list[str] = field(default_factory=list)


def score(accepted: list[Cand], masked: str, entries: list[Entry]) -> tuple[dict[str, Scored], list[Cand]]:
    """Scores per owner (each phrase counted once) and the negatives that cost points."""
    scored: dict[str, Scored] = {}
    seen_spans: set[tuple[str, int, int]] = set()
    for c in accepted:
        if c.negated or (c.owner, c.start, c.end) in seen_spans:
            continue
        seen_spans.add((c.owner, c.start, c.end))
        s = scored.setdefault(c.owner, Scored())
        if c.phrase.lower() in s.phrases:
            continue
        s.phrases.add(c.phrase.lower())
        s.score += c.weight + c.bonus
        tilde = "~" if c.fuzzy else ""
        s.evidence.append(f"{c.kind} {tilde}{masked[c.start : c.end]!r}" + (f" (~{c.phrase!r})" if c.fuzzy else ""))
    negatives: list[Cand] = []
    low = masked.lower()
    shared = bytearray(len(masked))
    for c in accepted:
        if c.negated or c.component:
            shared[c.start : c.end] = b"\x01" * c.length
    for entry in entries:
        own = bytearray(shared)
        for c in accepted:
            if c.owner == entry.name:
                own[c.start : c.end] = b"\x01" * c.length
        penalty = 0.0
        for phrase in dict.fromkeys(entry.info.routing.negatives):
            for s_, e_ in find(phrase, masked, low=low):
                if any(own[s_:e_]):
                    continue
                negatives.append(Cand(entry.name, phrase, "negative", s_, e_, -NEGATIVE))
                penalty += NEGATIVE
                break
        if penalty and entry.name in scored:
            sc = scored[entry.name]
            sc.score -= min(penalty, MAX_NEGATIVE)
            sc.evidence.append(f"negatives -{min(penalty, MAX_NEGATIVE):g}")
    return scored, negatives


def entries_of(catalog: Any, order: Iterable[str]) -> list[Entry]:
    """Accept a Catalog (``.skills`` dict of Skill), a dict, or an iterable of Skill/SkillInfo;
    sorted by ``order`` of network_arch, then name."""
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
            out.append(Entry(item.name, item, None))
        else:
            info = item.info
            d = getattr(item, "dir", None)
            out.append(Entry(getattr(item, "name", info.name), info, Path(d) if d is not None else None))
    rank = list(order)
    return sorted(out, key=lambda e: (rank.index(e.info.network_arch) if e.info.network_arch in rank else len(rank), e.name))
