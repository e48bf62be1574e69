"""Results and log of a docker job, read wherever they live (the seams' artifact access).

Bind mode: the results folder is on this host (``record.results_dir``), read like the local
platform's. Volume mode (``TAO_SKILLS_DOCKER_RESULTS=volume``): files are read out of the
job's container with ``get_archive`` (works on a stopped container), and
:meth:`DockerArtifacts.checkpoint_root` fetches a copy of the volume into
``record.results_dir`` (extracted with tarfile's ``data`` filter: no links out, no devices).
The log is the container's output, copied to ``record.log_path`` on each read.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from taoskills.jobs.store import JobRecord
from taoskills.platforms import docker_config as dc
from taoskills.platforms.local import LocalArtifacts

if TYPE_CHECKING:
    from taoskills.jobs.checkpoints import CheckpointFile
    from taoskills.jobs.monitor import StatusSummary
    from taoskills.platforms.docker import DockerPlatform


class DockerArtifacts(LocalArtifacts):
    """Results of a docker job: the bind-mounted folder on this host, or the named volume read
    through the job's (stopped) container. The log is the container's output."""

    def __init__(self, platform: DockerPlatform, record: JobRecord) -> None:
        super().__init__(record)
        self.platform, self.record = platform, record
        self.volume = platform.cfg.results == "volume"

    def _container(self):
        return self.platform.find(self.record)

    def read_bytes(self, relpath: str) -> bytes | None:
        if not self.volume:
            return super().read_bytes(relpath)
        c = self._container()
        if c is None:
            return super().read_bytes(relpath)  # fetched copy, if any
        try:
            stream, _ = c.get_archive(f"{dc.RESULTS_MOUNT}/{relpath}")
        except Exception:  # NotFound: the file does not exist (yet)
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            fh = tar.extractfile(member) if member else None
            return fh.read() if fh else None

    def status(self, action: str) -> StatusSummary:
        from taoskills.jobs import monitor

        return monitor.progress_from(self.read_bytes, action.removeprefix("deploy_"))

    def log_tail(self, max_bytes: int) -> str:
        self.platform.sync_log(self.record)
        return super().log_tail(max_bytes)

    def checkpoint_root(self) -> Path:
        """The results folder on this host (bind), or a fresh copy of the volume in it."""
        if self.volume:
            c = self._container()
            if c is not None:
                stream, _ = c.get_archive(dc.RESULTS_MOUNT + "/.")
                self.results_dir.mkdir(parents=True, exist_ok=True)
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    for m in tar.getmembers():  # strip the leading "./" folder
                        m.name = m.name.split("/", 1)[1] if "/" in m.name else ""
                    tar.extractall(self.results_dir, members=[m for m in tar.getmembers() if m.name], filter="data")
        return self.results_dir

    def list_checkpoints(self, action: str = "train") -> list[CheckpointFile]:
        from taoskills.jobs.checkpoints import list_checkpoints

        return list_checkpoints(self.checkpoint_root() / action)
