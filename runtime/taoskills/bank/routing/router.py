"""The router: request text -> skill, action, automl_policy, parameters (deterministic).

1. Only the first ``MAX_SCORED_CHARS`` characters are read. Paths and URIs are extracted
   (they become parameters) and blanked out, so ``/data/coco/`` never counts as words.
2. Every phrase is collected (``matching``): each skill's ``routing.triggers`` (weight
   ``TRIGGER``; the skill name and its network_arch count as triggers too),
   ``routing.keywords`` (``KEYWORD``), the near misses of ``bank/near_misses.yaml`` (their
   own weight), exactly or within a typo's distance (rapidfuzz).
3. Overlaps are resolved longest-match-first, so "Grounding DINO" is one match (not a
   "DINO" match), "RT-DETR" is not "DETR", and "DINOv2"/"DINOv3" are never "DINO".
4. A match right after a negation ("not", "without", "不要", ...) does not count. A match
   within three words after an action verb ("train DINO") gets ``VERB_BONUS``. A near miss
   followed by "format/labels/annotations/dataset" is about data, and counts half.
5. Each skill's ``routing.negatives`` found elsewhere cost ``NEGATIVE`` each (at most
   ``MAX_NEGATIVE``).
6. The best model skill wins when its score is at least ``MIN_SCORE`` and beats every
   near miss and every other model skill; a tie gives no skill and says which to choose; a
   near miss that scores at least as high gives no skill and is named. AutoML/HPO words
   with no model give ``tao-run-automl`` and ask which model; with a model they give the
   model skill, action train, policy on, and ``tao-run-automl`` as an alternative.
7. The action comes from ``actions`` (with a model and no action word: train). An
   explicit ``action`` argument wins over words. The policy: an explicit value, else the
   request's words (taoskills.bank.automl_policy plus routing_lexicon.yaml ``policy``).
Source of the phrases: the five seed SKILL.md descriptions and their skill_info.yaml
``routing`` blocks; weights tuned on evals/routing_cases.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from taoskills.bank.automl_policy import (
    AUTOML_SKILL,
    PolicyDecision,
    normalize_policy_value,
    policy_from_text,
    resolve_automl_policy,
)
from taoskills.bank.routing.actions import action_mentions, canonical_action, pick_action
from taoskills.bank.routing.lexicon import DISPLAY, KEYWORD, MAX_SCORED_CHARS, MIN_SCORE, TRIGGER, load_lexicon, load_near_misses
from taoskills.bank.routing.matching import (
    Cand,
    Entry,
    Scored,
    Work,
    annotate,
    collect,
    entries_of,
    find,
    resolve_overlaps,
    score,
    tokenize,
)
from taoskills.bank.routing.models import Alternative, Match, NearMiss, RouteResult
from taoskills.bank.routing.params import extract_parameters, extract_paths
from taoskills.bank.skill_info import SkillInfo
from taoskills.errors import SpecError


def _display(info: SkillInfo) -> str:
    return DISPLAY.get(info.network_arch or "", info.name)


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        chars[s:e] = " " * (e - s)
    return "".join(chars)


def policy_text(masked: str) -> str:
    """``masked`` with a space either side of each routing_lexicon ``policy`` phrase, so
    that taoskills.bank.automl_policy (which matches whole words) also sees a Chinese
    phrase written straight against other words ("直接训练Grounding DINO")."""
    lex = load_lexicon()
    spans = sorted({span for word in (*lex.policy_off, *lex.policy_on) for span in find(word, masked)})
    if not spans:
        return masked
    out, last = [], 0
    for s, e in spans:
        if s < last:
            continue
        out += [masked[last:s], " ", masked[s:e], " "]
        last = e
    out.append(masked[last:])
    return "".join(out)


def request_policy(
    info: SkillInfo,
    action: str | None,
    *,
    explicit: str | None = None,
    text: str = "",
    skill_dir: Path | None = None,
    extra_off_phrases: Iterable[str] = (),
) -> PolicyDecision:
    """:func:`taoskills.bank.automl_policy.resolve_automl_policy` with the request words
    routing knows: routing_lexicon.yaml ``policy`` (Chinese: 关闭AutoML, 不要AutoML, 直接训练,
    ...) as well as the English phrases; only the first ``MAX_SCORED_CHARS`` characters
    of ``text`` are read. Same arguments, result and errors (SpecError(field=
    "automl_policy") for a bad explicit value)."""
    head = text[:MAX_SCORED_CHARS]
    off = [*extra_off_phrases, *load_lexicon().policy_off]
    return resolve_automl_policy(
        info, action, explicit=explicit, text=policy_text(head), skill_dir=skill_dir, extra_off_phrases=list(dict.fromkeys(off))
    )


def _policy_intent(text: str, extra_off: list[str]) -> tuple[Literal["on", "off"] | None, str | None]:
    intent, phrase = policy_from_text(text, extra_off)
    if intent is None:
        for word in load_lexicon().policy_on:
            for s, e in find(word, text):
                return "on", text[s:e]
    return intent, phrase


def _confidence(top: float, second: float) -> float:
    if top <= 0:
        return 0.0
    strength = min(1.0, top / (TRIGGER + KEYWORD))
    margin = max(0.0, (top - max(second, 0.0)) / top)
    return round(strength * (0.5 + 0.5 * margin), 3)


def _no_skill_message(nm: dict[str, Any], entries: list[Entry], bank: str) -> str:
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

    Linear in ``len(text)``: only the first ``MAX_SCORED_CHARS`` characters are read
    (``truncated`` says so); ``work`` reports the operation counts.

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
    entries = entries_of(catalog, DISPLAY)
    models = [e for e in entries if e.info.kind == "model"]
    apps = [e for e in entries if e.info.kind != "model"]
    bank = ", ".join(_display(e.info) for e in models) or "no model skills"
    if apps:
        bank += " and " + ", ".join(f"AutoML ({e.name})" if e.name == AUTOML_SKILL else e.name for e in apps)

    truncated = len(text) > MAX_SCORED_CHARS
    text = text[:MAX_SCORED_CHARS]
    work = Work(chars_scored=len(text))
    paths = extract_paths(text)
    masked = _mask(text, [(s, e) for s, e, _ in paths])
    tokens = tokenize(masked)
    work.tokens = len(tokens)
    cands = collect(masked, entries, tokens, work)
    annotate(cands, masked)
    accepted = resolve_overlaps(cands)
    scored, negatives = score(accepted, masked, entries)
    matches = [
        Match(
            owner=c.owner,
            phrase=c.phrase,
            kind=c.kind,  # type: ignore[arg-type]  # Cand.kind holds one of Match.kind's values
            span=(c.start, c.end),
            weight=round(c.weight + c.bonus, 3),
            negated=c.negated,
            fuzzy=c.fuzzy,
        )
        for c in [*accepted, *negatives]
    ]

    extra_off = [p for e in apps if e.info.automl for p in e.info.automl.policy_off_phrases]
    extra_off += list(load_lexicon().policy_off)
    ptext = policy_text(masked)
    intent, intent_phrase = _policy_intent(ptext, extra_off)
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

    base: dict[str, Any] = {"scores": scores, "matches": matches, "truncated": truncated}
    note = f" (only the first {MAX_SCORED_CHARS} characters were read)" if truncated else ""
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
            tokens,
            work,
            note,
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
            work=work.as_dict(),
            **base,
        )

    # 3. a near miss wins (or ties a model skill)
    if near and nm_info and best_nm[1] >= MIN_SCORE and best_nm[1] >= top:
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
            work=work.as_dict(),
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
            work=work.as_dict(),
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
        work=work.as_dict(),
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
    entry: Entry,
    top: float,
    second: float,
    scored: dict[str, Scored],
    accepted: list[Cand],
    alternatives: list[Alternative],
    base: dict[str, Any],
    action: str | None,
    automl_policy: str | None,
    automl_wanted: bool,
    intent_phrase: str | None,
    extra_off: list[str],
    paths: list[tuple[int, int, str]],
    near: NearMiss | None,
    tokens: list[tuple[int, int, str]],
    work: Work,
    note: str,
) -> RouteResult:
    info = entry.info
    skill_spans = [(c.start, c.end) for c in accepted if c.owner == entry.name]
    mentions, unsupported, fallback = action_mentions(masked, info, skill_spans, tokens, work)
    if automl_wanted and "train" in info.actions and intent_phrase:
        pos = masked.lower().find(intent_phrase.lower())
        mentions.append((pos if pos >= 0 else 0, "train", intent_phrase))
    mentioned = [a for _, a, _ in sorted(mentions or fallback)]
    mentioned = list(dict.fromkeys(mentioned))

    unsupported_action = None
    source: Literal["explicit", "request text", "default"] | None
    if action is not None:
        canon = canonical_action(action, info.actions)
        if canon is None:
            raise _bad_action(action, entry.name, list(info.actions))
        act, source, why = canon, "explicit", f"action {canon} given explicitly"
    else:
        picked = pick_action(mentions, fallback)
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
        decision = request_policy(
            info, act, explicit=automl_policy, text=masked, skill_dir=entry.dir, extra_off_phrases=extra_off
        )

    params = extract_parameters(text, info, act)
    evidence = "; ".join(scored[entry.name].evidence)
    reason = f"{entry.name} ({_display(info)}): {evidence}; score {top:g} vs next {second:g}. {why}."
    if decision is not None and decision.applies:
        reason += f" automl_policy {decision.policy}: {decision.reason}."
    if near:
        reason += f" Also mentioned: {near.display} (not in this bank)."
    reason += note
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
        work=work.as_dict(),
        **base,
    )
