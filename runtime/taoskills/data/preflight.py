"""Preflight checks: data, host and credentials, checked before anything is launched.

Each ``check_*`` function returns a list of :class:`CheckResult`; :func:`run_preflight`
gathers them into a :class:`PreflightReport` whose ``raise_if_failed()`` raises
:class:`~taoskills.errors.PreflightError` carrying one :class:`~taoskills.errors.Issue` per
failed check (field, reason, fix). Checks of severity ``warning`` never fail a report.

Scope follows DESIGN.md "preflight" and TAO's SDK preflight (docs/tao-contract.md §1.12:
tool present, GPU/host checks) plus §4.5 C13 (``images_dir`` must be a folder, not an
archive, when the TAO CLI runs). Dataset checks: image folders (:func:`check_image_folder`,
counting images by the one rule of :func:`taoskills.tao.iter_image_files`, which the
built-in engine lists with too), COCO and ODVG annotations, ``dataset.num_classes`` against
the category ids and the validation split (:mod:`taoskills.data.annotations`, re-exported
here: :func:`check_coco`, :func:`check_odvg`, :func:`check_val_split`,
:func:`check_detection_datasets`).

Host checks moved to the platforms (:mod:`taoskills.platforms.hostchecks`); ``check_host``
is re-exported here. No heavy module (torch, PIL) is imported at module import time.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from taoskills import tao
from taoskills.data.annotations import check_coco, check_detection_datasets, check_odvg, check_val_split
from taoskills.data.checks import CheckResult, Severity
from taoskills.data.staging import path_kind
from taoskills.errors import Issue, NotSupported, PreflightError

#: Image extensions counted in an image folder: the one list in :mod:`taoskills.tao`.
IMAGE_EXTENSIONS: tuple[str, ...] = tao.IMAGE_EXTENSIONS

#: Archive suffixes recognised when a file is given where a folder is expected.
_ARCHIVE_SUFFIXES: tuple[str, ...] = tao.ARCHIVE_SUFFIXES


class PreflightReport(BaseModel):
    """All checks of one preflight run.

    ``ok``: no check of severity ``error`` failed. ``checks``: every result, in order.
    ``issues``: :meth:`Issue.as_dict` for each failed error check. ``warnings``: messages of
    failed warning checks and notes (e.g. "PIL not installed").
    """

    ok: bool
    checks: list[CheckResult]
    issues: list[dict[str, str]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def failed(self) -> list[CheckResult]:
        """The checks of severity ``error`` that failed."""
        return [c for c in self.checks if not c.ok and c.severity == "error"]

    def raise_if_failed(self) -> None:
        """Raise :class:`PreflightError` (with one Issue per failed check) unless ``ok``."""
        if self.ok:
            return
        issues = [_issue(c) for c in self.failed()]
        first = issues[0]
        raise PreflightError(
            f"Preflight failed: {len(issues)} check(s) failed; first: {first.field}: {first.reason}",
            field=first.field,
            fix=first.fix,
            issues=issues,
            details={"checks": [c.model_dump(mode="json") for c in self.checks]},
        )


def _issue(c: CheckResult) -> Issue:
    return Issue(field=c.field or c.name, reason=c.message, fix=c.fix or "See the check's message.", code=c.name)


def run_preflight(*groups: CheckResult | Iterable[CheckResult]) -> PreflightReport:
    """Gather check results (single results or lists of them) into a :class:`PreflightReport`."""
    checks: list[CheckResult] = []
    for group in groups:
        if isinstance(group, CheckResult):
            checks.append(group)
        else:
            checks.extend(group)
    failed = [c for c in checks if not c.ok and c.severity == "error"]
    warnings = [c.message for c in checks if (not c.ok and c.severity == "warning")]
    warnings += [n for c in checks for n in c.details.get("notes", [])]
    return PreflightReport(
        ok=not failed,
        checks=checks,
        issues=[_issue(c).as_dict() for c in failed],
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------
# data


def check_dataset(path: str | Path, fmt: str, *, field: str, **kwargs: Any) -> list[CheckResult]:
    """Dispatch on a skill's data format (skill_info ``data_formats``).

    ``ssl``, ``image_folder``, ``images``, ``classification`` -> :func:`check_image_folder`;
    ``coco``/``coco_raw`` -> :func:`check_coco` (``path`` is the JSON file); ``odvg`` ->
    :func:`check_odvg` (``path`` is the JSON Lines file; ``label_map=`` the label map).
    ``kwargs`` are passed on. Other formats -> NotSupported.
    """
    low = fmt.lower()
    if low in ("ssl", "image_folder", "images", "classification", "image_classification"):
        return check_image_folder(path, field=field, **kwargs)
    if low in ("coco", "coco_raw"):
        return check_coco(path, field=field, **kwargs)
    if low == "odvg":
        return check_odvg(path, field=field, **kwargs)
    raise NotSupported(
        f"{field}: preflight checks for {fmt!r} datasets are not implemented.",
        field=field,
        fix="Use one of the formats ssl, image_folder, coco, odvg, or check the data by hand.",
    )


def _is_archive_name(name: str) -> bool:
    return tao.is_archive_name(name)


def check_image_folder(
    path: str | Path,
    *,
    field: str,
    min_images: int = 1,
    batch_size: int | None = None,
    sample_limit: int | None = None,
) -> list[CheckResult]:
    """Check an image folder a TAO action reads (e.g. NVDINOv2 ``dataset.train_dataset.images_dir``).

    Checks, in order (later ones are skipped when an earlier one makes them meaningless):

    * ``image_folder.exists``: the path exists;
    * ``image_folder.is_folder``: it is a folder; an archive gets the fix "stage it / pass the
      extracted folder" (TAO's CLI reads folders: docs/tao-contract.md §4.5 C13);
    * ``image_folder.readable``: images (:func:`taoskills.tao.iter_image_files`: ``IMAGE_EXTENSIONS``,
      recursive, hidden files and folders skipped, regular files only) open and verify with PIL (``Image.verify``); without PIL only the
      file's magic bytes are checked and a note says so. ``sample_limit`` checks only the
      first N images (sorted paths); ``None`` checks all. Unreadable files are listed in
      ``details["corrupt"]`` (relative paths);
    * ``image_folder.count``: at least ``min_images`` readable images (0 -> "empty");
    * ``image_folder.batch``: when ``batch_size`` is given, at least one full batch
      (pass batch_size x number of GPUs for data-parallel runs).
    """
    if not isinstance(path, (str, os.PathLike)) or str(path) in ("", "???") or "\x00" in str(path):
        # security: a missing or malformed key is a failed check, never an internal error
        return [
            _folder_check(
                "set",
                field,
                f"{field} is not set to a folder path.",
                fix=f"Set {field} to an existing folder of images (build_spec fills it from data_sources).",
            )
        ]
    folder = Path(path).expanduser()
    results: list[CheckResult] = []
    if not folder.exists():
        hint = ""
        for suffix in _ARCHIVE_SUFFIXES:
            if folder.with_name(folder.name + suffix).is_file():
                hint = f" An archive {folder.name + suffix} sits beside it: stage it first."
                break
        results.append(
            _folder_check(
                "exists",
                field,
                f"{folder} does not exist.{hint}",
                fix=f"Set {field} to an existing folder of images (or an archive to stage).",
            )
        )
        return results
    results.append(_folder_check("exists", field, f"{folder} exists."))

    kind = path_kind(folder)
    if kind not in ("dir", "file"):
        results.append(
            _folder_check(
                "is_folder",
                field,
                f"{folder} is a {kind}, not a folder of images; it was not opened.",
                fix=f"Set {field} to the folder holding the images.",
            )
        )
        return results
    if kind != "dir":
        if _is_archive_name(folder.name):
            results.append(
                _folder_check(
                    "is_folder",
                    field,
                    f"{folder} is an archive; TAO reads {field} as a folder of images.",
                    fix="Give it as a data source (build_spec extracts it into the staging cache) or pass the extracted folder.",
                )
            )
        else:
            results.append(
                _folder_check(
                    "is_folder",
                    field,
                    f"{folder} is a file, not a folder of images.",
                    fix=f"Set {field} to the folder holding the images.",
                )
            )
        return results
    results.append(_folder_check("is_folder", field, f"{folder} is a folder."))

    images, archives, others = _scan(folder)
    checker, notes = _image_checker()
    to_check = images if sample_limit is None else images[: max(0, sample_limit)]
    corrupt: list[str] = []
    for img in to_check:
        problem = checker(img)
        if problem:
            corrupt.append(f"{img.relative_to(folder).as_posix()} ({problem})")
    readable = len(images) - len(corrupt)
    method = "PIL verify" if not notes else "magic bytes"
    scope = "all" if sample_limit is None or sample_limit >= len(images) else f"first {len(to_check)} of"
    if corrupt:
        shown = "; ".join(corrupt[:10]) + (f"; ... {len(corrupt) - 10} more" if len(corrupt) > 10 else "")
        results.append(
            _folder_check(
                "readable",
                field,
                f"{len(corrupt)} of {len(to_check)} checked images in {folder} are unreadable or corrupt: {shown}.",
                fix="Remove or replace the listed files, then run the preflight again.",
                details={"corrupt": corrupt, "checked": len(to_check), "method": method, "notes": notes},
            )
        )
    else:
        results.append(
            _folder_check(
                "readable",
                field,
                f"Checked {scope} {len(images)} images ({method}): all readable.",
                details={"checked": len(to_check), "method": method, "notes": notes},
            )
        )

    archive_names = [a.relative_to(folder).as_posix() for a in archives[:10]]
    count_details: dict[str, Any] = {
        "images": len(images),
        "readable": readable,
        "other_files": others,
        "archives": archive_names,
    }
    if not images:
        hint = f" It holds archives ({', '.join(archive_names)}): extract them." if archives else ""
        results.append(
            _folder_check(
                "count",
                field,
                f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}).{hint}",
                fix=f"Put the images in {folder} (sub-folders are fine) or point {field} at the folder that holds them.",
                details=count_details,
            )
        )
        return results
    if readable < min_images:
        results.append(
            _folder_check(
                "count",
                field,
                f"{folder} has {readable} readable images; at least {min_images} are needed.",
                fix="Add images or lower the requirement.",
                details=count_details,
            )
        )
    else:
        results.append(
            _folder_check(
                "count",
                field,
                f"{folder} has {len(images)} images ({readable} readable).",
                details=count_details,
            )
        )
    if batch_size is not None:
        if readable < batch_size:
            results.append(
                _folder_check(
                    "batch",
                    field,
                    f"{readable} readable images is fewer than one batch of {batch_size}.",
                    fix=f"Lower the batch size (dataset.batch_size) to at most {readable}, or add images.",
                    details={"readable": readable, "batch_size": batch_size},
                )
            )
        else:
            results.append(
                _folder_check(
                    "batch",
                    field,
                    f"{readable} readable images give {readable // batch_size} full batch(es) of {batch_size}.",
                    details={"readable": readable, "batch_size": batch_size},
                )
            )
    return results


def _folder_check(
    part: str, field: str, message: str, *, fix: str | None = None, details: dict[str, Any] | None = None
) -> CheckResult:
    """One result of :func:`check_image_folder`, named ``image_folder.<part>``: failed when it
    carries a ``fix`` (what to do), passed otherwise."""
    return CheckResult(name=f"image_folder.{part}", ok=fix is None, field=field, message=message, fix=fix, details=details or {})


def _scan(folder: Path) -> tuple[list[Path], list[Path], int]:
    """(images by :func:`taoskills.tao.iter_image_files`, archives, count of other files)."""
    images = list(tao.iter_image_files(folder))
    image_set = set(images)
    archives: list[Path] = []
    others = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p in image_set or name.startswith("."):
                continue
            if _is_archive_name(name):
                archives.append(p)
            else:
                others += 1
    return images, archives, others


_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".bmp": (b"BM",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
}


def _magic_ok(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not head:
        return "empty file"
    ext = path.suffix.lower()
    if ext == ".webp":
        return None if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else "not a WebP file"
    if not any(head.startswith(m) for m in _MAGIC.get(ext, (b"",))):
        return f"content is not {ext[1:].upper()}"
    return None


def _image_checker():
    """(checker(path) -> problem or None, notes). PIL when installed, else magic bytes."""
    if importlib.util.find_spec("PIL") is None:
        return _magic_ok, ["PIL (Pillow) is not installed: images were checked by magic bytes only, not decoded."]
    from PIL import Image, UnidentifiedImageError

    def pil_ok(path: Path) -> str | None:
        problem = _magic_ok(path)
        if problem and problem.startswith(("cannot read", "empty")):
            return problem
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        return None

    return pil_ok, []


# ---------------------------------------------------------------------------------------
# inputs of an action


def check_action_inputs(
    act: Any, spec: Mapping[str, Any], *, action: str, check_input: Callable[..., list[CheckResult]]
) -> list[CheckResult]:
    """Data checks for every folder input of a skill action (``act``: its ``ActionInfo``).

    Each folder value (or each item of a list value) goes to ``check_input(field, value,
    batch_size=...)`` - the platform's input policy (the local platform refuses remote URIs and
    checks local folders with :func:`check_image_folder`). Optional inputs left unset are
    skipped. ``batch_size`` is ``dataset.batch_size`` for ``train`` (one full batch needed).
    """
    from taoskills.specs.dotted import get_dotted

    results: list[CheckResult] = []
    batch = get_dotted(dict(spec), "dataset.batch_size", default=None) if action == "train" else None
    batch = batch if isinstance(batch, int) and batch > 0 else None
    for key, io in act.inputs.items():
        if io.type != "folder":
            continue
        value = get_dotted(dict(spec), key, default=None)
        if value in (None, "", "???") and io.optional:
            continue
        for item in value if isinstance(value, list) else [value]:
            results.extend(check_input(key, str(item), batch_size=batch))
    return results


def check_network_datasets(network: str, action: str, spec: Mapping[str, Any]) -> list[CheckResult]:
    """Re-export of :func:`taoskills.data.network_checks.check_network_datasets` (the network's own data checks)."""
    from taoskills.data.network_checks import check_network_datasets as _check

    return _check(network, action, spec)


# ---------------------------------------------------------------------------------------
# host (owned by the platforms: taoskills.platforms.hostchecks; re-exported for callers)


def check_host(engine: str, platform: str, *, network: str | None = None) -> list[CheckResult]:
    """Re-export of :func:`taoskills.platforms.hostchecks.check_host` (kept for callers)."""
    from taoskills.platforms.hostchecks import check_host as _check_host

    return _check_host(engine, platform, network=network)


def _check_docker(field: str) -> list[CheckResult]:
    from taoskills.platforms.hostchecks import check_docker

    return check_docker(field)


def _check_nvidia_smi(severity: Severity) -> CheckResult:
    from taoskills.platforms.hostchecks import check_nvidia_smi

    return check_nvidia_smi(severity)


# ---------------------------------------------------------------------------------------
# credentials


def check_credentials(names: Iterable[str], *, required: bool = True, env: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Report each environment variable in ``names`` as set or not set, by NAME only.

    Values are never read into results, logged or returned. ``required=False`` makes a
    missing variable a warning. ``env`` defaults to ``os.environ``.
    """
    source = os.environ if env is None else env
    results = []
    for name in names:
        present = bool(source.get(name))
        results.append(
            CheckResult(
                name="credentials.present",
                ok=present,
                field=name,
                severity="error" if required else "warning",
                message=f"{name} is set." if present else f"Environment variable {name} is not set.",
                fix=None if present else f"export {name}=... in the shell that launches the job (never put the value in a spec).",
                details={"variable": name, "present": present},
            )
        )
    return results


__all__ = [
    "IMAGE_EXTENSIONS",
    "CheckResult",
    "PreflightReport",
    "Severity",
    "check_coco",
    "check_credentials",
    "check_dataset",
    "check_detection_datasets",
    "check_host",
    "check_image_folder",
    "check_network_datasets",
    "check_odvg",
    "check_val_split",
    "run_preflight",
]
