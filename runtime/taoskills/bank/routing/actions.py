"""Which action a request asks for, once the skill is known.

Action words come from ``bank/routing_lexicon.yaml`` (``action_words``, English and
Chinese) plus the skill's ``routing.action_words``, exact or fuzzy (a typo such as
"Evalute"), restricted to the skill's actions. distill/quantize beat train, otherwise the
first one mentioned wins; TensorRT words turn evaluate/inference into
deploy_evaluate/deploy_inference where the skill has them. "use my trained X to ..."
(``use_trained``) asks for inference unless another non-train action is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from taoskills.bank.routing.lexicon import load_lexicon
from taoskills.bank.routing.matching import Cand, Work, find, fuzzy_candidates, resolve_overlaps
from taoskills.bank.skill_info import SkillInfo

# TensorRT context: turns evaluate/inference into deploy_evaluate/deploy_inference.
_TRT_CONTEXT = re.compile(r"(?<![a-z0-9])(?:tensorrt|trt|\.engine|engine\s+file|engine)(?![a-z0-9])|引擎|TensorRT", re.IGNORECASE)
_ENGINE_BUILD = re.compile(
    r"(?<![a-z0-9])(?:gen_trt_engine|(?:build|generate|create|make|compile|convert|produce)\w*\s+(?:\w+\s+){0,4}?(?:tensorrt|trt|engine))(?![a-z0-9])"
    r"|(?:生成|构建|创建|编译)\s*(?:TensorRT|TRT)?\s*引擎",
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

Mention = tuple[int, str, str]  # (start, action, words)


def canonical_action(name: str, actions: Iterable[str]) -> str | None:
    """``name`` as the skill calls it (gen_trt_engine -> deploy_gen_trt_engine), or None."""
    acts = set(actions)
    if name in acts:
        return name
    if f"deploy_{name}" in acts and name == "gen_trt_engine":
        return f"deploy_{name}"
    return None


def _words(info: SkillInfo) -> dict[str, list[str]]:
    words: dict[str, list[str]] = {a: list(ws) for a, ws in load_lexicon().action_words.items()}
    for action, ws in info.routing.action_words.items():
        key = "gen_trt_engine" if action == "deploy_gen_trt_engine" else action
        words.setdefault(key, []).extend(w for w in ws if w not in words.get(key, []))
    return words


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        chars[s:e] = " " * (e - s)
    return "".join(chars)


def action_mentions(
    masked: str,
    info: SkillInfo,
    skill_spans: list[tuple[int, int]],
    tokens: list[tuple[int, int, str]],
    work: Work,
) -> tuple[list[Mention], list[str], list[Mention]]:
    """Mentions valid for this skill, unsupported actions asked for, and the
    ``use_trained`` mentions (fallback inference) -- each in text order."""
    lex = load_lexicon()
    used: list[Mention] = []
    blanks: list[tuple[int, int]] = []
    for rx in lex.use_trained:
        for m in rx.finditer(masked):
            used.append((m.start(), lex.use_trained_action, m.group(0)))
            blanks.append((m.start(), m.end()))
    for phrase in lex.not_actions:
        blanks.extend(find(phrase, masked))
    text = _blank(masked, blanks) if blanks else masked

    words = _words(info)
    low = text.lower()
    cands = [Cand(action, w, "action", s, e, 0.0) for action, ws in words.items() for w in ws for s, e in find(w, text, low=low)]
    exact = {(c.start, c.end) for c in cands}
    vocab = tuple((action, w, "action", 0.0) for action, ws in words.items() for w in ws)
    kept_tokens = tokens
    if blanks:
        gone = bytearray(len(masked))
        for s, e in blanks:
            gone[s:e] = b"\x01" * (e - s)
        kept_tokens = [t for t in tokens if not any(gone[t[0] : t[1]])]
    fuzzy = fuzzy_candidates(text, kept_tokens, vocab, work, exact=list(cands))
    cands.extend(c for c in fuzzy if (c.start, c.end) not in exact)
    accepted = [c for c in resolve_overlaps(cands) if not _NOUN_BEFORE.search(text[max(0, c.start - 16) : c.start])]
    trt = bool(_TRT_CONTEXT.search(text))
    build = bool(_ENGINE_BUILD.search(text))
    found: list[Mention] = []
    unsupported: list[str] = []
    run_on = list(_RUN_ON_IMAGES.finditer(text))
    has_eval_or_infer = bool(run_on) or any(c.owner in ("evaluate", "inference") for c in accepted)
    for c in accepted:
        action = c.owner
        if action in ("evaluate", "inference") and trt and f"deploy_{action}" in info.actions:
            action = f"deploy_{action}"
        if action == "gen_trt_engine" and c.phrase.lower() in lex.weak_engine_words and has_eval_or_infer and not build:
            continue
        canon = canonical_action(action, info.actions)
        if canon is None:
            inside_skill_phrase = any(c.start >= s and c.end <= e for s, e in skill_spans)
            if not inside_skill_phrase and action not in unsupported:
                unsupported.append(action)
            continue
        found.append((c.start, canon, text[c.start : c.end]))
    starts = sorted(start for start, _, _ in found)
    for m in run_on:
        if not any(m.start() <= start < m.end() for start in starts):
            infer = "deploy_inference" if trt and "deploy_inference" in info.actions else "inference"
            if infer in info.actions:
                found.append((m.start(), infer, m.group(0)))
    if "train" in info.actions:
        for m in _WANT_MODEL.finditer(text):
            found.append((m.start(), "train", m.group(0)))
    fallback = []
    for start, action, phrase in used:
        if trt and f"deploy_{action}" in info.actions:
            action = f"deploy_{action}"
        if action in info.actions:
            fallback.append((start, action, phrase))
    return found, unsupported, fallback


def pick_action(mentions: list[Mention], fallback: list[Mention] | None = None) -> tuple[str, str] | None:
    """(action, words): distill/quantize first, else the first mentioned; ``fallback``
    (use_trained) wins when nothing but train is mentioned."""
    if fallback and all(action == "train" for _, action, _ in mentions):
        _, action, word = min(fallback)
        return action, word
    if not mentions:
        return None
    for special in ("distill", "quantize"):
        for _, action, word in mentions:
            if action == special:
                return action, word
    _, action, word = min(mentions)
    return action, word
