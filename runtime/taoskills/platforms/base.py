"""The platform protocol: where a job's runner script runs.

One protocol for every platform (DESIGN.md "platforms"): ``submit`` a job record whose
runner script is written, ``poll`` its state, ``cancel`` it, read its ``logs``. A
platform does not write the job store; the service maps :class:`PlatformState` onto the
record (the store keeps status monotonic). Lineage: TAO SDK 7.2.0 ``PlatformSDK``
(create/status/logs/cancel, anchor_report_tao.md §1.2), with bounded log reads as in its
virtualenv platform (§1.8).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from taoskills.errors import JobError, NotFound, NotSupported
from taoskills.jobs.store import JobRecord

PlatformStatus = Literal["PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN"]

# How far back a grep looks in a log (bytes); tail-only reads look back max_bytes.
GREP_SCAN_BYTES = 8 * 1024 * 1024


class PlatformState(BaseModel):
    """What the platform knows about a job: ``state``, ``exit_code`` (None if unknown), ``detail``."""

    state: PlatformStatus
    exit_code: int | None = None
    detail: str = ""
    lost: bool = False  # the process ended without an exit code (killed, host restart)


@runtime_checkable
class Platform(Protocol):
    """A place to run runner scripts. ``name`` is the registry name ("local", ...)."""

    name: str

    def submit(self, record: JobRecord) -> str:
        """Start ``record.script_path``; output to ``record.log_path``. Returns the backend id."""
        ...

    def poll(self, record: JobRecord) -> PlatformState:
        """Current state of the job (never raises for a vanished process: ERROR/UNKNOWN)."""
        ...

    def cancel(self, record: JobRecord) -> None:
        """Stop the job (no-op when it already ended)."""
        ...

    def logs(self, record: JobRecord, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
        """The last ``tail`` lines of the log (matching regex ``grep``), at most ``max_bytes``."""
        ...


def compile_grep(grep: str | None):
    """Compile a user-given log filter with a linear-time engine (security: RE2, see
    :mod:`taoskills.security.grep`). Returns a filter with ``search(line)`` and
    ``filter(lines)``, or None. Errors: JobError (field ``grep``) on a bad pattern."""
    from taoskills.security.grep import compile_grep as _compile  # security: linear-time grep

    return _compile(grep)


#: First line of a log slice from which earlier output was cut.
TRUNCATION_MARKER = "[... earlier log output not shown ...]"


def read_log(path: str | os.PathLike | None, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
    """Bounded read of a log file's end.

    Returns the last ``tail`` lines (only lines matching regex ``grep`` when given; a grep
    looks at the last 8 MiB), then keeps at most ``max_bytes`` bytes of UTF-8 from the
    end (the marker line included); when something was cut, a first line
    ``[... earlier log output not shown ...]`` says so. A missing file gives "" (the job has not written output yet).
    Errors: JobError for ``tail < 1``, ``max_bytes < 1`` or an invalid ``grep``.
    """
    if tail < 1:
        raise JobError("tail must be at least 1", field="tail", fix="pass tail=200 (lines) or another positive number")
    if max_bytes < 1:
        raise JobError("max_bytes must be at least 1", field="max_bytes", fix="pass max_bytes=65536 or another positive number")
    rx = compile_grep(grep)
    if path is None:
        return ""
    p = Path(path)
    try:
        size = p.stat().st_size
        window = min(size, GREP_SCAN_BYTES if rx else max_bytes + 1)
        with p.open("rb") as fh:
            fh.seek(size - window)
            data = fh.read(window)
    except FileNotFoundError:
        return ""
    truncated = size > window
    if truncated:  # drop the partial first line
        nl = data.find(b"\n")
        data = data[nl + 1 :] if nl != -1 else b""
    if rx is not None:
        lines = rx.filter_blob(data)  # security: RE2 (linear time), chunked so the GIL is not held long
    else:
        lines = data.decode("utf-8", errors="replace").splitlines()
    if len(lines) > tail:
        lines = lines[-tail:]
        truncated = True
    text = "\n".join(lines)
    note = TRUNCATION_MARKER + "\n"
    budget = max_bytes - len(note) if (truncated or len(text.encode("utf-8")) > max_bytes) else max_bytes
    if budget <= 0:  # too small for the note: plain cut
        note, budget = "", max_bytes
    raw = text.encode("utf-8")
    if len(raw) > budget:
        raw = raw[-budget:]
        nl = raw.find(b"\n")
        if nl != -1 and nl + 1 < len(raw):
            raw = raw[nl + 1 :]
        text = raw.decode("utf-8", errors="ignore")
        truncated = True
    if truncated and text and note:
        text = note + text
    return text


_NOT_YET = {
    "docker": "the docker platform",
    "slurm": "the SLURM platform",
    "kubernetes": "the Kubernetes platform",
}


def get_platform(name: str, **options: object) -> Platform:
    """The platform called ``name`` ("local"). ``options`` go to its constructor.

    Errors: NotSupported for "docker", "slurm", "kubernetes" (coming in a later release);
    NotFound for any other name.
    """
    key = (name or "").strip().lower()
    if key == "local":
        from taoskills.platforms.local import LocalPlatform

        return LocalPlatform(**options)  # type: ignore[arg-type]
    if key in _NOT_YET:
        raise NotSupported(
            f"{_NOT_YET[key]} is coming in a later release; use platform=local",
            field="platform",
            fix="use platform=local (runs the job as a local process; the runner script can also be run by hand on any host)",
        )
    raise NotFound(
        f"unknown platform {name!r}",
        field="platform",
        fix="use platform=local (known platforms: local; later: docker, slurm, kubernetes)",
    )
