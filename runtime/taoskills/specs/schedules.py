"""Schedule fitting: template schedules sized for long runs, scaled to the run being built.

TAO's templates carry schedule lengths written for full-size training (TAO Core 7.3.0
nvdinov2 ``learning_rate.warm_up_steps 100000``, ``max_decay_steps 2500000``; MAE
``milestones [88, 96]`` for a 100-epoch run). A short run kept at those values never leaves
its warm-up: the learning rate stays near ``val_start`` and nothing is learnt. Each network
declares its schedule keys here (a registry: network_arch -> :class:`ScheduleFit`); the spec
builder calls :func:`fit_schedules` after overrides, so a value the caller set is never changed.

Rules (also in ``skills/tao-train-nvdinov2/SKILL.md``):

* **Step schedules (NVDINOv2).** Total optimiser steps
  ``T = num_epochs x ceil(images / (batch_size x num_gpus))`` (images counted in the staged
  ``dataset.train_dataset.images_dir`` when it is a local folder). When ``T`` is below the
  learning-rate warm-up (the run could not finish warm-up), every scheduler key the caller
  did not set is fitted to the run, in the proportions of the DINOv2 recipe
  (facebookresearch/dinov2 ``ssl_default_config.yaml``: 10 warm-up epochs, 30 teacher
  temperature warm-up epochs and 1 frozen last-layer epoch of 100):

  - ``max_decay_steps`` (learning_rate, last_layer_learning_rate, weight_decay, momentum) -> ``T``;
  - ``warm_up_steps`` of learning_rate and last_layer_learning_rate -> ``max(1, ceil(0.1 T))``;
  - teacher_temperature ``warm_up_steps`` and ``max_decay_steps`` -> ``max(1, ceil(0.3 T))``;
  - last_layer_learning_rate ``freeze_steps`` -> ``floor(0.01 T)``;
  - a non-zero weight_decay or momentum ``warm_up_steps`` -> ``ceil(0.1 T)``;
  - learning_rate and last_layer_learning_rate ``val_base`` -> ``0.004 x sqrt(batch_size x
    num_gpus / 1024)`` when larger than the template's (DINOv2 ``optim.base_lr 0.004`` with
    ``scaling_rule sqrt_wrt_1024``; TAO's 7.07e-06 assumes millions of steps).

* **Epoch milestones (MAE).** Milestones beyond ``num_epochs`` are scaled to the same
  fractions of the run (``s x num_epochs // 100``, clipped to ``[1, num_epochs]``).

Whatever is left (caller-set values, unknown image counts), a warm-up longer than the run's
total steps is reported as a warning.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taoskills.specs.dotted import get_dotted, set_dotted

#: Fractions of the run (DINOv2 ssl_default_config: warmup_epochs 10, warmup_teacher_temp_epochs
#: 30, freeze_last_layer_epochs 1, of epochs 100).
WARMUP_FRACTION = 0.1
TEACHER_WARMUP_FRACTION = 0.3
FREEZE_FRACTION = 0.01
#: DINOv2 ssl_default_config ``optim.base_lr`` (scaled by sqrt(global batch / 1024)).
BASE_LR = 0.004


@dataclass
class FitResult:
    """What :func:`fit_schedules` did: ``changed`` dotted key -> (old, new); ``notes``; ``warnings``;
    ``total_steps`` (None when the image count is unknown)."""

    changed: dict[str, tuple[Any, Any]]
    notes: list[str]
    warnings: list[str]
    total_steps: int | None = None


@dataclass(frozen=True)
class ScheduleFit:
    """A network's schedule keys and the function that fits them (``fn(spec, explicit, result)``)."""

    network_arch: str
    keys: tuple[str, ...]
    fn: Callable[[dict, set[str], FitResult], None]


REGISTRY: dict[str, ScheduleFit] = {}


def register(fit: ScheduleFit) -> ScheduleFit:
    REGISTRY[fit.network_arch] = fit
    return fit


def fit_schedules(network_arch: str | None, spec: dict, explicit: set[str]) -> FitResult:
    """Fit ``spec``'s schedules (in place) to the run's length; keys in ``explicit`` are kept.

    Returns a :class:`FitResult`; a network with no registered schedule returns an empty one.
    """
    result = FitResult(changed={}, notes=[], warnings=[])
    fit = REGISTRY.get(network_arch or "")
    if fit is not None and spec.get("train") is not None:
        fit.fn(spec, explicit, result)
    return result


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: folder -> (mtime_ns of every folder under it, image count); see :func:`count_images`.
_COUNTS: dict[str, tuple[dict[str, int], int]] = {}
_COUNTS_MAX = 256
#: A folder changed this recently may change again within the file system's timestamp
#: granularity without its mtime moving, so its count is not remembered ("racy" entries).
_RACY_NS = 2_000_000_000


def count_images(folder: Any) -> int | None:
    """Images under a local folder (:func:`taoskills.tao.iter_image_files`); None when not a local folder.

    Remembered per folder while no folder under it changes (every folder's mtime is compared,
    which an added, removed or renamed file moves); a tree holding symbolic links, or one changed
    in the last two seconds, is counted afresh each time.
    """
    if not isinstance(folder, str) or not folder or "://" in folder or not os.path.isdir(folder):
        return None
    hit = _COUNTS.get(folder)
    if hit is not None and _unchanged(hit[0]):
        return hit[1]
    from taoskills import tao

    mtimes: dict[str, int] | None = {}
    count = 0
    now = time.time_ns()
    for dirpath, dirnames, filenames in os.walk(folder):
        try:
            st = os.stat(dirpath)
        except OSError:
            mtimes = None
            continue
        if mtimes is not None:
            mtimes[dirpath] = st.st_mtime_ns
            if now - st.st_mtime_ns < _RACY_NS or any(os.path.islink(os.path.join(dirpath, n)) for n in dirnames + filenames):
                mtimes = None
    count = sum(1 for _ in tao.iter_image_files(folder))
    if mtimes is not None:
        if len(_COUNTS) >= _COUNTS_MAX:
            _COUNTS.clear()
        _COUNTS[folder] = (mtimes, count)
    else:
        _COUNTS.pop(folder, None)
    return count


def _unchanged(mtimes: dict[str, int]) -> bool:
    try:
        return all(os.stat(d).st_mtime_ns == m for d, m in mtimes.items())
    except OSError:
        return False


def total_steps(epochs: int | None, images: int | None, batch: int | None, gpus: int | None) -> int | None:
    """``epochs x ceil(images / (batch x gpus))`` optimiser steps; None when a factor is unknown."""
    if not epochs or not images or not batch or batch < 1:
        return None
    return epochs * math.ceil(images / (batch * max(1, gpus or 1)))


_NV = "train.schedulers."
_NV_DECAY = ("learning_rate", "last_layer_learning_rate", "weight_decay", "momentum")


def _nvdinov2_targets(steps: int, global_batch: int = 1024) -> dict[str, Any]:
    warm = max(1, math.ceil(WARMUP_FRACTION * steps))
    teacher = max(1, math.ceil(TEACHER_WARMUP_FRACTION * steps))
    out = {f"{_NV}{name}.max_decay_steps": steps for name in _NV_DECAY}
    out[f"{_NV}learning_rate.warm_up_steps"] = warm
    out[f"{_NV}last_layer_learning_rate.warm_up_steps"] = warm
    out[f"{_NV}last_layer_learning_rate.freeze_steps"] = math.floor(FREEZE_FRACTION * steps)
    out[f"{_NV}teacher_temperature.warm_up_steps"] = teacher
    out[f"{_NV}teacher_temperature.max_decay_steps"] = teacher
    for name in ("weight_decay", "momentum"):
        out[f"{_NV}{name}.warm_up_steps"] = warm  # only applied when the template's value is non-zero
    lr = round(BASE_LR * math.sqrt(global_batch / 1024), 8)
    out[f"{_NV}learning_rate.val_base"] = lr  # only applied when larger than the template's value
    out[f"{_NV}last_layer_learning_rate.val_base"] = lr
    return out


def _fit_nvdinov2(spec: dict, explicit: set[str], result: FitResult) -> None:
    epochs = _int(get_dotted(spec, "train.num_epochs", default=None))
    batch = _int(get_dotted(spec, "dataset.batch_size", default=None))
    gpus = _int(get_dotted(spec, "train.num_gpus", default=None))
    images = count_images(get_dotted(spec, "dataset.train_dataset.images_dir", default=None))
    steps = total_steps(epochs, images, batch, gpus)
    result.total_steps = steps
    lr_warm = _int(get_dotted(spec, f"{_NV}learning_rate.warm_up_steps", default=None))
    if steps is not None and lr_warm is not None and steps < lr_warm:
        for key, new in _nvdinov2_targets(steps, batch * max(1, gpus or 1)).items():
            old = get_dotted(spec, key, default=None)
            if key in explicit or not isinstance(old, int | float) or isinstance(old, bool) or old == new:
                continue
            if key.endswith(("weight_decay.warm_up_steps", "momentum.warm_up_steps")) and old == 0:
                continue
            if key.endswith("val_base") and old >= new:
                continue
            set_dotted(spec, key, new)
            result.changed[key] = (old, new)
        if result.changed:
            result.notes.append(
                f"schedules fitted to the run: {steps} total steps ({epochs} epochs x ceil({images} images / "
                f"({batch} batch x {max(1, gpus or 1)} gpus))) is below learning_rate.warm_up_steps {lr_warm}; "
                f"warm-up 10%, teacher temperature 30%, decay to the last step, base lr 0.004 x sqrt(batch / 1024) "
                f"(DINOv2 recipe); changed "
                + ", ".join(f"{k.removeprefix(_NV)} {a}->{b}" for k, (a, b) in result.changed.items())
            )
    if steps is None:
        return
    for name in ("learning_rate", "last_layer_learning_rate", "teacher_temperature"):
        warm = _int(get_dotted(spec, f"{_NV}{name}.warm_up_steps", default=None))
        if warm is not None and warm > steps:
            result.warnings.append(
                f"{_NV}{name}.warm_up_steps={warm} exceeds the run's {steps} total steps: the run ends "
                f"inside its warm-up and learns little; unset it (the builder then fits it) or set it below {steps}"
            )


register(ScheduleFit("nvdinov2", tuple(_nvdinov2_targets(1)), _fit_nvdinov2))


#: MAE: TAO Core 7.3.0 ships ``milestones [88, 96]`` with ``num_epochs 10``: decay points at 88%
#: and 96% of a 100-epoch run, which a 10-epoch run never reaches (constraint C9).
_MAE_KEY, _MAE_LENGTH = "train.optim.milestones", 100


def _fit_mae(spec: dict, explicit: set[str], result: FitResult) -> None:
    steps = get_dotted(spec, _MAE_KEY, default=None)
    epochs = _int(get_dotted(spec, "train.num_epochs", default=None))
    if _MAE_KEY in explicit or not isinstance(steps, list) or epochs is None:
        return
    if not steps or not all(_int(s) is not None for s in steps) or max(steps) <= epochs:
        return
    scaled = sorted({max(1, min(epochs, s * epochs // _MAE_LENGTH)) for s in steps})
    set_dotted(spec, _MAE_KEY, scaled)
    result.changed[_MAE_KEY] = (steps, scaled)
    result.notes.append(
        f"{_MAE_KEY} {steps} lie beyond train.num_epochs {epochs}; scaled to {scaled} (same fractions of the run)"
    )


register(ScheduleFit("mae", (_MAE_KEY,), _fit_mae))
