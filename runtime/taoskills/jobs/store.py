"""Durable job store: one SQLite file, safe across processes.

A job's record is written **before** it is launched (status ``PENDING``) so a job whose
launcher dies is never lost; later processes (a new CLI call, the MCP server) read and
update the same file. Facts followed from TAO SDK 7.2.0 ``job_store.py``
(docs/tao-contract.md §1.9): SQLite in WAL mode, one connection per store guarded by a
lock, and **monotonic** status updates - once a job is ``COMPLETE``, ``ERROR`` or
``CANCELED`` no stale poll can change it back.

Storage layout: table ``jobs`` holds the whole :class:`JobRecord` as JSON in ``data``
plus indexed copies of the columns the store filters on (status, skill, action,
parent_job_id, created_at). Read-modify-write operations run inside
``BEGIN IMMEDIATE`` transactions, so two processes updating one job serialise on
SQLite's own file lock (``busy_timeout`` 30 s).

Secrets rule (:func:`check_no_secrets`): a record never holds a secret value. Any key in
``spec``, ``labels`` or ``failure`` (at any depth) whose name looks like a secret
(``password``, ``passwd``, ``passphrase``, anything with a ``secret`` word such as
``aws_secret_access_key``, ``*_api_key``/``api_key``/``apikey``, ``ngc_key``,
``hf_token``/``access_token``/``auth_token``/``token``, ``encryption_key``,
``private_key``) may only hold: ``None``, ``""``, a boolean, or an environment-variable
reference - ``${oc.env:NAME}`` (OmegaConf, how a TAO spec reads env vars), ``${NAME}``
or ``$NAME``. Anything else is refused with :class:`~taoskills.errors.JobError` naming
the field (never the value).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taoskills.errors import Issue, JobError, NotFound
from taoskills.jobs import recovery
from taoskills.paths import home_dir

JobState = Literal["PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN"]
JOB_STATES: tuple[str, ...] = ("PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN")
TERMINAL_STATES: frozenset[str] = frozenset({"COMPLETE", "ERROR", "CANCELED"})

_SCHEMA_VERSION = 1


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds, e.g. ``2025-01-31T12:00:00.123456+00:00``."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_job_id() -> str:
    """A short unique job id: ``"job-"`` + 12 hex digits of a random UUID4 (48 bits)."""
    return "job-" + uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------- secrets

_SECRET_KEY_PATTERNS = [
    re.compile(r"(^|_)(password|passwd|passphrase|pwd)(_|$)"),
    re.compile(r"(^|_)secret(s)?(_|$)"),  # aws_secret_access_key, client_secret, secret_key
    re.compile(r"(^|_)api_?key(_|$)"),  # api_key, ngc_api_key, wandb_api_key, apikey
    re.compile(r"^(ngc|hf|huggingface|wandb|clearml|github|gitlab|openai|nvidia)_(key|token)$"),
    re.compile(r"(^|_)(access|auth|bearer|refresh|session|hf|ngc|api)_token$"),
    re.compile(r"^token$"),
    re.compile(r"(^|_)(encryption|private|signing)_key$"),
]
# ``${oc.env:NAME,tlt_encode}`` is allowed too: ``tlt_encode`` is TAO's public default
# encryption key (TAO Core infer_params.py ``key``), not a secret; any other default is refused.
_ENV_REF = re.compile(
    r"^(\$\{oc\.env:[A-Za-z_][A-Za-z0-9_]*(,tlt_encode)?\}|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*)$"
)


def is_secret_key(key: str) -> bool:
    """True when a dict key names a secret (see the module docstring for the rule).

    Matching is on the lower-cased key with ``-`` and ``.`` read as ``_``; words such as
    ``max_tokens`` or ``text_encoder_type`` are not secrets.
    """
    return _secret_key_rule(str(key))


@functools.lru_cache(maxsize=8192)
def _secret_key_rule(key: str) -> bool:
    """:func:`is_secret_key`, remembered per key (specs and replies repeat the same few hundred keys)."""
    k = key.strip().lower().replace("-", "_").replace(".", "_")
    return any(p.search(k) for p in _SECRET_KEY_PATTERNS)


def is_env_reference(value: Any) -> bool:
    """True for ``${oc.env:NAME}``, ``${NAME}`` or ``$NAME`` (NAME a shell identifier)."""
    return isinstance(value, str) and bool(_ENV_REF.match(value.strip()))


def find_secret_values(obj: Any, where: str = "") -> list[str]:
    """Dotted paths under ``obj`` where a secret-looking key holds a literal value.

    Values allowed under a secret key: None, "", bool, env-var references; dicts and
    lists are searched recursively. Returns e.g. ``["spec.aws.secret_access_key"]``.
    """
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{where}.{key}" if where else str(key)
            if is_secret_key(str(key)) and not isinstance(value, (dict, list, tuple)):
                if value is None or value == "" or isinstance(value, bool) or is_env_reference(value):
                    continue
                found.append(path)
            else:
                found.extend(find_secret_values(value, path))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found.extend(find_secret_values(value, f"{where}[{i}]"))
    return found


def check_no_secrets(obj: Any, where: str) -> None:
    """Raise :class:`JobError` if ``obj`` holds a secret value (rule: module docstring)."""
    bad = find_secret_values(obj, where)
    if bad:
        fix = (
            "pass secrets by environment-variable name only: write the value as "
            "${oc.env:NAME} (or $NAME) and export NAME where the job runs"
        )
        raise JobError(
            f"refusing to store a secret value in the job record at {', '.join(bad)}",
            field=bad[0],
            fix=fix,
            issues=[Issue(b, "holds a literal secret value", fix, code="secret_value") for b in bad],
        )


# --------------------------------------------------------------------------- record


class JobRecord(BaseModel):
    """One job as the store keeps it.

    Paths are stored as strings (a :class:`pathlib.Path` is accepted). Times are UTC ISO
    8601 strings. ``backend_id`` is the platform's handle (local: the process group id).
    ``failure`` holds a :class:`taoskills.jobs.failure.FailureAnalysis` dump.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    job_id: str = Field(default_factory=new_job_id)
    skill: str
    network_arch: str | None = None
    action: str
    platform: str = "local"
    engine: str = "builtin"  # runtime engine name (taoskills.platforms.engines)
    status: JobState = "PENDING"
    parent_job_id: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    results_dir: str | None = None
    workdir: str | None = None
    script_path: str | None = None
    log_path: str | None = None
    backend_id: str | None = None
    exit_code: int | None = None
    failure: dict[str, Any] | None = None
    automl_policy: str | None = None
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    started_at: str | None = None
    ended_at: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)

    @field_validator("results_dir", "workdir", "script_path", "log_path", mode="before")
    @classmethod
    def _path_to_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, os.PathLike) else v

    @field_validator("job_id")
    @classmethod
    def _job_id_safe(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", v):
            raise ValueError("job_id must be 1-128 characters of letters, digits, '_', '.', '-'")
        return v

    @property
    def terminal(self) -> bool:
        """True when the status is COMPLETE, ERROR or CANCELED."""
        return self.status in TERMINAL_STATES


_IMMUTABLE = {"job_id", "created_at"}
_RECORD_FIELDS = set(JobRecord.model_fields)


def _json_default(o: Any) -> Any:
    if isinstance(o, os.PathLike):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"value of type {type(o).__name__} is not JSON serialisable")


def _dumps(record: JobRecord) -> str:
    try:
        from taoskills.security.redact import redact_text  # security: no secret value reaches the store

        return redact_text(json.dumps(record.model_dump(mode="json"), default=_json_default, allow_nan=False, sort_keys=True))
    except ValueError as exc:  # NaN/inf
        raise JobError(
            f"job {record.job_id}: record holds a non-finite number ({exc})",
            field="spec",
            fix="replace NaN/Infinity values in the spec with finite numbers",
        ) from exc
    except TypeError as exc:
        raise JobError(
            f"job {record.job_id}: record is not JSON serialisable ({exc})",
            field="spec",
            fix="use only strings, numbers, booleans, null, lists and dicts in spec/labels/failure",
        ) from exc


def _non_finite(obj: Any, where: str) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    if isinstance(obj, dict):
        items = ((f"{where}.{k}", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, value in items:
        found = _non_finite(value, path)
        if found:
            return found
    return None


def _check_record(record: JobRecord) -> None:
    for name in ("spec", "labels", "failure"):
        value = getattr(record, name)
        if not value:
            continue
        check_no_secrets(value, name)
        bad = _non_finite(value, name)
        if bad:
            raise JobError(
                f"job {record.job_id}: {bad} is not a finite number (NaN/Infinity cannot be stored)",
                field=bad,
                fix="replace NaN/Infinity with a finite number (or null)",
            )


# --------------------------------------------------------------------------- store


class JobStore:
    """SQLite job store (WAL). ``path`` defaults to ``paths.home_dir()/jobs.db``.

    One connection per instance, guarded by a re-entrant lock; usable from threads of one
    process and from many processes at once (SQLite file locking). A store object that
    crosses ``fork()`` reopens its connection in the child.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else home_dir() / "jobs.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        # security: integrity check at start; a damaged store is moved aside and rebuilt from job.json
        check = recovery.check_store(self.path)
        self._connect()
        self.recovery_message: str | None = None
        if check.rebuild:
            n = recovery.rebuild(self)
            self.recovery_message = f"{check.message}: {n} job(s) recovered"
            recovery.log.warning("%s", self.recovery_message)

    # ---- connection
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory support
            conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS jobs (
                job_id TEXT PRIMARY KEY,
                skill TEXT NOT NULL,
                action TEXT NOT NULL,
                status TEXT NOT NULL,
                parent_job_id TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                data TEXT NOT NULL
            )"""
        )
        conn.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status)")
        conn.execute("CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent_job_id)")
        conn.execute("CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at)")
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """security: a store damaged while in use answers a clear JobError, not an internal error."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise recovery.damaged_error(self.path, exc) from exc

    @contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard():
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (the store reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers
    @staticmethod
    def _row_to_record(row: sqlite3.Row) -> JobRecord:
        return JobRecord.model_validate(json.loads(row["data"]))

    @staticmethod
    def _write(conn: sqlite3.Connection, record: JobRecord, insert: bool) -> None:
        data = _dumps(record)
        values = (record.skill, record.action, record.status, record.parent_job_id, record.created_at, record.updated_at, data)
        if insert:
            conn.execute(
                "INSERT INTO jobs(skill, action, status, parent_job_id, created_at, updated_at, data, job_id)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (*values, record.job_id),
            )
            recovery.write_job_json(JobRecord.model_validate_json(data))  # security: each job folder holds its record
        else:
            conn.execute(
                "UPDATE jobs SET skill=?, action=?, status=?, parent_job_id=?, created_at=?, updated_at=?, data=? WHERE job_id=?",
                (*values, record.job_id),
            )
            recovery.write_job_json(JobRecord.model_validate_json(data))

    def _load(self, conn: sqlite3.Connection, job_id: str) -> JobRecord:
        row = conn.execute("SELECT data FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(
                f"no job with id {job_id!r} in {self.path}",
                field="job_id",
                fix="run list_jobs (CLI: tao-skills jobs list) to see the job ids",
            )
        return self._row_to_record(row)

    @staticmethod
    def _apply(record: JobRecord, fields: dict[str, Any]) -> JobRecord:
        unknown = sorted(set(fields) - _RECORD_FIELDS)
        if unknown:
            raise JobError(
                f"unknown job record field(s): {', '.join(unknown)}",
                field=unknown[0],
                fix=f"use one of: {', '.join(sorted(_RECORD_FIELDS - _IMMUTABLE - {'status'}))}",
            )
        fixed = sorted(set(fields) & _IMMUTABLE)
        if fixed:
            raise JobError(f"job record field {fixed[0]} cannot change", field=fixed[0], fix="create a new job instead")
        data = record.model_dump()
        data.update(fields)
        try:
            return JobRecord.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise JobError(
                f"invalid value for job record field {loc}: {err['msg']}", field=loc, fix="pass a value of the documented type"
            ) from exc

    # ---- API
    def create(self, record: JobRecord) -> JobRecord:
        """Insert ``record`` (normally status PENDING, before launch) and return it.

        Errors: JobError if the id exists, a secret value is present, or the record is
        not JSON-serialisable.
        """
        _check_record(record)
        with self._tx() as conn:
            exists = conn.execute("SELECT 1 FROM jobs WHERE job_id=?", (record.job_id,)).fetchone()
            if exists:
                raise JobError(
                    f"job {record.job_id} already exists", field="job_id", fix="use a new job id (leave job_id unset to get one)"
                )
            self._write(conn, record, insert=True)
        return record

    def get(self, job_id: str) -> JobRecord:
        """The record of ``job_id``. Errors: NotFound (fix: run list_jobs)."""
        with self._lock, self._guard():
            return self._load(self._connect(), job_id)

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with ``prefix`` (literal, no wildcards), newest first, at most ``limit``."""
        with self._lock, self._guard():
            rows = (
                self._connect()
                .execute(
                    "SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                    (len(prefix), prefix, int(limit)),
                )
                .fetchall()
            )
        return [r[0] for r in rows]

    def list(
        self,
        status: str | list[str] | None = None,
        skill: str | None = None,
        action: str | None = None,
        parent_job_id: str | None = None,
        limit: int | None = 50,
    ) -> list[JobRecord]:
        """Jobs matching every given filter, newest first (created_at, then insertion order).

        ``status`` is one state or a list of states; ``limit`` None or <= 0 means all.
        """
        where, args = [], []
        if status is not None:
            states = [status] if isinstance(status, str) else list(status)
            bad = [s for s in states if s not in JOB_STATES]
            if bad:
                raise JobError(f"unknown job status {bad[0]!r}", field="status", fix=f"use one of {', '.join(JOB_STATES)}")
            where.append(f"status IN ({','.join('?' * len(states))})")
            args.extend(states)
        for col, val in (("skill", skill), ("action", action), ("parent_job_id", parent_job_id)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = "SELECT data FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None and limit > 0:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock, self._guard():
            rows = self._connect().execute(sql, args).fetchall()
        return [self._row_to_record(r) for r in rows]

    def children(self, job_id: str) -> list[JobRecord]:
        """Jobs whose ``parent_job_id`` is ``job_id``, oldest first (creation order)."""
        with self._lock, self._guard():
            rows = (
                self._connect()
                .execute("SELECT data FROM jobs WHERE parent_job_id=? ORDER BY created_at ASC, rowid ASC", (job_id,))
                .fetchall()
            )
        return [self._row_to_record(r) for r in rows]

    def update_status(self, job_id: str, status: str, /, **fields: Any) -> JobRecord:
        """Move ``job_id`` to ``status`` (and set ``fields``) unless that would revive it.

        Monotonic rule (TAO SDK job_store, docs/tao-contract.md §1.9): a job stored as
        COMPLETE, ERROR or CANCELED never changes to another state; such a stale update
        is ignored (not an error) and the stored record is returned unchanged. An update
        to the *same* terminal state applies ``fields`` (e.g. adds the failure analysis).
        UNKNOWN, PENDING and RUNNING may move to any state. ``started_at`` is stamped on
        the first move to RUNNING and ``ended_at`` on the first terminal state, unless
        given. Errors: NotFound, JobError (unknown status/field, secret value).
        """
        if status not in JOB_STATES:
            raise JobError(f"unknown job status {status!r}", field="status", fix=f"use one of {', '.join(JOB_STATES)}")
        with self._tx() as conn:
            current = self._load(conn, job_id)
            if current.status in TERMINAL_STATES and status != current.status:
                return current
            now = utc_now()
            changes = dict(fields)
            changes["status"] = status
            changes["updated_at"] = now
            if status == "RUNNING" and not current.started_at and "started_at" not in fields:
                changes["started_at"] = now
            if status in TERMINAL_STATES and not current.ended_at and "ended_at" not in fields:
                changes["ended_at"] = now
            new = self._apply(current, changes)
            _check_record(new)
            self._write(conn, new, insert=False)
        return new

    def update_fields(self, job_id: str, /, **fields: Any) -> JobRecord:
        """Set non-status fields of ``job_id`` (allowed on terminal jobs too).

        Errors: JobError if ``status``, ``job_id`` or ``created_at`` is given (use
        :meth:`update_status`) or a value is invalid; NotFound.
        """
        if "status" in fields:
            raise JobError("update_fields cannot change status", field="status", fix="use update_status(job_id, status)")
        with self._tx() as conn:
            current = self._load(conn, job_id)
            new = self._apply(current, {**fields, "updated_at": utc_now()})
            _check_record(new)
            self._write(conn, new, insert=False)
        return new

    def delete(self, job_id: str) -> None:
        """Remove a job's row (files are not touched). Errors: NotFound."""
        with self._tx() as conn:
            self._load(conn, job_id)
            conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))
