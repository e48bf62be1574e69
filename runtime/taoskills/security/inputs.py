"""Guards on caller-supplied values: every tool argument is hostile until checked.

An MCP client is usually an LLM agent that reads untrusted text, so a request may carry
prompt-injected values. :func:`check_arguments` (every tool, at the MCP edge) and
:func:`check_request` (``build_spec`` / ``launch_job``, for the CLI too) refuse, with a
:class:`~taoskills.errors.SpecError` naming the field and the fix and **never echoing the
value**:

* interpolations (``${...}``, OmegaConf resolvers such as ``${oc.env:NAME}``) in spec
  values, except under keys TAO itself reads that way (:data:`INTERPOLATION_KEYS`, e.g.
  ``encryption_key: ${oc.env:TAO_ENCRYPTION_KEY}``), and there only as a reference to a
  secret variable's name;
* literal values under secret-named keys (pass secrets by env-var name only);
* NUL and other control characters (tab, newline, carriage return are allowed) and lone
  surrogates in any string;
* NaN/Infinity, unless the action's schema gives that key a non-finite default;
* numbers beyond sanity bounds (:data:`NUMERIC_BOUNDS`, then :data:`ABS_NUMBER_MAX`);
* strings over :data:`MAX_STRING` characters (request text: :data:`MAX_TEXT`), nesting
  deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values in one argument;
* credentials inside URLs (``https://user:pass@host``, ``s3://KEY:SECRET@bucket``).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from taoskills.errors import Issue, SpecError
from taoskills.security.redact import is_secret_env_name

MAX_STRING = 4096  # characters; a path or a spec value (PATH_MAX on Linux is 4096 bytes)
MAX_TEXT = 16384  # characters of request text (route_request text, launch_job request_text)
MAX_KEY = 256  # characters of one dict key
MAX_DEPTH = 32  # nesting of dicts/lists in one argument
MAX_NODES = 20000  # values in one argument
ABS_NUMBER_MAX = 1e15  # |x| for any number in a spec (beyond float64's exact-integer range 2**53)
#: Upper bounds by the last segment of a dotted key (sane limits on top of the schema's).
NUMERIC_BOUNDS: dict[str, float] = {
    "num_epochs": 100_000,
    "num_epoch": 100_000,
    "epochs": 100_000,
    "max_epochs": 100_000,
    "batch_size": 65_536,
    "num_gpus": 1024,
    "num_nodes": 4096,
    "num_workers": 1024,
    "workers": 1024,
    "checkpoint_interval": 100_000,
    "validation_interval": 100_000,
    "num_queries": 100_000,
    "input_width": 65_536,
    "input_height": 65_536,
    "img_size": 65_536,
}
#: Keys whose value TAO reads through an interpolation by design (TAO Core ``encryption_key``).
INTERPOLATION_KEYS = frozenset({"encryption_key", "key"})
#: Argument names holding free text (capped at MAX_TEXT rather than MAX_STRING).
TEXT_ARGUMENTS = frozenset({"text", "request_text"})
#: Argument names holding spec values (interpolation and secret-key rules apply).
SPEC_ARGUMENTS = frozenset(
    {"overrides", "shorthand", "spec", "data_sources", "pretrained_model", "parent_job_id", "resume_job_id"}
)
CREDENTIAL_VARS = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (S3), NGC_API_KEY (NGC), HF_TOKEN (Hugging Face)"

_URL_CRED = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^/@\s]+@")
_ALLOWED_REF = re.compile(r"^\$\{oc\.env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(,tlt_encode)?\}$")
_ALLOWED_CONTROL = {"\t", "\n", "\r"}


def _bad_char(s: str) -> str | None:
    """Name of the first forbidden character class in ``s``, or None."""
    if s.isprintable():
        return None
    for ch in s:
        if ch in _ALLOWED_CONTROL:
            continue
        cat = unicodedata.category(ch)
        if ch == "\x00":
            return "a NUL character"
        if cat == "Cc":
            return f"a control character (U+{ord(ch):04X})"
        if cat == "Cs":
            return "a lone UTF-16 surrogate (invalid Unicode)"
    return None


@functools.lru_cache(maxsize=8192)
def _last(field: str) -> str:
    return re.split(r"[.\[\]]+", field.strip("]"))[-1] if field else field


def _string_issue(s: str, field: str, *, cap: int, spec_value: bool) -> Issue | None:
    if len(s) > cap:
        return Issue(field, f"is {len(s)} characters long; the limit is {cap}.", f"shorten {field} to at most {cap} characters.")
    bad = _bad_char(s)
    if bad:
        return Issue(field, f"contains {bad}.", f"remove control characters from {field} (tab and newline are allowed).")
    if "://" in s and _URL_CRED.search(s):
        return Issue(
            field,
            "holds a URL with credentials inside it (user:password@ or key:secret@); secrets never travel in URLs.",
            f"remove the credentials from the URL and export them as environment variables instead: {CREDENTIAL_VARS}.",
        )
    if spec_value and "${" in s:
        m = _ALLOWED_REF.match(s.strip())
        if _last(field) in INTERPOLATION_KEYS and m and is_secret_env_name(m.group("name")):
            return None
        if _last(field) in INTERPOLATION_KEYS:
            return Issue(
                field,
                "may only reference a secret environment variable by name.",
                "write it as ${oc.env:TAO_ENCRYPTION_KEY} and export TAO_ENCRYPTION_KEY where the job runs.",
            )
        return Issue(
            field,
            "holds an interpolation (${...}); caller-supplied spec values are taken literally and resolvers such as oc.env are refused.",
            f"give {field} a plain value (no '${{'); secrets go by environment-variable name only.",
        )
    return None


def _number_issue(x: float | int, field: str, nonfinite_ok: Callable[[str], bool]) -> Issue | None:
    if isinstance(x, float) and not math.isfinite(x):
        if nonfinite_ok(field):
            return None
        return Issue(field, "is NaN or Infinity, which this key does not accept.", f"give {field} a finite number.")
    bound = NUMERIC_BOUNDS.get(_last(field))
    if bound is not None and x > bound:
        return Issue(field, f"is above the sane limit {bound:g} for {_last(field)}.", f"use a value of at most {bound:g}.")
    if abs(x) > ABS_NUMBER_MAX:
        return Issue(
            field, f"is beyond +/-{ABS_NUMBER_MAX:g}, far outside any spec value.", f"use a realistic value for {field}."
        )
    return None


def find_issues(
    value: Any,
    field: str,
    *,
    cap: int = MAX_STRING,
    spec_value: bool = False,
    nonfinite_ok: Callable[[str], bool] = lambda _k: False,
) -> list[Issue]:
    """Every problem in ``value`` (any JSON value) at dotted ``field``; values never quoted."""
    from taoskills.jobs.store import is_env_reference, is_secret_key

    issues: list[Issue] = []
    nodes = 0
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        v, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            issues.append(Issue(field, f"holds more than {MAX_NODES} values.", f"send a smaller {field}."))
            break
        if depth > MAX_DEPTH:
            issues.append(Issue(where, f"is nested deeper than {MAX_DEPTH} levels.", f"flatten {field}."))
            break
        if isinstance(v, str):
            issue = _string_issue(v, where, cap=cap, spec_value=spec_value)
            if issue:
                issues.append(issue)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, (int, float)):
            if spec_value or (isinstance(v, float) and not math.isfinite(v)):
                issue = _number_issue(v, where, nonfinite_ok)
                if issue:
                    issues.append(issue)
        elif isinstance(v, Mapping):
            for k, item in v.items():
                ks = str(k)
                sub = f"{where}.{ks}" if where else ks
                key_issue = _string_issue(ks, f"{where} (a key)", cap=MAX_KEY, spec_value=False)
                if key_issue:
                    issues.append(key_issue)
                    continue
                if (
                    spec_value
                    and isinstance(item, str)
                    and item not in ("", "tlt_encode")
                    and is_secret_key(ks.split(".")[-1])
                    and not is_env_reference(item)
                    and "${" not in item
                ):
                    issues.append(
                        Issue(
                            sub,
                            "holds a literal secret; secrets are passed by environment-variable name only.",
                            f"set {sub} to ${{oc.env:NAME}} and export NAME where the job runs (e.g. TAO_ENCRYPTION_KEY).",
                        )
                    )
                    continue
                stack.append((item, sub, depth + 1))
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                stack.append((item, f"{where}[{i}]", depth + 1))
    return issues


def _raise(issues: list[Issue], what: str) -> None:
    if issues:
        first = issues[0]
        raise SpecError(
            f"{what}: {first.field} {first.reason}" + (f" (and {len(issues) - 1} more problem(s))" if len(issues) > 1 else ""),
            field=first.field,
            fix=first.fix,
            issues=issues[:20],
        )


def check_arguments(tool: str, arguments: Mapping[str, Any] | None) -> None:
    """Refuse hostile tool arguments (rules: module docstring). Raises SpecError."""
    if not arguments:
        return
    issues: list[Issue] = []
    for name, value in arguments.items():
        cap = MAX_TEXT if name in TEXT_ARGUMENTS else MAX_STRING
        issues.extend(find_issues(value, str(name), cap=cap, spec_value=name in SPEC_ARGUMENTS))
    _raise(issues, f"refused argument of {tool}")


def check_request(request: Mapping[str, Any], *, schema: Mapping[str, Any] | None = None) -> None:
    """Refuse hostile values in a SpecRequest (overrides, shorthand, data_sources, ids, paths).

    ``schema``: the action's JSON schema; a NaN/Infinity value is accepted only where the
    schema's default for that key is itself non-finite. Raises SpecError.
    """

    def nonfinite_ok(field: str) -> bool:
        return schema is not None and _schema_default_nonfinite(schema, field.split(".", 1)[-1])

    issues: list[Issue] = []
    for name, value in request.items():
        if value is None:
            continue
        cap = MAX_TEXT if name in TEXT_ARGUMENTS else MAX_STRING
        spec_value = name in SPEC_ARGUMENTS
        issues.extend(find_issues(value, name, cap=cap, spec_value=spec_value, nonfinite_ok=nonfinite_ok))
    _raise(issues, "refused request")


def _schema_default_nonfinite(schema: Mapping[str, Any], dotted: str) -> bool:
    node: Any = schema
    for part in re.split(r"\.|\[\d+\]", dotted):
        if not part:
            continue
        props = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(props, Mapping) or part not in props:
            return False
        node = props[part]
    d = node.get("default") if isinstance(node, Mapping) else None
    return isinstance(d, float) and not math.isfinite(d)


__all__ = ["check_arguments", "check_request", "find_issues", "MAX_STRING", "MAX_TEXT", "NUMERIC_BOUNDS"]
