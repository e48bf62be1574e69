"""The SLURM platform: a job's runner script as an ``sbatch`` batch job, one task per node.

``submit`` renders ``<workdir>/slurm.sbatch`` from ``templates/slurm.sbatch.j2`` (nodes, GPUs
per node, CPUs, memory, time, partition, account, QoS as ``#SBATCH`` directives), submits it
with ``sbatch --parsable`` and keeps the SLURM job ids in ``<workdir>/slurm.json``. The batch
script sets TAO's multi-node environment (TAO SDK 7.2.0's SLURM platform):
``WORLD_SIZE`` = number of nodes, ``NUM_GPU_PER_NODE``, ``MASTER_ADDR`` = the first host of
``SLURM_JOB_NODELIST``, ``MASTER_PORT``; ``srun --ntasks-per-node=1`` then runs the runner on
every node with ``NODE_RANK=$SLURM_NODEID``. With ``container_image`` set, srun runs it in
that image through Pyxis/Enroot (``--container-image``, ``--container-mounts``); otherwise the
built-in engine runs from the same Python environment, which must sit on the shared
filesystem at the same path on every node (the runner calls this interpreter by its path).

State: one ``squeue -t all -j <ids>`` call for many jobs (:meth:`SlurmPlatform.poll_many`);
jobs squeue has forgotten (``MinJobAge``) are asked of ``sacct`` when accounting is enabled,
else the runner's ``exit_code`` file decides. Infrastructure failures (``NODE_FAIL``,
``PREEMPTED``, ``BOOT_FAIL``) are resubmitted up to ``max_requeues`` times (the job is submitted
with ``--no-requeue`` so SLURM itself never requeues it silently), and so is a ``FAILED``
attempt whose log matches one of ``retry_patterns`` (the skill's interconnect error patterns);
other program faults (``FAILED``, ``OUT_OF_MEMORY``, ``TIMEOUT``) never are. Logs are the batch job's output file
(``record.log_path``, appended across attempts); ``cancel`` is ``scancel``. Results live on the
shared filesystem, read like the local platform's.

Configuration: :class:`SlurmConfig`, from factory options or the YAML file named by
``TAO_SKILLS_SLURM_CONFIG``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taoskills.errors import JobError
from taoskills.jobs.store import JobRecord, utc_now
from taoskills.platforms.base import PlatformBase, PlatformState, multi_gpu_env, read_log
from taoskills.platforms.local import CANCEL_FILE, EXIT_FILE, LocalArtifacts
from taoskills.platforms.multinode import job_shape, positive
from taoskills.platforms.render import RenderError, template_env
from taoskills.platforms.slurm_config import SBATCH_TOKEN, SlurmConfig

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.platforms.engines import RuntimeEngine

STATE_FILE = "slurm.json"
BATCH_FILE = "slurm.sbatch"
TOOLS = ("sbatch", "squeue", "scancel", "scontrol")

#: SLURM job states -> platform state (squeue/sacct ``State``; SLURM 22.05 job_state names).
_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "RESIZING"}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
#: Failures of the infrastructure, not of the program: resubmitted up to max_requeues times.
INFRA_STATES = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}
#: Failures of the program (or its limits): never resubmitted.
PROGRAM_STATES = {"FAILED", "OUT_OF_MEMORY", "TIMEOUT", "DEADLINE", "SPECIAL_EXIT"}


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class SlurmPlatform(PlatformBase):
    """Runs runner scripts as SLURM batch jobs (see the module docstring). ``config``: a
    :class:`SlurmConfig` (else built from ``options`` and ``TAO_SKILLS_SLURM_CONFIG``);
    ``timeout``: seconds for each SLURM command."""

    name = "slurm"

    def __init__(self, config: SlurmConfig | None = None, timeout: float = 30.0, **options: Any) -> None:
        self.config = config or SlurmConfig.load(**options)
        self.timeout = float(timeout)

    # ---------------------------------------------------------------- commands
    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise JobError(
                f"{argv[0]} failed: {exc}",
                field="platform",
                fix="run on a SLURM login node (sbatch on PATH, slurmctld reachable)",
            ) from exc
        if check and proc.returncode != 0:
            raise JobError(
                f"{' '.join(argv[:2])} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[:400]}",
                field="platform",
                fix="check the SLURM configuration (partition, account, QoS) with sinfo/sacctmgr and try again",
            )
        return proc

    # ---------------------------------------------------------------- rendering
    def shape(self, skill: str, action: str, spec: dict[str, Any] | None) -> tuple[int, int]:
        """(nodes, GPUs per node): the config's override, else the spec (:func:`job_shape`)."""
        return job_shape(skill, action, spec, nodes=self.config.nodes, gpus_per_node=self.config.gpus_per_node)

    def directives(self, record: JobRecord, nodes: int, gpus: int) -> list[str]:
        """The ``#SBATCH`` options for ``record`` (one task per node)."""
        c = self.config
        opts = [
            f"--job-name=tao-{record.job_id}",
            f"--nodes={nodes}",
            "--ntasks-per-node=1",
            f"--output={record.log_path}",
            "--open-mode=append",
            "--no-requeue",
            f"--chdir={record.workdir}",
        ]
        for flag, value in (("partition", c.partition), ("account", c.account), ("qos", c.qos), ("time", c.time), ("mem", c.mem)):
            if value:
                opts.append(f"--{flag}={value}")
        if c.cpus_per_task:
            opts.append(f"--cpus-per-task={c.cpus_per_task}")
        if gpus:
            opts.append(f"--gres={c.gpu_gres}:{gpus}")
        opts += c.extra_sbatch
        for i, opt in enumerate(opts):
            if not SBATCH_TOKEN.match(opt):
                raise RenderError(
                    f"SLURM option {opt!r} would need shell quoting in an #SBATCH line",
                    field="workdir" if i < 7 else "platform",
                    fix="use job folders and values without spaces or quotes",
                )
        return opts

    def render_batch(self, record: JobRecord, *, attempt: int = 0) -> str:
        """The batch script text for ``record`` (``templates/slurm.sbatch.j2``)."""
        nodes, gpus = self.shape(record.skill, record.action, record.spec)
        srun = ["--nodes", str(nodes), "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
        if self.config.container_image:
            srun.append(f"--container-image={self.config.container_image}")
            if self.config.container_mounts:
                srun.append("--container-mounts=" + ",".join(self.config.container_mounts))
            srun.append(f"--container-workdir={record.workdir}")
        values = {
            "directives": self.directives(record, nodes, gpus),
            "nodes": str(nodes),
            "gpus_per_node": str(gpus),
            "master_port": str(self.config.master_port),
            "env": dict(self.config.env),
            "attempt": str(attempt),
            "srun_args": srun,
            "runner": str(record.script_path),
        }
        return template_env().get_template("slurm.sbatch.j2").render(**values)

    # ---------------------------------------------------------------- protocol
    def _state(self, record: JobRecord) -> dict | None:
        try:
            data = json.loads((Path(record.workdir or ".") / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("job_ids") else None

    def _sbatch(self, record: JobRecord, attempt: int) -> str:
        workdir = Path(record.workdir)  # type: ignore[arg-type]
        batch = workdir / BATCH_FILE
        batch.write_text(self.render_batch(record, attempt=attempt))
        for name in (EXIT_FILE, CANCEL_FILE):
            (workdir / name).unlink(missing_ok=True)
        out = self._run(["sbatch", "--parsable", str(batch)]).stdout.strip()
        job_id = out.split(";")[0].strip()
        if not job_id.isdigit():
            raise JobError(f"sbatch gave no job id: {out[:200]!r}", field="platform", fix="check sbatch on this host")
        return job_id

    def submit(self, record: JobRecord) -> str:
        """Render and ``sbatch`` the batch script; returns the SLURM job id.

        Errors: JobError when the record lacks workdir/script/log paths, the runner script is
        missing, or sbatch refuses the job (its message is included)."""
        for name in ("workdir", "script_path", "log_path"):
            if not getattr(record, name):
                raise JobError(
                    f"job {record.job_id} has no {name}", field=name, fix="render the runner script first (write_runner)"
                )
        if not Path(record.script_path).is_file():  # type: ignore[arg-type]
            raise JobError(f"runner script {record.script_path} does not exist", field="script_path", fix="render it first")
        Path(record.workdir).mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        job_id = self._sbatch(record, 0)
        _atomic_json(Path(record.workdir) / STATE_FILE, {"job_ids": [job_id], "requeues": 0, "history": []})  # type: ignore[arg-type]
        return job_id

    def _squeue(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        fmt = "JobID:|,State:|,Reason:|,exit_code:|,NodeList:|"
        proc = self._run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-O", fmt], check=False)
        rows: dict[str, dict[str, Any]] = {}
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 5 and parts[0]:
                code = int(parts[3]) if parts[3].isdigit() else None
                rows[parts[0]] = {"state": parts[1], "reason": parts[2], "exit_code": code, "nodes": parts[4]}
        missing = [i for i in ids if i not in rows]
        if missing and shutil.which("sacct"):
            acct = self._run(["sacct", "-n", "-P", "-X", "-j", ",".join(missing), "-o", "JobIDRaw,State,ExitCode"], check=False)
            if acct.returncode == 0:  # "Slurm accounting storage is disabled" otherwise
                for line in acct.stdout.splitlines():
                    parts = line.split("|")
                    if len(parts) == 3 and parts[0] in missing:
                        rc = parts[2].split(":")[0]
                        rows[parts[0]] = {
                            "state": parts[1].split()[0],
                            "reason": "",
                            "exit_code": int(rc) << 8 if rc.isdigit() else None,
                        }
        return rows

    def poll_many(self, records: Iterable[JobRecord]) -> dict[str, PlatformState]:
        """job_id -> state for many jobs with one squeue call (plus one sacct call for jobs
        squeue no longer lists); resubmits after infrastructure failures (see module docstring)."""
        recs = list(records)
        states = {r.job_id: self._state(r) for r in recs}
        rows = self._squeue([s["job_ids"][-1] for s in states.values() if s])
        return {r.job_id: self._decide(r, states[r.job_id], rows) for r in recs}

    def poll(self, record: JobRecord) -> PlatformState:
        """:meth:`poll_many` for one job."""
        return self.poll_many([record])[record.job_id]

    def _decide(self, record: JobRecord, st: dict | None, rows: dict[str, dict]) -> PlatformState:
        if st is None:
            if record.backend_id is None:
                return PlatformState(state="PENDING", detail="not submitted yet")
            st = {"job_ids": [record.backend_id], "requeues": 0, "history": []}
        workdir = Path(record.workdir or ".")
        sid = st["job_ids"][-1]
        canceled = (workdir / CANCEL_FILE).exists()
        row = rows.get(sid)
        if row is None:  # forgotten by squeue, no accounting: the runner's exit code decides
            return self._from_exit_file(workdir, sid, canceled)
        slurm_state = row["state"]
        raw = row.get("exit_code")
        rc = raw >> 8 if isinstance(raw, int) else None
        where = f"SLURM job {sid} {slurm_state}" + (f" ({row['reason']})" if row.get("reason") not in (None, "", "None") else "")
        if slurm_state in _PENDING:
            return PlatformState(state="PENDING", detail=where)
        if slurm_state in _RUNNING:
            return PlatformState(state="RUNNING", detail=where)
        if slurm_state == "COMPLETED":
            return PlatformState(state="COMPLETE", exit_code=0, detail=where)
        if slurm_state in ("CANCELLED", "REVOKED") or canceled:
            return PlatformState(state="CANCELED", exit_code=rc, detail=where)
        if slurm_state in INFRA_STATES:
            return self._requeue(record, st, sid, slurm_state, where)
        pattern = self._retriable(record, sid) if slurm_state == "FAILED" else None
        if pattern:
            return self._requeue(record, st, sid, slurm_state, f"{where}, log matches {pattern}")
        detail = where + (" - a program fault, not requeued" if slurm_state in PROGRAM_STATES else "")
        return PlatformState(state="ERROR", exit_code=rc, detail=detail)

    def _retriable(self, record: JobRecord, sid: str) -> str | None:
        """The id of a ``retry_patterns`` error pattern in this attempt's log, or None."""
        if not self.config.retry_patterns or not record.log_path:
            return None
        try:
            from taoskills.bank.catalog import Catalog

            patterns = [p for p in Catalog.load().get(record.skill).info.error_patterns if p.id in self.config.retry_patterns]
        except Exception:  # noqa: BLE001 - a skill no longer in the bank: nothing to match
            return None
        text = read_log(record.log_path, tail=5000, max_bytes=1024 * 1024)
        start = text.rfind(f"[tao-skills] slurm job {sid} ")
        text = text[start:] if start != -1 else text
        for p in patterns:
            if re.search(p.regex, text):
                return p.id
        return None

    @staticmethod
    def _from_exit_file(workdir: Path, sid: str, canceled: bool) -> PlatformState:
        try:
            rc: int | None = int((workdir / EXIT_FILE).read_text().strip())
        except (OSError, ValueError):
            rc = None
        if rc == 0:
            return PlatformState(state="COMPLETE", exit_code=0, detail=f"SLURM job {sid} gone from squeue; runner exit code 0")
        if canceled:
            return PlatformState(state="CANCELED", exit_code=rc, detail=f"SLURM job {sid} canceled")
        if rc is not None:
            return PlatformState(state="ERROR", exit_code=rc, detail=f"SLURM job {sid} gone from squeue; runner exit code {rc}")
        return PlatformState(
            state="UNKNOWN",
            detail=f"SLURM job {sid} is no longer listed by squeue, sacct has no record and the runner wrote no exit code",
        )

    def _requeue(self, record: JobRecord, st: dict, sid: str, slurm_state: str, where: str) -> PlatformState:
        """Resubmit after an infrastructure failure, once: under a lock on ``<workdir>/slurm.lock``
        the state is read again, so two pollers never both resubmit the same attempt."""
        import fcntl

        workdir = Path(record.workdir)  # type: ignore[arg-type]
        with open(workdir / "slurm.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            st = self._state(record) or st
            if st["job_ids"][-1] != sid:  # another poller resubmitted already
                return PlatformState(state="PENDING", detail=f"{where}: resubmitted as SLURM job {st['job_ids'][-1]}")
            n = int(st.get("requeues", 0))
            if n >= self.config.max_requeues:
                return PlatformState(
                    state="ERROR",
                    lost=True,
                    detail=f"{where}: an infrastructure failure, {n} requeue(s) used of max_requeues={self.config.max_requeues}",
                )
            new_id = self._sbatch(record, n + 1)
            st = {
                "job_ids": [*st["job_ids"], new_id],
                "requeues": n + 1,
                "history": [*st.get("history", []), {"job": sid, "state": slurm_state, "at": utc_now()}],
            }
            _atomic_json(workdir / STATE_FILE, st)
        return PlatformState(
            state="PENDING",
            detail=f"{where}: infrastructure failure; resubmitted as SLURM job {new_id} (requeue {n + 1}/{self.config.max_requeues})",
        )

    def requeues(self, record: JobRecord) -> dict:
        """``{job_ids, requeues, history}`` of ``record`` (``<workdir>/slurm.json``)."""
        return self._state(record) or {"job_ids": [], "requeues": 0, "history": []}

    def cancel(self, record: JobRecord) -> None:
        """``scancel`` the job's current SLURM job (a finished job is left alone)."""
        st = self._state(record)
        if st is None:
            return
        (Path(record.workdir) / CANCEL_FILE).write_text(utc_now() + "\n")  # type: ignore[arg-type]
        self._run(["scancel", st["job_ids"][-1]], check=False)

    def logs(self, record: JobRecord, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
        """Bounded tail of the batch job's output file (``record.log_path``, all attempts)."""
        return read_log(record.log_path, tail=tail, grep=grep, max_bytes=max_bytes)

    def launch_env(self, info: SkillInfo, action: str, spec: dict[str, Any]) -> dict[str, str]:
        """TAO's multi-node variables that are the same on every node (WORLD_SIZE = nodes,
        NUM_GPU_PER_NODE, MASTER_PORT); NODE_RANK and MASTER_ADDR come from the batch script."""
        from taoskills.specs.dotted import get_dotted

        keys = {"num_nodes": "train.num_nodes", **(info.multi_gpu.keys if info.multi_gpu else {})}
        nodes = self.config.nodes or positive(get_dotted(spec, keys["num_nodes"], default=None)) or 1
        env = multi_gpu_env(info, action, spec, nodes=nodes)
        if self.config.gpus_per_node is not None and "NUM_GPU_PER_NODE" in env:
            env["NUM_GPU_PER_NODE"] = str(self.config.gpus_per_node)
        if "MASTER_PORT" in env:
            env["MASTER_PORT"] = str(self.config.master_port)
        return {k: v for k, v in env.items() if k not in ("NODE_RANK", "MASTER_ADDR")}

    def artifacts(self, record: JobRecord) -> LocalArtifacts:
        """Results on the shared filesystem, read from this login node."""
        return LocalArtifacts(record)

    # ---------------------------------------------------------------- placement and policy
    def quick_check(self, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
        """sbatch/squeue/scancel/scontrol on PATH, then the engine: a container image for TAO
        (``container_image``), else the engine's libraries in this (shared) environment."""
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            return f"SLURM tools missing from PATH: {', '.join(missing)}"
        if self.config.container_image:
            return None
        from taoskills.platforms.hostchecks import quick_requirements

        return quick_requirements(engine.requirements(info, action))

    def host_checks(self, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[CheckResult]:
        """SLURM tools, a reachable controller with the partition (``sinfo``), and the engine:
        its libraries here (the shared environment) unless a container image is configured."""
        from taoskills.platforms.slurm_checks import slurm_host_checks

        return slurm_host_checks(self, engine, info, action, spec)

    def check_input(self, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
        """Paths on the shared filesystem (checked from this login node); remote URIs are refused
        (this platform stages no object storage yet)."""
        from taoskills.platforms.slurm_checks import shared_fs_input

        return shared_fs_input(self.name, field, value, batch_size=batch_size)

    def map_path(self, path: str) -> str:
        """Absolute path: login and compute nodes share the filesystem."""
        return os.path.abspath(path)
