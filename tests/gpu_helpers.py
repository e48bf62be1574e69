"""A stand-in ``nvidia-smi`` for the host-check tests: answers ``--query-gpu=<fields>`` with
one CSV row per GPU given, like the real one with ``--format=csv,noheader,nounits``; with
``old_driver`` it refuses the ``compute_cap`` field as drivers older than 510 do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

A100 = {"name": "NVIDIA A100-SXM4-80GB", "compute_cap": "8.0", "memory.total": 81920}
T4 = {"name": "Tesla T4", "compute_cap": "7.5", "memory.total": 15360}
V100 = {"name": "Tesla V100-SXM2-32GB", "compute_cap": "7.0", "memory.total": 32768}

_SCRIPT = """#!{python}
import sys
GPUS = {gpus}
OLD = {old}
query = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--query-gpu=")]
fields = query[0].split(",") if query else ["name"]
if OLD and "compute_cap" in fields:
    print('Field "compute_cap" is not a valid field to query.')
    sys.exit(2)
for gpu in GPUS:
    print(", ".join(str(gpu.get(f, "[N/A]")) for f in fields))
"""


def install_fake_nvidia_smi(bin_dir: Path, gpus: list[dict], *, old_driver: bool = False) -> Path:
    """Write ``bin_dir/nvidia-smi`` reporting ``gpus`` (dicts of nvidia-smi field -> value)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text(_SCRIPT.format(python=sys.executable, gpus=json.dumps(gpus), old=old_driver))
    exe.chmod(0o755)
    return exe
