"""The docker platform: one hardened container per job, through the Docker SDK (``docker`` 7.x).

``submit`` runs the engine's entrypoint itself - for the TAO engine the skill's exact
in-container command (``dino train -e /spec.yaml results_dir=/results``), for the built-in
engine ``tao-skills-engine <net> <action> -e /spec.yaml results_dir=/results`` in the
project's engine image (docker/Dockerfile). The runner script the service renders is kept
for reading and hand runs; the container does not run it. Layout inside the container:

* ``/spec.yaml`` (read-only): the job's spec with host paths rewritten to container paths;
* ``/workspace`` (read-only): the configured workspace, the only host folder a job sees;
* ``/results`` (read-write): the job's results folder (a bind mount of ``record.results_dir``,
  or a named volume ``tao-skills-results-<job_id>`` with ``TAO_SKILLS_DOCKER_RESULTS=volume``);
* ``/run/tao-skills-secrets`` (read-only): one file per secret variable, exported by a
  ``sh`` wrapper before the command is exec'd, so no value is in the container's config,
  labels, command or the job record (``docker inspect`` shows names only).

Hardening (the rules of the public NemoClaw broker, and docs/tao-contract.md §1.4): allowlisted images
only, the invoking user's uid:gid (root refused unless allowed), ``cap_drop=ALL``,
``no-new-privileges``, ``init`` (SIGTERM reaches the job at once), no docker socket, network
``none`` unless configured. TAO's needs: ``shm_size`` (16g), private IPC, ``memlock``
unlimited and a 64 MiB stack ulimit, GPUs as device requests
(:func:`taoskills.platforms.docker_config.device_requests`). Lifecycle follows TAO SDK 7.2.0's
docker platform (docs/tao-contract.md §1.4): labels with the job id, created -> PENDING,
running -> RUNNING, exited 0 -> COMPLETE else ERROR, cancel = stop (SIGTERM, then SIGKILL after
the timeout) then kill; records are reconciled by label
(:func:`taoskills.platforms.docker_reconcile.reconcile`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from taoskills.errors import JobError, NotSupported, PolicyRefusal
from taoskills.jobs.store import JobRecord, utc_now
from taoskills.platforms import docker_config as dc
from taoskills.platforms.base import PlatformBase, PlatformState, read_log
from taoskills.platforms.docker_artifacts import DockerArtifacts

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.platforms.engines import RuntimeEngine

EXIT_FILE, CANCEL_FILE, CONTAINER_FILE = "exit_code", "cancel_requested", "container.json"
SPEC_FILE = "container_spec.yaml"


def secrets_dir(job_id: str) -> Path:
    """Host folder of a job's secret files: on tmpfs (``/dev/shm``) when there is one, outside
    the workspace (other jobs' containers see the workspace), mode 0700; removed when the job ends."""
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    return base / f"tao-skills-secrets-{os.getuid()}" / job_id


#: Wrapper that exports each secret file as a variable, then execs the command (argv after ``--``).
_SECRET_WRAPPER = 'for f in "$0"/*; do [ -f "$f" ] && export "${f##*/}=$(cat "$f")"; done; exec "$@"'


def _sdk() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise NotSupported(
            "the docker platform needs the Docker SDK for Python",
            field="platform",
            fix="pip install 'tao-skills[docker]' (docker>=7)",
        ) from exc
    return docker


def connect(timeout: float = 30.0):
    """A Docker client from ``DOCKER_HOST`` (or the local socket). Errors: JobError with the fix."""
    docker = _sdk()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, connection refused, missing socket
        raise JobError(
            f"the Docker daemon is not reachable: {exc}",
            field="platform",
            fix="start it (systemctl start docker, or: dockerd --iptables=false --bridge=none &) and check DOCKER_HOST",
        ) from exc
    return client


def container_name(job_id: str) -> str:
    """Deterministic container name of a job (``tao-skills-<job_id>``)."""
    return f"{dc.LABEL_PREFIX}-{job_id}"


def container_command(engine: RuntimeEngine, info: SkillInfo, action: str) -> list[str]:
    """The in-container argv: the TAO entrypoint (``actions.<a>.command`` with ``/spec.yaml``)
    or ``tao-skills-engine``, then ``results_dir=/results`` (a Hydra override, as TAO's
    entrypoint takes it, docs/tao-contract.md §3.1)."""
    if engine.name == "tao":
        argv = engine.command(info, action, dc.SPEC_MOUNT)
    else:
        argv = ["tao-skills-engine", info.network_arch or "", action.removeprefix("deploy_"), "-e", dc.SPEC_MOUNT]
    return [*argv, f"results_dir={dc.RESULTS_MOUNT}"]


def _state_of(attrs: dict[str, Any], canceled: bool) -> PlatformState:
    st = attrs.get("State") or {}
    status = st.get("Status", "")
    if status == "created":
        return PlatformState(state="PENDING", detail="container created")
    if status in ("running", "restarting", "paused", "removing"):
        return PlatformState(state="RUNNING", detail=f"container {status}")
    if status in ("exited", "dead"):
        rc = int(st.get("ExitCode", -1))
        oom = " (out of memory: the kernel killed it)" if st.get("OOMKilled") else ""
        if rc == 0:
            return PlatformState(state="COMPLETE", exit_code=0, detail="exit code 0")
        if canceled:
            return PlatformState(state="CANCELED", exit_code=rc, detail=f"canceled (exit code {rc})")
        return PlatformState(state="ERROR", exit_code=rc, detail=f"exit code {rc}{oom}", lost=bool(oom))
    return PlatformState(state="UNKNOWN", detail=f"container state {status!r}")


class DockerPlatform(PlatformBase):
    """Jobs as containers on a Docker daemon. ``client``: a ``docker.DockerClient`` (default:
    :func:`connect`, made on first use); other keyword options override :class:`DockerConfig`."""

    name = "docker"

    def __init__(self, client: Any = None, **options: Any) -> None:
        self.cfg = dc.DockerConfig.from_env(**options)
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = connect()
        return self._client

    # ---------------------------------------------------------------- helpers
    def find(self, record: JobRecord):
        """The job's container (by backend id, else by name/label), or None when it is gone."""
        docker = _sdk()
        for ref in (record.backend_id, container_name(record.job_id)):
            if not ref:
                continue
            try:
                c = self.client.containers.get(ref)
            except docker.errors.NotFound:
                continue
            if (c.labels or {}).get(dc.LABEL_JOB) == record.job_id:
                return c
        found = self.client.containers.list(all=True, filters={"label": f"{dc.LABEL_JOB}={record.job_id}"})
        return found[0] if found else None

    def ensure_image(self, image: str) -> None:
        """The pull policy for ``image`` (:func:`taoskills.platforms.docker_setup.ensure_image`)."""
        from taoskills.platforms.docker_setup import ensure_image

        ensure_image(self, image)

    def user(self) -> str:
        """``uid:gid`` the container runs as: ``TAO_SKILLS_DOCKER_USER``, else the invoking user.
        Errors: PolicyRefusal for root unless allowed."""
        if self.cfg.user:
            return self.cfg.user
        uid, gid = os.getuid(), os.getgid()
        if uid == 0 and not self.cfg.allow_root:
            raise PolicyRefusal(
                "tao-skills runs as root; the docker platform will not start a container as root",
                field="user",
                fix="run tao-skills as a normal user (in the docker group), or set TAO_SKILLS_DOCKER_ALLOW_ROOT=1",
            )
        return f"{uid}:{gid}"

    def run_kwargs(self, record: JobRecord, info: SkillInfo, engine: RuntimeEngine, *, image: str) -> dict[str, Any]:
        """Everything ``containers.run`` gets for ``record`` (nothing is created; unit-testable).

        Errors: PolicyRefusal (path outside the workspace, root, socket), JobError (no workdir)."""
        docker = _sdk()
        if not record.workdir or not record.results_dir:
            raise JobError(
                f"job {record.job_id} has no workdir/results_dir", field="workdir", fix="launch it through the service"
            )
        workdir = self.cfg.inside_workspace(record.workdir)
        results = self.cfg.inside_workspace(record.results_dir) if not self.cfg.results == "volume" else Path(record.results_dir)
        action = record.action
        mounts = [
            docker.types.Mount(dc.WORKSPACE_MOUNT, str(self.cfg.workspace), type="bind", read_only=True),
            docker.types.Mount(dc.SPEC_MOUNT, str(workdir / SPEC_FILE), type="bind", read_only=True),
        ]
        if self.cfg.results == "volume":
            mounts.append(docker.types.Mount(dc.RESULTS_MOUNT, f"{dc.LABEL_PREFIX}-results-{record.job_id}", type="volume"))
        else:
            mounts.append(docker.types.Mount(dc.RESULTS_MOUNT, str(results), type="bind", read_only=False))
        mounts += [docker.types.Mount(m, m, type="bind", read_only=True) for m in self.cfg.toolchain_mounts]
        secrets = list(dict.fromkeys(engine.secret_env_names(info, action, record.spec)))
        command = container_command(engine, info, action)
        if secrets:
            mounts.append(docker.types.Mount(dc.SECRETS_MOUNT, str(secrets_dir(record.job_id)), type="bind", read_only=True))
            command = ["sh", "-c", _SECRET_WRAPPER, dc.SECRETS_MOUNT, *command]
        home = f"{dc.RESULTS_MOUNT}/.tao-runtime/home"
        env = {
            **engine.env(info, action, record.spec),
            **self.launch_env(info, action, record.spec),
            "TAO_JOB_ID": record.job_id,
            "TAO_SKILLS_JOB_ID": record.job_id,
            "TAO_RESULTS_ROOT": dc.RESULTS_MOUNT,
            "HOME": home,
            "XDG_CACHE_HOME": f"{home}/.cache",
            "HF_HOME": f"{home}/.cache/huggingface",
            "TORCH_HOME": f"{home}/.cache/torch",
            "MPLCONFIGDIR": f"{home}/.cache/matplotlib",
            "USER": "tao",
            "LOGNAME": "tao",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self.cfg.env_path:
            env["PATH"] = self.cfg.env_path
        requests = dc.device_requests(info, action, record.spec, enabled=self.gpus_enabled())
        if not requests:
            env["NVIDIA_VISIBLE_DEVICES"] = "void"
        from taoskills.jobs.store import is_secret_key

        bad = [k for k in env if is_secret_key(k)]
        if bad:
            raise PolicyRefusal(f"secret-looking variables {bad} in the job environment", field="env", fix="pass secrets by name")
        return {
            "image": image,
            "command": command,
            "name": container_name(record.job_id),
            "labels": {
                dc.LABEL_JOB: record.job_id,
                f"{dc.LABEL_PREFIX}.managed": "true",
                f"{dc.LABEL_PREFIX}.skill": record.skill,
                f"{dc.LABEL_PREFIX}.network": record.network_arch or "",
                f"{dc.LABEL_PREFIX}.action": action,
                f"{dc.LABEL_PREFIX}.engine": engine.name,
                f"{dc.LABEL_PREFIX}.secrets": ",".join(secrets),
            },
            "environment": env,
            "mounts": mounts,
            "user": self.user(),
            "working_dir": dc.RESULTS_MOUNT,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "init": True,
            "ipc_mode": "private",
            "shm_size": self.cfg.shm_size,
            "ulimits": [docker.types.Ulimit(name=k, soft=v, hard=v) for k, v in self.cfg.ulimits.items()],
            "device_requests": [docker.types.DeviceRequest(**{_snake(k): v for k, v in r.items()}) for r in requests],
            "network_mode": self.cfg.network,
            "detach": True,
            "stdin_open": False,
            "tty": False,
        }

    def gpus_enabled(self) -> bool:
        """GPUs requested: ``on``; ``off`` never; ``auto`` when the daemon lists the NVIDIA runtime."""
        if self.cfg.gpus != "auto":
            return self.cfg.gpus == "on"
        return self.nvidia_runtime()

    def nvidia_runtime(self) -> bool:
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except Exception:
            return False
        return "nvidia" in runtimes

    def sync_log(self, record: JobRecord) -> None:
        """Copy the container's output (stdout+stderr) to ``record.log_path`` (atomic)."""
        c = self.find(record)
        if c is None or not record.log_path:
            return
        data = c.logs(stdout=True, stderr=True)
        path = Path(record.log_path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def stream_logs(self, record: JobRecord) -> Iterator[str]:
        """The container's output as it is written (lines, following until the container ends)."""
        c = self.find(record)
        if c is None:
            return
        buf = b""
        for chunk in c.logs(stdout=True, stderr=True, stream=True, follow=True):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if buf:
            yield buf.decode("utf-8", errors="replace")

    def _finish(self, record: JobRecord, state: PlatformState) -> None:
        """On a terminal state: the exit code and log on disk, the secrets folder removed, the
        results uploaded to the results bucket (once, when one is configured)."""
        from taoskills.platforms.docker_s3 import upload_once

        if record.workdir and state.exit_code is not None:
            wd = Path(record.workdir)
            (wd / EXIT_FILE).write_text(f"{state.exit_code}\n")
        shutil.rmtree(secrets_dir(record.job_id), ignore_errors=True)
        self.sync_log(record)
        upload_once(self, record)

    # ---------------------------------------------------------------- protocol
    def submit(self, record: JobRecord) -> str:
        """Create and start the job's container; returns its id (see the module docstring).

        Errors: PolicyRefusal (image, path, user), JobError (daemon, image pull, start)."""
        from taoskills.bank.catalog import Catalog
        from taoskills.platforms.engines import get_engine

        info = Catalog.load().get(record.skill).info
        engine = get_engine(record.engine)
        image = self.cfg.image_for(engine.name, info, record.action)
        kwargs = self.run_kwargs(record, info, engine, image=image)
        wd = Path(record.workdir or "")
        if self.find(record) is not None:
            raise JobError(f"job {record.job_id} already has a container", field="job_id", fix="cancel it or launch a new job")
        from taoskills.platforms.docker_s3 import stage_inputs

        local_spec, _ = stage_inputs(self, record, info)  # s3:// inputs -> workspace/staging
        spec = dc.rewrite_spec(local_spec, self.cfg, record.results_dir or "")
        (wd / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
        if self.cfg.results == "bind":
            Path(record.results_dir or "").mkdir(parents=True, exist_ok=True)
        for name in (EXIT_FILE, CANCEL_FILE):
            (wd / name).unlink(missing_ok=True)
        self.ensure_image(image)
        if self.cfg.results == "volume" and not kwargs["user"].startswith("0:"):
            from taoskills.platforms.docker_setup import own_volume

            own_volume(self, image, kwargs["user"], f"{dc.LABEL_PREFIX}-results-{record.job_id}", record.job_id)
        names = kwargs["labels"][f"{dc.LABEL_PREFIX}.secrets"]
        if names:
            sdir = secrets_dir(record.job_id)
            sdir.parent.mkdir(mode=0o700, exist_ok=True)
            sdir.mkdir(mode=0o700, exist_ok=True)
            for name in names.split(","):
                fd = os.open(sdir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(os.environ.get(name, ""))
        try:
            container = self.client.containers.run(**kwargs)
        except Exception as exc:
            shutil.rmtree(secrets_dir(record.job_id), ignore_errors=True)
            leftover = self.find(record)  # a failed start (e.g. no GPU driver) leaves a Created container
            if leftover is not None:
                leftover.remove(force=True)
            raise JobError(
                f"docker could not start job {record.job_id}: {str(exc)[:400]}",
                field="platform",
                fix="run `tao-skills preflight --platform docker` for the cause (GPU runtime, image, mounts)",
            ) from None
        (wd / CONTAINER_FILE).write_text(
            json.dumps({"id": container.id, "name": kwargs["name"], "image": image, "at": utc_now()})
        )
        return str(container.id)

    def poll(self, record: JobRecord) -> PlatformState:
        """State from the container (see the module docstring); a vanished container reads the
        exit code saved when it was last seen, else ERROR with ``lost=True``."""
        c = self.find(record)
        return self._state(record, c.attrs if c is not None else None)

    def _state(self, record: JobRecord, attrs: dict[str, Any] | None) -> PlatformState:
        wd = Path(record.workdir) if record.workdir else None
        canceled = bool(wd and (wd / CANCEL_FILE).exists())
        if attrs is None:
            saved = _read_int(wd / EXIT_FILE) if wd else None
            if saved is not None:
                return _state_of({"State": {"Status": "exited", "ExitCode": saved}}, canceled)
            if record.backend_id is None:
                return PlatformState(state="PENDING", detail="not submitted yet")
            if canceled:
                return PlatformState(state="CANCELED", detail="canceled; the container is gone")
            return PlatformState(
                state="ERROR", lost=True, detail="the job's container is gone (removed, or the Docker host was reset)"
            )
        state = _state_of(attrs, canceled)
        if state.state in ("COMPLETE", "ERROR", "CANCELED"):
            self._finish(record, state)
        return state

    def poll_many(self, records: Iterable[JobRecord]) -> dict[str, PlatformState]:
        """One container listing (by label) for all ``records``."""
        recs = list(records)
        if not recs:
            return {}
        by_job: dict[str, Any] = {}
        for c in self.client.containers.list(all=True, filters={"label": dc.LABEL_JOB}):
            by_job.setdefault(str((c.labels or {}).get(dc.LABEL_JOB)), c)
        return {r.job_id: self._state(r, by_job[r.job_id].attrs if r.job_id in by_job else None) for r in recs}

    def cancel(self, record: JobRecord) -> None:
        """``stop`` (SIGTERM, SIGKILL after ``stop_timeout`` s), then ``kill`` if it still runs."""
        c = self.find(record)
        if c is None or _state_of(c.attrs, False).state not in ("PENDING", "RUNNING"):
            return
        if record.workdir:
            (Path(record.workdir) / CANCEL_FILE).write_text(utc_now() + "\n")
        c.stop(timeout=self.cfg.stop_timeout)
        c.reload()
        if c.attrs.get("State", {}).get("Running"):
            c.kill()
        c.reload()
        self._state(record, c.attrs)

    def logs(self, record: JobRecord, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> str:
        """Bounded tail of the container's output (:func:`taoskills.platforms.base.read_log`)."""
        self.sync_log(record)
        return read_log(record.log_path, tail=tail, grep=grep, max_bytes=max_bytes)

    def remove(self, record: JobRecord) -> None:
        """Remove the job's (ended) container and its results volume; bind results stay."""
        c = self.find(record)
        if c is not None:
            self.sync_log(record)
            c.remove(force=True)
        if self.cfg.results == "volume":
            try:
                self.client.volumes.get(f"{dc.LABEL_PREFIX}-results-{record.job_id}").remove(force=True)
            except Exception:
                pass

    # ---------------------------------------------------------------- placement and policy
    def host_checks(self, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]) -> list[CheckResult]:
        """Docker reachable, NVIDIA runtime, image allowed and present or pullable, shm, user,
        credentials (names only), spec paths inside the workspace, the skill's GPU minimums."""
        from taoskills.platforms.docker_checks import host_checks

        return host_checks(self, engine, info, action, spec)

    def quick_check(self, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
        """Cheap reason ``engine`` cannot run here: SDK missing, no daemon socket, image not
        allowed, or not present and not pullable (NGC_KEY unset, pull policy never)."""
        from taoskills.platforms.docker_checks import quick_check

        return quick_check(self, engine, info, action)

    def check_input(self, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
        """Folders inside the workspace only (the container sees nothing else)."""
        from taoskills.platforms.docker_checks import check_input

        return check_input(self, field, value, batch_size=batch_size)

    def map_path(self, path: str) -> str:
        """Container path of a host path inside the workspace (unchanged when outside: the host
        checks refuse such paths before launch)."""
        try:
            return self.cfg.host_to_container(path)
        except PolicyRefusal:
            return os.path.abspath(path)

    def stage_data_sources(self, info: SkillInfo, action: str, data_sources: dict[str, str]) -> dict[str, str]:
        """``s3://`` roots downloaded into the workspace (:func:`taoskills.platforms.docker_s3.stage_roots`)."""
        from taoskills.platforms.docker_s3 import stage_roots

        return stage_roots(self, info, action, data_sources)

    def artifacts(self, record: JobRecord) -> DockerArtifacts:
        """:class:`DockerArtifacts` (bind folder or volume, container log)."""
        return DockerArtifacts(self, record)


def _snake(key: str) -> str:
    return {"Driver": "driver", "Count": "count", "DeviceIDs": "device_ids", "Capabilities": "capabilities"}[key]


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
