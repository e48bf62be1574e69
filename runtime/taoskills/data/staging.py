"""Dataset staging: turn what the user gives (a folder or an archive) into the folder TAO reads.

TAO actions read ``images_dir``-style keys as *folders*; TAO's own job runner extracts
``images_train.tar.gz`` into a sibling ``images_train/`` before the container command runs
(anchor_report_tao.md §1.13 "archive extraction images.tar.gz -> images", §4.5 C13). This
module does the same on the machine that launches the job, safely:

* a folder is used as it is;
* an archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``) is
  extracted into a sibling folder named after its stem (``images_train.tar.gz`` ->
  ``images_train/``), or under a cache folder when the archive's folder is not writable;
* when every member sits under one top folder equal to the stem, that folder is stripped
  (``images_train.tar.gz`` holding ``images_train/a.jpg`` gives ``images_train/a.jpg``,
  not ``images_train/images_train/a.jpg``), as TAO's runner does;
* extraction is idempotent: a marker file inside the extracted folder records the archive's
  size, mtime and the sha256 of its first MiB; a changed archive is extracted again;
* extraction goes to a temporary folder beside the destination and is renamed into place,
  so a failure never leaves a half-written folder;
* members are refused (``StagingError`` naming the field and the member; nothing written
  outside the destination; the temporary folder removed) when they are absolute paths,
  contain ``..``, are symlinks/hardlinks pointing outside the destination, are device or
  FIFO nodes, or are bigger than ``max_member_bytes``. Tar archives are additionally
  extracted with Python's ``tarfile`` ``data`` filter (PEP 706, present in Python 3.11.4+).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from taoskills.bank.skill_info import DataSource
from taoskills.errors import NotSupported, StagingError

#: Archive suffixes this module extracts, longest first (so ``.tar.gz`` wins over ``.gz``).
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")

#: Name of the marker file written inside every folder this module extracted.
MARKER_NAME = ".tao-skills-extracted.json"

#: Default per-member size cap: 64 GiB (generous; a single image or shard is far smaller).
DEFAULT_MAX_MEMBER_BYTES = 64 * 1024**3

_HEAD_BYTES = 1024 * 1024  # the sha256 in the marker covers the archive's first MiB
_MARKER_VERSION = 1


class StagedPath(BaseModel):
    """Result of :func:`stage`.

    ``source``: what the caller gave (absolute). ``path``: the folder to put in the spec.
    ``extracted``: ``path`` was produced by extracting an archive (now or earlier).
    ``reused``: nothing was written by this call (a folder, or an up-to-date extraction).
    """

    model_config = ConfigDict(frozen=True)

    source: Path
    path: Path
    extracted: bool
    reused: bool


def is_archive(path: str | Path) -> bool:
    """True when ``path``'s name ends with one of :data:`ARCHIVE_SUFFIXES` (case-insensitive)."""
    return archive_suffix(path) is not None


def archive_suffix(path: str | Path) -> str | None:
    """The archive suffix of ``path`` (``".tar.gz"``, ``".zip"``, ...) or ``None``."""
    name = Path(path).name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def archive_stem(path: str | Path) -> str:
    """The archive's name without its archive suffix: ``images_train.tar.gz`` -> ``images_train``."""
    p = Path(path)
    suffix = archive_suffix(p)
    return p.name[: -len(suffix)] if suffix else p.name


def _is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def stage(
    path: str | Path,
    *,
    field: str,
    cache_dir: Path | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> StagedPath:
    """Return the folder to put in the spec for ``path`` (a folder or an archive).

    Args:
        path: a local folder, or a local archive (see :data:`ARCHIVE_SUFFIXES`).
        field: the spec key or argument ``path`` came from; named in every error.
        cache_dir: where to extract when the archive's own folder is not writable
            (default ``$TAO_SKILLS_HOME/staging``); the result is
            ``cache_dir/<sha1(archive path)[:12]>/<stem>/``.
        max_member_bytes: refuse archive members larger than this many bytes.

    Returns:
        :class:`StagedPath`. A folder gives itself (``extracted=False, reused=True``).

    Raises:
        StagingError: missing path; a file that is not an archive; an unsafe or corrupt
            archive; a foreign folder already sitting where the archive would be extracted.
        NotSupported: a remote URI (``s3://...``): those are staged inside the job by the
            TAO runner, not on this machine.
    """
    if _is_remote(path):
        raise NotSupported(
            f"{field}: {path} is a remote URI; only local folders and archives are staged here.",
            field=field,
            fix="Download it to a local folder first, or run on a platform whose TAO runner stages remote inputs.",
        )
    source = Path(path).expanduser().absolute()
    if not source.exists():
        hint = _missing_hint(source)
        raise StagingError(
            f"{field}: {source} does not exist.{hint}",
            field=field,
            fix="Pass an existing image folder or archive (.tar, .tar.gz, .tgz, .zip) for this field.",
        )
    if source.is_dir():
        return StagedPath(source=source, path=source, extracted=False, reused=True)
    if not is_archive(source):
        raise StagingError(
            f"{field}: {source} is a file, not a folder or a supported archive ({', '.join(ARCHIVE_SUFFIXES)}).",
            field=field,
            fix="Pass the folder that holds the images, or an archive of it.",
        )
    return _stage_archive(source, field=field, cache_dir=cache_dir, max_member_bytes=max_member_bytes)


def _missing_hint(source: Path) -> str:
    parent = source.parent
    if not parent.is_dir():
        return f" Its folder {parent} does not exist either."
    stem = archive_stem(source)
    near = sorted(p.name for p in parent.iterdir() if p.name.startswith(stem) or archive_stem(p) == stem)
    if near:
        return f" Found beside it: {', '.join(near[:10])}."
    return ""


def resolve_data_source(
    root: str | Path,
    ds: DataSource,
    *,
    field: str,
    cache_dir: Path | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> Path:
    """Join a dataset ``root`` with ``ds.path`` and return the local path to put in the spec.

    ``ds`` is a skill's ``data_sources`` entry (skill_info.yaml, e.g. NVDINOv2 train:
    ``{source: train_datasets, path: images_train.tar.gz, runtime: extracted_folder}``).

    * ``runtime: extracted_folder`` accepts, in this order: ``root/ds.path`` as a folder;
      ``root/ds.path`` as an archive (staged with :func:`stage`, unless a folder named after
      its stem that this module did not write already sits beside it: that folder is taken
      as the user's own extraction); the sibling folder ``root/<stem>/`` alone; another
      archive with the same stem (``images_train.zip`` for ``images_train.tar.gz``).
    * ``runtime: folder`` / ``file``: ``root/ds.path`` must exist as that kind.

    ``ds.list`` entries are resolved one root at a time: call this once per root.

    Raises:
        StagingError: nothing usable found (the message lists what ``root`` holds) or an
            unsafe archive. NotSupported: a remote ``root``.
    """
    if _is_remote(root):
        raise NotSupported(
            f"{field}: dataset root {root} is remote; only local dataset roots are resolved here.",
            field=field,
            fix="Pass the remote path in the spec as it is for a platform whose TAO runner stages it, or download it.",
        )
    base = Path(root).expanduser().absolute()
    if not base.is_dir():
        raise StagingError(
            f"{field}: dataset root {base} is not an existing folder.",
            field=field,
            fix=f"Pass the folder that holds {ds.path}.",
        )
    target = base / ds.path
    if ds.runtime == "folder":
        if target.is_dir():
            return target
        raise _not_found(base, target, field, "a folder")
    if ds.runtime == "file":
        if target.is_file():
            return target
        raise _not_found(base, target, field, "a file")

    # extracted_folder
    if target.is_dir():
        return target
    if is_archive(target) or not target.exists():
        sibling = target.parent / archive_stem(target)
        if target.is_file():
            if sibling.is_dir() and not (sibling / MARKER_NAME).exists():
                return sibling  # the user's own extraction beside the archive
            return stage(target, field=field, cache_dir=cache_dir, max_member_bytes=max_member_bytes).path
        if sibling.is_dir() and sibling != target:
            return sibling
        for suffix in ARCHIVE_SUFFIXES:
            other = target.parent / f"{archive_stem(target)}{suffix}"
            if other.is_file():
                return resolve_data_source(
                    base,
                    DataSource(source=ds.source, path=str(other.relative_to(base)), list=ds.list, runtime=ds.runtime),
                    field=field,
                    cache_dir=cache_dir,
                    max_member_bytes=max_member_bytes,
                )
    if target.is_file():
        raise StagingError(
            f"{field}: {target} is a file, not a folder or a supported archive.",
            field=field,
            fix=f"Put the images under {target.parent / archive_stem(target)}/ or pass an archive of them.",
        )
    raise _not_found(base, target, field, "an archive or its extracted folder")


def _not_found(base: Path, target: Path, field: str, what: str) -> StagingError:
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in base.iterdir())
    shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "") if present else "nothing"
    return StagingError(
        f"{field}: expected {what} at {target}; {base} holds: {shown}.",
        field=field,
        fix=f"Pass a dataset root that holds {target.relative_to(base)} (or its extracted folder), or set {field} directly.",
    )


# ---------------------------------------------------------------------------------------
# archive extraction


def archive_fingerprint(archive: Path) -> dict[str, object]:
    """``{"name", "size", "mtime_ns", "head_sha256"}`` of ``archive`` (sha256 over the first MiB)."""
    st = archive.stat()
    digest = hashlib.sha256()
    with archive.open("rb") as fh:
        digest.update(fh.read(_HEAD_BYTES))
    return {"name": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": digest.hexdigest()}


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _destination(archive: Path, cache_dir: Path | None) -> Path:
    stem = archive_stem(archive)
    if os.access(archive.parent, os.W_OK | os.X_OK):
        return archive.parent / stem
    if cache_dir is None:
        from taoskills.paths import home_dir

        cache_dir = home_dir() / "staging"
    key = hashlib.sha1(str(archive).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser().absolute() / key / stem


def _stage_archive(archive: Path, *, field: str, cache_dir: Path | None, max_member_bytes: int) -> StagedPath:
    dest = _destination(archive, cache_dir)
    fingerprint = archive_fingerprint(archive)
    if dest.exists():
        marker = _read_marker(dest) if dest.is_dir() else None
        if marker is None:
            raise StagingError(
                f"{field}: {dest} already exists and was not extracted by tao-skills from {archive.name}; it is left untouched.",
                field=field,
                fix=f"If {dest} holds the extracted images, pass that folder instead; otherwise move it away so "
                f"{archive.name} can be extracted there.",
            )
        if marker.get("name") != archive.name:
            raise StagingError(
                f"{field}: {dest} was extracted from another archive ({marker.get('name')}), not {archive.name}.",
                field=field,
                fix=f"Pass {dest} itself, or move it away so {archive.name} can be extracted.",
            )
        if all(marker.get(k) == v for k, v in fingerprint.items()):
            return StagedPath(source=archive, path=dest, extracted=True, reused=True)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    try:
        try:
            if archive_suffix(archive) == ".zip":
                _extract_zip(archive, tmp, field=field, max_member_bytes=max_member_bytes)
            else:
                _extract_tar(archive, tmp, field=field, max_member_bytes=max_member_bytes)
        except StagingError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, ValueError) as exc:
            raise StagingError(
                f"{field}: {archive} is corrupt or truncated ({type(exc).__name__}: {exc}).",
                field=field,
                fix="Re-create or re-download the archive, or pass the extracted folder.",
            ) from exc
        except OSError as exc:
            raise StagingError(
                f"{field}: extracting {archive} into {dest.parent} failed: {exc}.",
                field=field,
                fix="Free disk space or pass cache_dir on a larger, writable disk, or pass the extracted folder.",
            ) from exc

        _verify_links(tmp, field=field, archive=archive)
        content = tmp
        entries = [p for p in tmp.iterdir()]
        if len(entries) == 1 and entries[0].name == dest.name and entries[0].is_dir() and not entries[0].is_symlink():
            content = entries[0]  # all members share the top folder named after the stem: strip it
        marker = dict(fingerprint, version=_MARKER_VERSION, archive=str(archive), stripped_top=content is not tmp)
        (content / MARKER_NAME).write_text(json.dumps(marker, indent=1))
        _swap_into_place(content, dest, archive=archive, field=field)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return StagedPath(source=archive, path=dest, extracted=True, reused=False)


def _swap_into_place(content: Path, dest: Path, *, archive: Path, field: str) -> None:
    """Rename ``content`` to ``dest``; a stale ``dest`` of ours is moved aside, then removed."""
    old: Path | None = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.rename(dest, old / dest.name)
    try:
        os.rename(content, dest)
    except OSError as exc:
        # another process may have finished the same extraction first
        marker = _read_marker(dest) if dest.is_dir() else None
        if marker is None or marker.get("name") != archive.name:
            if old is not None and not dest.exists():
                os.rename(old / dest.name, dest)
            raise StagingError(
                f"{field}: could not move the extracted folder into {dest}: {exc}.",
                field=field,
                fix="Retry; if it persists, check the permissions of the archive's folder or pass cache_dir.",
            ) from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _refuse(field: str, archive: Path, member: str, reason: str) -> StagingError:
    return StagingError(
        f"{field}: refusing to extract {archive.name}: member {member!r} {reason}. Nothing was extracted.",
        field=field,
        fix="Re-create the archive with relative member paths inside one folder, without links outside it "
        "or special files; or extract it yourself and pass the folder.",
        details={"archive": str(archive), "member": member, "reason": reason},
    )


def _check_name(name: str, *, field: str, archive: Path) -> str:
    """Normalised relative member name, or StagingError for absolute/``..`` names."""
    raw = name.replace("\\", "/") if "\\" in name and "/" not in name else name
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise _refuse(field, archive, name, "has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(field, archive, name, "contains '..' (path traversal)")
    return "/".join(parts)


def _check_link_target(member: str, target: str, *, hard: bool, field: str, archive: Path) -> None:
    if not target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise _refuse(field, archive, member, f"is a {'hard' if hard else 'symbolic'} link to absolute path {target!r}")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise _refuse(
            field, archive, member, f"is a {'hard' if hard else 'symbolic'} link pointing outside the destination ({target!r})"
        )


def _verify_links(root: Path, *, field: str, archive: Path) -> None:
    """After extraction: every symlink must resolve inside ``root`` (catches link chains)."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            p = Path(dirpath) / entry
            if p.is_symlink():
                real = Path(os.path.realpath(p))
                if real != real_root and real_root not in real.parents:
                    rel = p.relative_to(root).as_posix()
                    raise _refuse(
                        field, archive, rel, f"is a symbolic link resolving outside the destination ({os.readlink(p)!r})"
                    )


def _extract_tar(archive: Path, dest: Path, *, field: str, max_member_bytes: int) -> None:
    data_filter: Callable = tarfile.data_filter  # PEP 706 (Python >= 3.11.4)

    def safe_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        name = _check_name(member.name, field=field, archive=archive)
        if member.isdev():  # character/block devices and FIFOs
            raise _refuse(field, archive, member.name, "is a device or FIFO node")
        if member.issym() or member.islnk():
            _check_link_target(name, member.linkname, hard=member.islnk(), field=field, archive=archive)
        elif not (member.isfile() or member.isdir()):
            raise _refuse(field, archive, member.name, "is not a regular file, folder or link")
        if member.isfile() and member.size > max_member_bytes:
            raise _refuse(field, archive, member.name, f"is {member.size} bytes, over the cap of {max_member_bytes}")
        try:
            return data_filter(member, path)
        except tarfile.FilterError as exc:  # defence in depth: the stdlib filter disagrees
            raise _refuse(field, archive, member.name, f"was rejected by tarfile's data filter ({exc})") from exc

    with tarfile.open(archive, "r:*") as tf:
        tf.extractall(dest, filter=safe_filter)


def _extract_zip(archive: Path, dest: Path, *, field: str, max_member_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan: list[tuple[zipfile.ZipInfo, str, str]] = []  # (info, name, kind)
        for info in infos:  # check every member before writing anything
            name = _check_name(info.filename, field=field, archive=archive)
            mode = (info.external_attr >> 16) & 0xFFFF
            if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                raise _refuse(field, archive, info.filename, "is a device, FIFO or socket node")
            if mode and stat.S_ISLNK(mode):
                if info.file_size > 4096:
                    raise _refuse(field, archive, info.filename, "is a symbolic link with an oversized target")
                target = zf.read(info).decode("utf-8", "replace")
                _check_link_target(name, target, hard=False, field=field, archive=archive)
                plan.append((info, name, "link"))
                continue
            if info.is_dir():
                plan.append((info, name, "dir"))
                continue
            if info.file_size > max_member_bytes:
                raise _refuse(field, archive, info.filename, f"is {info.file_size} bytes, over the cap of {max_member_bytes}")
            plan.append((info, name, "file"))

        root = dest.resolve()
        for info, name, kind in plan:
            if not name:
                continue
            out = dest / name
            # never write through a link that an earlier member created
            parent = out.parent.resolve()
            if parent != root and root not in parent.parents:
                raise _refuse(field, archive, info.filename, "would be written through a link outside the destination")
            if kind == "dir":
                out.mkdir(parents=True, exist_ok=True)
            elif kind == "link":
                out.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(zf.read(info).decode("utf-8"), out)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                if out.is_symlink():
                    raise _refuse(field, archive, info.filename, "would overwrite a link")
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
