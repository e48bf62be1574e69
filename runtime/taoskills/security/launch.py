"""Launch only what can run.

Checks made before a job record is written (nothing is launched, nothing left behind
when one fails):

* :func:`check_checkpoints` - every checkpoint input of the action that is set
  (``pretrained_model_path``, ``resume_training_checkpoint_path``, ``checkpoint``, ...)
  exists, is a regular file, and passes a cheap header check (:func:`checkpoint_format`):
  a PyTorch zip archive (``PK\\x03\\x04`` with a ``*/data.pkl`` member, torch >= 1.6 ``torch.save``),
  a legacy pickle (protocol byte ``0x80``), or safetensors (8-byte header length + JSON).
  Where the network's state-dict key names are known (:data:`NETWORK_MARKERS`), at least
  one of them must appear in the pickle/header (pickled key strings are plain bytes), so
  a checkpoint of another network is refused without loading it.
* :func:`check_resume_source` - one job per resume source: the resumed job must be
  finished, and no other PENDING/RUNNING job may resume from it.
"""

from __future__ import annotations

import json
import stat
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from taoskills.errors import PreflightError, SpecError

#: Last segments of spec keys that hold a model checkpoint to load.
CHECKPOINT_KEYS = frozenset(
    {
        "pretrained_model_path",
        "pretrained_backbone_path",
        "resume_training_checkpoint_path",
        "pretrained_teacher_model_path",
        "checkpoint",
        "resume_model",
    }
)
#: Byte strings one of which appears in a checkpoint of the network (its state-dict keys).
#: NVDINOv2: the built-in engine's files hold HF Dinov2 keys (``embeddings.*``,
#: ``encoder.layer.N.*``; runtime/taoskills/engine/README.md) or TAO's ``backbone`` prefix.
NETWORK_MARKERS: dict[str, tuple[bytes, ...]] = {
    "nvdinov2": (b"embeddings.", b"encoder.layer", b"backbone", b"blocks."),
}
MAX_SCAN = 64 << 20  # bytes of data.pkl / header read for the marker check


def checkpoint_format(path: Path) -> tuple[str, bytes]:
    """(format, bytes to scan for key names) of a checkpoint file, by its header only.

    format: ``torch-zip``, ``pickle`` or ``safetensors``. Raises ValueError naming why the
    file is not a checkpoint.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head.startswith(b"PK\x03\x04"):
            fh.seek(0)
            try:
                with zipfile.ZipFile(fh) as zf:
                    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                    if not pkl:
                        raise ValueError("is a zip archive without data.pkl, not a PyTorch checkpoint")
                    with zf.open(pkl[0]) as member:
                        return "torch-zip", member.read(MAX_SCAN)
            except zipfile.BadZipFile as exc:
                raise ValueError("is a damaged zip archive, not a loadable PyTorch checkpoint") from exc
        if head[:1] == b"\x80" and 2 <= head[1] <= 5:
            fh.seek(0)
            return "pickle", fh.read(MAX_SCAN)
        if len(head) >= 9:
            (n,) = struct.unpack("<Q", head[:8])
            if 2 <= n <= MAX_SCAN and head[8:9] == b"{":
                fh.seek(8)
                raw = fh.read(n)
                try:
                    json.loads(raw)
                except ValueError as exc:
                    raise ValueError("has a damaged safetensors header") from exc
                return "safetensors", raw
    raise ValueError("is not a checkpoint (no PyTorch zip, pickle or safetensors header)")


def check_checkpoint_file(value: Any, field: str, network_arch: str | None) -> None:
    """Raise SpecError unless ``value`` names a loadable checkpoint of ``network_arch``."""
    if value in (None, "", "???") or not isinstance(value, str):
        return
    if "://" in value:
        return  # remote model URIs are the platform's business (preflight refuses them locally)
    p = Path(value).expanduser()
    fix = f"pass the path of a {network_arch or 'model'} checkpoint file (.pth/.ckpt/.safetensors) for {field}"
    try:
        st = p.stat()
    except OSError:
        raise SpecError(f"{field}: checkpoint file {value} does not exist", field=field, fix=fix) from None
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{field}: {value} is not a regular file", field=field, fix=fix)
    try:
        fmt, scan = checkpoint_format(p)
    except (OSError, ValueError) as exc:
        raise SpecError(f"{field}: {value} {exc}", field=field, fix=fix) from None
    markers = NETWORK_MARKERS.get(network_arch or "")
    if markers and not any(m in scan for m in markers):
        raise SpecError(
            f"{field}: {value} is a {fmt} file but holds none of the {network_arch} weight names",
            field=field,
            fix=f"{fix}; a checkpoint of another network cannot be loaded",
        )


def checkpoint_fields(spec: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every checkpoint key (:data:`CHECKPOINT_KEYS`) set in ``spec``."""
    for k, v in spec.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from checkpoint_fields(v, key + ".")
        elif str(k) in CHECKPOINT_KEYS and v not in (None, "", "???"):
            yield key, v


def check_checkpoints(spec: Mapping[str, Any], network_arch: str | None) -> None:
    """Check every checkpoint path the spec sets (see :func:`check_checkpoint_file`)."""
    for key, value in checkpoint_fields(spec):
        check_checkpoint_file(value, key, network_arch)


def check_results_dirs(spec: Mapping[str, Any]) -> None:
    """Every ``results_dir`` the spec sets (top level or per action) is an absolute path."""
    for key, value in _results_dirs(spec):
        if not isinstance(value, str) or not value.startswith("/"):
            raise SpecError(
                f"{key} must be an absolute folder path",
                field=key,
                fix=f"leave {key} unset (the job's own results folder is used) or give an absolute path",
            )


def _results_dirs(spec: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in spec.items():
        if isinstance(v, Mapping):
            yield from _results_dirs(v, f"{prefix}{k}.")
        elif k == "results_dir" and v not in (None, "", "???"):
            yield f"{prefix}{k}", v


def check_launchable(spec: Mapping[str, Any], network_arch: str | None) -> None:
    """All launch checks on a built spec: :func:`check_results_dirs`, :func:`check_checkpoints`."""
    check_results_dirs(spec)
    check_checkpoints(spec, network_arch)


def check_resume_source(store, resume_job_id: str | None, refresh=None) -> None:
    """One job per resume source. ``refresh(job_id)`` updates a job's stored state first
    (the service's ``job_status``). Raises PreflightError when the source still runs or
    another unfinished job already resumes from it."""
    if not resume_job_id:
        return
    if refresh is not None:
        refresh(resume_job_id)
    src = store.get(resume_job_id)
    if src.status in ("PENDING", "RUNNING", "UNKNOWN"):
        raise PreflightError(
            f"job {resume_job_id} is still {src.status}; a running job cannot be resumed",
            field="resume_job_id",
            fix="wait for it to finish or cancel it (cancel_job), then resume",
        )
    for rec in store.list(status=["PENDING", "RUNNING", "UNKNOWN"], limit=None):
        if (rec.labels or {}).get("resume_job_id") == resume_job_id:
            if refresh is not None and refresh(rec.job_id).status not in ("PENDING", "RUNNING", "UNKNOWN"):
                continue
            raise PreflightError(
                f"job {rec.job_id} is already resuming from {resume_job_id}",
                field="resume_job_id",
                fix=f"wait for {rec.job_id} to finish or cancel it; one job per resume source at a time",
            )


__all__ = [
    "check_launchable",
    "check_results_dirs",
    "check_checkpoints",
    "check_checkpoint_file",
    "check_resume_source",
    "checkpoint_format",
    "CHECKPOINT_KEYS",
]
