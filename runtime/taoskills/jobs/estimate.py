"""Know before you spend: wall time, peak memory and disk of a built spec on a host (torch-free).

Inputs: the built spec, the number of images in its data source, the device type that will run
it, and the built-in engine's measured throughput table (``taoskills/engine/throughput.yaml``,
filled by ``scripts/bench_engine.py``). Rules (each an approximation stated here):

* **steps** = ``train.num_epochs x floor(images / (dataset.batch_size x GPUs))`` (the NVDINOv2
  loader drops incomplete batches).
* **time per step** = the table's ``train_step_s`` at its reference config x the work ratio,
  work = ``batch x (n_global x T(global) + n_local x T(local)) x depth x embed_dim^2`` with
  ``T(s) = (s / patch)^2 + 1`` tokens per crop (ViT cost per token ~ depth x d^2; the heads
  and attention's quadratic term are left out), divided by the GPU count.
* **wall time** = ``fixed_s`` + steps x time per step + GB written by saves x ``save_s_per_gb``.
  ``speed_factor`` (default 1) scales all of it: a host measured slower than the table now
  (``scripts/bench_engine.py`` run here) passes its ratio.
* **disk**: parameters counted exactly from the spec (ViT backbone and DINO head shapes as
  :mod:`taoskills.engine.nvdinov2.model` builds them), 4 bytes each (fp32 weights; mixed
  precision keeps fp32 master weights). One save = ``model_epoch`` file (student + teacher +
  AdamW's two moments per student parameter; lean: the two heads only) + ``student_`` and
  ``teacher_`` backbone files. Saves happen every ``train.checkpoint_interval`` epochs (and at
  the last epoch) or steps; the newest ``keep`` remain (env ``TAO_SKILLS_KEEP_CHECKPOINTS``,
  default 1 for runtime jobs, 0 = all; ``train.checkpointer.replace_periodic`` keeps 1) and
  one more exists while a save replaces the oldest (the peak). Logs add a little (``logs_mb``).
* **memory** (CPU: resident set; GPU: allocated device memory) = the table's reference peak +
  4 bytes x 5 x (parameters - reference parameters) (weights, teacher, gradients, two moments)
  + per-image growth x (batch x activation ratio - reference batch), activation ratio =
  tokens per image x depth x d over the reference's.

NVDINOv2 ``train`` on the built-in engine is estimated here; DINO, MAE and Grounding DINO
``train`` by :mod:`taoskills.jobs.estimate_measured` (one measured reference job each); anything
else is :class:`taoskills.errors.NotSupported` (the fix names what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from taoskills.errors import NotSupported

BYTES_PER_PARAM = 4
GB = 1e9
LOGS_MB = 2.0  # status.json, experiment.yaml, TensorBoard events, kpi_curves.png for a short run

#: ViT sizes per ``model.backbone.*_type`` (TAO Core 7.3.0 nvdinov2 ``map_params``; same table as
#: taoskills.engine.nvdinov2.spec.BACKBONES, repeated here so this module stays torch-free).
VIT = {
    "vit_s": {"embed_dim": 384, "depth": 12},
    "vit_b": {"embed_dim": 768, "depth": 12},
    "vit_l": {"embed_dim": 1024, "depth": 24},
}


@lru_cache(maxsize=1)
def throughput_table() -> dict[str, Any]:
    """The packaged ``taoskills/engine/throughput.yaml`` (network -> profile, reference, devices)."""
    text = resources.files("taoskills.engine").joinpath("throughput.yaml").read_text()
    return yaml.safe_load(text) or {}


def vit_params(arch: str, *, patch: int, img_size: int, registers: int = 0) -> int:
    """Parameters of the HF DINOv2 backbone the engine builds (patch embedding, CLS, mask and
    register tokens, position embeddings, ``depth`` blocks with layer scale, final norm)."""
    d, depth = VIT[arch]["embed_dim"], VIT[arch]["depth"]
    block = 12 * d * d + 15 * d  # qkv, proj, fc1 (4d), fc2 with biases, 2 norms, 2 layer scales
    n_pos = (img_size // patch) ** 2 + 1
    return 3 * patch * patch * d + d + 2 * d + registers * d + n_pos * d + depth * block + 2 * d


def head_params(in_dim: int, num_layers: int, hidden: int, bottleneck: int, prototypes: int) -> int:
    """Parameters of the DINO head (MLP to the bottleneck, weight-normalised prototypes without bias)."""
    if num_layers == 1:
        mlp = in_dim * bottleneck + bottleneck
    else:
        mlp = in_dim * hidden + hidden + (num_layers - 2) * (hidden * hidden + hidden) + hidden * bottleneck + bottleneck
    return mlp + prototypes * bottleneck + prototypes


@dataclass(frozen=True)
class Shape:
    """What the estimate needs from an NVDINOv2 spec."""

    arch: str
    backbone: int
    head: int
    n_global: int
    global_size: int
    n_local: int
    local_size: int
    patch: int
    batch: int

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Shape:
        bb, head, tf = spec["model"]["backbone"], spec["model"]["head"], spec["dataset"]["transform"]
        arch = bb["student_type"]
        if arch not in VIT:
            raise NotSupported(
                f"no size table for model.backbone.student_type={arch}",
                field="model.backbone.student_type",
                fix=f"use one of {', '.join(VIT)}",
            )
        d = VIT[arch]["embed_dim"]
        return cls(
            arch=arch,
            backbone=vit_params(
                arch, patch=bb["patch_size"], img_size=bb["img_size"], registers=bb.get("num_register_tokens") or 0
            ),
            head=head_params(d, head["num_layers"], head["hidden_dim"], head["bottleneck_dim"], spec["train"]["num_prototypes"]),
            n_global=tf["n_global_crops"],
            global_size=tf["global_crops_size"],
            n_local=tf["n_local_crops"],
            local_size=tf["local_crops_size"],
            patch=bb["patch_size"],
            batch=spec["dataset"]["batch_size"],
        )

    def tokens(self) -> int:
        """Tokens per image over all crops."""
        t = lambda s: (s // self.patch) ** 2 + 1  # noqa: E731
        return self.n_global * t(self.global_size) + self.n_local * t(self.local_size)

    def work(self) -> float:
        """Relative training cost of one step (batch x tokens x depth x d^2)."""
        v = VIT[self.arch]
        return self.batch * self.tokens() * v["depth"] * v["embed_dim"] ** 2

    def activation(self) -> float:
        """Relative activation memory per image (tokens x depth x d)."""
        v = VIT[self.arch]
        return self.tokens() * v["depth"] * v["embed_dim"]


def reference_shape(ref: dict[str, Any]) -> Shape:
    """The table's reference config as a :class:`Shape` (patch 14, img_size 224, TAO's head)."""
    spec = {
        "model": {
            "backbone": {"student_type": ref["arch"], "patch_size": 14, "img_size": 224, "num_register_tokens": 0},
            "head": {"num_layers": 3, "hidden_dim": 2048, "bottleneck_dim": 384},
        },
        "dataset": {
            "batch_size": ref["batch_size"],
            "transform": {k: ref[k] for k in ("n_global_crops", "global_crops_size", "n_local_crops", "local_crops_size")},
        },
        "train": {"num_prototypes": ref["num_prototypes"]},
    }
    return Shape.from_spec(spec)


def saves(tr: dict[str, Any], epochs: int, total_steps: int) -> int:
    """Checkpoint saves of a run: every ``train.checkpoint_interval`` epochs (and at the last
    epoch) or, with ``checkpoint_interval_unit: step``, every that many steps."""
    interval = max(int(tr.get("checkpoint_interval", 1) or 1), 1)
    if (tr.get("checkpoint_interval_unit") or "epoch") == "step":
        return total_steps // interval
    return epochs // interval + (1 if epochs % interval else 0)


def disk(per_save: float, model_file: float, *, kept: int, saves: int, lean: bool = False) -> dict[str, Any]:
    """The ``disk`` figures of an estimate (MB, 1e6 bytes) from the bytes of one save and of its
    ``model_epoch_*`` file: ``kept`` saves remain at the end, one more exists while a save
    replaces the oldest (the peak, at most ``saves``), plus :data:`LOGS_MB` of logs."""
    logs = LOGS_MB * 1e6
    return {
        "per_save_mb": round(per_save / 1e6, 1),
        "final_mb": round((kept * per_save + logs) / 1e6, 1),
        "peak_mb": round((min(kept + 1, saves) * per_save + logs) / 1e6, 1),
        "model_file_mb": round(model_file / 1e6, 1),
        "lean_checkpoints": lean,
    }


def estimate_nvdinov2_train(
    spec: dict[str, Any],
    *,
    images: int,
    device: str,
    gpus: int = 1,
    keep: int | None = 1,
    lean: bool = False,
    speed_factor: float = 1.0,
) -> dict[str, Any]:
    """Estimate an NVDINOv2 train spec. ``images``: images in ``dataset.train_dataset.images_dir``;
    ``device``: ``"cpu"`` or a GPU name as ``nvidia-smi`` prints it; ``gpus``: devices used;
    ``keep``: saves kept (None or 0: all); ``lean``: lean checkpoints (smoke profile);
    ``speed_factor``: this host's step time over the table's (1 = as measured).

    Returns a dict: ``steps``, ``steps_per_epoch``, ``saves``, ``disk`` {``per_save_mb``,
    ``final_mb``, ``peak_mb``, ``files``}, ``wall_time_s`` (None without a device row),
    ``memory`` {``kind`` ("ram"|"gpu"), ``peak_gb``} (None without a row), ``device``,
    ``measured`` (whether the device has a row) and ``notes``.
    """
    table = throughput_table().get("nvdinov2") or {}
    tr, shape = spec["train"], Shape.from_spec(spec)
    epochs = int(tr["num_epochs"])
    world = max(gpus, 1)
    per_epoch = images // max(shape.batch * world, 1)
    steps = epochs * per_epoch
    n_saves = saves(tr, epochs, steps) if steps else 0
    if (tr.get("checkpointer") or {}).get("replace_periodic"):
        keep = 1
    kept = n_saves if not keep else min(keep, n_saves)
    state = shape.backbone + shape.head
    model_file = (2 * shape.head if lean else 2 * state + 2 * state) * BYTES_PER_PARAM
    companions = 2 * shape.backbone * BYTES_PER_PARAM
    per_save = model_file + companions
    notes: list[str] = []
    if per_epoch == 0:
        notes.append(f"{images} images give no full batch of {shape.batch} x {world} device(s): no step would run")
    out: dict[str, Any] = {
        "network_arch": "nvdinov2",
        "action": "train",
        "device": device,
        "images": images,
        "steps_per_epoch": per_epoch,
        "steps": steps,
        "saves": n_saves,
        "saves_kept": kept,
        "disk": disk(per_save, model_file, kept=kept, saves=n_saves, lean=lean),
        "params_M": round(state / 1e6, 2),
        "wall_time_s": None,
        "memory": None,
        "measured": False,
        "speed_factor": speed_factor,
        "notes": notes,
    }
    row = (table.get("devices") or {}).get(device_key(device, table))
    if not row or not row.get("train_step_s"):
        notes.append(f"no measurement for this device ({device}): wall time and memory unknown; disk is from the spec")
        return out
    ref = reference_shape(table["reference"])
    step_s = row["train_step_s"] * shape.work() / ref.work() / world
    written_gb = n_saves * per_save / GB
    wall = (row["fixed_s"] + steps * step_s + written_gb * row.get("save_s_per_gb", 0.0)) * speed_factor
    ref_state = ref.backbone + ref.head
    mem_kind = "ram" if device == "cpu" else "gpu"
    base = row.get("peak_rss_gb" if mem_kind == "ram" else "peak_mem_gb")
    slope = row.get("rss_per_image_gb" if mem_kind == "ram" else "mem_per_image_gb")
    if base and slope is None:
        notes.append("memory growth per image is not measured for this device: the memory figure ignores batch size")
        slope = 0.0
    if base:
        act = shape.activation() / ref.activation()
        peak_gb = base + 5 * BYTES_PER_PARAM * (state - ref_state) / GB + slope * (shape.batch * act - ref.batch)
        out["memory"] = {"kind": mem_kind, "peak_gb": round(max(peak_gb, 0.1), 2)}
    out.update(
        wall_time_s=round(wall, 1),
        step_s=round(step_s * speed_factor, 3),
        measured=True,
        measured_on=row.get("measured_on"),
    )
    return out


def device_key(device: str, table: dict[str, Any]) -> str | None:
    """The table row for ``device`` (``cpu``, or a GPU name: the row whose key it contains, case-insensitively)."""
    devices = table.get("devices") or {}
    if device in devices:
        return device
    low = device.lower()
    for key in devices:
        if key != "cpu" and key.lower() in low:
            return key
    return None


def fits(est: dict[str, Any], *, free_disk_gb: float | None, gpu_memory_gb: float | None) -> list[dict[str, str]]:
    """Problems that would stop the run: ``[{"field", "reason", "fix"}]`` (empty when it fits).

    Disk: the peak (one save more than kept) against ``free_disk_gb`` of the results_dir's
    file system. GPU memory: the estimate against ``gpu_memory_gb`` when both are known.
    """
    issues: list[dict[str, str]] = []
    peak_mb = est["disk"].get("peak_mb")  # None: disk unknown (no measured structure), nothing to refuse
    peak_gb = (peak_mb or 0.0) / 1e3
    if free_disk_gb is not None and peak_gb > free_disk_gb:
        issues.append(
            {
                "field": "train.checkpoint_interval",
                "reason": f"the run would write up to {peak_gb:.2f} GB of checkpoints and logs but only "
                f"{free_disk_gb:.2f} GB is free where results_dir lies",
                "fix": "save less (a larger train.checkpoint_interval; keep fewer saves with env "
                "TAO_SKILLS_KEEP_CHECKPOINTS=1), free disk space, or run on another host or platform",
            }
        )
    mem = est.get("memory") or {}
    if mem.get("kind") == "gpu" and gpu_memory_gb is not None and mem["peak_gb"] > gpu_memory_gb:
        issues.append(
            {
                "field": "dataset.batch_size",
                "reason": f"the run needs about {mem['peak_gb']:.1f} GB of GPU memory; this GPU has {gpu_memory_gb:.1f} GB",
                "fix": "lower dataset.batch_size (or the crop sizes), use a smaller model.backbone.student_type, "
                "or run on a host with larger GPUs",
            }
        )
    return issues


def not_supported(network: str | None, action: str, engine: str) -> NotSupported:
    """The NotSupported error for what has no throughput table yet."""
    return NotSupported(
        f"no estimate for {network} {action} on the {engine} engine: the throughput table "
        "(taoskills/engine/throughput.yaml) covers the train action of NVDINOv2, DINO, MAE and "
        "Grounding DINO on the built-in engine",
        field="skill",
        fix="launch without an estimate: only train runs on the built-in engine are estimated",
    )
