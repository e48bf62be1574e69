"""S3 archives extracted while they download.

:func:`stage_archive_uri` turns ``s3://bucket/.../images.tar.gz`` (any tar: ``.tar``,
``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) into a folder without waiting for the whole
object: parallel ranged GETs (``workers`` threads, ``part_size`` bytes each - by default
about half the object, :func:`stream_part_size` - fetched in order) fill ``<cache>/s3/<bucket>/<key>.part`` exactly as :func:`taoskills.data.s3.download`
does, and an :class:`OrderedReader` hands those bytes, in order and as soon as they are on
disk, to ``tarfile``'s streaming mode (``r|*``). Every member passes the checks of
:mod:`taoskills.data.archives` (traversal, absolute paths, links out, devices, duplicates,
size / ratio / member limits, free disk) just before it is written
(:func:`taoskills.data.archives.extract_tar_stream`), into a temporary folder that is renamed
into place with its marker only when the last member is in
(:func:`taoskills.data.cache.stage_extracted`).

Retry and resume: the marker holds the object's ETag and size, so a finished staging is
reused (nothing fetched). A download that fails keeps the finished parts (``.part.json``) and
the retry fetches only the missing ones, re-reading the rest from disk while it extracts again
from the start; a refused or corrupt archive keeps nothing. A staging killed mid-way leaves
only a ``.part`` file and a hidden temporary folder, never the destination; the next staging
(under the same ``flock``, :func:`taoskills.data.s3.locked`) removes the folder and resumes
the parts. After a successful extraction the downloaded archive is deleted (the folder is
what the spec names).

Zip archives are downloaded first, then extracted (:func:`taoskills.data.staging.stage`):
a zip's central directory - the list of its members - is at the end of the file, so nothing
can be checked before the last byte has arrived. A tar-named object that is really a zip is
detected from its first bytes and handled the same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from taoskills import tao
from taoskills.data import cache
from taoskills.data import s3 as s3mod
from taoskills.data.archives import ArchiveLimits, Plan, extract_tar_stream
from taoskills.errors import StagingError

READ_BUFFER = 1 << 20  # bytes tarfile asks for at a time (decompression and copies in 1 MiB steps)
#: A streamed object is split into about this many ranged GETs: the extractor reads in order, at
#: one stream's pace, so two downloads in flight keep ahead of it, and each ranged GET costs the
#: endpoint a request (moto's server even copies the whole object for every one).
STREAM_PARTS = 2
#: ... but no part above this, so an interrupted download loses at most this much.
MAX_STREAM_PART = 1 << 30


def stream_part_size(size: int) -> int:
    """Part size for streaming an object of ``size`` bytes: ``size / STREAM_PARTS`` rounded up
    to MiB, within [:data:`taoskills.data.s3.PART_SIZE`, :data:`MAX_STREAM_PART`]."""
    per = -(-size // STREAM_PARTS)
    return min(MAX_STREAM_PART, max(s3mod.PART_SIZE, -(-per // (1 << 20)) << 20))


class OrderedReader(io.RawIOBase):
    """A sequential, read-only view of a :class:`~taoskills.data.s3.PartFile` being filled by
    other threads: :meth:`readinto` blocks until the bytes at the current position are written,
    then reads them back with ``os.pread``. A failed part (:meth:`fail`) is raised to the
    reader once it reaches bytes that will not arrive."""

    def __init__(self, part_file: s3mod.PartFile):
        super().__init__()
        self.pf = part_file
        self.pos = 0
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        part_file.on_progress = self._wake

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """Record a download failure and wake the reader."""
        with self.cond:
            if self.error is None:
                self.error = exc
            self.cond.notify_all()

    def readable(self) -> bool:
        return True

    def _available(self, pos: int) -> int:
        """Bytes readable at ``pos`` without waiting (blocks until there is at least one)."""
        i = pos // self.pf.part_size
        offset = pos - i * self.pf.part_size
        with self.cond:
            while self.pf.progress.get(i, 0) <= offset:
                if self.error is not None:
                    raise OSError(f"download of part {i} failed: {self.error}") from self.error
                self.cond.wait(timeout=1.0)
            return self.pf.progress[i] - offset

    def head(self, n: int) -> bytes:
        """The object's first ``n`` bytes (waits for them); the position is not moved."""
        n = min(n, self.pf.size)
        got = b""
        while len(got) < n:  # the part file is sparse: read only what is written
            got = os.pread(self.pf.fd, min(n, len(got) + self._available(len(got))), 0)
        return got

    def readinto(self, buf: Any) -> int:
        if self.pos >= self.pf.size:
            return 0
        n = min(len(buf), self._available(self.pos))
        data = os.pread(self.pf.fd, n, self.pos)
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)


def destination(uri: str, key: str, cache_dir: Path) -> Path:
    """Where ``uri`` is extracted: ``<cache_dir>/<sha256(uri)[:12]>/<stem>``."""
    return cache.staging_root(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:12] / tao.archive_stem(key)


def _remove_stale(dest: Path) -> None:
    """Hidden temporary folders of an earlier, killed staging of ``dest`` (caller holds the lock)."""
    if dest.parent.is_dir():
        for p in dest.parent.glob(f".{dest.name}.staging-*"):
            shutil.rmtree(p, ignore_errors=True)


def _check_room(pf: s3mod.PartFile, field: str, limits: ArchiveLimits) -> None:
    left = sum(pf.part_len(i) for i in pf.todo())
    free = shutil.disk_usage(pf.dest.parent).free
    if free < left + limits.reserve_bytes:
        raise StagingError(
            f"{field}: not enough free disk space to download s3://{pf.bucket}/{pf.key}: {left} bytes to fetch, "
            f"{free} free in {pf.dest.parent}, of which {limits.reserve_bytes} must stay free. Nothing was fetched.",
            field=field,
            fix="Free disk space, or point the staging cache (TAO_SKILLS_HOME or the platform's workspace) at a larger disk.",
            details={"needed": left + limits.reserve_bytes, "free": free},
        )


def stage_archive_uri(
    s3,
    bucket: str,
    key: str,
    *,
    field: str,
    cache_dir: Path,
    part_size: int | None = None,
    workers: int = s3mod.WORKERS,
    limits: ArchiveLimits | None = None,
    dest: Path | None = None,
) -> cache.StagedPath:
    """The folder ``s3://bucket/key`` (an archive) extracts to, staged as the module docstring says.

    ``dest`` defaults to :func:`destination`; ``limits`` to :meth:`ArchiveLimits.from_env`;
    ``part_size`` to :func:`stream_part_size` (a zip: :data:`taoskills.data.s3.PART_SIZE`).
    Returns a :class:`~taoskills.data.cache.StagedPath` (``reused`` when nothing was fetched).
    Errors: StagingError - missing or unreadable object, download failure (parts kept for a
    retry), unsafe / oversized / corrupt archive, too little disk."""
    uri = f"s3://{bucket}/{key}"
    meta = s3mod.head_or_refuse(s3, bucket, key, field)
    lim = limits or ArchiveLimits.from_env()
    local = cache_dir / "s3" / bucket / key
    if tao.archive_suffix(key) == ".zip":
        return _download_then_extract(s3, bucket, key, local, field, cache_dir, part_size or s3mod.PART_SIZE, workers, lim)
    part_size = part_size or stream_part_size(int(meta["ContentLength"]))
    dest = dest or destination(uri, key, cache_dir)
    fingerprint = {"etag": meta.get("ETag", ""), "size": int(meta["ContentLength"])}
    if cache.reusable(uri, dest, fingerprint, field=field):
        return cache.StagedPath(source=local, path=dest, extracted=True, reused=True)
    with s3mod.locked(local):
        if cache.reusable(uri, dest, fingerprint, field=field):  # another process finished it meanwhile
            return cache.StagedPath(source=local, path=dest, extracted=True, reused=True)
        _remove_stale(dest)
        pf = s3mod.PartFile(s3, bucket, key, local, meta, part_size=part_size, field=field)
        _check_room(pf, field, lim)
        pf.open()
        reader = OrderedReader(pf)

        def fetch(i: int) -> None:
            try:
                pf.fetch(i)
            except BaseException as exc:
                reader.fail(exc)
                raise

        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3-part")
        for i in pf.todo():
            pool.submit(fetch, i)
        outcome = "interrupted"  # until known: keep the finished parts for the next staging
        try:
            try:
                first = reader.head(4)
            except OSError:
                raise s3mod._error(uri, reader.error or OSError("read failed"), field) from None
            if first in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip under a tar name
                pool.shutdown(wait=True)
                if reader.error is not None:
                    raise s3mod._error(uri, reader.error, field) from None
                pf.complete()
                outcome = "done"  # the archive is kept, as a plain download
                from taoskills.data import staging

                return staging.stage(local, field=field, cache_dir=cache_dir, limits=lim)

            def extract(tmp: Path) -> Plan:
                stream = io.BufferedReader(reader, READ_BUFFER)
                with tarfile.open(fileobj=stream, mode="r|*", bufsize=READ_BUFFER, copybufsize=READ_BUFFER) as tf:  # type: ignore[call-overload]
                    return extract_tar_stream(tf, local, pf.size, tmp, field_=field, limits=lim)

            try:
                result = cache.stage_extracted(uri, dest, fingerprint, field=field, extract=extract, origin=local)
            except StagingError:
                if reader.error is not None:
                    raise s3mod._error(uri, reader.error, field) from None
                outcome = "refused"  # unsafe, oversized or corrupt: a retry would be refused again
                raise
            outcome = "done"
            return result
        finally:
            if outcome == "refused" or (outcome == "interrupted" and reader.error is None):
                pf.cancel.set()  # stop fetching; a failed download lets the parts in flight finish
            pool.shutdown(wait=True, cancel_futures=True)
            if outcome == "interrupted":
                pf.close()  # finished parts stay (.part.json): the retry fetches only the rest
            else:
                pf.discard()  # after complete() (a zip) this only removes the record


def _download_then_extract(
    s3, bucket: str, key: str, local: Path, field: str, cache_dir: Path, part_size: int, workers: int, lim: ArchiveLimits
) -> cache.StagedPath:
    from taoskills.data import staging

    path = s3mod.download(s3, bucket, key, local, part_size=part_size, workers=workers, field=field)
    return staging.stage(path, field=field, cache_dir=cache_dir, limits=lim)
