"""Data sources: turn what the user gives (a dataset root, a folder, an archive) into the value
TAO reads, by one set of rules.

TAO actions read ``image_dir``/``images_dir``-style keys as *folders*; TAO's own job runner
extracts ``images_train.tar.gz`` into ``images_train/`` before the container command runs
(skill_info ``runtime: extracted_folder``). This module is the one resolver for those keys:

* :func:`resolve_data_source` -- a dataset *root* plus a skill's ``data_sources`` entry
  (e.g. root ``~/photos`` + ``images_train.tar.gz``); the rules are listed there.
* :func:`resolve_spec_path` -- a path already in the spec (an override, or root/entry joined).
* :func:`stage` -- one folder or archive -> the folder to put in the spec.

Archives are extracted into the staging cache (``<runtime home>/staging/<key>/<stem>/``,
:func:`taoskills.paths.home_dir`; :mod:`taoskills.data.cache`), never beside the archive, with
the bounds and member rules of :mod:`taoskills.data.archives` and a free-disk check first.
Extraction is idempotent and atomic (see :mod:`taoskills.data.cache`). A single top folder
named after the stem is stripped (``images_train.tar.gz`` holding ``images_train/a.jpg`` gives
``.../images_train/a.jpg``), as TAO's runner does.

Every path is checked with ``os.stat`` before anything opens it: FIFOs, sockets and devices
are refused (opening a FIFO would block forever).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from taoskills import tao
from taoskills.bank.skill_info import DataSource
from taoskills.data.archives import ArchiveLimits
from taoskills.data.cache import (
    MARKER_NAME,
    StagedPath,
    archive_fingerprint,
    stage_archive,
    staged_destination,
    staging_root,
)
from taoskills.errors import NotSupported, StagingError

#: Archive suffixes this module extracts (the one list in :mod:`taoskills.tao`).
ARCHIVE_SUFFIXES: tuple[str, ...] = tao.ARCHIVE_SUFFIXES

is_archive = tao.is_archive_name
archive_suffix = tao.archive_suffix
archive_stem = tao.archive_stem

Rule = Literal[
    "remote",
    "folder",
    "file",
    "archive",
    "user_extracted_folder",
    "same_stem_archive",
    "images_in_root",
    "archive_root",
    "not_found",
]


class ResolvedSource(BaseModel):
    """Result of :func:`resolve_data_source` / :func:`resolve_spec_path`.

    ``path``: the value to put in the spec (a string, so ``s3://`` URIs survive intact).
    ``rule``: which rule matched (see :func:`resolve_data_source`). ``source``: what was found
    (the folder, archive or URI). ``extracted``/``reused``: as :class:`StagedPath`.
    ``pending``: ``stage=False`` and an archive must still be extracted (``path`` is the
    archive; launching with ``stage=True`` extracts it).
    """

    model_config = ConfigDict(frozen=True)

    path: str
    rule: Rule
    source: str
    extracted: bool = False
    reused: bool = True
    pending: bool = False


def _is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def path_kind(path: Path) -> str:
    """``missing``, ``dir``, ``file``, or ``fifo``/``socket``/``device``/``other`` (os.stat, no open)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"


def _refuse_special(path: Path, kind: str, field: str) -> StagingError:
    what = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "device": "a device node"}.get(kind, "not a regular file")
    return StagingError(
        f"{field}: {path} is {what}; data sources must be regular files or folders. It was not opened.",
        field=field,
        fix="Pass the folder that holds the images, or a regular archive file of it.",
        details={"path": str(path), "kind": kind},
    )


def _kind_or_refuse(path: Path, field: str) -> str:
    kind = path_kind(path)
    if kind not in ("missing", "dir", "file"):
        raise _refuse_special(path, kind, field)
    return kind


def stage(
    path: str | Path,
    *,
    field: str,
    cache_dir: Path | None = None,
    limits: ArchiveLimits | None = None,
    max_member_bytes: int | None = None,
) -> StagedPath:
    """Return the folder to put in the spec for ``path`` (a folder or an archive).

    Args:
        path: a local folder, or a local archive (see :data:`ARCHIVE_SUFFIXES`).
        field: the spec key or argument ``path`` came from; named in every error.
        cache_dir: the staging cache (default ``<runtime home>/staging``); an archive is
            extracted to ``cache_dir/<sha256(archive path)[:12]>/<stem>/``.
        limits: extraction bounds (default :meth:`ArchiveLimits.from_env`).
        max_member_bytes: shortcut overriding ``limits.max_member_bytes``.

    Returns:
        :class:`StagedPath`. A folder gives itself (``extracted=False, reused=True``).

    Raises:
        StagingError: missing path; a FIFO, socket or device; a file that is not an archive;
            an unsafe, oversized, corrupt or truncated archive; too little free disk.
        NotSupported: a remote URI (``s3://...``): staged by the platform that runs the job.
    """
    if _is_remote(path):
        raise NotSupported(
            f"{field}: {path} is a remote URI; only local folders and archives are staged here.",
            field=field,
            fix="Download it to a local folder first, or run on a platform whose TAO runner stages remote inputs.",
        )
    source = Path(path).expanduser().absolute()
    kind = _kind_or_refuse(source, field)
    if kind == "missing":
        raise StagingError(
            f"{field}: {source} does not exist.{_missing_hint(source)}",
            field=field,
            fix=f"Pass an existing image folder or archive ({', '.join(ARCHIVE_SUFFIXES)}) for this field.",
        )
    if kind == "dir":
        return StagedPath(source=source, path=source, extracted=False, reused=True)
    if not is_archive(source):
        raise StagingError(
            f"{field}: {source} is a file, not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)}).",
            field=field,
            fix="Pass the folder that holds the images, or an archive of it.",
        )
    lim = limits or ArchiveLimits.from_env()
    if max_member_bytes is not None:
        lim = ArchiveLimits(**{**lim.__dict__, "max_member_bytes": max_member_bytes})
    return stage_archive(source, field=field, cache_dir=cache_dir, limits=lim)


def _missing_hint(source: Path) -> str:
    parent = source.parent
    if path_kind(parent) != "dir":
        return f" Its folder {parent} does not exist either."
    stem = archive_stem(source)
    near = sorted(p.name for p in parent.iterdir() if p.name.startswith(stem) or archive_stem(p) == stem)
    return f" Found beside it: {', '.join(near[:10])}." if near else ""


# ---------------------------------------------------------------------------------------
# the resolver


def resolve_data_source(
    root: str | Path,
    ds: DataSource,
    *,
    field: str,
    stage: bool = True,
    cache_dir: Path | None = None,
    limits: ArchiveLimits | None = None,
    strict: bool = True,
) -> ResolvedSource:
    """Resolve a dataset ``root`` and a skill's ``data_sources`` entry ``ds`` to the spec value.

    ``ds`` comes from skill_info.yaml (e.g. NVDINOv2 train: ``{source: train_datasets, path:
    images_train.tar.gz, runtime: extracted_folder}``). Rules, first match wins:

    * remote ``root`` (``s3://...``): ``root/ds.path`` as a string, untouched (``remote``);
    * ``runtime: file`` / ``folder``: ``root/ds.path`` must be a regular file / a folder;
    * ``runtime: extracted_folder``:

      1. ``root/ds.path`` is a folder (``folder``);
      2. ``root/ds.path`` is an archive: the folder named after its stem beside it when the
         user extracted it there (``user_extracted_folder``), else the archive is extracted
         into the staging cache (``archive``);
      3. the folder ``root/<stem>/`` (``user_extracted_folder``);
      4. another archive with the same stem, any of :data:`ARCHIVE_SUFFIXES`
         (``images_train.zip`` or ``images_train.tar`` for ``images_train.tar.gz``;
         ``same_stem_archive``);
      5. ``root`` itself when it directly holds image files (a folder of photos given as the
         dataset role: ``images_in_root``);
      6. ``root`` is itself an archive file: extracted (``archive_root``).

    ``stage=False`` never writes: an archive to extract gives ``pending=True`` with the
    archive as ``path``. ``ds.list`` entries are resolved one root at a time.
    ``strict=False``: when nothing is found, return ``rule="not_found"`` with ``root/ds.path``
    as ``path`` instead of raising (a builder that leaves missing data to preflight); every
    other error still raises.

    Raises:
        StagingError: nothing found (the message states these rules, what ``root`` holds and
            the fix; ``details["reason"] == "not_found"``); a FIFO/socket/device path; an
            unsafe or oversized archive.
    """
    try:
        return _resolve_root(root, ds, field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    except StagingError as exc:
        if strict or exc.details.get("reason") != "not_found":
            raise
        joined = str(Path(root).expanduser().absolute() / ds.path)
        return ResolvedSource(path=joined, rule="not_found", source=joined, reused=True)


def _resolve_root(
    root: str | Path, ds: DataSource, *, field: str, stage: bool, cache_dir: Path | None, limits: ArchiveLimits | None
) -> ResolvedSource:
    if _is_remote(root):
        joined = str(root).rstrip("/") + "/" + ds.path
        return ResolvedSource(path=joined, rule="remote", source=joined)
    base = Path(root).expanduser().absolute()
    base_kind = _kind_or_refuse(base, field)
    if base_kind == "file" and ds.runtime == "extracted_folder" and is_archive(base):
        return _resolve_archive(base, "archive_root", field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    if base_kind != "dir":
        raise StagingError(
            f"{field}: dataset root {base} is {'missing' if base_kind == 'missing' else 'a file, not a folder'}.",
            field=field,
            fix=f"Pass the folder that holds {ds.path} (or its extracted folder, or the images themselves).",
            details={"reason": "not_found" if base_kind == "missing" else "not_a_folder", "root": str(base)},
        )
    target = base / ds.path
    if ds.runtime in ("file", "folder"):
        want = "file" if ds.runtime == "file" else "dir"
        kind = _kind_or_refuse(target, field)
        if kind == want:
            return ResolvedSource(path=str(target), rule=ds.runtime, source=str(target))
        raise _not_found(base, field, [f"the {'file' if want == 'file' else 'folder'} {ds.path}"], ds.path)

    try:
        return _resolve_value(target, field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    except StagingError as exc:
        if exc.details.get("reason") != "not_found":
            raise
    if _has_top_level_images(base):
        return ResolvedSource(path=str(base), rule="images_in_root", source=str(base))
    stem = archive_stem(ds.path)
    others = "/".join(s for s in ARCHIVE_SUFFIXES if not ds.path.lower().endswith(s))
    looked = [
        f"the folder or archive {ds.path}",
        f"the folder {stem}/",
        f"an archive {stem} + one of {others}",
        f"image files ({', '.join(tao.IMAGE_EXTENSIONS)}) directly in the root",
    ]
    raise _not_found(base, field, looked, ds.path)


def resolve_spec_path(
    value: str | Path,
    *,
    field: str,
    stage: bool = True,
    cache_dir: Path | None = None,
    limits: ArchiveLimits | None = None,
    strict: bool = True,
) -> ResolvedSource:
    """Resolve a folder-typed spec value (``extracted_folder``): rules 1-4 of
    :func:`resolve_data_source` applied to ``value`` itself (remote values untouched).

    Raises StagingError (``details["reason"] == "not_found"`` when nothing matched, unless
    ``strict=False``: then ``rule="not_found"`` and ``value`` unchanged), or for a
    FIFO/socket/device, a non-archive file, or an unsafe archive.
    """
    try:
        return _resolve_value(value, field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    except StagingError as exc:
        if strict or exc.details.get("reason") != "not_found":
            raise
        return ResolvedSource(path=str(value), rule="not_found", source=str(value))


def _resolve_value(
    value: str | Path, *, field: str, stage: bool, cache_dir: Path | None, limits: ArchiveLimits | None
) -> ResolvedSource:
    if _is_remote(value):
        return ResolvedSource(path=str(value), rule="remote", source=str(value))
    target = Path(value).expanduser().absolute()
    kind = _kind_or_refuse(target, field)
    if kind == "dir":
        return ResolvedSource(path=str(target), rule="folder", source=str(target))
    sibling = target.parent / archive_stem(target)
    if kind == "file":
        if not is_archive(target):
            raise StagingError(
                f"{field}: {target} is a file, not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)}).",
                field=field,
                fix=f"Put the images under {sibling}/ or pass an archive of them.",
            )
        if sibling != target and path_kind(sibling) == "dir" and not (sibling / MARKER_NAME).exists():
            return ResolvedSource(path=str(sibling), rule="user_extracted_folder", source=str(sibling))
        return _resolve_archive(target, "archive", field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    if is_archive(target):
        if path_kind(sibling) == "dir":
            return ResolvedSource(path=str(sibling), rule="user_extracted_folder", source=str(sibling))
        for suffix in ARCHIVE_SUFFIXES:
            other = target.parent / f"{archive_stem(target)}{suffix}"
            if other != target and _kind_or_refuse(other, field) == "file":
                return _resolve_archive(other, "same_stem_archive", field=field, stage=stage, cache_dir=cache_dir, limits=limits)
    raise StagingError(
        f"{field}: {target} does not exist.{_missing_hint(target)}",
        field=field,
        fix=f"Pass an existing image folder or archive ({', '.join(ARCHIVE_SUFFIXES)}) for this field.",
        details={"reason": "not_found", "path": str(target)},
    )


def _resolve_archive(
    archive: Path, rule: Rule, *, field: str, stage: bool, cache_dir: Path | None, limits: ArchiveLimits | None
) -> ResolvedSource:
    if not stage:
        return ResolvedSource(path=str(archive), rule=rule, source=str(archive), pending=True)
    staged = stage_archive(archive, field=field, cache_dir=cache_dir, limits=limits or ArchiveLimits.from_env())
    return ResolvedSource(path=str(staged.path), rule=rule, source=str(archive), extracted=True, reused=staged.reused)


def _has_top_level_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if tao.is_image_name(entry.name) and entry.is_file():
                    return True
    except OSError:
        return False
    return False


def _not_found(base: Path, field: str, looked: list[str], wanted: str) -> StagingError:
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir())
    shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "") if present else "nothing"
    stem = archive_stem(wanted)
    return StagingError(
        f"{field}: no data found in {base}. Looked for, in order: {'; '.join(looked)}. {base} holds: {shown}.",
        field=field,
        fix=(
            f"Put the images in {base / stem}/ or directly in {base}, or add {wanted} (or {stem}.zip / {stem}.tar) "
            f"there; or pass the folder of images itself as the dataset root, or set {field} directly."
            if stem != wanted
            else f"Add {wanted} to {base}, pass the dataset root that holds it, or set {field} directly."
        ),
        details={"reason": "not_found", "root": str(base), "looked_for": looked},
    )


__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArchiveLimits",
    "MARKER_NAME",
    "ResolvedSource",
    "StagedPath",
    "archive_fingerprint",
    "archive_stem",
    "archive_suffix",
    "is_archive",
    "path_kind",
    "resolve_data_source",
    "resolve_spec_path",
    "stage",
    "staged_destination",
    "staging_root",
]
