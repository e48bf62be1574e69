"""The local platform: the runner script as a process group on this host.

``submit`` runs ``bash <record.script_path>`` in a new session (its own process group),
stdin closed, stdout and stderr appended to ``record.log_path``; the backend id is the
pid (which is also the process group id). The design needs no ``waitpid`` from a later
process - the launching CLI may exit at once - and reads everything from files in
``record.workdir``:

* ``pid`` - JSON ``{pid, pgid, start_ticks, boot_id, cmdline}`` written at submit; the
  start time (``/proc/<pid>/stat`` field 22) and boot id make a reused pid harmless;
* ``exit_code`` - written by the runner script's EXIT trap (taoskills/templates/runner.sh.j2);
* ``cancel_requested`` - written by :meth:`LocalPlatform.cancel`.

While the launching process lives, a daemon thread waits on the child so it never
lingers as a zombie. Process-group cancel (SIGTERM, then SIGKILL after a grace period)
follows TAO SDK 7.2.0's virtualenv platform (docs/tao-contract.md §1.8).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taoskills.errors import JobError
from taoskills.jobs.store import JobRecord, utc_now
from taoskills.platforms.base import PlatformBase, PlatformState, read_log
from taoskills.security.env import job_env, secret_names_in

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.jobs.checkpoints import CheckpointFile
    from taoskills.jobs.monitor import StatusSummary
    from taoskills.platforms.engines import RuntimeEngine

PID_FILE = "pid"
EXIT_FILE = "exit_code"
CANCEL_FILE = "cancel_requested"

_PROC = Path("/proc")


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, start_ticks) of ``pid`` from /proc, or None if it does not exist."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", errors="replace") for p in raw.split(b"\0") if p]


def _has_proc() -> bool:
    return (_PROC / "self" / "stat").exists()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def adopt_process(workdir: Path, pid: int) -> dict:
    """Write ``workdir/pid`` for a runner that is already running (a runner script run by hand),
    so :meth:`LocalPlatform.poll` follows it like a submitted one. Returns the identity written.

    ``pgid`` is the process's own group when it leads one (run from an interactive shell);
    otherwise it is recorded as ``pid`` (no such group exists, so :meth:`LocalPlatform.cancel`
    then signals nothing rather than the caller's whole group).
    Errors: JobError if ``pid`` is not a live process on this host.
    """
    st = _stat(pid)
    if st is None and _has_proc():
        raise JobError(f"process {pid} does not exist", field="pid", fix="pass the runner shell's pid ($$)")
    ident = {
        "pid": pid,
        "pgid": st[1] if st and st[1] == pid else pid,
        "start_ticks": st[2] if st else None,
        "boot_id": _boot_id(),
        "cmdline": _cmdline(pid),
        "started_at": utc_now(),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (EXIT_FILE, CANCEL_FILE):
        (workdir / name).unlink(missing_ok=True)
    _atomic_write(workdir / PID_FILE, json.dumps(ident))
    return ident


class LocalArtifacts:
    """A job's results and log on this host's disk (``record.results_dir``, ``record.log_path``)."""

    def __init__(self, record: JobRecord) -> None:
        self.results_dir = Path(record.results_dir or record.workdir or ".")
        self.log_path = Path(record.log_path) if record.log_path else None

    def read_bytes(self, relpath: str) -> bytes | None:
        """Bytes of ``results_dir/relpath``, or None when it is absent (or a folder)."""
        try:
            return (self.results_dir / relpath).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def status(self, action: str) -> StatusSummary:
        """The action's status.json summary (deploy actions write under their TAO action name)."""
        from taoskills.jobs import monitor

        return monitor.progress(self.results_dir, action.removeprefix("deploy_"))

    def log_tail(self, max_bytes: int) -> str:
        """The last ``max_bytes`` bytes of the log as text ("" when there is none)."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - max_bytes))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def checkpoint_root(self) -> Path:
        """The results folder itself (it is on this host)."""
        return self.results_dir

    def list_checkpoints(self, action: str = "train") -> list[CheckpointFile]:
        """Checkpoint files under ``results_dir/<action>/`` (:func:`taoskills.jobs.checkpoints.list_checkpoints`)."""
        from taoskills.jobs.checkpoints import list_checkpoints

        return list_checkpoints(self.results_dir / action)


class LocalPlatform(PlatformBase):
    """Runs runner scripts as local process groups. ``term_timeout``: seconds between
    SIGTERM and SIGKILL on cancel; ``env``: extra environment (non-secret) for every job.
    The job gets a minimal environment (:func:`taoskills.security.env.job_env`): an
    allowlist plus the secrets its spec references by name.
    """

    name = "local"

    def __init__(self, term_timeout: float = 10.0, env: dict[str, str] | None = None, bash: str | None = None) -> None:
        self.term_timeout = float(term_timeout)
        self.env = dict(env or {})
        self.bash = bash or shutil.which("bash") or "/bin/bash"

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _workdir(record: JobRecord) -> Path:
        if not record.workdir:
            raise JobError(
                f"job {record.job_id} has no workdir",
                field="workdir",
                fix="render the runner script (write_runner) and set record.workdir before submitting",
            )
        return Path(record.workdir)

    @staticmethod
    def _read_exit(workdir: Path) -> int | None:
        try:
            return int((workdir / EXIT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _read_ident(workdir: Path) -> dict | None:
        try:
            data = json.loads((workdir / PID_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    @staticmethod
    def _leader_alive(ident: dict) -> bool:
        pid = ident["pid"]
        if not _has_proc():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        if ident.get("boot_id") and ident.get("boot_id") != _boot_id():
            return False
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X", "x"):
            return False
        return ident.get("start_ticks") is None or st[2] == ident["start_ticks"]

    @staticmethod
    def _group_members(ident: dict) -> list[int]:
        """Live (non-zombie) processes of the job's process group started no earlier than the job."""
        pgid = int(ident.get("pgid", ident["pid"]))
        if not _has_proc():
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return []
            except PermissionError:
                return [pgid]
            return [pgid]
        if ident.get("boot_id") and ident.get("boot_id") != _boot_id():
            return []
        start = ident.get("start_ticks") or 0
        members = []
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            st = _stat(pid)
            if st is None or st[1] != pgid:
                continue
            if pid == pgid and ident.get("start_ticks") is not None and st[2] != ident["start_ticks"]:
                return []  # the id now leads someone else's group: ours is gone (pid reuse)
            if st[0] not in ("Z", "X", "x") and st[2] >= start:
                members.append(pid)
        return members

    def _alive(self, ident: dict) -> bool:
        return self._leader_alive(ident) or bool(self._group_members(ident))

    @staticmethod
    def _finished(rc: int, canceled: bool) -> PlatformState:
        if rc == 0:
            return PlatformState(state="COMPLETE", exit_code=0, detail="exit code 0")
        if canceled:
            return PlatformState(state="CANCELED", exit_code=rc, detail=f"canceled (exit code {rc})")
        return PlatformState(state="ERROR", exit_code=rc, detail=f"exit code {rc}")

    # ---------------------------------------------------------------- protocol
    def submit(self, record: JobRecord) -> str:
        """Start ``bash record.script_path`` in its own session; returns the pid as a string.

        Output (stdout+stderr) is appended to ``record.log_path``; stdin is /dev/null;
        the working directory is ``record.workdir``. Stale ``exit_code`` /
        ``cancel_requested`` files in the workdir are removed first.
        Errors: JobError if script_path/log_path/workdir are unset, the script is missing,
        the job is already running, or the process cannot start.
        """
        workdir = self._workdir(record)
        for name in ("script_path", "log_path"):
            if not getattr(record, name):
                raise JobError(
                    f"job {record.job_id} has no {name}",
                    field=name,
                    fix="render the runner script with write_runner and set the record's paths before submitting",
                )
        script = Path(record.script_path)  # type: ignore[arg-type]
        if not script.is_file():
            raise JobError(
                f"runner script {script} does not exist",
                field="script_path",
                fix="render it with taoskills.platforms.render.write_runner before submitting",
            )
        workdir.mkdir(parents=True, exist_ok=True)
        ident = self._read_ident(workdir)
        if ident and self._alive(ident) and self._read_exit(workdir) is None:
            raise JobError(
                f"job {record.job_id} is already running (pid {ident['pid']})",
                field="job_id",
                fix="wait for it to end or cancel it first",
            )
        for name in (EXIT_FILE, CANCEL_FILE, PID_FILE):
            (workdir / name).unlink(missing_ok=True)
        log_path = Path(record.log_path)  # type: ignore[arg-type]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # security: a minimal environment (allowlist + the secrets the job's spec names), never ours whole
        env = job_env(secret_names_in(record.spec), extra=self.env)
        try:
            with open(log_path, "ab", buffering=0) as log:
                proc = subprocess.Popen(
                    [self.bash, str(script)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=str(workdir),
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise JobError(
                f"could not start the runner for job {record.job_id}: {exc}",
                field="script_path",
                fix="check that bash exists and the workdir is writable",
            ) from exc
        st = _stat(proc.pid)
        ident = {
            "pid": proc.pid,
            "pgid": proc.pid,  # start_new_session: the child leads its own group
            "start_ticks": st[2] if st else None,
            "boot_id": _boot_id(),
            "cmdline": _cmdline(proc.pid),
            "started_at": utc_now(),
        }
        _atomic_write(workdir / PID_FILE, json.dumps(ident))
        threading.Thread(target=proc.wait, name=f"reap-{record.job_id}", daemon=True).start()
        return str(proc.pid)

    def poll(self, record: JobRecord) -> PlatformState:
        """State from the workdir files and the process table (see the module docstring).

        exit_code file -> COMPLETE (0), CANCELED (cancel requested, non-zero) or ERROR;
        process group alive -> RUNNING; never submitted -> PENDING; gone without an exit
        code -> CANCELED if a cancel was requested, else ERROR with ``lost=True``.
        """
        if not record.workdir:
            return PlatformState(state="PENDING" if not record.backend_id else "UNKNOWN", detail="job has no workdir")
        workdir = Path(record.workdir)
        canceled = (workdir / CANCEL_FILE).exists()
        rc = self._read_exit(workdir)
        if rc is not None:
            return self._finished(rc, canceled)
        ident = self._read_ident(workdir)
        if ident is None:
            if record.backend_id is None:
                return PlatformState(state="PENDING", detail="not submitted yet")
            return PlatformState(
                state="UNKNOWN", detail=f"{workdir / PID_FILE} is missing; the job's process cannot be identified"
            )
        if self._leader_alive(ident):
            return PlatformState(state="RUNNING", detail=f"pid {ident['pid']}")
        members = self._group_members(ident)
        if members:
            return PlatformState(
                state="RUNNING", detail=f"runner shell {ident['pid']} is gone; {len(members)} process(es) of its group still run"
            )
        rc = self._read_exit(workdir)  # it may have ended between the two reads
        if rc is not None:
            return self._finished(rc, canceled)
        if canceled:
            return PlatformState(state="CANCELED", detail="canceled; the process group ended without an exit code")
        return PlatformState(
            state="ERROR",
            lost=True,
            detail=f"process {ident['pid']} ended without writing an exit code: killed (SIGKILL, e.g. the out-of-memory killer) or the host restarted",
        )

    def cancel(self, record: JobRecord) -> None:
        """SIGTERM the job's process group, wait up to ``term_timeout`` s, then SIGKILL.

        A job that already ended (or never started) is left alone. Afterwards :meth:`poll`
        reports CANCELED (unless the job had already finished with exit code 0).
        """
        state = self.poll(record)
        if state.state in ("COMPLETE", "ERROR", "CANCELED", "PENDING"):
            return
        workdir = self._workdir(record)
        ident = self._read_ident(workdir)
        if ident is None:
            return
        _atomic_write(workdir / CANCEL_FILE, utc_now() + "\n")
        pgid = int(ident.get("pgid", ident["pid"]))
        for sig, wait in ((signal.SIGTERM, self.term_timeout), (signal.SIGKILL, 5.0)):
            if not self._alive(ident):
                return
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            except PermissionError as exc:
                raise JobError(
                    f"not allowed to signal process group {pgid}: {exc}",
                    field="backend_id",
                    fix="cancel it as the user that started it",
                ) from exc
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._alive(ident):
                time.sleep(0.05)

    def logs(self, record: JobRecord, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
        """Bounded tail of ``record.log_path`` (see :func:`taoskills.platforms.base.read_log`)."""
        return read_log(record.log_path, tail=tail, grep=grep, max_bytes=max_bytes)

    # ---------------------------------------------------------------- placement and policy
    def host_checks(self, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[CheckResult]:
        """The engine's requirements on this host, its GPUs, the engine's host rules, the GPU
        request (:func:`~taoskills.platforms.hostchecks.check_gpu_request`) and the skill's hardware minimums (train only; an error for TAO, a warning for the built-in engine)."""
        from taoskills.data.preflight import CheckResult
        from taoskills.engine.registry import HostInfo
        from taoskills.platforms import hostchecks

        req = engine.requirements(info, action)
        results = hostchecks.check_requirements(req)
        libs_ok = all(r.ok for r in results)
        if req.probe_torch:
            gpu = hostchecks.probe_torch_gpus() if libs_ok else None
        else:
            gpu = hostchecks.check_nvidia_smi("warning")
        if gpu is not None:
            results.append(gpu)
        d = gpu.details if gpu is not None else {}
        host = HostInfo(
            cuda=bool(d.get("cuda")), gpus=int(d.get("gpus") or 0), platform=self.name, gpu_memory_gb=d.get("memory_gb")
        )
        for issue in engine.host_issues(info, action, spec, host):
            results.append(
                CheckResult(
                    name="engine.host",
                    ok=False,
                    severity="error",
                    message=issue["reason"],
                    field=issue["field"],
                    fix=issue["fix"],
                )
            )
        if gpu is not None:  # num_gpus/gpu_ids, bf16 and TAO's compute capability vs the GPUs found
            results += hostchecks.check_gpu_request(
                gpu, info, action, spec, engine=engine.name, skip_fields={r.field for r in results if r.name == "engine.host"}
            )
        if req.hardware is not None and action == "train" and (gpu is not None or not req.probe_torch):
            results += hostchecks.check_hardware(req.hardware, host, severity=req.hardware_severity, engine=engine.name)
        return results

    def quick_check(self, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
        """Missing tool or library for ``engine`` here (``which`` / ``find_spec`` only), or None."""
        from taoskills.platforms.hostchecks import quick_requirements

        return quick_requirements(engine.requirements(info, action))

    def check_input(self, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
        """Local folders only: a remote URI (``s3://``, ``https://``, ...) is refused with the fix;
        a local path gets :func:`taoskills.data.preflight.check_image_folder`."""
        from taoskills.data import preflight as pf

        if "://" in value:
            return [
                pf.CheckResult(
                    name="remote_input",
                    ok=False,
                    field=field,
                    severity="error",
                    message=f"{value} is a remote URI; the {self.name} platform reads local folders only",
                    fix="download the data to a local folder (or its archive) and pass that path",
                )
            ]
        return pf.check_image_folder(value, field=field, batch_size=batch_size)

    def map_path(self, path: str) -> str:
        """Absolute path on this host (the runner runs here)."""
        return os.path.abspath(path)

    def artifacts(self, record: JobRecord) -> LocalArtifacts:
        """:class:`LocalArtifacts` over the record's results_dir and log."""
        return LocalArtifacts(record)
