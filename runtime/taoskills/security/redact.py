"""One redaction layer for everything that leaves the runtime.

What counts as a secret (by environment-variable *name*; the values are whatever the
current environment holds): ``AWS_*``, ``NGC_*``, ``HF_TOKEN``, ``*_KEY``, ``*_TOKEN``,
``*_SECRET*``, ``*PASSWORD*``, ``TAO_ENCRYPTION_KEY`` (see :data:`SECRET_ENV_PATTERNS`).
Besides those values, :func:`redact_text` removes credentials written inside URLs
(``scheme://user:pass@host`` keeps ``scheme://`` and the host) and AWS access-key ids
(``AKIA``/``ASIA`` + 16 characters, the documented AWS key-id format), and
:func:`redact` replaces literal values under secret-named keys (rule:
:func:`taoskills.jobs.store.is_secret_key`) while keeping env-var references such as
``${oc.env:TAO_ENCRYPTION_KEY}``.

Every function is pure and cheap (one compiled regex per distinct set of values); it is
applied to MCP replies, CLI output, log slices, job records and rendered scripts/specs.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

#: Environment-variable name patterns (fnmatch, upper-case) whose values are secrets.
SECRET_ENV_PATTERNS: tuple[str, ...] = (
    "AWS_*",
    "NGC_*",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "*_KEY",
    "*_TOKEN",
    "*_SECRET*",
    "*PASSWORD*",
    "*_PASSWD",
    "*_CREDENTIALS",
    "TAO_ENCRYPTION_KEY",
)
#: Names that match a pattern above but hold no secret (public settings).
NOT_SECRET_ENV: frozenset[str] = frozenset({"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"})
#: Values shorter than this are not scrubbed (``1``, ``true`` would wreck every reply).
MIN_SECRET_LEN = 6
REDACTED = "<redacted>"
#: TAO's documented public default encryption key (TAO Core infer_params.py ``key``): not a secret.
PUBLIC_DEFAULT_KEY = "tlt_encode"

# scheme://user[:password]@  (RFC 3986 userinfo: anything but '/', '@' and whitespace)
_URL_CRED = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# AWS access key ids (AKIA = long-term, ASIA = temporary credentials).
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def is_secret_env_name(name: str) -> bool:
    """True when the environment variable ``name`` holds a secret (:data:`SECRET_ENV_PATTERNS`)."""
    return _secret_env_name(str(name).upper())


@functools.lru_cache(maxsize=4096)
def _secret_env_name(n: str) -> bool:
    if n in NOT_SECRET_ENV:
        return False
    return any(fnmatch.fnmatchcase(n, p) for p in SECRET_ENV_PATTERNS)


def secret_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of the secret variables in ``environ`` (default ``os.environ``), longest first.

    For ``os.environ`` the answer is remembered against a snapshot of its raw items (CPython's
    ``os.environ._data``, bytes keys and values, so taking it decodes nothing): any change to
    the environment makes a new snapshot and a fresh answer."""
    if environ is None:
        snapshot = environ_snapshot()
        if snapshot is not None:
            return _os_secret_values(snapshot)
    return _secret_values(os.environ if environ is None else environ)


def environ_snapshot() -> tuple[tuple[Any, Any], ...] | None:
    """A hashable snapshot of ``os.environ`` that changes whenever any variable does: its raw
    items (CPython keeps them as bytes in ``os.environ._data``, so nothing is decoded; ~2 us for
    40 variables). None where the interpreter keeps no such mapping (callers then read
    ``os.environ`` directly)."""
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict) and hasattr(os.environ, "decodevalue"):
        return tuple(raw.items())
    return None


def _secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    vals = {v for k, v in env.items() if is_secret_env_name(k) and isinstance(v, str) and len(v) >= MIN_SECRET_LEN}
    return tuple(sorted(vals, key=lambda v: (-len(v), v)))


@functools.lru_cache(maxsize=8)
def _os_secret_values(snapshot: tuple[tuple[Any, Any], ...]) -> tuple[str, ...]:
    key, value = os.environ.decodekey, os.environ.decodevalue  # type: ignore[attr-defined]
    return _secret_values({key(k): value(v) for k, v in snapshot})


@functools.lru_cache(maxsize=32)
def _values_rx(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values))


def _scrub_url(m: re.Match[str]) -> str:
    return f"{m.group('scheme')}{REDACTED}@"


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    """``text`` with secret values, URL credentials and AWS key ids replaced by ``<redacted>``.

    ``values``: the secret values to remove (default: :func:`secret_values` of the current
    environment). Non-strings are returned unchanged.
    """
    if not isinstance(text, str) or not text:
        return text
    vals = secret_values() if values is None else tuple(sorted(set(values), key=lambda v: (-len(v), v)))
    return _scrub(text, _values_rx(tuple(v for v in vals if len(v) >= MIN_SECRET_LEN)))


def _scrub(text: str, rx: re.Pattern[str] | None) -> str:
    if rx is not None:
        text = rx.sub(REDACTED, text)
    if "://" in text and "@" in text:
        text = _URL_CRED.sub(_scrub_url, text)
    if "A" in text:
        text = _AWS_KEY_ID.sub(REDACTED, text)
    return text


_is_secret_key: Callable[[str], bool] | None = None


def _secret_key(key: str) -> bool:
    global _is_secret_key
    if _is_secret_key is None:
        from taoskills.jobs.store import is_secret_key  # remembered per key there

        _is_secret_key = is_secret_key
    return _is_secret_key(key)


_SCALARS = (int, float, bool, type(None))


def _needs_redaction(obj: Any, rx: re.Pattern[str] | None, is_env_reference: Callable[[Any], bool]) -> bool:
    """True when :func:`redact` would change something under ``obj`` (a read-only pass over
    strings, secret-named keys and model fields). Models with computed fields say True (their
    values are only in ``model_dump``), so the full pass handles them."""
    from pydantic import BaseModel

    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t in _SCALARS:
            continue
        if isinstance(o, str):
            if o and (
                (rx is not None and rx.search(o))
                or ("://" in o and "@" in o and _URL_CRED.search(o))
                or ("A" in o and _AWS_KEY_ID.search(o))
            ):
                return True
        elif isinstance(o, dict):
            for k, v in o.items():
                if (
                    isinstance(k, str)
                    and _secret_key(k)
                    and not isinstance(v, (dict, list, tuple, bool))
                    and v not in (None, "")
                    and not (is_env_reference(v) or v == PUBLIC_DEFAULT_KEY)
                ):
                    return True
                stack.append(v)
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, BaseModel):
            if type(o).model_computed_fields:
                return True
            stack.append(dict(o.__dict__))
            if o.__pydantic_extra__:
                stack.append(dict(o.__pydantic_extra__))
    return False


# The URL and key-id patterns over JSON text (bytes). Each matches wherever its text pattern
# matches a string of the document (and sometimes more, which only costs the full pass): JSON
# escapes (``\\n``, ``\\"``) sit where the text had non-word, non-userinfo characters.
_URL_CRED_JSON = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://[^/@\s'\"]+@")
_AWS_KEY_ID_JSON = re.compile(rb"(?:AKIA|ASIA)[A-Z0-9]{16}\b")
#: Every rule of :func:`taoskills.jobs.store.is_secret_key` needs one of these words in the key.
_KEY_WORDS = (b"pass", b"pwd", b"secret", b"key", b"token")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


@functools.lru_cache(maxsize=32)
def _values_rx_json(values: tuple[str, ...]) -> re.Pattern[bytes] | None:
    if not values:
        return None
    return re.compile(b"|".join(re.escape(orjson.dumps(v)[1:-1]) for v in values))


def json_needs_redaction(text: bytes, values: Iterable[str] | None = None) -> bool:
    """True when :func:`redact` could change something in the JSON document ``text`` (compact
    JSON as ``pydantic_core.to_json`` or orjson write it): a secret value (default: the current
    environment's, :func:`secret_values`) in any string, a URL credential, an AWS key id, or a
    literal value under a secret-named key. A few substring searches and patterns over the
    bytes, no walk of the document; it may say True where :func:`redact` would change nothing
    (the caller then runs :func:`redact`), never False where it would change something."""
    vals = secret_values() if values is None else tuple(sorted(set(values), key=lambda v: (-len(v), v)))
    rx = _values_rx_json(tuple(v for v in vals if len(v) >= MIN_SECRET_LEN))
    if rx is not None and rx.search(text):
        return True
    if b"://" in text and b"@" in text and _URL_CRED_JSON.search(text):
        return True
    if (b"AKIA" in text or b"ASIA" in text) and _AWS_KEY_ID_JSON.search(text):
        return True
    lower = text.lower()
    return any(word in lower and _secret_key_with_literal(text, lower, word) for word in _KEY_WORDS)


def _secret_key_with_literal(text: bytes, lower: bytes, word: bytes) -> bool:
    """True when some key holding ``word`` (case-insensitively) is secret-named and holds a
    literal value (not null, a boolean, "", an env-var reference or a container, whose own keys
    are searched on their own). Letters outside strings occur only in true/false/null and
    exponents, so every ``word`` lies inside a string; a string with an escape in it is not
    parsed here (True: the caller takes the full pass)."""
    from taoskills.jobs.store import is_env_reference

    at = lower.find(word)
    while at >= 0:
        start = text.rfind(b'"', 0, at)
        end = text.find(b'"', at)
        if start < 0 or end < 0 or b"\\" in text[start:end]:
            return True
        if text[end + 1 : end + 2] == b":" and _secret_key(text[start + 1 : end].decode()):
            head = text[end + 2 : end + 3]
            if head not in (b"{", b"[", b"n", b"t", b"f"):
                if head != b'"':
                    return True  # a number under a secret-named key
                token = _JSON_STRING.match(text, end + 2)
                value = orjson.loads(token.group(0)) if token else None
                if not (value == "" or value == PUBLIC_DEFAULT_KEY or is_env_reference(value)):
                    return True
        at = lower.find(word, end + 1)
    return False


def redact(obj: Any, values: Iterable[str] | None = None) -> Any:
    """Deep copy of ``obj`` (dicts, lists, tuples, strings, pydantic models) with every string
    passed through :func:`redact_text` and literal values under secret-named keys replaced
    (env-var references, ``None``, ``""`` and booleans are kept). A pydantic model comes
    back as the same model type; one with nothing to redact comes back as itself (no copy).
    """
    from pydantic import BaseModel

    from taoskills.jobs.store import is_env_reference

    vals = secret_values() if values is None else tuple(sorted(set(values), key=lambda v: (-len(v), v)))
    rx = _values_rx(tuple(v for v in vals if len(v) >= MIN_SECRET_LEN))
    if isinstance(obj, BaseModel) and not _needs_redaction(obj, rx, is_env_reference):
        return obj  # the common case: one read-only pass, no dump and re-validation
    changed = False

    def walk(obj: Any) -> Any:
        nonlocal changed
        t = type(obj)
        if t is str or (t not in _SCALARS and isinstance(obj, str)):
            if not obj:
                return obj
            text = _scrub(obj, rx)
            if text != obj:
                changed = True
            return text
        if t in _SCALARS:
            return obj
        if t is dict or (t is not list and isinstance(obj, dict)):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                if isinstance(k, str) and _secret_key(k) and not isinstance(v, (dict, list, tuple, bool)) and v not in (None, ""):
                    out[k] = v if is_env_reference(v) or v == PUBLIC_DEFAULT_KEY else REDACTED
                    changed = changed or out[k] is not v
                else:
                    out[k] = walk(v)
            return out
        if t is list or isinstance(obj, list):
            return [walk(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(walk(v) for v in obj)
        if isinstance(obj, BaseModel):
            before = changed
            changed = False
            data = walk(obj.model_dump(mode="python"))
            mine, changed = changed, before or changed
            return type(obj).model_validate(data) if mine else obj
        return obj

    return walk(obj)


__all__ = ["SECRET_ENV_PATTERNS", "REDACTED", "is_secret_env_name", "secret_values", "redact_text", "redact"]
