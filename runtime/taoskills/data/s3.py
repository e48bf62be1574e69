"""S3 data sources: staged to a local cache before the action runs, results uploaded after.

* :func:`download` - one object by parallel ranged GETs (``part_size`` bytes each, ``workers``
  threads) into ``<dest>.part`` with ``os.pwrite``; finished parts are recorded in
  ``<dest>.part.json`` (with the object's ETag and size), so an interrupted download resumes
  where it stopped, and a finished one (``<dest>.s3.json`` matching the ETag) is reused: staging
  is idempotent on retry.
* :func:`stage_uri` - an ``s3://bucket/key`` input as a local path: an archive where TAO needs
  a folder (``images.tar.gz`` -> ``images/``) is extracted while it downloads, every member
  checked by the bounded, safe extractor as it streams (traversal, absolute paths, links out,
  devices, size / ratio / member limits, free disk; :mod:`taoskills.data.s3_extract`; a zip
  is downloaded first); a key that is a prefix is fetched as a folder.
* :func:`upload_results` - ``results_dir`` to ``s3://<bucket>/results/<job_id>/`` minus
  ``upload_excludes`` globs (TAO SDK 7.2.0's output route, docs/tao-contract.md §1.3).

Credentials by name only: boto3 reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (TAO's
``ACCESS_KEY``/``SECRET_KEY`` are mapped to them); ``AWS_ENDPOINT_URL`` (or ``S3_ENDPOINT_URL``)
selects a custom endpoint, addressed path-style.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from taoskills.errors import StagingError

PART_SIZE = 64 << 20  # large parts: fewer requests; S3 serves each ranged GET at full speed
WORKERS = 4
_URI = re.compile(r"^s3:/{1,2}([a-z0-9][a-z0-9.\-]{1,62})/?(.*)$")


def is_s3(value: Any) -> bool:
    """``s3://bucket/key`` (also the one-slash form a path join makes of it)."""
    return isinstance(value, str) and bool(_URI.match(value))


def parse(uri: str) -> tuple[str, str]:
    """(bucket, key). Errors: StagingError for anything but ``s3://bucket[/key]``."""
    m = _URI.match(uri)
    if not m:
        raise StagingError(f"{uri} is not an s3://bucket/key URI", field="data_sources", fix="write it as s3://bucket/path")
    return m.group(1), m.group(2).strip("/")


def client() -> Any:
    """A boto3 S3 client from the environment (names only; see the module docstring)."""
    import boto3
    from botocore.config import Config

    env = os.environ
    kw: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL") or env.get("S3_ENDPOINT_URL")
    if endpoint:
        kw["endpoint_url"] = endpoint
    if not env.get("AWS_ACCESS_KEY_ID") and env.get("ACCESS_KEY"):
        kw["aws_access_key_id"], kw["aws_secret_access_key"] = env["ACCESS_KEY"], env.get("SECRET_KEY")
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
    cfg = Config(s3={"addressing_style": "path"} if endpoint else {}, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", region_name=region, config=cfg, **kw)


def _error(uri: str, exc: BaseException, field: str) -> StagingError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return StagingError(
        f"{field}: cannot read {uri} ({code})",
        field=field,
        fix="check the bucket and key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (by name) and AWS_ENDPOINT_URL",
    )


def head(s3, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata, or None when there is no such object."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def done_marker(dest: Path) -> Path:
    """``<dest>.s3.json``: written after ``dest`` is complete (the object's ETag and size)."""
    return dest.with_name(dest.name + ".s3.json")


def is_done(dest: Path, meta: dict[str, Any]) -> bool:
    """``dest`` is a complete download of the object ``meta`` describes (done marker, size)."""
    marker = done_marker(dest)
    if not (dest.is_file() and marker.is_file()):
        return False
    try:
        want = {"etag": meta.get("ETag", ""), "size": int(meta["ContentLength"])}
        return json.loads(marker.read_text()) == want and dest.stat().st_size == want["size"]
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the hidden ``.<name>.lock`` beside ``dest``: one process stages
    ``dest`` at a time (the file stays: removing it would race with a waiting process)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(f".{dest.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def head_or_refuse(s3, bucket: str, key: str, field: str) -> dict[str, Any]:
    """The object's metadata; StagingError when it is missing or unreadable."""
    uri = f"s3://{bucket}/{key}"
    try:
        meta = head(s3, bucket, key)
    except Exception as exc:
        raise _error(uri, exc, field) from None
    if meta is None:
        raise StagingError(f"{field}: {uri} does not exist", field=field, fix="check the key (aws s3 ls) or upload the data")
    return meta


def download(
    s3, bucket: str, key: str, dest: Path, *, part_size: int = PART_SIZE, workers: int = WORKERS, field: str = "data_sources"
) -> Path:
    """Download ``s3://bucket/key`` to ``dest`` (see the module docstring). Returns ``dest``.

    Errors: StagingError (missing object, read failure)."""
    meta = head_or_refuse(s3, bucket, key, field)
    if is_done(dest, meta):
        return dest  # staged before: reuse
    with locked(dest):
        if is_done(dest, meta):
            return dest
        pf = PartFile(s3, bucket, key, dest, meta, part_size=part_size, field=field).open()
        try:
            try:
                with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                    list(pool.map(pf.fetch, pf.todo()))
            except Exception as exc:
                raise _error(f"s3://{bucket}/{key}", exc, field) from None
            return pf.complete()
        finally:
            pf.close()


class PartFile:
    """``<dest>.part`` and its record ``<dest>.part.json``: one object's parts, fetched in any
    order by ranged GETs (``IfMatch`` the ETag, so a changed object fails instead of mixing),
    each recorded once complete, so an interrupted download resumes where it stopped.

    ``progress[i]`` is how many bytes of part ``i`` are written, from its start; ``on_progress``
    (if set) is called after every chunk. Not thread-safe across processes: callers hold
    :func:`locked` for the destination."""

    def __init__(self, s3, bucket: str, key: str, dest: Path, meta: dict[str, Any], *, part_size: int, field: str):
        self.s3, self.bucket, self.key, self.dest, self.field = s3, bucket, key, dest, field
        self.size, self.etag, self.part_size = int(meta["ContentLength"]), meta.get("ETag", ""), part_size
        self.n_parts = max(1, -(-self.size // part_size))
        self.part = dest.with_name(dest.name + ".part")
        self.state_path = dest.with_name(dest.name + ".part.json")
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.on_progress: Any = None
        self.fd = -1
        dest.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {}
        if self.state_path.is_file() and self.part.is_file():
            try:
                state = json.loads(self.state_path.read_text())
            except ValueError:
                state = {}
        if state.get("etag") != self.etag or state.get("size") != self.size or state.get("part_size") != part_size:
            state = {"etag": self.etag, "size": self.size, "part_size": part_size, "done": []}
            self.part.unlink(missing_ok=True)
        self.state = state
        self.done: set[int] = set(state["done"])
        self.progress = {i: self.part_len(i) for i in self.done}

    def part_len(self, i: int) -> int:
        return min(self.size, (i + 1) * self.part_size) - i * self.part_size

    def todo(self) -> list[int]:
        return [i for i in range(self.n_parts) if i not in self.done] if self.size else []

    def open(self) -> PartFile:
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, self.size)
        return self

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fetch(self, i: int) -> None:
        """Part ``i`` into the part file (raises on a read error, a short read or ``cancel``)."""
        start, end = i * self.part_size, min(self.size, (i + 1) * self.part_size) - 1
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end}", IfMatch=self.etag)["Body"]
        offset = start
        for chunk in iter(lambda: body.read(1 << 20), b""):
            if self.cancel.is_set():
                raise OSError("download cancelled")
            os.pwrite(self.fd, chunk, offset)
            offset += len(chunk)
            self.progress[i] = offset - start
            if self.on_progress is not None:
                self.on_progress()
        if offset != end + 1:
            raise OSError(f"short read of part {i}: {offset - start} of {end + 1 - start} bytes")
        with self.lock:
            self.done.add(i)
            self.state["done"] = sorted(self.done)
            _write_json(self.state_path, self.state)
        if self.on_progress is not None:
            self.on_progress()

    def complete(self) -> Path:
        """Every part is in: rename to ``dest`` and write the done marker. Returns ``dest``."""
        os.fsync(self.fd)
        self.close()
        os.replace(self.part, self.dest)
        self.state_path.unlink(missing_ok=True)
        _write_json(done_marker(self.dest), {"etag": self.etag, "size": self.size})
        return self.dest

    def discard(self) -> None:
        """Remove the part file and its record (nothing kept for a retry)."""
        self.close()
        self.part.unlink(missing_ok=True)
        self.state_path.unlink(missing_ok=True)


def download_prefix(s3, bucket: str, prefix: str, dest: Path, *, workers: int = WORKERS, field: str = "data_sources") -> Path:
    """Every object under ``prefix/`` into ``dest/`` (keys kept relative; ``..`` refused)."""
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except Exception as exc:
        raise _error(f"s3://{bucket}/{prefix}", exc, field) from None
    if not keys:
        raise StagingError(
            f"{field}: s3://{bucket}/{prefix}/ holds no objects", field=field, fix="check the prefix or upload the data"
        )
    base = len(prefix.rstrip("/")) + 1
    root = dest.resolve()
    targets = []
    for k in keys:
        target = (root / k[base:]).resolve()
        if root not in target.parents:
            raise StagingError(f"{field}: object key {k} would land outside {dest}", field=field, fix="rename the object")
        targets.append((k, target))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(lambda kt: download(s3, bucket, kt[0], kt[1], workers=1, field=field), targets))
    return dest


def stage_uri(
    uri: str, *, field: str, cache_dir: Path, folder: bool, s3=None, part_size: int | None = None, workers: int = WORKERS
) -> Path:
    """The local path for an S3 input (see the module docstring); ``folder``: TAO needs a folder here.

    ``cache_dir/s3/<bucket>/<key>`` holds downloads (and the parts of an archive while it
    streams); a tar archive where a folder is needed is extracted while it downloads into
    ``cache_dir/<sha256(uri)[:12]>/<stem>/`` (:func:`taoskills.data.s3_extract.stage_archive_uri`),
    a zip downloaded then extracted by :func:`taoskills.data.staging.stage`. ``part_size``:
    bytes per ranged GET (default :data:`PART_SIZE`; for a streamed archive
    :func:`taoskills.data.s3_extract.stream_part_size`). Errors: StagingError."""
    from taoskills.data import staging

    s3 = s3 or client()
    bucket, key = parse(uri)
    local = cache_dir / "s3" / bucket / key
    try:
        exists = head(s3, bucket, key) is not None if key else False
    except Exception as exc:
        raise _error(uri, exc, field) from None
    if exists:
        if folder and staging.is_archive(key):
            from taoskills.data.s3_extract import stage_archive_uri

            return stage_archive_uri(s3, bucket, key, field=field, cache_dir=cache_dir, part_size=part_size, workers=workers).path
        return download(s3, bucket, key, local, part_size=part_size or PART_SIZE, workers=workers, field=field)
    prefix = key
    if folder and staging.is_archive(key):
        prefix = str(Path(key).with_name(staging.archive_stem(key)))  # images.tar.gz -> images/
    return download_prefix(s3, bucket, prefix, cache_dir / "s3" / bucket / prefix, workers=workers, field=field)


def check_uri(uri: str, *, field: str, folder: bool, s3=None) -> str | None:
    """None when the S3 input exists (object, or for a folder the archive's stem prefix), else why not."""
    from taoskills.data import staging

    try:
        s3 = s3 or client()
        bucket, key = parse(uri)
        if key and head(s3, bucket, key) is not None:
            return None
        prefix = str(Path(key).with_name(staging.archive_stem(key))) if folder and staging.is_archive(key) else key
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/", MaxKeys=1)
        return None if listing.get("KeyCount", 0) else f"{uri} does not exist (no object, no {prefix}/ prefix)"
    except StagingError as exc:
        return exc.message
    except Exception as exc:
        return _error(uri, exc, field).message


def upload_results(
    results_dir: Path, bucket: str, job_id: str, *, excludes: list[str] | None = None, s3=None, workers: int = WORKERS
) -> list[str]:
    """Upload ``results_dir`` to ``s3://<bucket>/results/<job_id>/``; files matching an
    ``excludes`` glob (relative path or file name) are skipped; symlinks are not followed.
    Returns the uploaded keys. Errors: StagingError."""
    s3 = s3 or client()
    root = Path(results_dir)
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]
    pats = list(excludes or [])

    def skip(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(Path(rel).name, p) for p in pats)

    jobs = [(p, f"results/{job_id}/{p.relative_to(root).as_posix()}") for p in files if not skip(p.relative_to(root).as_posix())]
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(lambda pk: s3.upload_file(str(pk[0]), bucket, pk[1]), jobs))
    except Exception as exc:
        raise _error(f"s3://{bucket}/results/{job_id}/", exc, "results_dir") from None
    return [k for _, k in jobs]


def _base_key(key: str) -> str:
    return re.sub(r"\[\d+\]", "", key)


def stage_spec(
    spec: Any, folder_keys: set[str], *, cache_dir: Path, s3=None, part_size: int | None = None, workers: int = WORKERS
) -> tuple[Any, dict[str, str]]:
    """A copy of ``spec`` with every ``s3://`` value replaced by its staged local path
    (:func:`stage_uri`; a key in ``folder_keys`` - dotted, list indices optional - needs a
    folder). Returns (spec, {dotted key: local path}). Errors: StagingError."""
    staged: dict[str, str] = {}
    conn = [s3]
    bases = {_base_key(k) for k in folder_keys}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if is_s3(value):
            if conn[0] is None:
                conn[0] = client()
            bucket, obj = parse(value)
            folder = key in folder_keys or _base_key(key) in bases
            local = stage_uri(
                f"s3://{bucket}/{obj}",
                field=key,
                cache_dir=cache_dir,
                folder=folder,
                s3=conn[0],
                part_size=part_size,
                workers=workers,
            )
            staged[key] = str(local)
            return str(local)
        return value

    return walk(spec, ""), staged
