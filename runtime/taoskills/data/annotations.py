"""Detection dataset checks TAO only fails at run time: COCO and ODVG annotations, label maps,
``dataset.num_classes`` against the category ids, and the validation split.

Rules and their sources (skill bank SKILL.md texts under ``skills/`` and TAO Core 7.3.0 configs):

* DINO (``tao-train-dino`` SKILL.md "Training Requirements"): ``dataset.num_classes`` must be
  ``>= max(category_id) + 1`` -- too low gives ``CUDA error: device-side assert triggered``;
  the validation split is ALWAYS required (DINO builds a val dataloader unconditionally;
  without ``val_data_sources`` it stops with ``FileNotFoundError``).
* Grounding DINO (``tao-train-grounding-dino`` SKILL.md): training reads ODVG JSON Lines
  (``{"filename", "height", "width", "detection": {"instances": [{"bbox": [x1, y1, x2, y2],
  "label": int, "category": str}]}}`` or ``"grounding": {"caption", "regions"}``) plus a label
  map (JSON object ``{"<label id>": "<category name>"}``); validation reads COCO, whose category
  ids should start at 0 for a correct loss.
* COCO (pycocotools ``COCO``, which TAO's loaders use): an object with ``images``,
  ``annotations`` and ``categories`` lists; every annotation's ``image_id`` and
  ``category_id`` name an image and a category; ``bbox`` is ``[x, y, w, h]``.

Every path is checked with ``os.stat`` before it is opened (FIFOs and devices are refused).
Each function returns a list of :class:`~taoskills.data.checks.CheckResult` and never raises
on bad content or a missing key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from taoskills import tao
from taoskills.data.checks import CheckResult, Severity
from taoskills.data.staging import path_kind

_SHOW = 10  # problems listed in one message


def _fail(name: str, field: str, message: str, fix: str, severity: Severity = "error", **details: Any) -> CheckResult:
    return CheckResult(name=name, ok=False, field=field, message=message, fix=fix, severity=severity, details=details)


def _ok(name: str, field: str, message: str, **details: Any) -> CheckResult:
    return CheckResult(name=name, ok=True, field=field, message=message, details=details)


def _listed(items: list[str]) -> str:
    return "; ".join(items[:_SHOW]) + (f"; ... {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _regular_file(path: str | Path, *, field: str, name: str, what: str) -> CheckResult:
    p = Path(str(path)).expanduser()
    kind = path_kind(p)
    if kind == "file":
        return _ok(name, field, f"{p} exists.")
    if kind == "missing":
        return _fail(name, field, f"{what} {p} does not exist.", f"Set {field} to an existing {what}.")
    if kind == "dir":
        return _fail(name, field, f"{p} is a folder, not the {what}.", f"Set {field} to the {what} file itself.")
    return _fail(name, field, f"{p} is a {kind}, not a regular file; it was not opened.", f"Set {field} to a regular file.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_int(v: Any) -> int | None:
    """``v`` when it is an int (not a bool), else ``None``."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


_NUM = (int, float)


def _box_ok(box: list) -> bool:
    """``[x, y, w, h]`` of finite numbers (no bools) with ``w, h >= 0``; ``box`` has 4 items."""
    x, y, w, h = box
    for v in box:
        if type(v) not in _NUM:
            return False
    return math.isfinite(x + y + w + h) and w >= 0 and h >= 0


def _load_json(path: Path) -> Any:
    """Parse a JSON file with orjson (several times faster on 100 MB COCO files); files orjson
    refuses (``NaN``, a BOM, ...) get the standard library's reading and its error message."""
    raw = path.read_bytes()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _images_exist(image_dir: Any, names: list[str], *, field: str, image_field: str, limit: int) -> CheckResult | None:
    if not isinstance(image_dir, str) or not image_dir or "://" in image_dir or image_dir == tao.MISSING:
        return None
    root = Path(image_dir).expanduser()
    if path_kind(root) != "dir":
        return None  # the image-folder check reports it
    sample = names[: max(0, limit)]
    missing = [n for n in sample if path_kind(root / n) != "file"]
    if missing:
        return _fail(
            "annotations.images_exist",
            field,
            f"{len(missing)} of the first {len(sample)} images named in {field} are not regular files under "
            f"{image_field}={root}: {_listed(missing)}.",
            f"Point {image_field} at the folder the annotation file names are relative to, or fix the file names.",
            missing=missing[:50],
            checked=len(sample),
        )
    return _ok("annotations.images_exist", field, f"The first {len(sample)} images named in {field} exist under {root}.")


# ---------------------------------------------------------------------------------------
# COCO


def check_coco(
    json_file: str | Path,
    *,
    field: str,
    image_dir: str | None = None,
    image_field: str = "image_dir",
    num_classes: Any = None,
    num_classes_field: str = "dataset.num_classes",
    ids_from_zero: bool = False,
    sample_images: int = 200,
) -> list[CheckResult]:
    """Check a COCO annotation file.

    ``num_classes``: when given (DINO), it must exceed the largest category id
    (``coco.num_classes``). ``ids_from_zero`` (Grounding DINO val/test): category ids should
    start at 0 (a warning). ``image_dir``: the first ``sample_images`` ``file_name`` entries
    must exist there (``annotations.images_exist``). Check names: ``coco.file``,
    ``coco.parse``, ``coco.categories``, ``coco.annotations``, ``coco.num_classes``,
    ``coco.ids_from_zero``, ``annotations.images_exist``.
    """
    first = _regular_file(json_file, field=field, name="coco.file", what="COCO annotation file")
    if not first.ok:
        return [first]
    results = [first]
    path = Path(str(json_file)).expanduser()
    try:
        data = _load_json(path)
    except (OSError, ValueError) as exc:
        return [*results, _fail("coco.parse", field, f"{path} is not valid JSON: {exc}.", "Fix or re-export the COCO file.")]
    shape = [
        k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or not isinstance(data.get(k), list)
    ]
    if shape:
        return [
            *results,
            _fail(
                "coco.parse",
                field,
                f"{path} is not a COCO detection file: missing or non-list {', '.join(shape)}.",
                "Use a COCO detection JSON object with 'images', 'annotations' and 'categories' lists.",
            ),
        ]
    results.append(_ok("coco.parse", field, f"{path}: {len(data['images'])} images, {len(data['annotations'])} annotations."))

    cat_ids: list[int] = []
    bad_cats: list[str] = []
    for i, cat in enumerate(data["categories"]):
        cid = _as_int(cat.get("id")) if isinstance(cat, dict) else None
        if cid is None:
            bad_cats.append(f"categories[{i}] has no integer id")
        elif cid in cat_ids:
            bad_cats.append(f"category id {cid} appears twice")
        else:
            cat_ids.append(cid)
    if not cat_ids:
        bad_cats.append("no categories")
    results.append(
        _fail("coco.categories", field, f"{path}: {_listed(bad_cats)}.", "Give every category a unique integer 'id'.")
        if bad_cats
        else _ok("coco.categories", field, f"{len(cat_ids)} categories, ids {min(cat_ids)}..{max(cat_ids)}.")
    )

    image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    known = set(cat_ids)
    used: set[int] = set()
    problems: list[str] = []
    # hot loop (1M annotations is a common size): the common, valid case costs a few dict reads
    for i, ann in enumerate(data["annotations"]):
        if type(ann) is not dict:
            problems.append(f"annotations[{i}] is not an object")
            continue
        cid = ann.get("category_id")
        if type(cid) is not int:
            problems.append(f"annotations[{i}] has no integer category_id")
        else:
            used.add(cid)
            if cid not in known:
                problems.append(f"annotations[{i}] category_id {cid} is not in categories")
        if ann.get("image_id") not in image_ids:
            problems.append(f"annotations[{i}] image_id {ann.get('image_id')!r} is not in images")
        box = ann.get("bbox")
        if not (type(box) is list and len(box) == 4 and _box_ok(box)):
            problems.append(f"annotations[{i}] bbox {box!r} is not [x, y, w, h] with w, h >= 0")
    results.append(
        _fail(
            "coco.annotations",
            field,
            f"{len(problems)} problem(s) in {path}: {_listed(problems)}.",
            "Fix the listed annotations (each needs an existing image_id, a listed category_id and an [x, y, w, h] bbox).",
            problems=problems[:50],
        )
        if problems
        else _ok("coco.annotations", field, f"All {len(data['annotations'])} annotations reference known images and categories.")
    )

    all_ids = known | used
    if num_classes is not None and all_ids:
        top = max(all_ids)
        if not _is_int(num_classes) or num_classes <= top:
            results.append(
                _fail(
                    "coco.num_classes",
                    num_classes_field,
                    f"{num_classes_field}={num_classes!r} but the largest category id in {path} is {top}; it must be at "
                    f"least max(category_id) + 1 = {top + 1} (too low fails in training with 'CUDA error: device-side "
                    "assert triggered').",
                    f"Set {num_classes_field}={top + 1} (or more).",
                    max_category_id=top,
                    needed=top + 1,
                )
            )
        else:
            results.append(
                _ok("coco.num_classes", num_classes_field, f"{num_classes_field}={num_classes} > largest category id {top}.")
            )
    if ids_from_zero and all_ids and min(all_ids) != 0:
        results.append(
            _fail(
                "coco.ids_from_zero",
                field,
                f"Category ids in {path} start at {min(all_ids)}; Grounding DINO validation expects them to start at 0 "
                "for a correct loss.",
                "Renumber the validation categories from 0 (keep the order of the label map).",
                severity="warning",
            )
        )
    names = [str(im["file_name"]) for im in data["images"] if isinstance(im, dict) and isinstance(im.get("file_name"), str)]
    check = _images_exist(image_dir, names, field=field, image_field=image_field, limit=sample_images)
    return [*results, *([check] if check else [])]


# ---------------------------------------------------------------------------------------
# ODVG


def _odvg_record(rec: Any, n: int, labels: dict[int, str], problems: list[str]) -> str | None:
    if not isinstance(rec, dict):
        problems.append(f"line {n} is not a JSON object")
        return None
    name = rec.get("filename")
    if not isinstance(name, str) or not name:
        problems.append(f"line {n} has no 'filename'")
    det, grd = rec.get("detection"), rec.get("grounding")
    if isinstance(det, dict) and isinstance(det.get("instances"), list):
        for j, inst in enumerate(det["instances"]):
            box = inst.get("bbox") if isinstance(inst, dict) else None
            if not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)):
                problems.append(f"line {n} instance {j} bbox {box!r} is not [x1, y1, x2, y2]")
            label = _as_int(inst.get("label")) if isinstance(inst, dict) else None
            if label is None:
                problems.append(f"line {n} instance {j} has no integer 'label'")
            else:
                labels.setdefault(label, str(inst.get("category", "")))
    elif isinstance(grd, dict):
        if not isinstance(grd.get("caption"), str) or not grd["caption"].strip():
            problems.append(f"line {n} grounding caption is empty")
        if not isinstance(grd.get("regions"), list):
            problems.append(f"line {n} grounding has no 'regions' list")
    else:
        problems.append(f"line {n} has neither 'detection.instances' nor 'grounding'")
    return name if isinstance(name, str) else None


def check_odvg(
    jsonl_file: str | Path,
    *,
    field: str,
    label_map: str | Path | None = None,
    label_map_field: str = "label_map",
    image_dir: str | None = None,
    image_field: str = "image_dir",
    sample_images: int = 200,
) -> list[CheckResult]:
    """Check a Grounding DINO ODVG JSON Lines file and its label map.

    Check names: ``odvg.file``, ``odvg.parse`` (every non-empty line an ODVG record),
    ``odvg.label_map`` (JSON object of integer-string keys -> names), ``odvg.labels`` (every
    instance label is in the label map; category names that differ from it are a warning),
    ``annotations.images_exist``.
    """
    first = _regular_file(jsonl_file, field=field, name="odvg.file", what="ODVG JSON Lines file")
    if not first.ok:
        return [first]
    results = [first]
    path = Path(str(jsonl_file)).expanduser()
    problems: list[str] = []
    labels: dict[int, str] = {}
    names: list[str] = []
    records = 0
    try:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                records += 1
                try:
                    rec = json.loads(raw)
                except ValueError as exc:
                    problems.append(f"line {n} is not JSON ({exc})")
                    continue
                name = _odvg_record(rec, n, labels, problems)
                if name:
                    names.append(name)
    except OSError as exc:
        return [*results, _fail("odvg.parse", field, f"{path} cannot be read: {exc}.", "Check the file's permissions.")]
    if records == 0:
        problems.append("the file holds no records")
    results.append(
        _fail(
            "odvg.parse",
            field,
            f"{len(problems)} problem(s) in {path}: {_listed(problems)}.",
            "Fix the listed lines: one JSON object per line with 'filename' and 'detection': {'instances': [...]} "
            "(or 'grounding').",
            problems=problems[:50],
        )
        if problems
        else _ok("odvg.parse", field, f"{records} ODVG records, {len(labels)} distinct labels.")
    )

    if label_map not in (None, "", tao.MISSING):
        results += _check_label_map(Path(str(label_map)).expanduser(), labels, field=label_map_field)
    check = _images_exist(image_dir, names, field=field, image_field=image_field, limit=sample_images)
    return [*results, *([check] if check else [])]


def _check_label_map(path: Path, labels: dict[int, str], *, field: str) -> list[CheckResult]:
    first = _regular_file(path, field=field, name="odvg.label_map", what="ODVG label map")
    if not first.ok:
        return [first]
    try:
        data = _load_json(path)
    except (OSError, ValueError) as exc:
        return [_fail("odvg.label_map", field, f"{path} is not valid JSON: {exc}.", "Fix or regenerate the label map.")]
    if not isinstance(data, dict) or not data:
        return [
            _fail("odvg.label_map", field, f"{path} is not a non-empty JSON object.", 'Write {"0": "name0", "1": "name1", ...}.')
        ]
    mapping: dict[int, str] = {}
    bad = []
    for key, value in data.items():
        try:
            mapping[int(key)] = str(value)
        except (TypeError, ValueError):
            bad.append(repr(key))
    if bad:
        return [
            _fail(
                "odvg.label_map",
                field,
                f"{path}: keys {_listed(bad)} are not integer label ids.",
                'Key the label map by the ODVG integer labels as strings: {"0": "name0", ...}.',
            )
        ]
    out = [_ok("odvg.label_map", field, f"{path}: {len(mapping)} labels.")]
    unknown = sorted(set(labels) - set(mapping))
    if unknown:
        out.append(
            _fail(
                "odvg.labels",
                field,
                f"ODVG labels {', '.join(map(str, unknown[:20]))} are not in the label map {path}.",
                "Add the missing labels to the label map or fix the ODVG labels.",
                unknown=unknown[:50],
            )
        )
    else:
        out.append(_ok("odvg.labels", field, f"All {len(labels)} ODVG labels are in the label map."))
    renamed = [
        f"{k}: {labels[k]!r} vs {mapping[k]!r}" for k in sorted(labels) if k in mapping and labels[k] and labels[k] != mapping[k]
    ]
    if renamed:
        out.append(
            _fail(
                "odvg.label_names",
                field,
                f"ODVG category names differ from the label map: {_listed(renamed)}.",
                "Regenerate the label map from the ODVG file so names and ids agree.",
                severity="warning",
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# a whole spec

#: network_arch -> action -> ((spec section under ``dataset``, annotation format), ...)
DETECTION_SECTIONS: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "dino": {
        **dict.fromkeys(("train", "distill"), (("train_data_sources", "coco"), ("val_data_sources", "coco"))),
        "quantize": (("train_data_sources", "coco"), ("val_data_sources", "coco"), ("quant_calibration_data_sources", "coco")),
        **dict.fromkeys(("evaluate", "deploy_evaluate"), (("test_data_sources", "coco"),)),
    },
    "grounding_dino": {
        "train": (("train_data_sources", "odvg"), ("val_data_sources", "coco")),
        "quantize": (("train_data_sources", "odvg"), ("val_data_sources", "coco"), ("quant_calibration_data_sources", "coco")),
        **dict.fromkeys(("evaluate", "deploy_evaluate"), (("test_data_sources", "coco"),)),
    },
}

#: network_arch -> actions whose validation split must be set (error) or should be (warning).
VAL_SPLIT_RULES: dict[str, tuple[frozenset[str], Severity]] = {
    "dino": (frozenset({"train", "distill", "quantize"}), "error"),
    "grounding_dino": (frozenset({"train"}), "warning"),
}


def _blank(v: Any) -> bool:
    return v in (None, "", tao.MISSING) or (isinstance(v, list) and all(_blank(x) for x in v))


def check_val_split(network: str, action: str, spec: Mapping[str, Any]) -> list[CheckResult]:
    """``dataset.val_data_sources`` set with an ``image_dir`` and a ``json_file`` where the
    network needs it (DINO train/distill/quantize: error; Grounding DINO train: warning)."""
    actions, severity = VAL_SPLIT_RULES.get(network, (frozenset(), "error"))
    if action not in actions:
        return []
    key = "dataset.val_data_sources"
    ds = spec.get("dataset") if isinstance(spec, Mapping) else None
    value = ds.get("val_data_sources") if isinstance(ds, Mapping) else None
    entries = value if isinstance(value, list) else [value]
    good = [e for e in entries if isinstance(e, Mapping) and not _blank(e.get("image_dir")) and not _blank(e.get("json_file"))]
    if good:
        return [_ok("dataset.val_split", key, f"{len(good)} validation source(s) set.")]
    why = (
        "DINO always builds a validation dataloader: without it training stops with FileNotFoundError at startup"
        if network == "dino"
        else "no validation split: the validation mAP KPI cannot be computed"
    )
    return [
        _fail(
            "dataset.val_split",
            key,
            f"{key} has no image_dir and json_file ({why}).",
            "Pass data_sources={'eval_dataset': '<folder with images and annotations.json>'} "
            "(with no separate split, reuse the train folder).",
            severity=severity,
        )
    ]


def check_detection_datasets(
    network: str, action: str, spec: Mapping[str, Any], *, sample_images: int = 200
) -> list[CheckResult]:
    """All annotation checks for a DINO / Grounding DINO spec (empty list for other networks).

    Reads the ``dataset.*_data_sources`` sections the action uses (:data:`DETECTION_SECTIONS`):
    COCO files through :func:`check_coco` (DINO: with ``dataset.num_classes``; Grounding DINO
    val/test: ``ids_from_zero``), ODVG files through :func:`check_odvg`, then
    :func:`check_val_split`. Remote (``://``) and unset values are skipped (the validator and
    the builder report required values). Never raises on a missing or malformed key.
    """
    sections = DETECTION_SECTIONS.get(network, {}).get(action, ())
    ds = spec.get("dataset") if isinstance(spec, Mapping) else None
    ds = ds if isinstance(ds, Mapping) else {}
    num_classes = ds.get("num_classes") if network == "dino" else None
    results: list[CheckResult] = []
    for section, fmt in sections:
        value = ds.get(section)
        entries = value if isinstance(value, list) else [value]
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                continue
            base = f"dataset.{section}" + (f"[{i}]" if isinstance(value, list) else "")
            json_file, image_dir = entry.get("json_file"), entry.get("image_dir")
            if _blank(json_file) or not isinstance(json_file, str) or "://" in json_file:
                continue
            folder = image_dir if isinstance(image_dir, str) else None
            field, image_field = f"{base}.json_file", f"{base}.image_dir"
            if fmt == "odvg" or json_file.lower().endswith(".jsonl"):
                label_map = entry.get("label_map")
                results += check_odvg(
                    json_file,
                    field=field,
                    label_map=label_map if isinstance(label_map, str) and "://" not in label_map else None,
                    label_map_field=f"{base}.label_map",
                    image_dir=folder,
                    image_field=image_field,
                    sample_images=sample_images,
                )
            else:
                results += check_coco(
                    json_file,
                    field=field,
                    image_dir=folder,
                    image_field=image_field,
                    num_classes=num_classes,
                    ids_from_zero=network == "grounding_dino",
                    sample_images=sample_images,
                )
    return results + check_val_split(network, action, spec)


__all__ = [
    "DETECTION_SECTIONS",
    "VAL_SPLIT_RULES",
    "check_coco",
    "check_detection_datasets",
    "check_odvg",
    "check_val_split",
]
