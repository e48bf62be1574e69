"""Generated spec corpora from TAO Core 7.3.0's own config dataclasses (needs nvidia-tao-core).

Nothing here is hand-picked: every case is derived by walking
``nvidia_tao_core.config.<network_arch>.default_config.ExperimentConfig`` field by field.

* :func:`default_spec` - ``OmegaConf.to_yaml`` of the structured config, read back and
  filtered to the top-level sections an action's schema keeps (TAO's action filter);
* :func:`fields` - every field (dotted key, declared type, ``Optional`` or not, TAO value);
* :func:`mutations` - for each field, values of the wrong type, ``null``, values OmegaConf
  converts silently, unknown keys in every dataclass section, list items of dataclass-typed
  lists (valid, with an unknown key, with a wrong-typed key) and values outside an enum;
* :func:`tao_rejects` - TAO Core's verdict on a mutation: ``OmegaConf.merge`` into the
  structured config (what a TAO container does at start-up), or, for enum values (which
  OmegaConf does not check: the fields are ``str``), TAO Core's own spec validator
  ``nvidia_tao_core.api_utils.json_schema_validation.validate_jsonschema``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from taocore_helpers import experiment_config_class, require_taocore

MISSING = "???"
UNKNOWN_KEY = "zz_not_a_tao_key"


@dataclass(frozen=True)
class Field:
    """One ExperimentConfig field: dotted ``key``, declared ``hint`` (Optional removed), ``optional``."""

    key: str
    hint: Any
    optional: bool
    value: Any
    has_options: bool = False  # TAO metadata valid_options or regex (a converted value would break them)


@dataclass(frozen=True)
class Mutation:
    """A spec that differs from TAO's defaults in one place: ``key`` set to ``value``."""

    key: str
    value: Any
    kind: str  # wrong_type | null | converted | unknown_key | item_ok | item_unknown_key | item_wrong_type | bad_enum

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    def spec(self) -> dict:
        """The mutation as a partial nested spec ``{"train": {"num_epochs": value}}``."""
        out: Any = self.value
        for part in reversed(self.key.split(".")):
            out = {part: out}
        return out

    def __str__(self) -> str:  # readable pytest ids
        return f"{self.kind}:{self.key}={self.value!r}"


def _unwrap(hint: Any) -> tuple[bool, Any]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0] if len(rest) == 1 else Any
    return False, hint


def structured(network_arch: str):
    """A fresh ``OmegaConf.structured(ExperimentConfig)``."""
    require_taocore()
    from omegaconf import OmegaConf

    return OmegaConf.structured(experiment_config_class(network_arch))


@functools.lru_cache(maxsize=8)
def _defaults_yaml(network_arch: str) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(structured(network_arch))


@functools.lru_cache(maxsize=8)
def _defaults(network_arch: str) -> dict:
    """The defaults YAML read back (shared: copy before changing it)."""
    return yaml.load(_defaults_yaml(network_arch), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def default_spec(network_arch: str, schema: dict) -> dict:
    """TAO Core's defaults as YAML, filtered to the sections ``schema`` (one action) keeps (a fresh copy)."""
    full = copy.deepcopy(_defaults(network_arch))
    return {k: v for k, v in full.items() if k in schema["properties"]}


def _walk(cls: Any, prefix: str, value: Any) -> list[Field]:
    out = []
    hints = typing.get_type_hints(cls)
    values = value if isinstance(value, dict) else {}
    for f in dataclasses.fields(cls):
        optional, inner = _unwrap(hints[f.name])
        key = f"{prefix}.{f.name}" if prefix else f.name
        val = values.get(f.name)
        meta = f.metadata or {}
        out.append(Field(key, inner, optional, val, bool(meta.get("valid_options") or meta.get("regex"))))
        if dataclasses.is_dataclass(inner):
            sub = val if isinstance(val, dict) else _dataclass_defaults(inner)
            out.extend(_walk(inner, key, sub))
    return out


def _dataclass_defaults(cls: Any) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cls), resolve=False)  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def fields(network_arch: str) -> tuple[Field, ...]:
    """Every field of the network's ExperimentConfig, depth first (sections before their fields)."""
    return tuple(_walk(experiment_config_class(network_arch), "", _defaults(network_arch)))


def _item_class(hint: Any) -> Any:
    if typing.get_origin(hint) in (list, tuple) and typing.get_args(hint):
        return _unwrap(typing.get_args(hint)[0])[1]
    return None


def _filled(cls: Any) -> dict:
    """A valid instance of dataclass ``cls`` as a dict: TAO defaults with MISSING strings filled."""
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in _dataclass_defaults(cls).items():
        if v == MISSING:
            inner = _unwrap(hints[k])[1]
            v = {str: "x", int: 1, float: 1.0, bool: True}.get(inner, v)
        out[k] = v
    return out


def _wrong_values(hint: Any) -> list[Any]:
    if hint is bool:
        return ["maybe", 2]
    if hint is int:
        return ["abc", 2.5]
    if hint is float:
        return ["abc", [1.0]]
    if hint is str:
        return [[1, 2], {"a": 1}]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        vals: list[Any] = ["abc", {"a": 1}]
        item = _item_class(hint)
        if item in (int, float):
            vals.append(["x"])
        return vals
    if origin is dict or dataclasses.is_dataclass(hint):
        return ["abc", [1]]
    return []  # Any / Union: no wrong type


def _converted_values(f: Field) -> list[Any]:
    """Values OmegaConf converts silently for this field (TAO accepts them)."""
    if f.has_options:
        return []  # the converted value is outside the enum: a bad_enum case, not a conversion
    if f.hint is str:
        return [5]
    if f.hint is float and isinstance(f.value, float):
        return [int(f.value)] if f.value == int(f.value) else []
    if f.hint is int and isinstance(f.value, int) and not isinstance(f.value, bool):
        return [str(f.value)]
    if _item_class(f.hint) is int and isinstance(f.value, list) and f.value:
        return [[str(v) for v in f.value]]
    return []


@functools.lru_cache(maxsize=8)
def mutations(network_arch: str) -> tuple[Mutation, ...]:
    """Every planted change of the network's config (see the module doc), in field order."""
    out: list[Mutation] = []
    for f in fields(network_arch):
        if dataclasses.is_dataclass(f.hint):
            out.append(Mutation(f"{f.key}.{UNKNOWN_KEY}", 1, "unknown_key"))
        out.extend(Mutation(f.key, v, "wrong_type") for v in _wrong_values(f.hint))
        if f.hint is not Any:
            out.append(Mutation(f.key, None, "null"))
        out.extend(Mutation(f.key, v, "converted") for v in _converted_values(f))
        item = _item_class(f.hint)
        if dataclasses.is_dataclass(item):
            good = _filled(item)
            out.append(Mutation(f.key, [good], "item_ok"))
            out.append(Mutation(f.key, [{**good, UNKNOWN_KEY: 1}], "item_unknown_key"))
            hints = typing.get_type_hints(item)
            for name in good:
                for bad in _wrong_values(_unwrap(hints[name])[1])[:1]:
                    out.append(Mutation(f.key, [{**good, name: bad}], "item_wrong_type"))
    return tuple(out)


def enum_mutations(schema: dict) -> list[Mutation]:
    """A value outside the enum for every enum field of a TAO schema (``categorical`` / ``ordered_int``)."""
    out = []

    def walk(node: dict, prefix: str) -> None:
        for k, v in (node.get("properties") or {}).items():
            if not isinstance(v, dict):
                continue
            key = f"{prefix}.{k}" if prefix else k
            if v.get("enum"):
                bad: Any = 987654 if v.get("type") == "ordered_int" else "zz_not_an_option"
                out.append(Mutation(key, bad, "bad_enum"))
            walk(v, key)

    walk(schema, "")
    return out


class TaoJudge:
    """TAO Core's verdict on mutations of one network (one structured config, reused)."""

    def __init__(self, network_arch: str):
        self.network_arch = network_arch
        self.base = self._fresh()
        from omegaconf import OmegaConf

        self.values = OmegaConf.to_container(self.base, resolve=False)

    def _fresh(self):
        """The structured config with every ``Optional`` dataclass section that defaults to null filled in.

        A spec that sets keys under such a section (DINO ``distill``) makes OmegaConf build the
        section first, so the verdict is the same; filling it up front keeps failed in-place
        merges from leaving a half-built section behind.
        """
        from omegaconf import OmegaConf

        base = structured(self.network_arch)
        for f in fields(self.network_arch):
            if dataclasses.is_dataclass(f.hint) and f.value is None and OmegaConf.select(base, f.key) is None:
                OmegaConf.update(base, f.key, OmegaConf.structured(f.hint), merge=False)
        return base

    def rejects(self, m: Mutation, schema: dict | None = None) -> bool:
        """True when TAO Core refuses the spec with ``m`` applied.

        Enum values: TAO Core's ``validate_jsonschema`` on ``schema`` (TAO's own API check).
        Everything else: ``OmegaConf.merge`` into the structured config. A value TAO would
        reject leaves the config untouched, so the failing case merges in place (fast).
        """
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        if m.kind == "bad_enum":
            from nvidia_tao_core.api_utils.json_schema_validation import validate_jsonschema

            assert schema is not None
            return validate_jsonschema(m.spec(), schema["properties"]) is not None
        try:
            OmegaConf.unsafe_merge(self.base, m.spec())
        except OmegaConfBaseException:
            return True  # refused before anything was assigned: the base is unchanged
        except (TypeError, ValueError):  # e.g. "Cannot merge incompatible container types" (a dict onto a list)
            self._undo(m.key)  # not a validation error: put the value back in case part of it was merged
            return True
        self._undo(m.key)
        return False

    def _undo(self, key: str) -> None:
        """Put TAO's default back at ``key`` after an accepted in-place merge (or rebuild the config)."""
        from omegaconf import OmegaConf

        node: Any = self.values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                self.base = self._fresh()
                return
            node = node[part]
        if isinstance(node, dict):  # a whole section: typed nodes cannot take a plain dict back
            self.base = self._fresh()
            return
        OmegaConf.update(self.base, key, copy.deepcopy(node), merge=False)


@functools.lru_cache(maxsize=8)
def tao_verdicts(network_arch: str) -> tuple[bool, ...]:
    """TAO Core's verdict on every mutation of :func:`mutations`, in order (computed once per network)."""
    judge = TaoJudge(network_arch)
    return tuple(judge.rejects(m) for m in mutations(network_arch))
