"""Spec validation against a skill's TAO-dialect schema (no TAO Core import).

The schemas under ``skills/<skill>/schemas/`` are what TAO Core 7.3.0's generator emits
(``scripts/generate_schemas.py``): leaf ``type`` is a TAO value type, bounds may be
``Infinity``, enums are ``enum``. TAO's own validator (``nvidia_tao_core/api_utils/
json_schema_validation.py``) compares those types with JSON-Schema names and so never checks
types (docs/tao-contract.md §6 item 6). Here the schema is converted to standard JSON Schema
(draft 2020-12), compiled once per schema, and checked with ``jsonschema``; a compiled
``fastjsonschema`` validator of the same schema is the fast path (a spec it accepts has no
schema error, so ``jsonschema`` runs only to word the errors of a spec that fails); the result is a list of
:class:`taoskills.errors.Issue`, each naming the dotted field, the reason and the fix.

Type mapping (TAO value type -> JSON Schema):

* ``int`` -> ``integer`` (strict: ``10.0`` and ``true`` are rejected, as OmegaConf does);
* ``float`` -> ``number`` (ints accepted); ``bool`` -> ``boolean``; ``string`` -> ``string``;
* ``categorical`` / ``ordered`` -> ``enum``; ``ordered_int`` -> ``integer`` + ``enum``;
* ``list`` (and ``list_*``, ``subset_list``, ``optional_list``) -> ``array`` (TAO gives no
  item schema); ``collection`` / ``dict`` -> ``object``: with ``properties`` when TAO lists
  them (and then ``additionalProperties: false``), otherwise any mapping;
* ``minimum``/``maximum`` become bounds unless infinite (``Infinity`` = no bound). Where TAO's
  own default lies outside its bounds (TAO Core 7.3.0 nvdinov2 ``export.batch_size``: default
  -1 = dynamic, minimum 0) the bound is widened to the default, because the container
  accepts it (OmegaConf does not check bounds);
* ``null`` is accepted where the field is ``Optional`` in TAO Core's dataclass (the generator's
  ``x_tao_nullable``), or the node has no default or a ``null`` default (OmegaConf rejects
  ``None`` for non-Optional fields);
* list items: ``x_tao_items`` (the generator's item schema of ``List[<dataclass>]`` /
  ``List[int]`` ... fields) becomes ``items``, so ``distill.bindings[0]`` is checked key by key
  as OmegaConf's structured merge checks it;
* ``x_tao_reads`` (how TAO reads a value, from the generator's ``READER_RULES``):
  ``enum_case: insensitive`` compares enum values case-insensitively (TAO Deploy lower-cases
  ``tensorrt.data_type``); ``dynamic: -1`` accepts -1 (dynamic batch) below the bound.

Values that TAO resolves at load time are not type-checked: ``"???"`` (Hydra MISSING; reported
as "required value not set" only with ``require_complete=True``) and strings holding an
OmegaConf interpolation (``${...}``, e.g. the spec builder's ``encryption_key``). Values that
OmegaConf converts silently (``"1e-4"`` for a float - PyYAML reads ``1e-4`` as a string - or
``5`` for a string) give a ``warning`` issue instead of an error.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema import Draft202012Validator

from taoskills.errors import Issue, SpecError
from taoskills.specs.dotted import delete_dotted, get_dotted, json_text

MISSING = "???"
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
# Top-level spec sections that belong to one action (AutoML action scoping list,
# docs/tao-contract.md §2.3.2 step 3).
ACTION_SECTIONS = frozenset(
    {"train", "evaluate", "inference", "export", "gen_trt_engine", "distill", "quantize", "prune", "retrain", "dataset_convert"}
)
_LIST_TYPES = frozenset({"list", "list_1_backbone", "list_1_normal", "list_2", "list_3", "subset_list", "optional_list", "array"})
_OBJECT_TYPES = frozenset({"collection", "dict", "object"})
_SCALAR_TYPES = {
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "string": "string",
    "str": "string",
}
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "array": "a list",
    "object": "a mapping (section)",
    "null": "null",
}
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


# ---------------------------------------------------------------------------------------------
# conversion


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _child_props(node: dict) -> dict[str, dict]:
    """``properties`` of a TAO node without TAO's non-dict artifacts (``automl_disabled_parameters``)."""
    props = node.get("properties")
    if not isinstance(props, dict):
        return {}
    return {k: v for k, v in props.items() if isinstance(v, dict)}


def _convert(node: dict) -> dict:
    tao_type = node.get("type")
    default = node.get("default")
    nullable = bool(node.get("x_tao_nullable")) or "default" not in node or default is None
    reads = node.get("x_tao_reads") or {}
    out: dict[str, Any]
    if "anyOf" in node and tao_type is None:
        out = {"anyOf": [_convert(b) for b in node["anyOf"]]}
        return out
    props = _child_props(node)
    if tao_type in _OBJECT_TYPES:
        out = {"type": "object"}
        if props:
            out["properties"] = {k: _convert(v) for k, v in props.items()}
            out["additionalProperties"] = False
    elif tao_type in _LIST_TYPES:
        out = {"type": "array"}
        items = node.get("x_tao_items")
        if isinstance(items, dict) and (conv := _convert({**items, "default": {}})):
            out["items"] = conv
    elif tao_type in ("categorical", "ordered"):
        out = {"enum": list(node["enum"])} if node.get("enum") else {"type": "string"}
    elif tao_type == "ordered_int":
        out = {"type": "integer"}
        if node.get("enum"):
            out["enum"] = list(node["enum"])
    elif tao_type in _SCALAR_TYPES:
        out = {"type": _SCALAR_TYPES[tao_type]}
        if node.get("enum"):
            out["enum"] = list(node["enum"])
        if out["type"] == "string" and node.get("pattern"):
            out["pattern"] = node["pattern"]
    else:  # unknown TAO type: accept anything rather than guess
        out = {}
    if out.get("type") in ("integer", "number"):
        lo: Any = node.get("minimum")
        hi: Any = node.get("maximum")
        for v in (default, reads.get("dynamic")):
            if _finite(v):
                lo = min(lo, v) if _finite(lo) else lo
                hi = max(hi, v) if _finite(hi) else hi
        if _finite(lo):
            out["minimum"] = lo
        if _finite(hi):
            out["maximum"] = hi
    if nullable and out:
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


_CACHE: dict[str, tuple[dict, Draft202012Validator, Any]] = {}
# Schema objects seen before (catalog schemas are loaded once and shared): id -> (the schema
# itself, to guard against id reuse, compiled form, node index). Saves hashing the schema per call.
_BY_ID: dict[int, tuple[dict, tuple[dict, Draft202012Validator, Any], dict[tuple, dict]]] = {}


def _digest(tao_schema: dict) -> str:
    text = json.dumps(tao_schema, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_strict_int(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_TaoValidator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_int),
)


def _compiled(tao_schema: dict) -> tuple[dict, Draft202012Validator, Any]:
    """(JSON Schema, ``jsonschema`` validator that reports every error, ``fastjsonschema`` gate)."""
    return _entry(tao_schema)[1]


def _entry(tao_schema: dict) -> tuple[dict, tuple[dict, Draft202012Validator, Any], dict[tuple, dict]]:
    """Cached (schema, compiled validator, node index) for a schema object (by identity, then content)."""
    hit = _BY_ID.get(id(tao_schema))
    if hit is not None and hit[0] is tao_schema:
        return hit
    entry = (tao_schema, _compile(tao_schema), _index(tao_schema))
    if len(_BY_ID) > 128:
        _BY_ID.clear()
    _BY_ID[id(tao_schema)] = entry
    return entry


def _index(tao_schema: dict) -> dict[tuple, dict]:
    """Path (keys, with ``[]`` for a list item) -> schema node, for every node of the schema."""
    out: dict[tuple, dict] = {}

    def walk(node: dict, path: tuple) -> None:
        for k, v in _child_props(node).items():
            out[path + (k,)] = v
            walk(v, path + (k,))
        items = node.get("x_tao_items")
        if isinstance(items, dict):
            out[path + ("[]",)] = items
            walk(items, path + ("[]",))

    walk(tao_schema, ())
    return out


class _SectionGate:
    """The ``fastjsonschema`` gate of a root schema ``{type: object, properties: P,
    additionalProperties: false}`` (what :func:`_compile` builds), one compiled gate per
    top-level section (compiled on first use; the same keywords in draft 7), each section's
    verdict remembered per section object: the prepared sections :func:`_prep_section` hands
    out again are not checked again. Raises ``fastjsonschema.JsonSchemaException`` on the first
    failing section, like a compiled gate."""

    def __init__(self, properties: dict[str, dict]) -> None:
        self.properties = properties
        self.gates: dict[str, Any] = {}
        self.seen: dict[tuple[str, int], tuple[Any, bool]] = {}  # (key, id(section)) -> (the section, passed)

    def __call__(self, instance: Any) -> None:
        if not isinstance(instance, dict):
            raise fastjsonschema.JsonSchemaException("the spec must be an object")
        for key, value in instance.items():
            if key not in self.properties:
                raise fastjsonschema.JsonSchemaException(f"unknown top-level key {key!r}")
            hit = self.seen.get((key, id(value)))
            if hit is None or hit[0] is not value:
                hit = (value, self._passes(key, value))
                if len(self.seen) > 4096:
                    self.seen.clear()
                self.seen[(key, id(value))] = hit  # the entry keeps the section alive, so its id stays its own
            if not hit[1]:
                raise fastjsonschema.JsonSchemaException(f"section {key!r} fails the schema")

    def _passes(self, key: str, value: Any) -> bool:
        gate = self.gates.get(key)
        if gate is None:
            gate = self.gates[key] = fastjsonschema.compile(self.properties[key])
        try:
            gate(value)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


def _compile(tao_schema: dict) -> tuple[dict, Draft202012Validator, Any]:
    key = _digest(tao_schema)
    hit = _CACHE.get(key)
    if hit is None:
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {k: _convert(v) for k, v in _child_props(tao_schema).items()},
            "additionalProperties": False,
        }
        hit = (root, _TaoValidator(root), _SectionGate(root["properties"]))
        if len(_CACHE) > 128:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


def to_json_schema(tao_schema: dict) -> dict:
    """Standard JSON Schema (draft 2020-12) for a TAO-dialect schema; cached by content hash.

    The returned dict is shared with the cache: treat it as read-only (deep-copy to edit).
    Integers are checked strictly by :func:`validate_spec` (a custom ``integer`` type check);
    a plain ``jsonschema`` validator on this dict would also accept ``10.0`` for an int field.
    """
    return _compiled(tao_schema)[0]


def _walk_nodes(node: dict, prefix: str = ""):
    for k, v in _child_props(node).items():
        path = f"{prefix}.{k}" if prefix else k
        yield path, v
        yield from _walk_nodes(v, path)


def schema_keys(tao_schema: dict) -> set[str]:
    """All dotted leaf keys of a schema (nodes without sub-properties), e.g. ``train.num_epochs``.

    Sections TAO leaves opaque (``collection`` without properties, such as DINO ``distill`` or
    ``dataset.test_data_sources``) count as leaves.
    """
    return {path for path, node in _walk_nodes(tao_schema) if not _child_props(node)}


def _all_keys(tao_schema: dict) -> set[str]:
    return {path for path, _ in _walk_nodes(tao_schema)}


# ---------------------------------------------------------------------------------------------
# validation


def _fmt_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<spec>"


def _node_at(tao_schema: dict, parts: list[Any]) -> dict | None:
    """Schema node at a spec path (``[0]`` steps into ``x_tao_items``); the root for ``[]``; None if unknown."""
    if not parts:
        return tao_schema
    return _entry(tao_schema)[2].get(tuple("[]" if isinstance(p, int) else p for p in parts))


def _canonical_enum(node: dict, value: Any) -> Any:
    """``value`` spelled as the enum member TAO matches it to (``x_tao_reads.enum_case: insensitive``)."""
    if not isinstance(value, str) or (node.get("x_tao_reads") or {}).get("enum_case") != "insensitive":
        return value
    for option in node.get("enum") or ():
        if isinstance(option, str) and option.lower() == value.strip().lower():
            return option
    return value


def _coerce(node: dict, value: Any) -> tuple[bool, Any]:
    """What OmegaConf does with ``value`` for this node's type when it converts silently."""
    tao_type = node.get("type")
    jtype = "integer" if tao_type == "ordered_int" else _SCALAR_TYPES.get(str(tao_type))
    if jtype == "integer" and isinstance(value, str):
        try:
            return True, int(value.strip())
        except ValueError:
            return False, value
    if jtype == "number" and isinstance(value, str):
        try:
            return True, float(value.strip())
        except ValueError:
            return False, value
    if jtype == "boolean":
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return True, _BOOL_WORDS[value.strip().lower()]
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value != 0  # OmegaConf BooleanNode: any int, 0 is false
    if jtype == "string" and not node.get("enum") and isinstance(value, (int, float, bool)):
        return True, str(value)
    return False, value


def _prepare(tao_schema: dict, spec: Any, parts: list[Any], missing: list[str], notes: list[Issue]) -> Any:
    """Copy of ``spec`` without MISSING/interpolated leaves and with OmegaConf's silent conversions.

    For a whole spec, each top-level section's answer is remembered by its JSON text
    (:func:`_prep_section`): a built spec differs from its template in a few sections, so the
    rest are not walked again. The answer is read-only (the gate and the validator only read it)."""
    index = _entry(tao_schema)[2]
    if parts or not isinstance(spec, dict):
        return _prep(index, spec, tuple(parts), tuple("[]" if isinstance(p, int) else p for p in parts), missing, notes)
    out = {}
    for k, v in spec.items():
        if isinstance(k, str) and isinstance(v, (dict, list, tuple)):
            prepared, sec_missing, sec_notes = _prep_section(index, k, v)
            out[k] = prepared
            missing.extend(sec_missing)
            notes.extend(copy.copy(n) for n in sec_notes)  # callers own their issues
        else:
            out.update(_prep(index, {k: v}, (), (), missing, notes))
    return out


#: (id(node index), section, its JSON text) -> (the index, prepared section, missing, notes).
_SECTIONS: dict[tuple[int, str, bytes], tuple[dict, Any, tuple[str, ...], tuple[Issue, ...]]] = {}


def _prep_section(index: dict[tuple, dict], key: str, value: Any) -> tuple[Any, tuple[str, ...], tuple[Issue, ...]]:
    """:func:`_prep` of one top-level section, remembered by its JSON text (orjson: the text
    tells apart every value :func:`_prep` tells apart, as tuples are read as lists); a section JSON
    cannot carry (non-string keys, huge ints) is prepared each time."""
    text = json_text(value)
    if text is not None:
        hit = _SECTIONS.get((id(index), key, text))
        if hit is not None and hit[0] is index:
            return hit[1], hit[2], hit[3]
    missing: list[str] = []
    notes: list[Issue] = []
    prepared = _prep(index, value, (key,), (key,), missing, notes)
    if text is not None:
        if len(_SECTIONS) > 2048:
            _SECTIONS.clear()
        _SECTIONS[(id(index), key, text)] = (index, prepared, tuple(missing), tuple(notes))
    return prepared, tuple(missing), tuple(notes)


def _prep(index: dict[tuple, dict], spec: Any, parts: tuple, norm: tuple, missing: list[str], notes: list[Issue]) -> Any:
    """:func:`_prepare` on a subtree: ``parts`` is its spec path, ``norm`` the same with ``[]`` for list indices."""
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            if v == MISSING:
                missing.append(_fmt_path(parts + (k,)))
                continue
            if isinstance(v, str) and _INTERPOLATION.search(v):
                continue
            nsub = norm + (k,)
            if isinstance(v, (dict, list, tuple)):
                out[k] = _prep(index, v, parts + (k,), nsub, missing, notes)
            else:
                out[k] = _leaf(index.get(nsub), parts + (k,), v, notes, missing)
        return out
    if isinstance(spec, (list, tuple)):  # OmegaConf reads a tuple as a list
        nsub = norm + ("[]",)
        node = index.get(nsub)
        return [
            _prep(index, v, parts + (i,), nsub, missing, notes)
            if isinstance(v, (dict, list, tuple))
            else _leaf(node, parts + (i,), v, notes, missing)
            for i, v in enumerate(spec)
        ]
    return spec


_FLOAT_FOR_INT = "<float for int>"  # marker in ``missing``: the fast gate cannot see it (10.0 is a JSON integer)


#: id(schema node) -> (node, int-typed, JSON type, has enum, case-insensitive enum): what
#: :func:`_leaf` needs of a node, read once per node (the node is kept, so its id stays its own).
_LEAF_PLANS: dict[int, tuple[dict, bool, str | None, bool, bool]] = {}


def _leaf_plan(node: dict) -> tuple[dict, bool, str | None, bool, bool]:
    plan = _LEAF_PLANS.get(id(node))
    if plan is None or plan[0] is not node:
        tao_type = node.get("type")
        jtype = "integer" if tao_type == "ordered_int" else _SCALAR_TYPES.get(str(tao_type))
        insensitive = (node.get("x_tao_reads") or {}).get("enum_case") == "insensitive"
        plan = (node, tao_type in ("int", "integer", "ordered_int"), jtype, bool(node.get("enum")), insensitive)
        if len(_LEAF_PLANS) > 50_000:
            _LEAF_PLANS.clear()
        _LEAF_PLANS[id(node)] = plan
    return plan


def _leaf(node: dict | None, sub: tuple, v: Any, notes: list[Issue], missing: list[str]) -> Any:
    """A scalar as TAO reads it: enum spelling (case-insensitive fields) and OmegaConf's silent conversions."""
    if node is None or v is None:
        return v
    _, int_typed, jtype, has_enum, insensitive = _leaf_plan(node)
    if isinstance(v, float) and int_typed:
        missing.append(_FLOAT_FOR_INT)
    # Fast exits where _canonical_enum and _coerce leave the value as it is.
    if isinstance(v, str):
        if not insensitive and jtype in (None, "string"):
            return v
    elif jtype == "boolean":
        if not isinstance(v, int) or isinstance(v, bool):
            return v
    elif jtype != "string" or has_enum or not isinstance(v, (int, float, bool)):
        return v
    v = _canonical_enum(node, v)
    changed, new = _coerce(node, v)
    if changed:
        field = _fmt_path(sub)
        notes.append(
            Issue(
                field,
                f"{v!r} is a {type(v).__name__}; TAO (OmegaConf) converts it to {new!r}.",
                f"write {field}: {json.dumps(new)} with the right type (YAML reads 1e-4 as a string; write 1.0e-4)",
                code="warning",
            )
        )
        v = new
    return v


def _did_you_mean(tao_schema: dict, parent: list[Any], key: str) -> tuple[str, str]:
    """(reason, fix) for an unknown ``key`` under ``parent`` (siblings first, then misplaced)."""
    parent_node = _node_at(tao_schema, parent) or {}
    siblings = sorted(_child_props(parent_node))
    where = f"section '{_fmt_path(parent)}'" if parent else "the top level"
    reason = f"unknown key '{key}' in {where}."
    prefix = _fmt_path(parent) + "." if parent else ""
    close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.6)
    if close:
        alts = " or ".join(f"'{prefix}{c}'" for c in close)
        return reason, f"did you mean {alts}? Rename or remove '{prefix}{key}'."
    if not parent:
        meta = tao_schema.get("x_tao_schema") or {}
        if key in (meta.get("sections_not_read") or []):
            act = meta.get("action", "this")
            return (
                f"section '{key}' is not read by the {act} action (TAO Core drops it from the {act} schema).",
                f"remove '{key}' from this spec (it belongs to the {key} action's spec).",
            )
    placed = sorted(k for k in _all_keys(tao_schema) if k.rsplit(".", 1)[-1] == key)
    if not placed:
        lasts: dict[str, list[str]] = {}
        for k in _all_keys(tao_schema):
            lasts.setdefault(k.rsplit(".", 1)[-1], []).append(k)
        for c in difflib.get_close_matches(key, list(lasts), n=2, cutoff=0.75):
            placed.extend(sorted(lasts[c]))
    if placed:
        return reason, f"'{key}' is not a key here; did you mean {' or '.join(repr(p) for p in placed[:3])}? Move it there."
    shown = ", ".join(siblings[:15]) + (", ..." if len(siblings) > 15 else "")
    return reason, f"remove '{prefix}{key}'; valid keys here: {shown}."


def _describe_expected(schema: dict) -> str:
    t = schema.get("type")
    types = [t] if isinstance(t, str) else [x for x in (t or []) if x != "null"]
    return " or ".join(_TYPE_WORDS.get(x, x) for x in types) or "another value"


def _issue_from_error(tao_schema: dict, err: jsonschema.ValidationError) -> list[Issue]:
    parts = list(err.absolute_path)
    field = _fmt_path(parts)
    node = _node_at(tao_schema, parts) or {}
    default = node.get("default")
    dflt = (
        f" (schema default: {json.dumps(default, allow_nan=True)})"
        if "default" in node and not isinstance(default, (dict, list))
        else ""
    )
    v = err.instance
    if err.validator == "additionalProperties":
        allowed = set((err.schema.get("properties") or {}).keys())
        issues = []
        for key in [k for k in v if k not in allowed]:
            reason, fix = _did_you_mean(tao_schema, parts, key)
            issues.append(Issue(_fmt_path(parts + [key]), reason, fix, code="unknown_key"))
        return issues
    if err.validator == "type":
        expected = _describe_expected(err.schema)
        return [
            Issue(
                field, f"expected {expected}, got {v!r} ({type(v).__name__}).", f"set {field} to {expected}{dflt}.", code="type"
            )
        ]
    if err.validator == "enum":
        options = [o for o in err.validator_value if o is not None]
        fix = f"use one of {options}"
        if isinstance(v, str):
            close = difflib.get_close_matches(v, [str(o) for o in options], n=1, cutoff=0.6)
            if close:
                fix = f"did you mean {close[0]!r}? Valid values: {options}"
        return [Issue(field, f"{v!r} is not one of the allowed values.", fix + ".", code="enum")]
    if err.validator in ("minimum", "maximum"):
        word = "below the minimum" if err.validator == "minimum" else "above the maximum"
        op = ">=" if err.validator == "minimum" else "<="
        return [
            Issue(
                field,
                f"{v!r} is {word} {err.validator_value} (TAO schema bound).",
                f"set {field} {op} {err.validator_value}{dflt}.",
                code="bound",
            )
        ]
    if err.validator == "pattern":
        return [
            Issue(
                field,
                f"{v!r} does not match the pattern {err.validator_value!r}.",
                f"give {field} a value matching {err.validator_value!r}{dflt}.",
                code="pattern",
            )
        ]
    return [Issue(field, err.message, f"fix {field} to satisfy the schema{dflt}.", code="invalid")]


def _passes(gate: Any, instance: Any) -> bool:
    """True when the compiled ``fastjsonschema`` gate accepts ``instance`` (then ``jsonschema`` has nothing to report)."""
    try:
        gate(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def _resolve(tao_schema: dict, network_arch: str | None, action: str | None) -> tuple[str | None, str | None, str]:
    meta = tao_schema.get("x_tao_schema") or {}
    container = meta.get("container") or ("deploy" if (action or "").startswith("deploy_") else "train")
    tao_action = meta.get("action") or ((action or "").removeprefix("deploy_") or None)
    return network_arch or meta.get("network_arch"), tao_action, container


def sections_read(tao_schema: dict, action: str | None) -> set[str]:
    """Top-level sections an action reads: every non-action section, its own, and ``train`` for train/distill."""
    tops = set(_child_props(tao_schema))
    read = {s for s in tops if s not in ACTION_SECTIONS}
    if action:
        read.add(action)
    if action in ("train", "distill", None):
        read.add("train")
    return read


def _missing_issues(
    tao_schema: dict, spec: dict, missing: list[str], action: str | None, container: str, required_keys: Iterable[str] | None
) -> list[Issue]:
    def issue(key: str) -> Issue:
        return Issue(
            key,
            'required value not set ("???" is Hydra MISSING, or the key is empty).',
            f"set {key} (the spec builder fills it from a parent job or a data source when one is given).",
            code="missing",
        )

    if required_keys is not None:
        out = []
        for key in required_keys:
            val = get_dotted(spec, key, default=None)
            if val is None or val == "" or val == MISSING or val == [] or val == [MISSING]:
                out.append(issue(key))
        return out
    read = sections_read(tao_schema, action)
    out = []
    for key in missing:
        top = re.split(r"[.\[]", key, maxsplit=1)[0]
        if top not in read:
            continue
        if container == "deploy" and action in ("evaluate", "inference") and key == f"{action}.checkpoint":
            continue  # TAO Deploy reads <action>.trt_engine, not the PyTorch checkpoint
        if key.startswith("gen_trt_engine.tensorrt.calibration."):
            dtype = str(get_dotted(spec, "gen_trt_engine.tensorrt.data_type", default="") or "")
            if dtype.upper() != "INT8":
                continue  # calibration is read only for INT8 engines
        out.append(issue(key))
    if container == "deploy" and action in ("evaluate", "inference"):
        engine = get_dotted(spec, f"{action}.trt_engine", default=None)
        if engine in (None, "", MISSING):
            out.append(issue(f"{action}.trt_engine"))
    return out


def validate_spec(
    schema: dict,
    spec: dict,
    *,
    network_arch: str | None = None,
    action: str | None = None,
    require_complete: bool = False,
    required_keys: Iterable[str] | None = None,
) -> list[Issue]:
    """Check ``spec`` (nested dict) against a TAO-dialect ``schema`` and TAO's semantic constraints.

    ``network_arch``/``action`` default to the schema's ``x_tao_schema``; ``action`` may be a
    manifest key such as ``deploy_evaluate``. Returns issues (empty = valid), in this order:
    schema errors (codes ``unknown_key``, ``type``, ``enum``, ``bound``, ``pattern``,
    ``invalid``), missing values (``missing``, only with ``require_complete=True``: ``"???"``
    leaves in the sections the action reads, or exactly ``required_keys`` when given), then
    :func:`taoskills.specs.constraints.check_constraints` (``constraint``) and warnings
    (``warning``: silent OmegaConf conversions, TAO's soft rules). A constraint issue on a
    field that already has a schema error is dropped (one message per fault).
    """
    from taoskills.specs import constraints

    if not isinstance(spec, dict):
        return [
            Issue(
                "<spec>",
                f"a spec must be a mapping, got {type(spec).__name__}.",
                "pass the spec as a nested mapping (YAML).",
                code="type",
            )
        ]
    network_arch, tao_action, container = _resolve(schema, network_arch, action)
    missing: list[str] = []
    notes: list[Issue] = []
    prepared = _prepare(schema, spec, [], missing, notes)
    _, validator, gate = _compiled(schema)
    errors: list[jsonschema.ValidationError] = []
    if _FLOAT_FOR_INT in missing or not _passes(gate, prepared):
        errors = sorted(validator.iter_errors(prepared), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    missing = [m for m in missing if m != _FLOAT_FOR_INT]
    issues: list[Issue] = []
    for err in errors:
        issues.extend(_issue_from_error(schema, err))
    if require_complete:
        issues.extend(_missing_issues(schema, spec, missing, tao_action, container, required_keys))
    bad_fields = {i.field for i in issues}
    if network_arch:
        # Judge cross-field rules without the values the schema already rejected (their
        # defaults stand in), so one bad value gives one message, not a cascade.
        rejected = [i for i in issues if i.code in ("type", "enum", "bound", "pattern", "invalid")]
        clean = copy.deepcopy(spec) if rejected else spec
        for i in rejected:
            try:
                delete_dotted(clean, i.field)
            except SpecError:  # a key that is not dotted-safe: leave it, rules skip bad types
                pass
        for issue in constraints.check_constraints(network_arch, tao_action, clean, schema=schema, container=container):
            if issue.field not in bad_fields:
                issues.append(issue)
    issues.extend(notes)
    seen: set[tuple[str, str]] = set()
    unique = []
    for i in issues:
        if (i.field, i.reason) not in seen:
            seen.add((i.field, i.reason))
            unique.append(i)
    errors_first = [i for i in unique if i.code != "warning"] + [i for i in unique if i.code == "warning"]
    return errors_first


def assert_valid(schema: dict, spec: dict, **kwargs: Any) -> list[Issue]:
    """Like :func:`validate_spec` but raise :class:`SpecError` (``issues=`` the errors) if any error.

    Returns the warnings (issues with ``code == "warning"``) when the spec is valid.
    """
    issues = validate_spec(schema, spec, **kwargs)
    errors = [i for i in issues if i.code != "warning"]
    if errors:
        first = errors[0]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"spec is invalid: {first.field}: {first.reason}{more}", field=first.field, fix=first.fix, issues=errors)
    return [i for i in issues if i.code == "warning"]
