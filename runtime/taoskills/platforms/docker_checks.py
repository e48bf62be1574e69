"""Host checks and input policy of the docker platform (:class:`taoskills.platforms.docker.DockerPlatform`).

One :class:`~taoskills.data.preflight.CheckResult` per question: is the daemon reachable, does
it have the NVIDIA runtime (an error for the TAO engine, a warning for the built-in engine,
which runs on CPU), is the image allowed and present or pullable (pull policy, ``NGC_KEY``
for nvcr.io - by name), is shared memory large enough for TAO's DataLoaders, may the
container run as this user, are the engine's secret variables set (names only), do all
spec paths lie in the workspace, do the GPUs fit the request (count, ``gpu_ids``, compute
capability for TAO's images and for bf16; :func:`taoskills.platforms.hostchecks.check_gpu_request`),
and does the host meet the skill's GPU minimums.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import TYPE_CHECKING, Any

from taoskills.errors import JobError, PolicyRefusal
from taoskills.platforms import docker_config as dc

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo
    from taoskills.data.preflight import CheckResult
    from taoskills.platforms.docker import DockerPlatform
    from taoskills.platforms.engines import RuntimeEngine

#: Below this ``shm_size`` TAO's multi-worker DataLoaders fail with "bus error" (docker's default is 64m).
MIN_SHM_BYTES = 1 << 30
#: Below this, staging archives from S3 and writing checkpoints is likely to run out of space.
MIN_FREE_BYTES = 5 << 30


def parse_size(text: str) -> int | None:
    """``"16g"`` -> bytes (docker's units b, k, m, g; case-insensitive); None when unreadable."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*", str(text).lower())
    if not m:
        return None
    return int(float(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)])


def _socket_present() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return True  # tcp/ssh: only a connection can tell
    return os.path.exists(host.removeprefix("unix://") if host else "/var/run/docker.sock")


def _image_state(plat: DockerPlatform, image: str) -> tuple[bool, str | None]:
    """(present, reason it cannot be had); reason None when present or pullable as far as we can tell."""
    from taoskills.platforms.docker import _sdk

    docker = _sdk()
    try:
        plat.client.images.get(image)
        return True, None
    except docker.errors.ImageNotFound:
        pass
    if plat.cfg.pull == "never":
        return False, f"image {image} is not on this Docker host and TAO_SKILLS_DOCKER_PULL is never"
    if image.startswith("nvcr.io/") and not os.environ.get("NGC_KEY"):
        return False, f"image {image} is not on this Docker host and NGC_KEY is not set to pull it from nvcr.io"
    return False, None


def quick_check(plat: DockerPlatform, engine: RuntimeEngine, info: SkillInfo, action: str) -> str | None:
    """The first reason ``engine`` cannot run ``action`` here on docker, or None (cheap: local socket calls)."""
    if importlib.util.find_spec("docker") is None:
        return "the Docker SDK for Python is not installed (pip install 'tao-skills[docker]')"
    if not _socket_present():
        return "no Docker daemon socket on this host"
    try:
        image = plat.cfg.image_for(engine.name, info, action)
        _, why = _image_state(plat, image)
    except (PolicyRefusal, JobError) as exc:
        return exc.message
    except Exception as exc:  # daemon not answering
        return f"the Docker daemon is not reachable: {type(exc).__name__}"
    return why


def host_checks(
    plat: DockerPlatform, engine: RuntimeEngine, info: SkillInfo, action: str, spec: dict[str, Any]
) -> list[CheckResult]:
    """See the module docstring; never launches anything."""
    from taoskills.data.preflight import CheckResult
    from taoskills.engine.registry import HostInfo
    from taoskills.platforms import hostchecks

    out: list[CheckResult] = []

    def add(
        name: str,
        ok: bool,
        message: str,
        *,
        field: str = "platform",
        fix: str | None = None,
        severity: str = "error",
        **details: Any,
    ) -> None:
        out.append(
            CheckResult(
                name=name, ok=ok, field=field, message=message, fix=None if ok else fix, severity=severity, details=details
            )
        )  # type: ignore[arg-type]

    try:
        from taoskills.platforms.docker import connect

        client = plat._client or connect(timeout=10)
        plat._client = client
        version = client.version().get("Version", "?")
        add("host.docker", True, f"Docker daemon {version} reachable.")
    except Exception as exc:
        add("host.docker", False, getattr(exc, "message", str(exc)), fix=getattr(exc, "fix", None) or "start the Docker daemon")
        return out
    req = engine.requirements(info, action)
    nvidia = plat.nvidia_runtime()
    if plat.cfg.gpus == "off":
        add(
            "host.docker.gpu",
            True,
            "GPUs are off for the docker platform (TAO_SKILLS_DOCKER_GPUS=off): jobs run on CPU.",
            severity="warning",
        )
    else:
        sev = "error" if engine.name == "tao" or plat.cfg.gpus == "on" else "warning"
        add(
            "host.docker.gpu",
            nvidia,
            "The Docker daemon has the NVIDIA runtime."
            if nvidia
            else "The Docker daemon has no NVIDIA runtime: containers cannot use GPUs.",
            fix="install the NVIDIA Container Toolkit (nvidia-ctk runtime configure --runtime=docker) and restart dockerd",
            severity=sev if not nvidia else "info",
        )
    image = None
    try:
        image = plat.cfg.image_for(engine.name, info, action)
        add("host.docker.image_allowed", True, f"Image {image} is allowed.", field="image")
    except PolicyRefusal as exc:
        add("host.docker.image_allowed", False, exc.message, field="image", fix=exc.fix)
    if image:
        present, why = _image_state(plat, image)
        add(
            "host.docker.image",
            present or why is None,
            f"Image {image} is present." if present else (why or f"Image {image} will be pulled (policy {plat.cfg.pull})."),
            field="image",
            fix=f"docker pull {image} (NGC: export NGC_KEY, by name), or build it",
            severity="error" if why else "info",
        )
    shm = parse_size(plat.cfg.shm_size)
    add(
        "host.docker.shm",
        shm is not None and shm >= MIN_SHM_BYTES,
        f"Shared memory per container: {plat.cfg.shm_size}.",
        fix="set TAO_SKILLS_DOCKER_SHM_SIZE=16g (TAO DataLoaders need more than docker's 64m)",
        severity="warning",
    )
    try:
        add("host.docker.user", True, f"Containers run as {plat.user()}.", field="user")
    except PolicyRefusal as exc:
        add("host.docker.user", False, exc.message, field="user", fix=exc.fix)
    missing = [n for n in engine.secret_env_names(info, action, spec) if not os.environ.get(n)]
    add(
        "host.docker.credentials",
        not missing,
        "Secret variables are set (checked by name)." if not missing else f"Not set: {', '.join(missing)}.",
        fix=f"export {' '.join(missing)}",
    )
    try:
        dc.rewrite_spec(spec, plat.cfg, str(spec.get("results_dir") or plat.cfg.workspace / "results"))
        if spec.get("results_dir") and plat.cfg.results == "bind":
            plat.cfg.inside_workspace(str(spec["results_dir"]))
        add("host.docker.workspace", True, f"All spec paths are inside the workspace {plat.cfg.workspace}.", field="results_dir")
    except PolicyRefusal as exc:
        add("host.docker.workspace", False, exc.message, field=exc.field or "results_dir", fix=exc.fix)
    import shutil

    free = shutil.disk_usage(plat.cfg.workspace).free
    add(
        "host.docker.disk",
        free >= MIN_FREE_BYTES,
        f"{free / (1 << 30):.1f} GiB free in the workspace {plat.cfg.workspace} (staging, results).",
        field="results_dir",
        fix="free disk space or point TAO_SKILLS_DOCKER_WORKSPACE at a larger disk",
        severity="warning",
    )
    gpu = hostchecks.check_nvidia_smi("warning") if nvidia else None
    d = gpu.details if gpu is not None else {}
    host = HostInfo(cuda=bool(d.get("cuda")), gpus=int(d.get("gpus") or 0), platform=plat.name, gpu_memory_gb=d.get("memory_gb"))
    if gpu is not None:
        out.append(gpu)
    for issue in engine.host_issues(info, action, spec, host):
        add("engine.host", False, issue["reason"], field=issue["field"], fix=issue["fix"])
    if gpu is not None and plat.cfg.gpus != "off":
        out += hostchecks.check_gpu_request(
            gpu, info, action, spec, engine=engine.name, skip_fields={r.field for r in out if r.name == "engine.host"}
        )
    if req.hardware is not None and action == "train":
        sev = "warning" if plat.cfg.gpus == "off" else req.hardware_severity
        out += hostchecks.check_hardware(req.hardware, host, severity=sev, engine=engine.name)
    return out


def check_input(plat: DockerPlatform, field: str, value: str, *, batch_size: int | None = None) -> list[CheckResult]:
    """A data input: a local folder inside the workspace (then the usual folder checks)."""
    from taoskills.data import preflight as pf
    from taoskills.data import s3

    if s3.is_s3(value):
        bucket, key = s3.parse(value)
        why = s3.check_uri(f"s3://{bucket}/{key}", field=field, folder=True)
        return [
            pf.CheckResult(
                name="s3_input",
                ok=why is None,
                field=field,
                message=why
                or f"s3://{bucket}/{key} exists; it is staged under {plat.cfg.workspace / 'staging'} before the job starts",
                fix=None if why is None else "check the URI and the AWS_* variables (by name) and AWS_ENDPOINT_URL",
            )
        ]
    if "://" in value:
        return [
            pf.CheckResult(
                name="remote_input",
                ok=False,
                field=field,
                message=f"{value} is a remote URI; the docker platform reads s3:// URIs and folders inside its workspace",
                fix=f"download the data under {plat.cfg.workspace} and pass that path",
            )
        ]
    try:
        plat.cfg.inside_workspace(value)
    except PolicyRefusal as exc:
        return [pf.CheckResult(name="docker.workspace", ok=False, field=field, message=exc.message, fix=exc.fix)]
    return pf.check_image_folder(value, field=field, batch_size=batch_size)
