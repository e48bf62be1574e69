"""Deterministic request routing: request text -> skill, action, automl_policy, parameters.

Modules: ``router`` (:func:`route`, the decision rules), ``matching`` (exact and fuzzy
phrases, overlaps, scores), ``actions`` (action words), ``params`` (paths and values),
``lexicon`` (weights, limits and the data files ``bank/routing_lexicon.yaml`` and
``bank/near_misses.yaml``), ``models`` (:class:`RouteResult` and its parts).
Each skill's words live in its ``references/skill_info.yaml`` ``routing`` block.
"""

from taoskills.bank.routing.lexicon import (
    DEFAULT_ACTION_WORDS,
    DISPLAY,
    KEYWORD,
    MAX_NEGATIVE,
    MAX_SCORED_CHARS,
    MIN_SCORE,
    NEGATIVE,
    TRIGGER,
    VERB_BONUS,
    load_lexicon,
    load_near_misses,
)
from taoskills.bank.routing.models import Alternative, Match, NearMiss, Parameter, RouteResult
from taoskills.bank.routing.params import SHORTHAND_ALIASES, extract_parameters, extract_paths
from taoskills.bank.routing.router import policy_text, request_policy, route

__all__ = [
    "DEFAULT_ACTION_WORDS",
    "DISPLAY",
    "KEYWORD",
    "MAX_NEGATIVE",
    "MAX_SCORED_CHARS",
    "MIN_SCORE",
    "NEGATIVE",
    "SHORTHAND_ALIASES",
    "TRIGGER",
    "VERB_BONUS",
    "Alternative",
    "Match",
    "NearMiss",
    "Parameter",
    "RouteResult",
    "extract_parameters",
    "extract_paths",
    "load_lexicon",
    "load_near_misses",
    "policy_text",
    "request_policy",
    "route",
]
