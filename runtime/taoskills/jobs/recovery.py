"""The job store survives damage: every job folder holds its own record, ``job.json``.

:func:`write_job_json` mirrors each record into ``<workdir>/job.json`` whenever the store
writes it. When a store opens, :func:`check_store` looks at the SQLite file: missing,
truncated (0 bytes), a header that is not ``SQLite format 3\\0`` (SQLite file format,
section 1.3), or ``PRAGMA integrity_check`` not answering ``ok`` (damaged pages). A
damaged file (with its ``-wal``/``-shm`` companions) is moved aside to
``jobs.db.damaged-<UTC time>`` - never deleted - and a warning says so; the new store is
then rebuilt from the job folders by :func:`rebuild` (records already present are kept).
History is never silently lost: the message names the moved file and how many jobs came
back.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("taoskills.jobs")

JOB_JSON = "job.json"
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class StoreCheck:
    """Outcome of :func:`check_store`: ``rebuild`` when the store must be refilled from the job
    folders; ``message`` says what happened (None when the store was healthy)."""

    rebuild: bool = False
    message: str | None = None
    moved_to: Path | None = None


def jobs_dir(db_path: Path) -> Path:
    """Folder holding ``<job_id>/`` workspaces next to the store (``<home>/jobs``)."""
    return Path(db_path).parent / "jobs"


def write_job_json(record) -> None:
    """Write ``record`` as ``<record.workdir>/job.json`` (atomic replace); no-op without a workdir folder."""
    if not record.workdir:
        return
    wd = Path(record.workdir)
    if not wd.is_dir():
        return
    tmp = wd / f".{JOB_JSON}.tmp{os.getpid()}"
    try:
        tmp.write_text(json.dumps(record.model_dump(mode="json"), sort_keys=True, default=str))
        os.replace(tmp, wd / JOB_JSON)
    except OSError as exc:  # the store row is the primary copy; never fail a write for this
        log.warning("could not write %s: %s", wd / JOB_JSON, exc)


def _damage(path: Path) -> str | None:
    """Why ``path`` is not a usable SQLite store, or None when it is."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return "is empty (truncated to 0 bytes)"
    with open(path, "rb") as fh:
        if fh.read(16) != SQLITE_HEADER:
            return "does not start with the SQLite header (bad header)"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"cannot be read ({exc})"
    if [r[0] for r in rows] != ["ok"]:
        return f"failed PRAGMA integrity_check ({'; '.join(str(r[0]) for r in rows[:3])})"
    return None


def check_store(path: Path) -> StoreCheck:
    """Check the store file at ``path`` before it is opened; move a damaged one aside."""
    path = Path(path)
    has_folders = any(jobs_dir(path).glob(f"*/{JOB_JSON}"))
    if not path.exists():
        if has_folders:
            return StoreCheck(True, f"job store {path} is missing; rebuilding it from the job folders' {JOB_JSON}")
        return StoreCheck()
    why = _damage(path)
    if why is None:
        return StoreCheck()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    msg = (
        f"job store {path} {why}; moved it aside to {aside} (kept for inspection) and rebuilding the store "
        f"from the job folders' {JOB_JSON} in {jobs_dir(path)}"
    )
    return StoreCheck(True, msg, aside)


def damaged_error(path: Path, exc: Exception):
    """The JobError for a store that fails while in use (busy/locked stays an OperationalError's own text)."""
    from taoskills.errors import JobError

    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return JobError(
            f"job store {path} is busy ({exc})",
            field="job_store",
            fix="retry in a moment; another process holds a long write lock on the store",
        )
    return JobError(
        f"job store {path} failed while in use ({exc}); it may be damaged",
        field="job_store",
        fix=f"restart the server or CLI: at start the store is checked, a damaged file is moved aside and the "
        f"store is rebuilt from the job folders' {JOB_JSON}",
    )


def rebuild(store) -> int:
    """Insert every readable ``<jobs_dir>/*/job.json`` missing from ``store``; returns how many.

    Unreadable or invalid files are logged and skipped (they stay on disk).
    """
    from taoskills.jobs.store import JobRecord

    n = 0
    for p in sorted(jobs_dir(store.path).glob(f"*/{JOB_JSON}")):
        try:
            rec = JobRecord.model_validate(json.loads(p.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("skipping %s while rebuilding the job store: %s", p, exc)
            continue
        with store._tx() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE job_id=?", (rec.job_id,)).fetchone():
                continue
            store._write(conn, rec, insert=True)
        n += 1
    return n


__all__ = ["JOB_JSON", "StoreCheck", "check_store", "damaged_error", "rebuild", "write_job_json", "jobs_dir"]
