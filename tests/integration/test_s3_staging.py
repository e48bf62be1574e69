"""S3 data through a real S3 endpoint (moto's server on 127.0.0.1): parallel ranged and resumed
downloads, archives staged to folders by the safe extractor, malicious archives refused,
results uploaded with excludes, and a DINO job on docker fed from and writing to S3."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile

import pytest

from taoskills.data import s3
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
