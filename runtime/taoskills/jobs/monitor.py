"""Progress and KPIs from TAO's ``status.json``.

TAO's ``StatusLogger`` (TAO Core 7.3.0 ``loggers/logging.py``; docs/tao-contract.md §3.3)
appends **one JSON object per line** (JSON Lines despite the name) to
``<results_dir>/<action>/status.json`` (§3.4). Every line has ``date``, ``time``,
``status`` (STARTED|RUNNING|SUCCESS|FAILURE|SKIPPED), ``verbosity``, optional
``message`` and optional ``kpi`` / ``graphical`` / ``categorical`` dicts; per-epoch train
lines add ``epoch``, ``max_epoch``, ``time_per_epoch``, ``eta`` (iteration-based networks
use ``cur_iter``/``max_iter``; Hugging Face-based ones add ``step``/``max_step`` and may
log fractional epochs). KPI values are numbers or ``{"value": x}``; like TAO Core's
``StatusParser.force_float``, numeric strings are accepted and NaN/inf/booleans are
dropped.

The file is appended while the job runs, so the reader tolerates a partial last line,
blank lines and lines that are not JSON objects (counted in ``bad_lines``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

STATUS_VALUES = ("STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED")
_DEFAULT_MAX_BYTES = 64 * 1024 * 1024

Number = int | float


class StatusSummary(BaseModel):
    """What a status.json says about a TAO action run.

    ``started``: at least one valid status line exists. ``last_status``/``message``: from
    the last valid line. ``epoch``/``max_epoch`` (or ``cur_iter``/``max_iter``, ``step``/
    ``max_step``): the latest values seen; ``steps_per_s``: from the engine's per-N-step
    progress lines (``step``, ``max_step``, ``steps_per_s``, ``eta``). ``kpis``: latest value per KPI name;
    ``kpi_history``: ``{name: [(epoch_or_iter, value), ...]}`` in file order (epoch is the
    last epoch/iteration seen at or before the line, None before any). ``graphical``:
    latest value per ``graphical`` series. ``failure_message``: message of the last
    FAILURE line. ``finished``: the run reported SUCCESS or a final "... finished
    successfully." / "... complete." RUNNING line after the last STARTED one, and no
    FAILURE after it. ``failed``: a FAILURE line after the last STARTED line.
    """

    path: str | None = None
    exists: bool = False
    started: bool = False
    last_status: str | None = None
    message: str | None = None
    epoch: Number | None = None
    max_epoch: Number | None = None
    cur_iter: int | None = None
    max_iter: int | None = None
    step: int | None = None
    max_step: int | None = None
    eta: str | None = None
    time_per_epoch: str | None = None
    steps_per_s: float | None = None
    kpis: dict[str, float] = Field(default_factory=dict)
    kpi_history: dict[str, list[tuple[Number | None, float]]] = Field(default_factory=dict)
    graphical: dict[str, float] = Field(default_factory=dict)
    failure_message: str | None = None
    finished: bool = False
    failed: bool = False
    lines: int = 0
    bad_lines: int = 0
    last_update: str | None = None  # "<date> <time>" of the last valid line (TAO's local clock)

    @property
    def fraction(self) -> float | None:
        """epoch/max_epoch (or cur_iter/max_iter), clipped to [0, 1]; None if unknown."""
        for cur, top in ((self.epoch, self.max_epoch), (self.cur_iter, self.max_iter), (self.step, self.max_step)):
            if cur is not None and top:
                return max(0.0, min(1.0, float(cur) / float(top)))
        return None


def to_float(value: Any) -> float | None:
    """A KPI value as a finite float, or None (TAO Core StatusParser.force_float rules).

    Accepts numbers, numeric strings and ``{"value": x}``; rejects bools, NaN, inf.
    """
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _num(value: Any) -> Number | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    f = to_float(value)
    if f is None:
        return None
    return int(f) if f.is_integer() and not isinstance(value, float) else f


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None else None


def parse_status_lines(text: str, path: str | None = None) -> StatusSummary:
    """Summarise status.json ``text`` (JSON Lines). Never raises on bad content."""
    s = StatusSummary(path=path, exists=True)
    last_epoch: Number | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            s.bad_lines += 1
            continue
        if not isinstance(data, dict):
            s.bad_lines += 1
            continue
        s.lines += 1
        s.started = True
        status = str(data.get("status", "")).upper() or None
        if status:
            s.last_status = status
        msg = data.get("message")
        s.message = str(msg) if msg is not None else None
        if status == "STARTED":
            s.finished = False
            s.failed = False
        elif status == "FAILURE":
            s.failed = True
            s.finished = False
            s.failure_message = s.message
        elif status == "SUCCESS" or (status == "RUNNING" and s.message and _is_final_message(s.message) and not s.failed):
            s.finished = True
        if "date" in data or "time" in data:
            s.last_update = f"{data.get('date', '')} {data.get('time', '')}".strip()
        for key in ("epoch", "max_epoch"):
            if key in data and _num(data[key]) is not None:
                setattr(s, key, _num(data[key]))
        for key in ("cur_iter", "max_iter", "step", "max_step"):
            if key in data and _int(data[key]) is not None:
                setattr(s, key, _int(data[key]))
        line_epoch = None
        if "epoch" in data and _num(data["epoch"]) is not None:
            last_epoch = line_epoch = _num(data["epoch"])
        elif "cur_iter" in data and _int(data["cur_iter"]) is not None:
            last_epoch = line_epoch = _int(data["cur_iter"])
        for key in ("eta", "time_per_epoch"):
            if data.get(key) is not None:
                setattr(s, key, str(data[key]))
        if to_float(data.get("steps_per_s")) is not None:
            s.steps_per_s = to_float(data["steps_per_s"])
        kpi = data.get("kpi")
        if isinstance(kpi, dict):
            for name, value in kpi.items():
                f = to_float(value)
                if f is None:
                    continue
                s.kpis[str(name)] = f
                history = s.kpi_history.setdefault(str(name), [])
                # A line without its own epoch (TAO's closing summary) repeats the last
                # epoch's value: it updates the latest KPI, not the per-epoch history.
                if line_epoch is not None or not history:
                    history.append((line_epoch if line_epoch is not None else last_epoch, f))
        graphical = data.get("graphical")
        if isinstance(graphical, dict):
            for name, value in graphical.items():
                f = to_float(value)
                if f is not None:
                    s.graphical[str(name)] = f
    return s


def _is_final_message(message: str) -> bool:
    m = message.strip().lower()
    return "finished successfully" in m or (m.endswith("complete.") and "epoch" not in m)


def read_status(path: str | os.PathLike, max_bytes: int = _DEFAULT_MAX_BYTES) -> StatusSummary:
    """Read and summarise one status.json file (a missing file gives ``exists=False``).

    Reads the file once; files larger than ``max_bytes`` (default 64 MiB) are read from
    their last ``max_bytes`` bytes (the first, partial line is skipped).
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            if size > max_bytes:
                fh.seek(size - max_bytes)
                data = fh.read()
                data = data[data.find(b"\n") + 1 :]
            else:
                data = fh.read()
    except FileNotFoundError:
        return StatusSummary(path=str(p), exists=False)
    except IsADirectoryError:
        return StatusSummary(path=str(p), exists=False)
    return parse_status_lines(data.decode("utf-8", errors="replace"), path=str(p))


def status_path(results_dir: str | os.PathLike, action: str) -> Path:
    """Where TAO writes the status lines of ``action``: ``results_dir/<action>/status.json``.

    Falls back to ``results_dir/status.json`` (TAO's layout when the action's own
    ``results_dir`` is set to the job folder) only when the action file is absent and
    that one exists (docs/tao-contract.md §3.4).
    """
    root = Path(results_dir)
    primary = root / action / "status.json"
    if not primary.exists() and (root / "status.json").is_file():
        return root / "status.json"
    return primary


def progress(results_dir: str | os.PathLike, action: str) -> StatusSummary:
    """Summary of ``results_dir/<action>/status.json`` (see :func:`status_path`)."""
    return read_status(status_path(results_dir, action))


def progress_from(read_bytes: Callable[[str], bytes | None], action: str) -> StatusSummary:
    """Summary of an action's status lines read through a platform's artifact reader.

    ``read_bytes(relpath)`` returns the bytes of ``results_dir/relpath`` or None when absent
    (e.g. :meth:`taoskills.platforms.base.Artifacts.read_bytes` of a container, a cluster or
    object storage). Same layout rule as :func:`status_path`: ``<action>/status.json``, else
    ``status.json`` at the results root.
    """
    for rel in (f"{action}/status.json", "status.json"):
        data = read_bytes(rel)
        if data is not None:
            return parse_status_lines(data.decode("utf-8", errors="replace"), path=rel)
    return StatusSummary(path=f"{action}/status.json", exists=False)
