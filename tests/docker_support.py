"""Images and settings for the docker-platform tests, built from nothing on the local dockerd.

No image can be pulled in CI, so every image is ``docker import`` of a busybox-static rootfs
(``/usr/bin/busybox`` from Debian's busybox-static, one link per applet), plus:

* ``tao-skills-engine:test`` - the project's engine image stand-in: ``/opt/tao/bin/tao-skills-engine``
  runs ``python -m taoskills.engine`` (the fake NVDINOv2 of tests/fake_engine.py as a plug-in);
* ``tao-standin:test`` - TAO's entrypoints ``dino``, ``nvdinov2``, ``mae``, ``grounding_dino``
  (tests/standin/tao_standin.py: the built-in engine for nvdinov2, a contract stub otherwise).

Python itself comes from this host: its prefix, the venv and every ``sys.path`` folder are
mounted read-only at the same paths (``TAO_SKILLS_DOCKER_TOOLCHAIN_MOUNTS``), with ``/usr``,
``/lib`` and ``/lib64`` for the C libraries.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ENGINE_IMAGE = "tao-skills-engine:test"
STANDIN_IMAGE = "tao-standin:test"
BUSYBOX_IMAGE = "tao-skills-busybox:test"
NETWORKS = ("dino", "nvdinov2", "mae", "grounding_dino")
HOW_TO_START = (
    "the docker tests need a running Docker daemon. Start one: apt-get install -y --no-install-recommends "
    "docker.io busybox-static; dockerd --iptables=false --ip6tables=false --bridge=none >/tmp/dockerd.log 2>&1 & "
    "then wait until `docker info` answers (.ci/run does this)"
)


def busybox_path() -> str:
    found = shutil.which("busybox") or ("/bin/busybox" if os.path.exists("/bin/busybox") else None)
    if not found:
        raise RuntimeError("busybox is not installed: apt-get install -y --no-install-recommends busybox-static")
    return found


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes | None = None,
    *,
    mode: int = 0o644,
    link: str | None = None,
    folder: bool = False,
) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if folder:
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)
    elif link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
        tar.addfile(info)
    else:
        info.size, info.mode = len(data or b""), mode
        tar.addfile(info, io.BytesIO(data or b""))


def rootfs_tar(extra: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A busybox rootfs as tar bytes; ``extra``: path -> (bytes, mode)."""
    bb = busybox_path()
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d, mode in (
            ("bin", 0o755),
            ("tmp", 0o1777),
            ("etc", 0o755),
            ("results", 0o777),
            ("workspace", 0o755),
            ("opt", 0o755),
            ("opt/tao", 0o755),
            ("opt/tao/bin", 0o755),
            ("opt/standin", 0o755),
        ):
            _add(tar, d, folder=True, mode=mode)
        for name in ("lib", "lib64"):  # merged-/usr hosts: the dynamic loader is found via these links
            if os.path.islink(f"/{name}"):
                _add(tar, name, link=os.readlink(f"/{name}"))
        _add(tar, "bin/busybox", Path(bb).read_bytes(), mode=0o755)
        for a in applets:
            if a != "busybox":
                _add(tar, f"bin/{a}", link="busybox")
        _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ntao:x:1000:1000:tao:/results:/bin/sh\n")
        _add(tar, "etc/group", b"root:x:0:\ntao:x:1000:\n")
        for path, (data, mode) in (extra or {}).items():
            _add(tar, path, data, mode=mode)
    return buf.getvalue()


def _wrapper(body: str) -> tuple[bytes, int]:
    return (f"#!/bin/sh\nexport TAO_SKILLS_PLUGINS=fake_engine PYTHONPATH=/opt/standin\n{body}\n".encode(), 0o755)


def build_images(client) -> dict[str, str]:
    """Import the three test images (replacing older ones). Returns name -> image id."""
    standin = (TESTS / "standin" / "tao_standin.py").read_bytes()
    fake = (TESTS / "fake_engine.py").read_bytes()
    common = {"opt/standin/fake_engine.py": (fake, 0o644), "opt/standin/tao_standin.py": (standin, 0o644)}
    images = {
        BUSYBOX_IMAGE: {},
        ENGINE_IMAGE: {**common, "opt/tao/bin/tao-skills-engine": _wrapper('exec python -m taoskills.engine "$@"')},
        STANDIN_IMAGE: {
            **common,
            **{f"opt/tao/bin/{n}": _wrapper(f'exec python /opt/standin/tao_standin.py {n} "$@"') for n in NETWORKS},
        },
    }
    out = {}
    for name, extra in images.items():
        repo, tag = name.split(":")
        client.api.import_image_from_data(rootfs_tar(extra), repository=repo, tag=tag, changes=["ENV PATH=/opt/tao/bin:/bin"])
        out[name] = client.images.get(name).id
    return out


def toolchain_mounts() -> list[str]:
    """Host folders that hold this Python (interpreter, venv, sys.path), plus /usr, /lib, /lib64."""
    cands = ["/usr", "/lib", "/lib64", sys.base_prefix, sys.prefix, *[p for p in sys.path if p]]
    real = []
    for c in cands:
        if os.path.isdir(c):
            r = os.path.realpath(c)
            if r not in real:
                real.append(r)
    # keep only outermost folders; never "/" or a folder holding the docker socket
    real = [r for r in real if r != "/" and not any(o != r and r.startswith(o.rstrip("/") + "/") for o in real)]
    return [
        r
        for r in real
        if not "/var/run/docker.sock".startswith(r.rstrip("/") + "/") and not "/run/docker.sock".startswith(r.rstrip("/") + "/")
    ]


def _memlock_hard() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def docker_env(workspace: Path) -> dict[str, str]:
    """The ``TAO_SKILLS_DOCKER_*`` settings the tests run with (stand-in images, CPU, no network)."""
    path = os.pathsep.join(
        ["/opt/tao/bin", str(Path(sys.prefix) / "bin"), str(Path(sys.base_prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
    )
    env = {
        "TAO_SKILLS_DOCKER_WORKSPACE": str(workspace),
        "TAO_SKILLS_DOCKER_IMAGES": f"{STANDIN_IMAGE},{ENGINE_IMAGE}",
        "TAO_SKILLS_DOCKER_IMAGE_MAP": ",".join(
            f"nvcr.io/nvidia/tao/tao-toolkit:6.26.3-{k}={STANDIN_IMAGE}" for k in ("pyt", "deploy")
        ),
        "TAO_SKILLS_DOCKER_ENGINE_IMAGE": ENGINE_IMAGE,
        "TAO_SKILLS_DOCKER_PULL": "never",
        "TAO_SKILLS_DOCKER_GPUS": "off",
        "TAO_SKILLS_DOCKER_SHM_SIZE": "1g",
        "TAO_SKILLS_DOCKER_TOOLCHAIN_MOUNTS": os.pathsep.join(toolchain_mounts()),
        "TAO_SKILLS_DOCKER_PATH": path,
        "TAO_SKILLS_DOCKER_STOP_TIMEOUT": "3",
        # memlock capped at this host's hard limit (unprivileged CI daemons refuse "unlimited")
        "TAO_SKILLS_DOCKER_ULIMITS": f"memlock={_memlock_hard()},stack=67108864",
    }
    if os.getuid() == 0:
        env["TAO_SKILLS_DOCKER_ALLOW_ROOT"] = "1"
    return env
