"""Linear-time log filters.

``job_logs(grep=...)`` takes a caller's regular expression and runs it over up to 8 MiB
of log. Python's ``re`` backtracks (``(.|.)*XYZ`` takes exponential time) and holds the
GIL while it does, so one such call would freeze the whole server. Patterns are
compiled with RE2 (``google-re2``, linear time in the input, no backtracking), which
accepts the usual syntax (classes, alternation, ``(?i)``, ``\\d``, ``\\w``) but not
backreferences or look-around; such a pattern is refused with a clear fix. A pattern is
at most :data:`MAX_PATTERN` characters and RE2's program memory is capped at
:data:`MAX_MEM` bytes.

When ``google-re2`` is not installed, :func:`compile_grep` falls back to Python ``re`` run
in a child process killed after :data:`FALLBACK_TIMEOUT_S` seconds (the server never
blocks on it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from taoskills.errors import JobError

MAX_PATTERN = 1024  # characters
MAX_MEM = 8 << 20  # bytes of RE2 program memory
FALLBACK_TIMEOUT_S = 5.0
CHUNK_BYTES = 128 << 10  # bytes decoded and filtered per step

try:  # pragma: no branch
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 is a declared dependency
    _re2 = None

_FIX = (
    "pass a regular expression such as 'epoch|loss' (RE2 syntax: no backreferences like \\1 and no "
    "look-around like (?=...); escape special characters with a backslash, e.g. '\\[')"
)


class LineFilter:
    """A compiled grep: :meth:`filter` keeps the lines that match (``search`` semantics)."""

    def __init__(
        self, pattern: str, search: Callable[[str], object] | None, block_search: Callable[[str], object] | None = None
    ) -> None:
        self.pattern = pattern
        self._search = search
        # ``(?m:pattern)`` over a block of lines: no hit there means no line of the block matches
        self._block_search = block_search

    def search(self, line: str) -> bool:
        """True when ``line`` matches (RE2 only; the fallback filters whole lists)."""
        if self._search is None:
            return bool(self.filter([line]))
        return self._search(line) is not None

    def filter_blob(self, data: bytes, chunk: int = CHUNK_BYTES) -> list[str]:
        """Decode ``data`` (UTF-8, errors replaced) and keep the matching lines, a chunk of about
        ``chunk`` bytes at a time so no single step holds the GIL for long (other tool calls,
        ``ping`` included, keep running)."""
        out: list[str] = []
        start, n = 0, len(data)
        while start < n:
            end = data.find(b"\n", min(start + chunk, n))
            end = n if end == -1 else end + 1
            text = data[start:end].decode("utf-8", errors="replace")
            start = end
            if self._block_search is not None and self._block_search(text) is None:
                continue  # one linear scan of the block: no line in it matches
            out.extend(self.filter(text.splitlines()))
        return out

    def filter(self, lines: list[str]) -> list[str]:
        """The lines that match, in order. Errors: JobError when the fallback times out."""
        if self._search is not None:
            return [ln for ln in lines if self._search(ln) is not None]
        return _filter_in_child(self.pattern, lines)


def compile_grep(grep: str | None) -> LineFilter | None:
    """Compile a caller's log filter (None or "" -> None). Errors: JobError (field ``grep``)."""
    if grep is None or grep == "":
        return None
    if len(grep) > MAX_PATTERN:
        raise JobError(
            f"grep is {len(grep)} characters long; the limit is {MAX_PATTERN}",
            field="grep",
            fix="use a shorter pattern (e.g. 'loss|Error')",
        )
    if _re2 is not None:
        opts = _re2.Options()
        opts.log_errors = False
        opts.max_mem = MAX_MEM
        try:
            rx = _re2.compile(grep, opts)
        except Exception as exc:  # re2.error; message is bytes
            reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise JobError(f"grep is not a valid regular expression: {reason}", field="grep", fix=_FIX) from exc
        block = None
        if "\\A" not in grep and "\\z" not in grep:
            try:
                block = _re2.compile(f"(?m:{grep})", opts).search
            except Exception:  # noqa: BLE001 - the prefilter is an optimisation only
                block = None
        return LineFilter(grep, rx.search, block)
    import re

    try:
        re.compile(grep)
    except re.error as exc:
        raise JobError(f"grep is not a valid regular expression: {exc}", field="grep", fix=_FIX) from exc
    return LineFilter(grep, None)


_CHILD = (
    "import json,re,sys\n"
    "rx=re.compile(sys.argv[1])\n"
    "lines=json.load(sys.stdin)\n"
    "json.dump([i for i,l in enumerate(lines) if rx.search(l)],sys.stdout)\n"
)


def _filter_in_child(pattern: str, lines: list[str]) -> list[str]:
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD, pattern],
            input=json.dumps(lines),
            capture_output=True,
            text=True,
            timeout=FALLBACK_TIMEOUT_S,
            env={},
        )
        keep = json.loads(out.stdout)
    except subprocess.TimeoutExpired as exc:
        raise JobError(
            f"grep took longer than {FALLBACK_TIMEOUT_S:g} s and was stopped (the pattern backtracks)",
            field="grep",
            fix="simplify the pattern: avoid nested repetition such as (a+)+ or (.|.)*",
        ) from exc
    except ValueError as exc:
        raise JobError("grep failed in its worker process", field="grep", fix=_FIX) from exc
    return [lines[i] for i in keep]


__all__ = ["LineFilter", "compile_grep", "MAX_PATTERN"]
