"""A real SLURM cluster for the tests (scripts/slurm_cluster.sh start|stop): two nodes, n1 and
n2, each a slurmd on this host with its own port (so multi-node jobs run for real).

``slurm_cluster`` (session fixture, tests/conftest.py) starts munged, slurmctld and the slurmds
in a temporary folder, points ``SLURM_CONF`` at it for this process and every job it submits, and
stops the daemons at the end. When the cluster cannot start (packages missing, daemons
refusing), the test FAILS with the script's reason: the SLURM tests never skip.
The cluster has no accounting database, so ``sacct`` is unavailable and the platform reads
``squeue`` plus the runner's exit-code file (see taoskills/platforms/slurm.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.sh"


class Cluster:
    """The running cluster: ``dir`` (its folder), ``conf`` (slurm.conf), ``nodes`` (node names)."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.conf = folder / "slurm.conf"
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True).stdout
        self.nodes = sorted(set(out.split()))

    def node_of(self, slurm_id: str) -> str:
        """The (first) node the job runs on ("" before it is placed)."""
        out = subprocess.run(["squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%N"], capture_output=True, text=True)
        names = self.scontrol("show", "hostnames", out.stdout.strip()).split() if out.stdout.strip() else []
        return names[0] if names else ""

    def scontrol(self, *args: str) -> str:
        """``scontrol args...``; errors: AssertionError with its output when it fails."""
        proc = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"scontrol {' '.join(args)} failed: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def squeue_state(self, slurm_id: str) -> str:
        """The job's SLURM state as squeue reports it ("" when squeue has forgotten it)."""
        out = subprocess.run(["squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True)
        return out.stdout.strip()

    def wait_nodes_up(self, timeout: float = 60.0) -> None:
        """Wait until every node accepts jobs again (after a simulated failure)."""
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout
            states = out.split()
            if len(states) == len(self.nodes) and all(s in ("idle", "mixed", "allocated") for s in states):
                return
            time.sleep(0.5)
        raise AssertionError(f"nodes {self.nodes} did not all come back (states {states})")


def start(folder: Path) -> Cluster:
    """Start the cluster in ``folder``; ``pytest.fail`` with the reason when it cannot."""
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)
        pytest.fail(
            f"the test SLURM cluster did not start: {proc.stderr.strip() or proc.stdout.strip()} "
            "(needs root and `apt-get install -y slurm-wlm munge`; scripts/setup.sh --dev installs them)",
            pytrace=False,
        )
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    return Cluster(folder)


def stop(cluster: Cluster) -> None:
    """Stop the daemons (by pid file) and forget SLURM_CONF."""
    subprocess.run(["bash", str(SCRIPT), "stop", str(cluster.dir)], capture_output=True, timeout=60)
    if os.environ.get("SLURM_CONF") == str(cluster.conf):
        del os.environ["SLURM_CONF"]
