"""Preflight checks for classification image folders (MAE finetune / evaluate / inference).

An ImageNet-style folder is ``root/<class>/<images>``: every immediate, non-hidden sub-folder is
a class (sorted names = class ids), each class folder holds at least one image, no image lies
loose at the top level. This is the layout TAO's MAE finetune dataloader reads (the MAE skill's
``dataset.train_data_sources`` / ``dataset.val_data_sources``) and the one
:func:`taoskills.engine.mae.data.class_folders` lists; the rules here are the same, checked
without torch before anything is launched.

Rules (skill ``tao-train-mask-auto-encoder``, references/skill_info.yaml error patterns):

* ``train.stage: finetune`` train: train (and val, when set) are class folders; class count ==
  ``model.num_classes`` ("num_classes mismatch (finetune only)"); val class names == train
  class names; at least ``dataset.batch_size`` train images (checked by the generic image
  folder check).
* evaluate with ``train.stage: finetune``: ``dataset.val_data_sources`` is a class folder whose
  class count == ``model.num_classes``.
* ``train.stage: pretrain`` and inference read any image folder (no class structure).
* inference with ``train.stage: pretrain`` (carried from the parent train job) is refused: the
  MAE predict dataloader raises NotImplementedError for pretrain ("Inference with pretrain
  checkpoints").
* a local archive where a folder is expected is refused: the MAE dataloader does not unpack a
  local tar path and sees zero samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taoskills import tao
from taoskills.data.checks import CheckResult

#: Fix and reason of the skill's "Inference with pretrain checkpoints" pattern.
PRETRAIN_INFERENCE_REASON = (
    "The MAE predict dataloader raises NotImplementedError for train.stage: pretrain; inference needs a finetune checkpoint."
)
PRETRAIN_INFERENCE_FIX = (
    "Use a finetune checkpoint for inference and classification-style evaluation (parent_job_id = a train job "
    "with train.stage finetune), or restrict a pretrain-only run to train/evaluate/export."
)
ARCHIVE_REASON = "is a local archive; the MAE dataloader does not unpack a local tar path and would see zero samples"
ARCHIVE_FIX = (
    "Give the archive as a data source (build_spec extracts it into the staging cache) or extract it and "
    "point the key at the extracted images_train / images_val / images_test folder."
)


def class_names(root: str | Path) -> tuple[list[str], dict[str, int], int]:
    """(sorted class names, images per class, images loose at the top level) of ``root``.

    Hidden folders are skipped; images are counted by :func:`taoskills.tao.iter_image_files`.
    """
    base = Path(root).expanduser()
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    counts = {c: sum(1 for _ in tao.iter_image_files(base / c)) for c in classes}
    loose = sum(1 for f in tao.iter_image_files(base) if f.parent == base)
    return classes, counts, loose


def check_class_folder(
    path: Any, *, field: str, num_classes: int | None = None, expect_classes: list[str] | None = None
) -> tuple[list[CheckResult], list[str] | None]:
    """Check one class folder; returns (results, its class names or None when not readable).

    Checks ``classification.archive`` (a local archive is refused), ``classification.classes``
    (class sub-folders, each with >= 1 image, no loose images), ``classification.num_classes``
    (count == ``num_classes`` when given) and ``classification.same_classes`` (names ==
    ``expect_classes`` when given). A missing folder is left to the generic image-folder check.
    """
    if not isinstance(path, str) or not path or path == "???" or "://" in path or "\x00" in path:
        return [], None
    root = Path(path).expanduser()
    if tao.is_archive_name(root.name) and root.is_file():
        return [
            CheckResult(
                name="classification.archive", ok=False, field=field, message=f"{field}={root} {ARCHIVE_REASON}.", fix=ARCHIVE_FIX
            )
        ], None
    if not root.is_dir():
        return [], None
    classes, counts, loose = class_names(root)
    empty = [c for c in classes if counts[c] == 0]
    if not classes or empty or loose:
        if not classes:
            why = f"{field}={root} has no class sub-folders ({loose} images lie at the top level)"
        elif empty:
            why = f"{field}={root}: class folder(s) {', '.join(empty[:10])} hold no images"
        else:
            why = f"{field}={root} has {loose} image(s) outside the class folders"
        return [
            CheckResult(
                name="classification.classes",
                ok=False,
                field=field,
                message=why + ".",
                fix="Put each class's images in its own sub-folder (root/<class_name>/*.jpg, >= 1 image each), as for ImageNet.",
                details={"classes": classes, "counts": counts, "loose": loose},
            )
        ], None
    results = [
        CheckResult(
            name="classification.classes",
            ok=True,
            field=field,
            message=f"{field} has {len(classes)} classes, {sum(counts.values())} images.",
            details={"classes": classes, "counts": counts},
        )
    ]
    if isinstance(num_classes, int) and not isinstance(num_classes, bool):
        ok = num_classes == len(classes)
        results.append(
            CheckResult(
                name="classification.num_classes",
                ok=ok,
                field="model.num_classes",
                message=(
                    f"model.num_classes={num_classes} matches the {len(classes)} classes of {field}."
                    if ok
                    else f"num_classes mismatch (finetune only): model.num_classes={num_classes} but {field} has "
                    f"{len(classes)} classes ({', '.join(classes[:10])})."
                ),
                fix=None
                if ok
                else f"Ensure model.num_classes matches your dataset class count: set model.num_classes={len(classes)}.",
            )
        )
    if expect_classes is not None:
        ok = classes == expect_classes
        results.append(
            CheckResult(
                name="classification.same_classes",
                ok=ok,
                field=field,
                message=(
                    f"{field} has the training classes."
                    if ok
                    else f"{field} classes {classes[:10]} differ from the training classes {expect_classes[:10]} "
                    f"(missing: {sorted(set(expect_classes) - set(classes))[:10]}, extra: {sorted(set(classes) - set(expect_classes))[:10]})."
                ),
                fix=None if ok else "Use the same class sub-folder names in the train and validation folders.",
            )
        )
    return results, classes


def _archive_only(path: Any, field: str) -> list[CheckResult]:
    """Refuse a local archive where any image folder is expected (pretrain, inference)."""
    if isinstance(path, str) and "://" not in path and tao.is_archive_name(path) and Path(path).expanduser().is_file():
        return [
            CheckResult(
                name="classification.archive", ok=False, field=field, message=f"{field}={path} {ARCHIVE_REASON}.", fix=ARCHIVE_FIX
            )
        ]
    return []


def check_mae_datasets(action: str, spec: Mapping[str, Any]) -> list[CheckResult]:
    """MAE data checks for one action's spec (rules in the module docstring). Never raises."""
    ds = spec.get("dataset") if isinstance(spec, Mapping) else None
    ds = ds if isinstance(ds, Mapping) else {}
    train_cfg = spec.get("train") if isinstance(spec, Mapping) else None
    stage = train_cfg.get("stage") if isinstance(train_cfg, Mapping) else None
    model = spec.get("model") if isinstance(spec, Mapping) else None
    num_classes = model.get("num_classes") if isinstance(model, Mapping) else None
    train, val, test = ds.get("train_data_sources"), ds.get("val_data_sources"), ds.get("test_data_sources")
    results: list[CheckResult] = []
    if action == "inference":
        if stage == "pretrain":
            results.append(
                CheckResult(
                    name="mae.pretrain_inference",
                    ok=False,
                    field="train.stage",
                    message=f"Inference with pretrain checkpoints: {PRETRAIN_INFERENCE_REASON}",
                    fix=PRETRAIN_INFERENCE_FIX,
                )
            )
        return results + _archive_only(test, "dataset.test_data_sources")
    if stage != "finetune":
        if action == "train":
            results += _archive_only(train, "dataset.train_data_sources")
        if action in ("train", "evaluate"):
            results += _archive_only(val, "dataset.val_data_sources")
        return results
    if action == "train":
        got, classes = check_class_folder(train, field="dataset.train_data_sources", num_classes=num_classes)
        results += got
        if val not in (None, "") and classes is not None:
            results += check_class_folder(val, field="dataset.val_data_sources", expect_classes=classes)[0]
        elif val not in (None, ""):
            results += _archive_only(val, "dataset.val_data_sources")
    elif action == "evaluate":
        results += check_class_folder(val, field="dataset.val_data_sources", num_classes=num_classes)[0]
    return results


__all__ = ["check_class_folder", "check_mae_datasets", "class_names"]
