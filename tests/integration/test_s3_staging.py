"""S3 data through a real S3 endpoint (moto's server on 127.0.0.1): parallel ranged and resumed
downloads, archives extracted while they download (equal to the archive, spec rewritten,
resumed after an interruption, cleaned after a kill), zips downloaded first, the malicious
archive corpus refused with nothing written outside the cache, and results uploaded with
excludes."""

from __future__ import annotations

import io
import json
import os
import random
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from taoskills.data import s3, s3_extract
from taoskills.errors import StagingError

BUCKET = "tao-data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def client(endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    c = s3.client()
    try:
        c.create_bucket(Bucket=BUCKET)
    except c.exceptions.BucketAlreadyOwnedByYou:
        pass
    return c


def _tar(members: dict[str, bytes | tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                kind, target = data
                info.type = {"sym": tarfile.SYMTYPE, "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE}[kind]
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Counting:
    """Wraps a boto3 client: counts ranged GETs, fails after ``fail_after`` of them."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.gets = inner, fail_after, 0

    def get_object(self, **kw):
        self.gets += 1
        if self.fail_after is not None and self.gets > self.fail_after:
            raise ConnectionError("connection reset (injected)")
        return self.inner.get_object(**kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_parallel_ranged_download_is_reused_on_retry(client, tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 123)
    client.put_object(Bucket=BUCKET, Key="big.bin", Body=data)
    c = Counting(client)
    out = s3.download(c, BUCKET, "big.bin", tmp_path / "big.bin", part_size=1 << 20, workers=4)
    assert out.read_bytes() == data and c.gets == 6
    s3.download(c, BUCKET, "big.bin", tmp_path / "big.bin", part_size=1 << 20)
    assert c.gets == 6  # idempotent: nothing fetched again


def test_interrupted_download_resumes(client, tmp_path):
    data = os.urandom(6 * (1 << 20))
    client.put_object(Bucket=BUCKET, Key="resume.bin", Body=data)
    dest = tmp_path / "resume.bin"
    with pytest.raises(StagingError) as exc:
        s3.download(Counting(client, fail_after=3), BUCKET, "resume.bin", dest, part_size=1 << 20, workers=1)
    assert "cannot read s3://" in exc.value.message and not dest.exists()
    state = json.loads((tmp_path / "resume.bin.part.json").read_text())
    assert state["done"] == [0, 1, 2]
    c = Counting(client)
    s3.download(c, BUCKET, "resume.bin", dest, part_size=1 << 20, workers=2)
    assert c.gets == 3 and dest.read_bytes() == data  # only the missing parts


def test_archive_and_prefix_staged_as_folders(client, tmp_path):
    client.put_object(Bucket=BUCKET, Key="ds/images.tar.gz", Body=_tar({"images/a.png": b"A", "images/b.png": b"B"}))
    folder = s3.stage_uri(f"s3://{BUCKET}/ds/images.tar.gz", field="images_dir", cache_dir=tmp_path, folder=True)
    assert folder.is_dir() and {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {"a.png", "b.png"}
    again = s3.stage_uri(f"s3://{BUCKET}/ds/images.tar.gz", field="images_dir", cache_dir=tmp_path, folder=True)
    assert again == folder
    for k in ("raw/images/x.png", "raw/images/sub/y.png"):
        client.put_object(Bucket=BUCKET, Key=k, Body=b"px")
    # the archive name is absent, its extracted folder exists as a prefix
    got = s3.stage_uri(f"s3://{BUCKET}/raw/images.tar.gz", field="images_dir", cache_dir=tmp_path, folder=True)
    assert (got / "x.png").read_bytes() == b"px" and (got / "sub" / "y.png").is_file()
    assert s3.check_uri(f"s3://{BUCKET}/raw/images.tar.gz", field="f", folder=True) is None
    assert "does not exist" in s3.check_uri(f"s3://{BUCKET}/nothing/images.tar.gz", field="f", folder=True)


@pytest.mark.parametrize(
    "members",
    [
        {"../evil.txt": b"x"},
        {"/abs/evil.txt": b"x"},
        {"images/link": ("sym", "../../../../etc/passwd")},
        {"images/dev": ("chr", "")},
    ],
    ids=["traversal", "absolute", "symlink-out", "device"],
)
def test_malicious_archives_from_s3_are_refused(client, tmp_path, members):
    client.put_object(Bucket=BUCKET, Key="bad/images.tar.gz", Body=_tar({"images/ok.png": b"ok", **members}))
    before = set(tmp_path.parent.iterdir())
    with pytest.raises(StagingError):
        s3.stage_uri(f"s3://{BUCKET}/bad/images.tar.gz", field="images_dir", cache_dir=tmp_path / "cache", folder=True)
    assert set(tmp_path.parent.iterdir()) == before  # nothing written beside the cache
    assert not (tmp_path / "cache" / "s3" / BUCKET / "bad" / "images").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_upload_results_honours_excludes(client, tmp_path):
    res = tmp_path / "results"
    (res / "train").mkdir(parents=True)
    (res / "train" / "status.json").write_text("{}\n")
    (res / "train" / "model_epoch_000_step_00001.pth").write_bytes(b"w")
    (res / ".tao-runtime" / "home").mkdir(parents=True)
    (res / ".tao-runtime" / "home" / "cache").write_text("c")
    keys = s3.upload_results(res, BUCKET, "job-up", excludes=[".tao-runtime/*", "*.pth"])
    assert keys == ["results/job-up/train/status.json"]
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="results/job-up/")["Contents"]]
    assert listed == keys


def test_missing_object_is_a_clear_error(client, tmp_path):
    with pytest.raises(StagingError) as exc:
        s3.download(client, BUCKET, "absent.bin", tmp_path / "x")
    assert "does not exist" in exc.value.message and exc.value.field == "data_sources"


# ----------------------------------------------------------------------------- extraction while downloading


def _members_of(folder) -> dict[str, bytes | str]:
    """Relative path -> bytes (files) or ``-> target`` (symlinks), the marker left out."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if rel == ".tao-skills-extracted.json":
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _dataset_tgz(n: int = 6, size: int = 700_000) -> tuple[bytes, dict[str, bytes | str]]:
    """A tar.gz of incompressible files in nested folders, an empty file, a symlink and a hard
    link inside; returns (archive bytes, what the extracted folder must hold)."""
    rnd = random.Random(7)
    buf = io.BytesIO()
    want: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for i in range(n):
            data = rnd.randbytes(size)
            info = tarfile.TarInfo(f"images/sub{i % 2}/img_{i}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            want[f"sub{i % 2}/img_{i}.jpg"] = data
        empty = tarfile.TarInfo("images/empty.txt")
        tar.addfile(empty, io.BytesIO(b""))
        want["empty.txt"] = b""
        link = tarfile.TarInfo("images/latest.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "sub0/img_0.jpg"
        tar.addfile(link)
        want["latest.jpg"] = "-> sub0/img_0.jpg"
        hard = tarfile.TarInfo("images/copy.jpg")
        hard.type, hard.linkname = tarfile.LNKTYPE, "images/sub1/img_1.jpg"
        tar.addfile(hard)
        want["copy.jpg"] = want["sub1/img_1.jpg"]
    return buf.getvalue(), want


class Gated(Counting):
    """Holds back the GET of the last part until the extractor has written a member: staging
    can only finish if extraction runs while the download is still going."""

    def __init__(self, inner, cache, last_start: int):
        super().__init__(inner)
        self.cache, self.last_start, self.saw_member_first = cache, last_start, False

    def get_object(self, **kw):
        if kw.get("Range", "").startswith(f"bytes={self.last_start}-"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.saw_member_first:
                self.saw_member_first = any(p.is_file() for p in self.cache.glob("*/.images.staging-*/**/*.jpg"))
                time.sleep(0.01)
        return super().get_object(**kw)


def test_streamed_extraction_equals_the_archive(client, tmp_path):
    body, want = _dataset_tgz()
    client.put_object(Bucket=BUCKET, Key="stream/images.tar.gz", Body=body)
    part = 1 << 20
    n_parts = -(-len(body) // part)
    assert n_parts >= 4
    cache = tmp_path / "cache"
    c = Gated(client, cache, (n_parts - 1) * part)
    folder = s3.stage_uri(
        f"s3://{BUCKET}/stream/images.tar.gz", field="images_dir", cache_dir=cache, folder=True, s3=c, part_size=part, workers=1
    )
    assert c.saw_member_first, "the last part was fetched only after extraction had begun"
    assert _members_of(folder) == want
    assert (folder / "copy.jpg").stat().st_ino == (folder / "sub1" / "img_1.jpg").stat().st_ino
    marker = json.loads((folder / ".tao-skills-extracted.json").read_text())
    assert marker["archive"] == f"s3://{BUCKET}/stream/images.tar.gz" and marker["size"] == len(body)
    local = cache / "s3" / BUCKET / "stream" / "images.tar.gz"
    assert not local.exists() and not (local.parent / "images.tar.gz.part").exists()  # the archive is not kept
    again = Counting(client)
    assert s3.stage_uri(f"s3://{BUCKET}/stream/images.tar.gz", field="f", cache_dir=cache, folder=True, s3=again) == folder
    assert again.gets == 0  # idempotent: the marker's ETag matches, nothing fetched
    client.put_object(Bucket=BUCKET, Key="stream/images.tar.gz", Body=_tar({"images/new.png": b"N"}))
    changed = s3.stage_uri(f"s3://{BUCKET}/stream/images.tar.gz", field="f", cache_dir=cache, folder=True)
    assert changed == folder and _members_of(folder) == {"new.png": b"N"}  # a new ETag is staged again


def test_spec_is_rewritten_to_the_extracted_folder(client, tmp_path):
    body, want = _dataset_tgz(n=2, size=1000)
    client.put_object(Bucket=BUCKET, Key="spec/images.tar.gz", Body=body)
    spec = {"dataset": {"train_data_sources": [{"image_dir": f"s3://{BUCKET}/spec/images.tar.gz", "json_file": "/x.json"}]}}
    out, staged = s3.stage_spec(spec, {"dataset.train_data_sources.image_dir"}, cache_dir=tmp_path, s3=client)
    folder = out["dataset"]["train_data_sources"][0]["image_dir"]
    assert staged == {"dataset.train_data_sources[0].image_dir": folder} and _members_of(Path(folder)) == want
    assert spec["dataset"]["train_data_sources"][0]["image_dir"].startswith("s3://")  # the input is not mutated


def test_interrupted_streaming_resumes_on_retry(client, tmp_path):
    body, want = _dataset_tgz(n=8)
    client.put_object(Bucket=BUCKET, Key="resume/images.tar.gz", Body=body)
    part, uri, cache = 1 << 20, f"s3://{BUCKET}/resume/images.tar.gz", tmp_path / "cache"
    n_parts = -(-len(body) // part)
    with pytest.raises(StagingError) as exc:
        s3.stage_uri(uri, field="images_dir", cache_dir=cache, folder=True, s3=Counting(client, 3), part_size=part, workers=1)
    assert "cannot read" in exc.value.message and exc.value.field == "images_dir"
    local = cache / "s3" / BUCKET / "resume" / "images.tar.gz"
    assert json.loads(local.with_name("images.tar.gz.part.json").read_text())["done"] == [0, 1, 2]
    assert not list(cache.glob("*/images")) and not list(cache.glob("*/.images.staging-*"))  # nothing half-written kept
    retry = Counting(client)
    folder = s3.stage_uri(uri, field="images_dir", cache_dir=cache, folder=True, s3=retry, part_size=part, workers=2)
    assert retry.gets == n_parts - 3  # only the missing parts were fetched
    assert _members_of(folder) == want


def test_a_killed_staging_is_cleaned_and_resumed(client, tmp_path):
    body, want = _dataset_tgz(n=4)
    client.put_object(Bucket=BUCKET, Key="killed/images.tar.gz", Body=body)
    part, uri, cache = 1 << 20, f"s3://{BUCKET}/killed/images.tar.gz", tmp_path / "cache"
    with pytest.raises(StagingError):
        s3.stage_uri(uri, field="f", cache_dir=cache, folder=True, s3=Counting(client, 1), part_size=part, workers=1)
    dest = s3_extract.destination(uri, "killed/images.tar.gz", cache)
    stale = dest.parent / ".images.staging-dead"  # what a kill during extraction leaves
    (stale / "sub0").mkdir(parents=True)
    (stale / "sub0" / "img_0.jpg").write_bytes(b"half")
    folder = s3.stage_uri(uri, field="f", cache_dir=cache, folder=True, s3=client, part_size=part)
    assert folder == dest and not stale.exists() and _members_of(folder) == want


def test_zip_from_s3_is_downloaded_then_extracted(client, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("images/a.png", b"A")
        zf.writestr("images/b/c.png", b"C")
    for key in ("z/images.zip", "z2/images.tar.gz"):  # a zip under a tar name is detected from its bytes
        client.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
        folder = s3.stage_uri(f"s3://{BUCKET}/{key}", field="f", cache_dir=tmp_path, folder=True, s3=client)
        assert _members_of(folder) == {"a.png": b"A", "b/c.png": b"C"}


def _snapshot_outside(root, cache) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if cache not in p.parents and p != cache}


@pytest.mark.parametrize(
    "members,env",
    [
        ({"images/a": ("link", "../../outside.txt")}, {}),
        ({"images/a.png": b"1", "images/./a.png": b"2"}, {}),
        ({f"images/{i}.png": b"x" for i in range(20)}, {"TAO_SKILLS_MAX_EXTRACT_MEMBERS": "10"}),
        (
            {"images/big.bin": b"\0" * (3 << 20)},
            {"TAO_SKILLS_MAX_EXTRACT_RATIO": "5", "TAO_SKILLS_EXTRACT_RATIO_FLOOR_BYTES": "1"},
        ),
        ({"images/big.bin": b"\0" * (3 << 20)}, {"TAO_SKILLS_MAX_EXTRACT_BYTES": str(1 << 20)}),
        ({"images/big.bin": b"\0" * (3 << 20)}, {"TAO_SKILLS_MAX_MEMBER_BYTES": str(1 << 20)}),
    ],
    ids=["hardlink-out", "duplicate", "member-count", "ratio-bomb", "size-bomb", "member-size"],
)
def test_archive_corpus_refused_through_s3(client, tmp_path, monkeypatch, members, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    client.put_object(Bucket=BUCKET, Key="corpus/images.tar.gz", Body=_tar({"images/ok.png": b"ok", **members}))
    cache = tmp_path / "cache"
    before = _snapshot_outside(tmp_path, cache)
    with pytest.raises(StagingError) as exc:
        s3.stage_uri(f"s3://{BUCKET}/corpus/images.tar.gz", field="images_dir", cache_dir=cache, folder=True, part_size=1 << 20)
    assert exc.value.field == "images_dir" and "Nothing was extracted" in exc.value.message
    assert _snapshot_outside(tmp_path, cache) == before  # nothing written outside the staging cache
    left = [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert left == []  # no extracted member, no partial folder, no downloaded part kept


def test_too_little_disk_is_refused_before_fetching(client, tmp_path, monkeypatch):
    client.put_object(Bucket=BUCKET, Key="disk/images.tar.gz", Body=_tar({"images/a.png": b"A"}))
    monkeypatch.setenv("TAO_SKILLS_STAGING_RESERVE_BYTES", str(1 << 60))
    c = Counting(client)
    with pytest.raises(StagingError) as exc:
        s3.stage_uri(f"s3://{BUCKET}/disk/images.tar.gz", field="images_dir", cache_dir=tmp_path, folder=True, s3=c)
    assert "not enough free disk space" in exc.value.message and c.gets == 0


def test_an_early_refusal_stops_the_download_and_keeps_nothing(client, tmp_path):
    rnd = random.Random(3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
        for i in range(8):
            data = rnd.randbytes(1 << 20)
            info = tarfile.TarInfo(f"images/{i}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    client.put_object(Bucket=BUCKET, Key="early/images.tar.gz", Body=buf.getvalue())
    n_parts = -(-len(buf.getvalue()) // (1 << 20))
    c, cache = Counting(client), tmp_path / "cache"
    with pytest.raises(StagingError) as exc:
        s3.stage_uri(
            f"s3://{BUCKET}/early/images.tar.gz", field="f", cache_dir=cache, folder=True, s3=c, part_size=1 << 20, workers=1
        )
    assert "path traversal" in exc.value.message
    assert c.gets < n_parts  # the rest of the object was never fetched
    assert [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []
    assert not (tmp_path / "evil.txt").exists()
