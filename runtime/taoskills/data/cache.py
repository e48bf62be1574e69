"""The staging cache: archives extracted once into ``<runtime home>/staging/<key>/<stem>/``.

Used by :mod:`taoskills.data.staging` (the data-source resolver). Extraction is idempotent:
a marker file inside the extracted folder records the archive's path, size, mtime and the
sha256 of its first MiB; a changed archive is extracted again. It goes to a temporary folder
beside the destination (inside the cache) and is renamed into place, so a failure never
leaves a half-written folder, and a refused archive leaves no file behind. Members are
checked and bounded by :mod:`taoskills.data.archives`. :func:`stage_extracted` is the same
protocol for any source (an ``s3://`` archive extracted while it downloads, marked with its
ETag and size instead of a file fingerprint).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from taoskills import tao
from taoskills.data.archives import ArchiveLimits, Plan
from taoskills.data.archives import extract as _extract
from taoskills.errors import StagingError

#: Name of the marker file written inside every folder this module extracted.
MARKER_NAME = ".tao-skills-extracted.json"

_HEAD_BYTES = 1024 * 1024  # the sha256 in the marker covers the archive's first MiB
_MARKER_VERSION = 2
archive_stem = tao.archive_stem


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


def staging_root(cache_dir: Path | None = None) -> Path:
    """The staging cache: ``cache_dir`` or ``<runtime home>/staging`` (absolute)."""
    if cache_dir is None:
        from taoskills.paths import home_dir

        cache_dir = home_dir() / "staging"
    return Path(cache_dir).expanduser().absolute()


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


def staged_destination(archive: Path, cache_dir: Path | None = None) -> Path:
    """Where ``archive`` is extracted: ``<staging cache>/<sha256(path)[:12]>/<stem>``."""
    key = hashlib.sha256(str(archive).encode()).hexdigest()[:12]
    return staging_root(cache_dir) / key / archive_stem(archive)


def stage_archive(archive: Path, *, field: str, cache_dir: Path | None, limits: ArchiveLimits) -> StagedPath:
    """Extract the local ``archive`` into :func:`staged_destination` (or reuse it); see the module docstring."""
    return stage_extracted(
        str(archive),
        staged_destination(archive, cache_dir),
        archive_fingerprint(archive),
        field=field,
        extract=lambda tmp: _extract(archive, tmp, field_=field, limits=limits),
        origin=archive,
    )


def reusable(label: str, dest: Path, fingerprint: dict[str, object], *, field: str) -> bool:
    """True when ``dest`` holds an up-to-date extraction of ``label`` (an archive path or URI:
    its marker matches ``fingerprint``); False when it is absent or stale. Errors:
    StagingError when ``dest`` exists but was not extracted by this module from ``label``
    (it is never touched)."""
    if not dest.exists():
        return False
    marker = _read_marker(dest) if dest.is_dir() else None
    if marker is None or marker.get("archive") != label:
        raise StagingError(
            f"{field}: {dest} in the staging cache was not extracted by tao-skills from {label}; it is left untouched.",
            field=field,
            fix=f"Remove {dest} (it is inside the staging cache) and try again.",
        )
    return all(marker.get(k) == v for k, v in fingerprint.items())


def stage_extracted(
    label: str,
    dest: Path,
    fingerprint: dict[str, object],
    *,
    field: str,
    extract: Callable[[Path], Plan],
    origin: Path,
) -> StagedPath:
    """The extraction protocol of the module docstring, for any source: reuse ``dest`` when
    :func:`reusable`; else ``extract(tmp)`` into a fresh temporary folder beside ``dest``,
    strip a single top folder named like ``dest``, write the marker (``label``,
    ``fingerprint``, member count, expansion) and rename into place. ``label`` names the
    source in the marker and in errors (an archive path, or an ``s3://`` URI); ``origin`` is
    :attr:`StagedPath.source`. Errors: StagingError (refusals; corrupt, truncated or
    unreadable archives; disk and permission failures) - nothing is left behind."""
    if reusable(label, dest, fingerprint, field=field):
        return StagedPath(source=origin, path=dest, extracted=True, reused=True)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.staging-", dir=dest.parent))
    except OSError as exc:
        raise StagingError(
            f"{field}: cannot create the staging folder {dest.parent}: {exc.strerror or exc}.",
            field=field,
            fix="Point TAO_SKILLS_HOME at a writable folder, or extract the archive yourself and pass the folder.",
        ) from exc
    try:
        try:
            plan = extract(tmp)
        except StagingError:
            raise
        except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            raise StagingError(
                f"{field}: {label} is corrupt or truncated ({type(exc).__name__}: {exc}).",
                field=field,
                fix="Re-create or re-download the archive, or pass the extracted folder.",
            ) from exc
        except OSError as exc:
            raise _os_error(exc, label, dest, field) from exc
        except (ValueError, NotImplementedError, RuntimeError) as exc:
            raise StagingError(
                f"{field}: {label} cannot be read ({type(exc).__name__}: {exc}).",
                field=field,
                fix="Re-create the archive as a plain tar, tar.gz or zip (no encryption, standard compression).",
            ) from exc

        content = tmp
        entries = list(tmp.iterdir())
        if len(entries) == 1 and entries[0].name == dest.name and entries[0].is_dir() and not entries[0].is_symlink():
            content = entries[0]  # all members share the top folder named after the stem: strip it
        marker = dict(
            fingerprint,
            version=_MARKER_VERSION,
            archive=label,
            stripped_top=content is not tmp,
            members=plan.members,
            expanded_bytes=plan.expanded_bytes,
        )
        (content / MARKER_NAME).write_text(json.dumps(marker, indent=1))
        _swap_into_place(content, dest, archive=label, field=field)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            with contextlib.suppress(OSError):
                dest.parent.rmdir()  # only when empty: a refused archive leaves no trace
    return StagedPath(source=origin, path=dest, extracted=True, reused=False)


def _os_error(exc: OSError, archive: str | Path, dest: Path, field: str) -> StagingError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, fix = "the disk filled up", "Free disk space or point TAO_SKILLS_HOME at a larger disk."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause, fix = "permission denied", "Point TAO_SKILLS_HOME at a folder you can write to."
    else:
        cause, fix = exc.strerror or str(exc), "Retry, or extract the archive yourself and pass the folder."
    return StagingError(
        f"{field}: extracting {archive} into the staging cache {dest.parent} failed: {cause} ({exc}). Nothing was kept.",
        field=field,
        fix=fix,
        details={"errno": exc.errno, "archive": str(archive)},
    )


def _swap_into_place(content: Path, dest: Path, *, archive: str, field: str) -> None:
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
        if marker is None or marker.get("archive") != archive:
            if old is not None and not dest.exists():
                os.rename(old / dest.name, dest)
            raise StagingError(
                f"{field}: could not move the extracted folder into {dest}: {exc}.",
                field=field,
                fix="Retry; if it persists, check the permissions of the staging cache (TAO_SKILLS_HOME).",
            ) from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
