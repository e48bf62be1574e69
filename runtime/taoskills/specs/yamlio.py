"""Spec -> YAML text, fast: the same text as ``yaml.dump(spec, Dumper=yaml.CSafeDumper,
sort_keys=False, default_flow_style=False)`` (PyYAML's safe dumper) at a fraction of its cost.

A spec is a tree of dicts with string keys, lists and scalars whose text PyYAML writes plain
(unquoted). :func:`dump_yaml` writes such a tree itself, in PyYAML's block layout (two-space
mappings, sequences not indented under their key, ``{}``/``[]`` for empty containers); any
value it cannot vouch for - a string PyYAML would quote or fold, a container met twice (PyYAML
writes an anchor), a tuple, a key of another type - sends the whole spec to PyYAML with
:class:`SpecDumper`, which gives the same text as the safe dumper, a little faster: it makes
the nodes ``SafeRepresenter`` makes for ``str``/``int``/``bool``/``None`` in one step and
remembers each scalar's resolved tag (the safe dumper has no path resolvers, so a scalar's tag
depends on its text alone). ``tests/unit/test_yamlio.py`` checks the equality on every shipped
template and on generated trees.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode

_BASE: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_NULL_NODE_VALUE = "null"
#: Resolved tags per (scalar text, implicit flags); cleared when it grows past this many entries.
_MAX_TAGS = 20_000
_tags: dict[tuple[str, tuple[bool, bool]], str] = {}


class SpecDumper(_BASE):  # type: ignore[misc, valid-type]
    """PyYAML's safe dumper with one-step scalars and remembered tags (same output)."""

    def represent_data(self, data: Any):  # noqa: D102 - see the module docstring
        t = type(data)
        if t is str:
            return ScalarNode(_STR, data, style=self.default_style)
        if t is bool:
            return ScalarNode(_BOOL, "true" if data else "false", style=self.default_style)
        if t is int:
            return ScalarNode(_INT, str(data), style=self.default_style)
        if data is None:
            return ScalarNode(_NULL, _NULL_NODE_VALUE, style=self.default_style)
        return super().represent_data(data)

    def resolve(self, kind, value, implicit):  # noqa: D102 - see the module docstring
        if kind is not ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = _tags.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_tags) >= _MAX_TAGS:
                _tags.clear()
            _tags[key] = tag
        return tag


#: Text PyYAML writes plain in block context: printable ASCII, no leading indicator
#: (``,[]{}#&*!|>'"%@`` or a space; ``-?:`` only when followed by a space or the end), no line break, no ``: ``, `` #``, double or trailing space,
#: no trailing ``:``, no document marker. Whether it would read back as another type (``123``,
#: ``true``, ``~``, ``1:20``) is asked of PyYAML's resolver; one with spaces must also fit the
#: line (PyYAML folds plain text at a space past column 80).
_PLAIN = re.compile(r"(?:[A-Za-z0-9_./$=+~()^;<\\]|[?:-](?=[^ ]))(?:[A-Za-z0-9_./$=+~()^;<>\\@%:,?!*&{}\[\]-]| (?=[^ #]))*")
_resolver = yaml.resolver.Resolver()
_plain_ok: dict[str, bool] = {}
#: PyYAML's default ``width``: plain text is folded at a space beyond this column.
_WIDTH = 80


class _Fallback(Exception):
    """Something :func:`_emit` does not write exactly as PyYAML would."""


def _plain_str(text: str) -> bool:
    ok = _plain_ok.get(text)
    if ok is None:
        ok = (
            _PLAIN.fullmatch(text) is not None
            and not text.endswith(":")
            and ": " not in text
            and not text.startswith(("...", "---"))
            and _resolver.resolve(ScalarNode, text, (True, False)) == _STR
        )
        if len(_plain_ok) >= _MAX_TAGS:
            _plain_ok.clear()
        _plain_ok[text] = ok
    return ok


def _scalar(value: Any, column: int = 0) -> str:
    """The plain text PyYAML writes for ``value`` starting at ``column``; _Fallback when it would
    quote, fold or anchor it."""
    t = type(value)
    if t is str:
        if not value:
            return "''"
        if _plain_str(value) and (" " not in value or column + len(value) <= _WIDTH):
            return value
        raise _Fallback
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if value is None:
        return "null"
    if t is float:
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        if value == value and abs(value) != float("inf") and _plain_float(text):
            return text
    raise _Fallback


def _plain_float(text: str) -> bool:
    return _resolver.resolve(ScalarNode, text, (True, False)) == "tag:yaml.org,2002:float"


def _emit(node: Any, indent: str, out: list[str], seen: set[int]) -> None:
    """Write the block mapping/sequence ``node`` (non-empty) at ``indent``."""
    if id(node) in seen:
        raise _Fallback  # PyYAML writes an anchor and an alias
    seen.add(id(node))
    if type(node) is dict:
        for key, value in node.items():
            if type(key) is not str or len(key) > 100 or " " in key:
                raise _Fallback
            head = f"{indent}{_scalar(key)}:"
            _value(value, head, indent, indent + "  ", indent, out, seen)
    else:
        for value in node:
            _value(value, f"{indent}-", indent, indent + "  ", indent + "  ", out, seen)


def _value(value: Any, head: str, indent: str, map_indent: str, seq_indent: str, out: list[str], seen: set[int]) -> None:
    """``head`` (``key:`` or ``-``) followed by ``value``: inline scalars and empty containers,
    else the container on the next lines (a mapping under a key indented by two, a sequence under
    a key not indented; under ``-`` the first entry shares the dash's line)."""
    t = type(value)
    if t is dict or t is list:
        if not value:
            out.append(f"{head} {{}}\n" if t is dict else f"{head} []\n")
            return
        if head.endswith("-"):  # "- key: v" / "- - v": first line shares the dash
            sub: list[str] = []
            _emit(value, seq_indent, sub, seen)
            sub[0] = head + " " + sub[0][len(seq_indent) :]
            out.extend(sub)
            return
        out.append(head + "\n")
        _emit(value, map_indent if t is dict else indent, out, seen)
        return
    out.append(f"{head} {_scalar(value, len(head) + 1)}\n")


def dump_yaml(spec: Any) -> str:
    """``spec`` (nested dicts/lists/scalars) -> block-style YAML with key order kept; exactly
    ``yaml.dump(spec, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)``."""
    if type(spec) is dict and spec:
        out: list[str] = []
        try:
            _emit(spec, "", out, set())
            return "".join(out)
        except _Fallback:
            pass
    return yaml.dump(spec, Dumper=SpecDumper, sort_keys=False, default_flow_style=False)


__all__ = ["SpecDumper", "dump_yaml"]
