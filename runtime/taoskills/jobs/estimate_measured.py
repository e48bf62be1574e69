"""Estimates of DINO, MAE and Grounding DINO train jobs from one measured reference job each (torch-free).

The table rows (``taoskills/engine/throughput.yaml``, filled by ``scripts/bench_estimate.py``)
hold a reference job - its model structure (the spec keys that fix the model's size), batch
size, image side and steps - and, per device type, what that job measured. Rules (each an
approximation stated here):

* **samples**: DINO - images listed in the COCO files of ``dataset.train_data_sources[].json_file``;
  Grounding DINO - records (lines) in the ODVG files of the same key; MAE - image files under the
  folders of ``dataset.train_data_sources`` (:func:`taoskills.tao.iter_image_files`).
* **steps** = ``train.num_epochs x steps per epoch``; steps per epoch = samples / (batch x GPUs),
  rounded up for DINO (its loader keeps the last, smaller batch) and down for MAE and Grounding
  DINO (``drop_last``), as the built-in engine's loaders do.
* **time per step** = the row's ``train_step_s`` x (batch / reference batch) x (side / reference
  side)^2 / GPUs: cost linear in pixels per step (CNN and Swin backbones, deformable attention),
  validation and saves at the reference's share.
* **wall time** = ``fixed_s`` + steps x time per step, x ``speed_factor``.
* **disk**: the reference's measured checkpoint (``reference.checkpoint_mb``: its
  ``model_epoch_*`` file, weights and AdamW's two moments; the same on every device) per save;
  saves and the keep/peak rule as NVDINOv2 (:func:`taoskills.jobs.estimate.saves`,
  :func:`taoskills.jobs.estimate.disk`).
* **memory**: the row's ``peak_rss_gb`` (CPU) or ``peak_mem_gb`` (GPU) at the reference; it
  ignores batch and image size (a note says so when they differ).

A spec whose structure differs from the reference (another backbone, width, depth or query
count) gets no time, memory or disk figure: "no measurement for this structure", with the fix;
a device without a row gets disk only.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from taoskills.jobs import estimate as E
from taoskills.specs.dotted import get_dotted

#: Networks estimated here (their rows in throughput.yaml follow this module's layout).
NETWORKS = ("dino", "grounding_dino", "mae")
#: Loaders that keep the last, incomplete batch (others drop it).
KEEPS_LAST_BATCH = frozenset({"dino"})


def side(network: str, spec: dict[str, Any]) -> int | None:
    """The training image side: MAE ``dataset.augmentation.input_size``; DINO and Grounding DINO
    the largest of ``dataset.augmentation.scales`` (the short side images are resized to)."""
    aug = (spec.get("dataset") or {}).get("augmentation") or {}
    if network == "mae":
        return int(aug["input_size"]) if aug.get("input_size") else None
    scales = aug.get("scales") or []
    return int(max(scales)) if scales else None


def _sources(spec: dict[str, Any]) -> list[Any]:
    raw = (spec.get("dataset") or {}).get("train_data_sources")
    if raw in (None, ""):
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def count_samples(network: str, spec: dict[str, Any]) -> int:
    """Training samples of ``spec`` (see the module rules). Raises ValueError naming the file or
    folder that cannot be read. Folder counts are :func:`taoskills.specs.schedules.count_images`'s
    (remembered while the tree is unchanged); annotation-file counts are remembered per
    (path, size, mtime), so estimate-then-launch parses a large COCO file once."""
    from taoskills.specs.schedules import count_images

    total = 0
    for src in _sources(spec):
        if network == "mae":
            folder = str(Path(str(src)).expanduser())
            n = count_images(folder)
            if n is None:
                raise ValueError(f"dataset.train_data_sources: {folder} is not a folder here")
            total += n
            continue
        path = Path(str((src or {}).get("json_file") or "")).expanduser()
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is None or not path.is_file():
            raise ValueError(f"dataset.train_data_sources[].json_file: {path} is not a file here")
        total += _records(str(path), network == "grounding_dino", st.st_size, st.st_mtime_ns)
    return total


@functools.lru_cache(maxsize=64)
def _records(path: str, odvg: bool, size: int, mtime_ns: int) -> int:
    """Lines of an ODVG file or images of a COCO file (``size``/``mtime_ns``: the cache key)."""
    del size, mtime_ns
    if odvg:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    import orjson

    with open(path, "rb") as fh:
        return len(orjson.loads(fh.read()).get("images") or [])


def _structure_mismatch(spec: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    return [
        f"{key}={get_dotted(spec, key, default=None)!r} (row: {want!r})"
        for key, want in (reference.get("structure") or {}).items()
        if get_dotted(spec, key, default=None) != want
    ]


def estimate_train(
    network: str,
    spec: dict[str, Any],
    *,
    samples: int,
    device: str,
    gpus: int = 1,
    keep: int | None = 1,
    speed_factor: float = 1.0,
) -> dict[str, Any]:
    """Estimate a ``network`` train spec (one of :data:`NETWORKS`). ``samples``: training samples
    (:func:`count_samples`); ``device``, ``gpus``, ``keep``, ``speed_factor`` as
    :func:`taoskills.jobs.estimate.estimate_nvdinov2_train`.

    Returns the same dict shape as that function; ``disk`` sizes are None when the spec's
    structure is not the reference's; ``wall_time_s``/``memory`` are None (``measured`` False)
    when, besides, the device has no row.
    """
    table = E.throughput_table().get(network) or {}
    ref = table.get("reference") or {}
    tr = spec["train"]
    epochs = int(tr["num_epochs"])
    world = max(gpus, 1)
    batch = int(spec["dataset"]["batch_size"])
    per_epoch = samples / max(batch * world, 1)
    per_epoch_steps = math.ceil(per_epoch) if network in KEEPS_LAST_BATCH else int(per_epoch)
    steps = epochs * per_epoch_steps
    saves = E.saves(tr, epochs, steps) if steps else 0
    kept = saves if not keep else min(keep, saves)
    notes: list[str] = []
    if per_epoch_steps == 0:
        notes.append(f"{samples} samples give no full batch of {batch} x {world} device(s): no step would run")
    out: dict[str, Any] = {
        "network_arch": network,
        "action": "train",
        "device": device,
        "images": samples,
        "steps_per_epoch": per_epoch_steps,
        "steps": steps,
        "saves": saves,
        "saves_kept": kept,
        "disk": {"per_save_mb": None, "final_mb": None, "peak_mb": None, "lean_checkpoints": False},
        "wall_time_s": None,
        "memory": None,
        "measured": False,
        "speed_factor": speed_factor,
        "notes": notes,
    }
    mismatch = _structure_mismatch(spec, ref)
    row = (table.get("devices") or {}).get(E.device_key(device, table) or "")
    if mismatch:
        notes.append(
            "no measurement for this structure: " + ", ".join(mismatch) + "; wall time, memory and disk unknown "
            f"(the measured row is the structure of `tao-skills demo --network {network}`; "
            "scripts/bench_estimate.py measures rows)"
        )
        return out
    per_save = float(ref["checkpoint_mb"]) * 1e6  # a property of the structure: the same on every device
    out["disk"] = E.disk(per_save, per_save, kept=kept, saves=saves)
    if not row or not row.get("train_step_s"):
        notes.append(f"no measurement for this device ({device}): wall time and memory unknown; disk is from the reference job")
        return out
    s, ref_side = side(network, spec), ref.get("side")
    pixels = (s / ref_side) ** 2 if s and ref_side else 1.0
    step_s = row["train_step_s"] * batch / ref["batch_size"] * pixels / world
    wall = (row["fixed_s"] + steps * step_s) * speed_factor
    mem_kind = "ram" if device == "cpu" else "gpu"
    base = row.get("peak_rss_gb" if mem_kind == "ram" else "peak_mem_gb")
    if base:
        out["memory"] = {"kind": mem_kind, "peak_gb": round(float(base), 2)}
        if batch != ref["batch_size"] or pixels != 1.0:
            notes.append("memory is the reference job's peak; it does not follow batch size or image side")
    out.update(
        wall_time_s=round(wall, 1), step_s=round(step_s * speed_factor, 3), measured=True, measured_on=row.get("measured_on")
    )
    return out
