"""Configuration and policy of the docker platform: images, workspace confinement, GPUs.

Everything here is pure (no daemon call), so the rules are unit-testable on any host:

* :class:`DockerConfig` - read from ``TAO_SKILLS_DOCKER_*`` environment variables (the
  platform is looked up by name with no options, so configuration travels like TAO SDK
  7.2.0's docker platform: by environment, docs/tao-contract.md §1.4);
* :func:`check_image` - the image allowlist: TAO's ``nvcr.io/nvidia/tao/`` images and this
  project's engine image, extended only by names the user lists explicitly;
* :meth:`DockerConfig.host_to_container` / :func:`rewrite_spec` - every host path a job uses
  must lie inside the configured workspace (mounted read-only at ``/workspace``); the job's
  results folder is the only writable mount (``/results``); the docker socket never;
* :func:`device_requests` - GPUs from the spec's ``num_gpus``/``gpu_ids`` keys as docker
  ``DeviceRequest`` dicts (count, or explicit ids), the form ``docker run --gpus`` sends.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taoskills.errors import PolicyRefusal

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo

#: Image prefixes always allowed: TAO's containers (TAO launcher 6.26.3 task map) and ours.
TAO_IMAGE_PREFIX = "nvcr.io/nvidia/tao/"
ENGINE_IMAGE = "tao-skills-engine:0.1.0"
#: Paths inside the container.
WORKSPACE_MOUNT = "/workspace"
RESULTS_MOUNT = "/results"
SPEC_MOUNT = "/spec.yaml"
SECRETS_MOUNT = "/run/tao-skills-secrets"
#: Never mounted, whatever the configuration says.
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
LABEL_PREFIX = "tao-skills"
LABEL_JOB = f"{LABEL_PREFIX}.job-id"

PullPolicy = Literal["missing", "always", "never"]
GpuMode = Literal["auto", "on", "off"]
ResultsMode = Literal["bind", "volume"]
DEFAULT_ULIMITS = {"memlock": -1, "stack": 67108864}


def _ulimits(text: str) -> dict[str, int]:
    out = {}
    for part in _split(text):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise PolicyRefusal(
                f"TAO_SKILLS_DOCKER_ULIMITS entry {part!r} is not name=integer",
                field="TAO_SKILLS_DOCKER_ULIMITS",
                fix="write it as memlock=-1,stack=67108864",
            ) from None
    return out


def _split(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").replace(";", ",").split(",") if p.strip()]


@dataclass
class DockerConfig:
    """Settings of the docker platform (``TAO_SKILLS_DOCKER_*`` variables in brackets).

    ``workspace`` [WORKSPACE, default the runtime home]: the only host folder jobs may read
    (read-only at ``/workspace``); job workdirs must be inside it. ``images`` [IMAGES]: extra
    allowed images, exact ``name:tag`` or a prefix ending in ``/``. ``image_map`` [IMAGE_MAP,
    ``from=to`` pairs]: use ``to`` where a skill names ``from`` (``to`` must be allowed).
    ``engine_image`` [ENGINE_IMAGE]: image of the built-in engine. ``pull`` [PULL]:
    missing | always | never. ``gpus`` [GPUS]: auto (request GPUs when the daemon has the
    NVIDIA runtime) | on | off. ``shm_size`` [SHM_SIZE, default 16g as TAO's docker skill
    advises for multi-GPU DataLoaders]. ``results`` [RESULTS]: bind | volume.
    ``toolchain_mounts`` [TOOLCHAIN_MOUNTS]: host folders mounted read-only at the same path
    (an interpreter for an image without one; explicit, never the docker socket).
    ``stop_timeout`` [STOP_TIMEOUT]: seconds between SIGTERM and SIGKILL on cancel.
    ``ulimits`` [ULIMITS, ``name=value`` pairs; default ``memlock=-1,stack=67108864``, the
    limits NVIDIA's PyTorch containers ask for]. ``network`` [NETWORK]: none | host. ``allow_root`` [ALLOW_ROOT]: run as root when invoked
    as root (otherwise refused).
    """

    workspace: Path
    images: list[str] = field(default_factory=list)
    image_map: dict[str, str] = field(default_factory=dict)
    engine_image: str = ENGINE_IMAGE
    pull: PullPolicy = "missing"
    gpus: GpuMode = "auto"
    shm_size: str = "16g"
    results: ResultsMode = "bind"
    toolchain_mounts: list[str] = field(default_factory=list)
    stop_timeout: int = 10
    network: str = "none"
    allow_root: bool = False
    env_path: str | None = None
    ulimits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_ULIMITS))
    results_bucket: str | None = None
    user: str | None = None
    upload_excludes: list[str] = field(default_factory=lambda: [".tao-runtime/*"])

    @classmethod
    def from_env(cls, **overrides: Any) -> DockerConfig:
        """Configuration from ``TAO_SKILLS_DOCKER_*`` (see the class docstring); ``overrides`` win.

        Errors: PolicyRefusal for an unknown pull policy, GPU mode, results mode or network."""
        env = os.environ
        from taoskills.paths import home_dir

        pairs = [p.split("=", 1) for p in _split(env.get("TAO_SKILLS_DOCKER_IMAGE_MAP")) if "=" in p]
        values: dict[str, Any] = {
            "workspace": Path(env.get("TAO_SKILLS_DOCKER_WORKSPACE") or home_dir()),
            "images": _split(env.get("TAO_SKILLS_DOCKER_IMAGES")),
            "image_map": {a.strip(): b.strip() for a, b in pairs},
            "engine_image": env.get("TAO_SKILLS_DOCKER_ENGINE_IMAGE") or ENGINE_IMAGE,
            "pull": env.get("TAO_SKILLS_DOCKER_PULL") or "missing",
            "gpus": env.get("TAO_SKILLS_DOCKER_GPUS") or "auto",
            "shm_size": env.get("TAO_SKILLS_DOCKER_SHM_SIZE") or "16g",
            "results": env.get("TAO_SKILLS_DOCKER_RESULTS") or "bind",
            "toolchain_mounts": [p for p in (env.get("TAO_SKILLS_DOCKER_TOOLCHAIN_MOUNTS") or "").split(os.pathsep) if p],
            "stop_timeout": int(env.get("TAO_SKILLS_DOCKER_STOP_TIMEOUT") or 10),
            "network": env.get("TAO_SKILLS_DOCKER_NETWORK") or "none",
            "user": env.get("TAO_SKILLS_DOCKER_USER") or None,
            "allow_root": (env.get("TAO_SKILLS_DOCKER_ALLOW_ROOT") or "").lower() in ("1", "true", "yes"),
            "env_path": env.get("TAO_SKILLS_DOCKER_PATH") or None,
            "results_bucket": env.get("TAO_SKILLS_DOCKER_RESULTS_BUCKET") or env.get("S3_BUCKET_NAME") or None,
        }
        if env.get("TAO_SKILLS_DOCKER_UPLOAD_EXCLUDES") is not None:
            values["upload_excludes"] = _split(env["TAO_SKILLS_DOCKER_UPLOAD_EXCLUDES"])
        if env.get("TAO_SKILLS_DOCKER_ULIMITS") is not None:
            values["ulimits"] = _ulimits(env["TAO_SKILLS_DOCKER_ULIMITS"])
        values |= {}
        values.update(overrides)
        cfg = cls(**values)
        cfg.workspace = Path(cfg.workspace).expanduser().resolve()
        for name, allowed in (
            ("pull", ("missing", "always", "never")),
            ("gpus", ("auto", "on", "off")),
            ("results", ("bind", "volume")),
            ("network", ("none", "host")),
        ):
            if getattr(cfg, name) not in allowed:
                raise PolicyRefusal(
                    f"TAO_SKILLS_DOCKER_{name.upper()}={getattr(cfg, name)!r} is not one of {', '.join(allowed)}",
                    field=f"TAO_SKILLS_DOCKER_{name.upper()}",
                    fix=f"set it to one of: {', '.join(allowed)}",
                )
        if cfg.user is not None and (not re.fullmatch(r"\d+:\d+", cfg.user) or cfg.user.startswith("0:")):
            raise PolicyRefusal(
                f"TAO_SKILLS_DOCKER_USER={cfg.user!r} is not a non-root uid:gid",
                field="TAO_SKILLS_DOCKER_USER",
                fix="set it to numeric ids such as 1000:1000 (root is never set this way)",
            )
        _refuse_socket(str(cfg.workspace), "TAO_SKILLS_DOCKER_WORKSPACE")
        for m in cfg.toolchain_mounts:
            _refuse_socket(m, "TAO_SKILLS_DOCKER_TOOLCHAIN_MOUNTS")
        return cfg

    # ------------------------------------------------------------------ images
    def image_for(self, engine: str, info: SkillInfo, action: str) -> str:
        """The image that runs ``action``: the skill's train/deploy image for the TAO engine
        (``images[actions.<a>.container]``), the project's engine image for the built-in one;
        then ``image_map``; then the allowlist. Errors: PolicyRefusal (image not allowed)."""
        if engine == "tao":
            act = info.actions.get(action)
            image = info.images.get(act.container) if act else None
            if not image:
                raise PolicyRefusal(
                    f"{info.name} names no container image for {action}",
                    field="images",
                    fix="add images.train/images.deploy to the skill's skill_info.yaml",
                )
        else:
            image = self.engine_image
        image = self.image_map.get(image, image)
        check_image(image, self.images, self.engine_image)
        return image

    # ------------------------------------------------------------------ paths
    def inside_workspace(self, path: str | os.PathLike) -> Path:
        """``path`` resolved (symlinks followed) when it lies inside the workspace.

        Errors: PolicyRefusal naming the path, the workspace and the fix."""
        resolved = Path(path).expanduser().resolve()
        _refuse_socket(str(resolved), "path")
        if resolved != self.workspace and self.workspace not in resolved.parents:
            raise PolicyRefusal(
                f"{path} is outside the docker platform's workspace {self.workspace}; containers only see that folder",
                field="path",
                fix=f"move or copy the data under {self.workspace} (or set TAO_SKILLS_DOCKER_WORKSPACE to a folder that holds it)",
            )
        return resolved

    def host_to_container(self, path: str | os.PathLike, *, results_dir: str | None = None) -> str:
        """Container path of a host path: the job's results folder -> ``/results``; anything
        else inside the workspace -> ``/workspace/<relative>``. Errors: PolicyRefusal."""
        resolved = Path(path).expanduser().resolve()
        if results_dir is not None:
            res = Path(results_dir).resolve()
            if resolved == res or res in resolved.parents:
                return str(Path(RESULTS_MOUNT) / resolved.relative_to(res)) if resolved != res else RESULTS_MOUNT
        inside = self.inside_workspace(resolved)
        rel = inside.relative_to(self.workspace)
        return WORKSPACE_MOUNT if str(rel) == "." else f"{WORKSPACE_MOUNT}/{rel.as_posix()}"


def _refuse_socket(path: str, field_name: str) -> None:
    """PolicyRefusal when ``path`` is, or is a folder above, a docker socket (or any unix socket)."""
    import stat

    p = os.path.realpath(path)
    sockets = [os.path.realpath(s) for s in DOCKER_SOCKETS]
    try:
        is_sock = stat.S_ISSOCK(os.stat(p).st_mode)
    except OSError:
        is_sock = False
    if is_sock or p.endswith("docker.sock") or any(s == p or s.startswith(p.rstrip("/") + "/") for s in sockets):
        raise PolicyRefusal(
            f"{path} is (or holds) the docker socket; it is never mounted into a job",
            field=field_name,
            fix="mount a folder that does not hold the docker socket: jobs never control the Docker daemon",
        )


def check_image(image: str, extra: list[str], engine_image: str = ENGINE_IMAGE) -> str:
    """``image`` when it is allowed: ``nvcr.io/nvidia/tao/...``, the engine image, or listed in
    ``extra`` (exact ``name:tag``, or a prefix ending in ``/``). Errors: PolicyRefusal."""
    if not image or any(c in image for c in " \t\n\0") or image.startswith("-"):
        raise PolicyRefusal(f"{image!r} is not an image name", field="image", fix="use an image such as nvcr.io/nvidia/tao/...")
    allowed = [TAO_IMAGE_PREFIX, engine_image, *extra]
    for rule in allowed:
        if image == rule or (rule.endswith("/") and image.startswith(rule)):
            return image
    raise PolicyRefusal(
        f"image {image} is not on the docker platform's allowlist (TAO images under {TAO_IMAGE_PREFIX}, the engine image {engine_image})",
        field="image",
        fix=f"use a TAO image, or allow it explicitly: export TAO_SKILLS_DOCKER_IMAGES={image}",
    )


def rewrite_spec(spec: Any, cfg: DockerConfig, results_dir: str) -> Any:
    """A copy of ``spec`` whose host paths are container paths (:meth:`DockerConfig.host_to_container`).

    A string is a host path when it is absolute and either lies in the workspace or exists
    on this host; other strings (in-container paths such as ``/opt/...``) are kept. The
    top-level ``results_dir`` becomes ``/results``. Errors: PolicyRefusal for an existing host
    path outside the workspace (the container could not see it)."""

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and value.startswith("/") and "\n" not in value:
            p = Path(value)
            res = Path(results_dir)
            in_ws = cfg.workspace == p or cfg.workspace in p.parents or p == res or res in p.parents
            if in_ws or p.exists():
                try:
                    return cfg.host_to_container(value, results_dir=results_dir)
                except PolicyRefusal as exc:
                    raise PolicyRefusal(exc.message, field=key, fix=exc.fix) from None
        return value

    out = walk(spec, "")
    if isinstance(out, dict):
        out["results_dir"] = RESULTS_MOUNT
    return out


def device_requests(info: SkillInfo, action: str, spec: dict[str, Any], *, enabled: bool) -> list[dict[str, Any]]:
    """Docker ``DeviceRequests`` for the job (empty when GPUs are off or the action uses none).

    ``gpu_ids`` (skill ``multi_gpu.keys.gpu_ids``, e.g. ``train.gpu_ids``) given with more than
    the default ``[0]``, or with ``num_gpus`` equal to its length: ``{"Driver": "nvidia",
    "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]]}``; else ``num_gpus`` (``gpu_spec_key``):
    ``{"Count": n, ...}``; ``num_gpus: -1`` = all GPUs (TAO SDK 7.2.0 docker handler). The
    same shape ``docker run --gpus '"device=0,1"'`` / ``--gpus 2`` sends."""
    from taoskills.specs.dotted import get_dotted

    if not enabled:
        return []
    keys = info.multi_gpu.keys if info.multi_gpu else {}
    num_key = keys.get("num_gpus") or info.gpu_spec_key or f"{action}.num_gpus"
    ids_key = keys.get("gpu_ids") or f"{action}.gpu_ids"
    if action == "train":
        num = get_dotted(spec, num_key, default=1)
        ids = get_dotted(spec, ids_key, default=None)
    else:
        num = get_dotted(spec, f"{action.removeprefix('deploy_')}.num_gpus", default=1)
        ids = get_dotted(spec, f"{action.removeprefix('deploy_')}.gpu_ids", default=None)
    num = num if isinstance(num, int) else 1
    base = {"Driver": "nvidia", "Capabilities": [["gpu"]]}
    if isinstance(ids, list) and ids and all(isinstance(i, int) and i >= 0 for i in ids) and (num in (len(ids), -1)):
        return [{**base, "Count": 0, "DeviceIDs": [str(i) for i in ids]}]
    if num == 0:
        return []
    return [{**base, "Count": -1 if num < 0 else num}]
