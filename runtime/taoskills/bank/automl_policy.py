"""Per-run ``automl_policy`` resolution for a model skill's train action.

The rule is the seeds' "Train Action Policy" (every model SKILL.md in ``shared/seeds``,
and each skill's SKILL.md "Train Action Policy"), made deterministic:

1. Only train-stage actions are affected (``TRAIN_STAGE_ACTIONS``). Every other action
   (evaluate, inference, export, distill, quantize, deploy_*) stays in the model skill:
   the decision is ``policy="off"``, ``applies=False``.
2. An explicit ``automl_policy`` value wins. Accepted: ``on``, ``off``, ``auto``
   (``auto`` means ``on``; the DINO seed calls the default "auto"). Anything else raises
   :class:`~taoskills.errors.SpecError` naming the field ``automl_policy``.
3. Otherwise the request text decides: an "off" phrase (see ``ACCEPTED_OFF_PHRASES``)
   turns AutoML off for this run only; a positive AutoML/HPO mention keeps it on (source
   "request text").
4. Otherwise the default is ``on``.
5. AutoML actually runs only when the skill is ``automl_enabled`` and its skill folder
   packages ``schemas/train.schema.json`` and ``references/spec_template_train.yaml`` that
   parse. If not, the decision is ``off`` and the reason says why (seed wording: "AutoML is
   enabled but not runnable for this model until schemas are generated").

The per-run override never changes the skill's metadata: this module only reads
``SkillInfo`` (a frozen pydantic model) and the skill folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from taoskills.bank.skill_info import SkillInfo
from taoskills.errors import SpecError

AUTOML_SKILL = "tao-run-automl"

#: Actions the policy applies to. The seeds route "the train action" through tao-run-automl;
#: distill/quantize are compression actions that stay in the model skill.
TRAIN_STAGE_ACTIONS: frozenset[str] = frozenset({"train"})

#: Explicit values accepted for ``automl_policy`` (the seeds' on/off, plus DINO's "auto").
POLICY_VALUES: tuple[str, ...] = ("on", "off", "auto")

#: Files a skill folder must package for AutoML to be runnable (seeds: "Runnable AutoML
#: still requires schemas/train.schema.json and references/spec_template_train.yaml").
REQUIRED_FILES: tuple[str, ...] = ("schemas/train.schema.json", "references/spec_template_train.yaml")

NOT_RUNNABLE_REASON = "AutoML is enabled but not runnable for this model until schemas are generated"

# --- request-text phrases ------------------------------------------------------------
# What "AutoML" can be called in a request.
_AUTOML_NOUN = (
    r"(?:auto[\s\-_]?ml|hpo|hyper[\s\-]?param(?:eter)?s?[\s\-]+(?:search|sweep|tuning|optimi[sz]ation)"
    r"|hyper[\s\-]?param(?:eter)?[\s\-]+(?:search|sweep|tuning|optimi[sz]ation)s?|(?:a\s+)?(?:param(?:eter)?\s+)?sweeps?)"
)

#: Human-readable list of the "off" phrases this module accepts (case-insensitive; "AutoML"
#: stands for AutoML / auto-ml / HPO / hyperparameter search|sweep|tuning|optimization).
ACCEPTED_OFF_PHRASES: tuple[str, ...] = (
    "turn off AutoML",
    "switch off AutoML",
    "turn AutoML off",
    "switch AutoML off",
    "disable AutoML",
    "AutoML off",
    "AutoML disabled",
    "AutoML turned off / switched off / set to off",
    "without AutoML",
    "no AutoML",
    "no HPO",
    "skip AutoML",
    "skip HPO",
    "don't use AutoML / do not use AutoML / don't run AutoML / do not run HPO",
    "not with AutoML",
    "AutoML is not needed / unnecessary / pointless / overkill",
    "plain training",
    "plain train run",
    "direct training",
    "train directly",
    "single training run",
    "automl_policy: off / automl_policy=off",
)

_W = r"(?<![A-Za-z0-9])"  # start-of-word guard (underscore counts as a separator)
_E = r"(?![A-Za-z0-9])"  # end-of-word guard

_OFF_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        _W + r"(?:turn|switch|turning|switching)\s+off\s+(?:the\s+|any\s+)?" + _AUTOML_NOUN + _E,
        _W + r"(?:turn|switch|turning|switching)\s+(?:the\s+)?" + _AUTOML_NOUN + r"\s+off" + _E,
        _W
        + r"(?:disable|disabling|disabled|skip|skipping|without|bypass|bypassing|avoid|no|w/o)\s+(?:the\s+|any\s+)?"
        + _AUTOML_NOUN
        + _E,
        _W
        + r"(?:don'?t|do\s+not|does\s+not|doesn'?t|never|not)\s+(?:want\s+(?:to\s+)?|need\s+(?:to\s+)?)?(?:use|run|do|launch|want|need|with|through|via)?\s*(?:any\s+|the\s+)?"
        + _AUTOML_NOUN
        + _E,
        _W + _AUTOML_NOUN + r"\s*(?:[:=]\s*|\s(?:turned|switched|set\s+to|is|stays?|kept)\s+)?(?:off|disabled|false|no)" + _E,
        _W
        + _AUTOML_NOUN
        + r"\s+(?:\S+\s+){0,3}?(?:is|are|isn't|aren't|seems?)\s+(?:not\s+(?:needed|necessary|required|wanted)|unnecessary|pointless|overkill)"
        + _E,
        _W + r"plain(?:\s+|-)(?:training|train(?:\s+run)?|fit)" + _E,
        _W + r"direct(?:\s+model)?\s+training" + _E,
        _W + r"train(?:ing)?\s+(?:it\s+|the\s+model\s+)?directly" + _E,
        _W + r"(?:a\s+)?single\s+training\s+run" + _E,
        _W + r"automl_policy\s*[:=]\s*['\"]?off" + _E,
    )
)

_ON_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        _W + r"automl_policy\s*[:=]\s*['\"]?(?:on|auto)" + _E,
        _W + _AUTOML_NOUN + _E,
        _W + r"tune\s+(?:the\s+)?hyper[\s\-]?param(?:eter)?s" + _E,
        _W + r"(?:search|sweep)\s+(?:over\s+)?(?:the\s+)?hyper[\s\-]?param(?:eter)?s" + _E,
        _W + r"(?:bayesian|hyperband|asha|bohb|dehb|pbt)\s+(?:search|optimi[sz]ation|sweep|tuning)" + _E,
    )
)


class PolicyDecision(BaseModel):
    """The resolved per-run AutoML policy for one (skill, action).

    ``policy`` is what this run does ("on" = the train action goes through tao-run-automl).
    ``requested`` is what the caller or the text asked for before the runnability check.
    ``source`` is where the request came from; ``applies`` is False for non-train actions.
    ``phrase`` is the request-text span that decided it (None otherwise).
    """

    model_config = ConfigDict(frozen=True)

    policy: Literal["on", "off"]
    requested: Literal["on", "off"]
    source: Literal["explicit", "request text", "default"]
    applies: bool
    automl_enabled: bool
    automl_runnable: bool
    route_via: Literal["tao-run-automl"] | None
    missing: list[str] = []
    phrase: str | None = None
    reason: str


def normalize_policy_value(value: object) -> Literal["on", "off"]:
    """Map an explicit ``automl_policy`` value to "on"/"off" ("auto" -> "on").

    Raises SpecError(field="automl_policy") for anything but on|off|auto (case-insensitive).
    """
    text = str(value).strip().lower() if value is not None else ""
    if text in ("on", "auto"):
        return "on"
    if text == "off":
        return "off"
    raise SpecError(
        f"automl_policy {value!r} is not one of {', '.join(POLICY_VALUES)}",
        field="automl_policy",
        fix="set automl_policy to on, off or auto (auto means on); leave it out for the default (on)",
        details={"allowed": list(POLICY_VALUES), "value": str(value)},
    )


def policy_from_text(text: str, extra_off_phrases: Iterable[str] = ()) -> tuple[Literal["on", "off"] | None, str | None]:
    """What the request text asks for: ("off", phrase), ("on", phrase) or (None, None).

    "off" phrases (``ACCEPTED_OFF_PHRASES`` plus ``extra_off_phrases``, e.g. the
    tao-run-automl skill_info ``automl.policy_off_phrases``) win over positive mentions,
    since each of them itself mentions AutoML/HPO.
    """
    if not text:
        return None, None
    for pattern in _OFF_PATTERNS:
        m = pattern.search(text)
        if m:
            return "off", m.group(0)
    for phrase in extra_off_phrases:
        m = re.search(_W + re.escape(phrase).replace(r"\ ", r"\s+") + _E, text, re.IGNORECASE)
        if m:
            return "off", m.group(0)
    for pattern in _ON_PATTERNS:
        m = pattern.search(text)
        if m:
            return "on", m.group(0)
    return None, None


def missing_automl_files(skill_dir: Path | None) -> list[str]:
    """Required AutoML files (``REQUIRED_FILES``) absent or unparsable in ``skill_dir``.

    A file counts only if it exists and parses (JSON for the schema, YAML mapping for the
    template). ``skill_dir=None`` means the folder is unknown: every file is reported.
    """
    if skill_dir is None:
        return list(REQUIRED_FILES)
    missing: list[str] = []
    for rel in REQUIRED_FILES:
        path = Path(skill_dir) / rel
        try:
            if rel.endswith(".json"):
                ok = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
            else:
                ok = isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)
        except (OSError, ValueError, yaml.YAMLError):
            ok = False
        if not ok:
            missing.append(rel)
    return missing


def resolve_automl_policy(
    skill_info: SkillInfo,
    action: str | None,
    *,
    explicit: str | None = None,
    text: str = "",
    skill_dir: Path | None = None,
    extra_off_phrases: Iterable[str] = (),
) -> PolicyDecision:
    """Resolve the AutoML policy of one run (rules in the module docstring).

    ``skill_info``: the model skill's contract (``automl_enabled`` is read, never written).
    ``action``: the action to run (None counts as train: a model named with no action word).
    ``explicit``: the caller's ``automl_policy`` (on|off|auto) or None.
    ``text``: the user's request, searched for off/on phrases when ``explicit`` is None.
    ``skill_dir``: the skill folder, checked for ``REQUIRED_FILES``.
    Raises SpecError(field="automl_policy") for an invalid explicit value.
    """
    action_name = action or "train"
    requested: Literal["on", "off"]
    phrase: str | None = None
    if explicit is not None:
        requested = normalize_policy_value(explicit)
        source: Literal["explicit", "request text", "default"] = "explicit"
    else:
        from_text, phrase = policy_from_text(text, extra_off_phrases)
        if from_text is not None:
            requested, source = from_text, "request text"
        else:
            requested, source = "on", "default"

    enabled = bool(skill_info.automl_enabled) and skill_info.kind == "model"
    missing = missing_automl_files(skill_dir) if enabled else []
    runnable = enabled and not missing

    def decision(policy: Literal["on", "off"], applies: bool, reason: str) -> PolicyDecision:
        return PolicyDecision(
            policy=policy,
            requested=requested,
            source=source,
            applies=applies,
            automl_enabled=enabled,
            automl_runnable=runnable,
            route_via=AUTOML_SKILL if policy == "on" else None,
            missing=missing,
            phrase=phrase,
            reason=reason,
        )

    said = {"explicit": "explicit automl_policy", "request text": f"request text ({phrase!r})", "default": "default"}[source]
    if action_name not in TRAIN_STAGE_ACTIONS:
        return decision(
            "off", False, f"{action_name}: non-train actions stay in the model skill (automl_policy applies to train only)"
        )
    if requested == "off":
        return decision("off", True, f"automl_policy off from {said}: train directly in {skill_info.name} for this run only")
    if not enabled:
        return decision("off", True, f"{skill_info.name} is not AutoML-enabled (automl_enabled: false): train directly")
    if missing:
        return decision("off", True, f"{NOT_RUNNABLE_REASON} (missing or unreadable: {', '.join(missing)}); training directly")
    return decision(
        "on", True, f"automl_policy on ({said}): route the train action through {AUTOML_SKILL} with skill_dir {skill_dir}"
    )
