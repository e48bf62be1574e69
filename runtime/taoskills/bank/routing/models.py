"""What routing returns: :class:`RouteResult` and its parts (frozen pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from taoskills.bank.automl_policy import PolicyDecision


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
    """Evidence: a phrase found in the request, who it speaks for, and how it counted.

    ``fuzzy``: the request's words were within a few edits of ``phrase`` (a typo), not
    the phrase itself; ``span`` then covers the request's words.
    """

    model_config = ConfigDict(frozen=True)

    owner: str  # skill name, or "near-miss:<name>"
    phrase: str
    kind: Literal["trigger", "keyword", "negative", "near_miss", "action"]
    span: tuple[int, int]
    weight: float
    negated: bool = False
    fuzzy: bool = False


class Alternative(BaseModel):
    """Another skill that matched (with its score and evidence)."""

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
    """What :func:`taoskills.bank.routing.route` decided.

    ``skill`` is None when nothing applies; ``no_skill_reason`` then names the nearest known
    thing. ``confidence`` (0..1) is the confidence in ``skill`` (0 when None).
    ``actions_mentioned`` lists every action the text asks for, in text order (a chain
    such as train -> export); ``action`` is the one to run now.
    ``truncated``: the request was longer than ``MAX_SCORED_CHARS`` and only its start was
    read. ``work``: operation counts of this call (chars_scored, tokens, fuzzy_queries,
    candidates), bounded by the cap whatever the input length.
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
    truncated: bool = False
    work: dict[str, int] = {}

    def param(self, name: str) -> Parameter | None:
        """The first extracted parameter called ``name`` (None if absent)."""
        return next((p for p in self.parameters if p.name == name), None)
