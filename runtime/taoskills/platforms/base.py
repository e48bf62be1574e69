"""The platform protocol: where a job's runner script runs.

One protocol for every platform (DESIGN.md "platforms"): ``submit`` a job record whose
runner script is written, ``poll`` (or ``poll_many``) its state, ``cancel`` it, read its
``logs``. Each platform also owns what depends on *where* a job runs:

* ``host_checks(engine, info, action, spec)``: can this platform's hosts run the runtime
  engine (tools, libraries, GPUs, the skill's hardware minimums)?
* ``check_input(field, value, batch_size)``: its input policy (the local platform reads
  local folders and refuses remote URIs; an object-storage platform would accept them);
* ``map_path(path)``: how a path on this host appears inside the runner script;
* ``launch_env(info, spec)``: the multi-GPU/multi-node environment contract for the job;
* ``artifacts(record)``: read access to results (status.json, log tail, checkpoints), so the
  service never reads a job's results from local disk itself.

A platform does not write the job store; the service maps :class:`PlatformState` onto the
record (the store keeps status monotonic). Platforms are looked up by name in
:mod:`taoskills.platforms.registry`. Lineage: TAO SDK 7.2.0 ``PlatformSDK``
(create/status/logs/cancel, docs/tao-contract.md §1.2), with bounded log reads as in its
virtualenv platform (§1.8).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from taoskills.errors import JobError
from taoskills.jobs.store import JobRecord

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.jobs.checkpoints import CheckpointFile
    from taoskills.jobs.monitor import StatusSummary
    from taoskills.platforms.engines import RuntimeEngine

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

    def poll_many(self, records: Iterable[JobRecord]) -> dict[str, PlatformState]:
        """job_id -> state for many jobs in one round trip (``list_jobs`` calls this once per platform)."""
        ...

    def host_checks(self, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[CheckResult]:
        """Can this platform run ``engine`` for ``info`` ``action`` with ``spec``? One result per check."""
        ...

    def quick_check(self, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
        """Cheap (no subprocess, no heavy import) reason why ``engine`` cannot run here, or None."""
        ...

    def check_input(self, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
        """This platform's input policy for one data input (``field`` = spec key)."""
        ...

    def map_path(self, path: str) -> str:
        """``path`` on this host -> the path the runner script sees."""
        ...

    def launch_env(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, str]:
        """Non-secret environment for the runner (multi-GPU contract, ...)."""
        ...

    def artifacts(self, record: JobRecord) -> Artifacts:
        """Read access to the job's results and log wherever they live."""
        ...

    def stage_data_sources(self, info: SkillInfo, action: str, data_sources: dict[str, str]) -> dict[str, str]:
        """Dataset-role roots as the spec should name them (a platform that reads object
        storage downloads ``s3://`` roots here and returns local folders; others return them as given)."""
        ...


@runtime_checkable
class Artifacts(Protocol):
    """Read access to one job's results (``results_dir`` layout of TAO) and its log."""

    def read_bytes(self, relpath: str) -> bytes | None:
        """Bytes of ``results_dir/relpath`` (None when absent)."""
        ...

    def status(self, action: str) -> StatusSummary:
        """Summary of the action's status.json (:func:`taoskills.jobs.monitor.progress_from`)."""
        ...

    def log_tail(self, max_bytes: int) -> str:
        """The last ``max_bytes`` of the job log as text ("" when there is none)."""
        ...

    def checkpoint_root(self) -> Path:
        """A local folder holding the job's results (the folder itself on the local platform;
        a fetched copy elsewhere), for checkpoint discovery and a child job's parent model."""
        ...

    def list_checkpoints(self, action: str = "train") -> list[CheckpointFile]:
        """Checkpoint files under ``results_dir/<action>/``."""
        ...


def multi_gpu_env(info: SkillInfo, action: str, spec: dict[str, Any], *, nodes: int = 1, node_rank: int = 0) -> dict[str, str]:
    """The runner environment of TAO's multi-GPU/multi-node contract for ``info``.

    Uses the skill's ``multi_gpu.keys`` (``num_gpus``/``num_nodes`` -> dotted spec keys) and
    only the names listed in ``multi_gpu.env``. TAO's convention (its SLURM/Kubernetes
    runners): ``WORLD_SIZE`` = number of nodes, ``NUM_GPU_PER_NODE`` = GPUs per node,
    ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` (29500). A platform passes its own
    ``nodes``/``node_rank`` (local: 1 node, rank 0, loopback master). Only ``train`` gets it.
    """
    from taoskills.specs.dotted import get_dotted

    mg = info.multi_gpu
    if mg is None or action != "train":
        return {}
    gpus = get_dotted(spec, mg.keys.get("num_gpus", "train.num_gpus"), default=1)
    gpus = gpus if isinstance(gpus, int) and gpus > 0 else 1
    values = {
        "WORLD_SIZE": str(nodes),
        "NUM_GPU_PER_NODE": str(gpus),
        "NODE_RANK": str(node_rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    return {k: v for k, v in values.items() if k in mg.env}


class PlatformBase:
    """Defaults shared by platforms: ``poll_many`` as one ``poll`` per record, identity path
    mapping, and the single-node multi-GPU environment. Subclasses override what differs."""

    name: str = ""

    def poll(self, record: JobRecord) -> PlatformState:  # pragma: no cover - overridden
        raise NotImplementedError

    def poll_many(self, records: Iterable[JobRecord]) -> dict[str, PlatformState]:
        """job_id -> :meth:`poll` for each record."""
        return {r.job_id: self.poll(r) for r in records}

    def map_path(self, path: str) -> str:
        """Identity: the runner script sees this host's paths."""
        return path

    def launch_env(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, str]:
        """:func:`multi_gpu_env` for one node."""
        return multi_gpu_env(info, action, spec, nodes=1, node_rank=0)

    def stage_data_sources(self, info: SkillInfo, action: str, data_sources: dict[str, str]) -> dict[str, str]:
        """As given: remote roots are refused later by this platform's input policy."""
        return data_sources


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
