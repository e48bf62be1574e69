"""Failure analysis: job log + the skill's error patterns -> cause, fix, fault.

The skill's own :class:`~taoskills.bank.skill_info.ErrorPattern` list is tried first (in its
order, filtered by ``actions``), then the generic patterns below. Generic rules come from
what TAO and the shell print (docs/tao-contract.md §3.1 ``Execution status: FAIL``;
TAO SDK 7.2.0 virtualenv failure kinds ``out_of_memory``, ``signal``, ``lost_process``,
``nonzero_exit``, §1.8):

* exit code 137 / -9 or bash's ``Killed`` line -> killed by SIGKILL (host OOM killer or a
  person), infrastructure;
* exit code 143 / -15 or ``Terminated`` -> SIGTERM (cancel, scheduler time limit),
  infrastructure;
* ``lost=True`` (the platform saw the process vanish without an exit code) -> lost
  process, infrastructure;
* CUDA out of memory, no space left on device -> infrastructure;
* the last Python traceback's exception line -> program (only when no skill or signal
  pattern matched);
* ``Execution status: FAIL`` -> program.

Work is bounded: only the last ``SCAN_BYTES`` (2 Mi characters) of the log are scanned.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from taoskills.bank.skill_info import ErrorPattern

SCAN_BYTES = 2 * 1024 * 1024
EXCERPT_LINES = 40
_MAX_LINE = 500

Fault = Literal["infrastructure", "program"]


class FailureMatch(BaseModel):
    """One pattern that matched: its ``id``, ``cause``, ``fix``, ``fault`` and the log ``line``."""

    id: str
    cause: str
    fix: str
    fault: Fault
    line: str = ""


class FailureAnalysis(BaseModel):
    """Result of :func:`analyze_failure`.

    ``matched``: every pattern that matched, skill patterns first. ``primary``: the first
    of them (None when nothing matched). ``fault``: the primary's fault (None if unknown).
    ``summary``: one sentence for a person or an agent. ``excerpt``: the last ~40 log lines.
    """

    matched: list[FailureMatch] = Field(default_factory=list)
    primary: FailureMatch | None = None
    fault: Fault | None = None
    summary: str = ""
    excerpt: str = ""
    exit_code: int | None = None


_KILLED = ErrorPattern(
    id="killed",
    regex=r"(?m)^\s*Killed\s*$|\bline \d+:\s+\d+\s+Killed\b",
    cause="the process was killed by SIGKILL: the host's out-of-memory killer, or a person or scheduler",
    fix=(
        "check the host kernel log (dmesg or journalctl -k) for 'Out of memory'; lower the batch size, "
        "dataset workers or image size, or run on a host with more memory; then run the job again"
    ),
    fault="infrastructure",
)
_TERMINATED = ErrorPattern(
    id="terminated",
    regex=r"(?m)^\s*Terminated\s*$|\bline \d+:\s+\d+\s+Terminated\b",
    cause="the process received SIGTERM: the job was canceled, or the scheduler stopped it (time limit, preemption)",
    fix="if nobody canceled it, check the platform's time limit or preemption policy; resume from the latest checkpoint",
    fault="infrastructure",
)
_LOST = ErrorPattern(
    id="lost_process",
    regex=r"(?!x)x",  # never matches text; applied from the ``lost`` flag
    cause=(
        "the job's process ended without writing an exit code: it was killed with SIGKILL "
        "(out-of-memory killer, a person) or the host restarted"
    ),
    fix="check the host kernel log for the out-of-memory killer and the host's uptime; run the job again (resume from its latest checkpoint)",
    fault="infrastructure",
)
_CUDA_OOM = ErrorPattern(
    id="cuda_out_of_memory",
    regex=r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED",
    cause="the GPU ran out of memory",
    fix="lower the batch size or image size, enable mixed precision, or use a GPU with more memory",
    fault="infrastructure",
)
_NO_SPACE = ErrorPattern(
    id="no_space_left",
    regex=r"No space left on device|\[Errno 28\]",
    cause="the disk holding the results or the cache is full",
    fix="free disk space or point results_dir at a larger disk, then run the job again",
    fault="infrastructure",
)
_EXEC_FAIL = ErrorPattern(
    id="execution_failed",
    regex=r"Execution status:\s*FAIL",
    cause="the TAO entrypoint reported that the action failed",
    fix="read the error above 'Execution status: FAIL' in the log (the excerpt) and fix the spec or data it names",
    fault="program",
)
GENERIC_PATTERNS: tuple[ErrorPattern, ...] = (_KILLED, _TERMINATED, _CUDA_OOM, _NO_SPACE)

_TRACEBACK = "Traceback (most recent call last):"
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def _line_at(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end != -1 else len(text)].strip()
    return line[:_MAX_LINE]


def _last_match(rx: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for m in rx.finditer(text):
        last = m
    return last


def last_exception(text: str) -> str | None:
    """The exception line (``ValueError: ...``) of the last Python traceback in ``text``."""
    idx = text.rfind(_TRACEBACK)
    if idx == -1:
        return None
    for raw in text[idx + len(_TRACEBACK) :].splitlines()[1:]:
        if not raw.strip() or raw.startswith((" ", "\t")):
            continue
        return raw.strip()[:_MAX_LINE] if _EXC_LINE.match(raw.strip()) else None
    return None


def _to_match(p: ErrorPattern, line: str) -> FailureMatch:
    return FailureMatch(id=p.id, cause=p.cause, fix=p.fix, fault=p.fault, line=line)


def analyze_failure(
    log_text: str,
    patterns: list[ErrorPattern],
    action: str | None = None,
    exit_code: int | None = None,
    *,
    lost: bool = False,
    status_message: str | None = None,
) -> FailureAnalysis:
    """Match a job log against the skill's error patterns and the generic ones.

    ``patterns``: the skill's ``error_patterns`` (kept only when ``actions`` is empty,
    ``action`` is None, or ``action`` is listed). ``exit_code``: the job's exit status
    (shell convention 128+N for signal N, or -N from Python's subprocess). ``lost``: the
    platform saw the process end without an exit code. ``status_message``: the message of
    TAO's ``FAILURE`` line in status.json (the action's own error text, docs/tao-contract.md
    §3.3); when no skill pattern explains the failure it becomes the primary cause, and a
    ``Fix: ...`` part of it becomes the fix. Only the last 2 MiB of the log are scanned.
    Never raises on log content.
    """
    text = log_text[-SCAN_BYTES:] if len(log_text) > SCAN_BYTES else log_text
    matched: list[FailureMatch] = []
    seen_lines: set[str] = set()

    for p in patterns:
        if action is not None and p.actions and action not in p.actions:
            continue
        m = _last_match(re.compile(p.regex), text)
        if m:
            line = _line_at(text, m.start())
            matched.append(_to_match(p, line))
            seen_lines.add(line)
    skill_matched = bool(matched)

    signal_matched = False
    if exit_code in (137, -9):
        m = _last_match(re.compile(_KILLED.regex), text)
        matched.append(_to_match(_KILLED, _line_at(text, m.start()) if m else f"exit code {exit_code}"))
        signal_matched = True
    elif exit_code in (143, -15):
        m = _last_match(re.compile(_TERMINATED.regex), text)
        matched.append(_to_match(_TERMINATED, _line_at(text, m.start()) if m else f"exit code {exit_code}"))
        signal_matched = True
    elif lost:
        matched.append(_to_match(_LOST, "process ended without an exit code"))
        signal_matched = True
    for p in GENERIC_PATTERNS:
        if any(x.id == p.id for x in matched):
            continue
        m = _last_match(re.compile(p.regex), text)
        if m:
            line = _line_at(text, m.start())
            if line in seen_lines:  # the skill already explained this line
                continue
            matched.append(_to_match(p, line))
            if p.id in ("killed", "terminated"):
                signal_matched = True

    status_matched = False
    if status_message and status_message.strip() and not skill_matched and not signal_matched:
        cause, _, fix = status_message.strip().partition("Fix:")
        matched.append(
            FailureMatch(
                id="status_failure",
                cause=cause.strip().rstrip(".") or "the action reported a failure",
                fix=fix.strip() or "fix the spec value, data or path the message names and run again",
                fault="program",
                line=status_message.strip()[:_MAX_LINE],
            )
        )
        status_matched = True
    exc = last_exception(text)
    if exc and not skill_matched and not signal_matched and not status_matched:
        matched.append(
            FailureMatch(
                id="python_exception",
                cause=f"the program raised {exc}",
                fix="read the traceback in the log excerpt; fix the spec value, data or path it names and run again",
                fault="program",
                line=exc,
            )
        )
    m = _last_match(re.compile(_EXEC_FAIL.regex), text)
    if m:
        matched.append(_to_match(_EXEC_FAIL, _line_at(text, m.start())))

    lines = text.splitlines()
    excerpt = "\n".join(line[:2000] for line in lines[-EXCERPT_LINES:])
    primary = matched[0] if matched else None
    if primary is not None:
        summary = f"{primary.cause}. Fix: {primary.fix}"
        if primary.line and primary.id not in ("python_exception", "status_failure"):
            summary += f" (log: {primary.line[:200]})"
    elif exit_code not in (None, 0):
        summary = f"the job exited with code {exit_code} and no known error pattern matched; read the log excerpt"
    elif exit_code == 0:
        summary = "the job exited with code 0; no error pattern matched"
    else:
        summary = "no known error pattern matched; read the log excerpt"
    return FailureAnalysis(
        matched=matched,
        primary=primary,
        fault=primary.fault if primary else None,
        summary=summary,
        excerpt=excerpt,
        exit_code=exit_code,
    )
