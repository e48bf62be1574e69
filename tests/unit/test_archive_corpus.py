"""Hostile archive corpus, generated here: bombs (size, ratio, member count), duplicates, link
tricks, setuid members, traversal, FIFO/device/socket sources. Every hostile case is refused
with an error naming the real cause, and nothing is written outside the staging cache."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from taoskills.bank.skill_info import DataSource
from taoskills.data import archives
from taoskills.data.archives import ArchiveLimits
from taoskills.data.staging import resolve_data_source, resolve_spec_path, stage, staged_destination
from taoskills.errors import StagingError

FIELD = "dataset.train_dataset.images_dir"
DS = DataSource(source="train_datasets", path="images_train.tar.gz", runtime="extracted_folder")
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))
    for env in archives.LIMIT_ENV.values():
        monkeypatch.delenv(env, raising=False)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` outside the staging cache -> (size, mode)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("home"):
            continue
        st = p.lstat()
        out[rel] = (st.st_size, st.st_mode)
    return out


def _files_in_cache(root: Path) -> list[str]:
    cache = root / "home"
    return [p.relative_to(cache).as_posix() for p in cache.rglob("*") if not p.is_dir()] if cache.exists() else []


def _info(name: str, size: int = 0, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _zeros_zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.jpg", "w") as fh:
        chunk = b"\0" * MiB
        for _ in range(size // MiB):
            fh.write(chunk)
    return path


def _zeros_tgz(path: Path, size: int) -> Path:
    class Zeros(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.left = n

        def readinto(self, b) -> int:  # type: ignore[override]
            n = min(len(b), self.left)
            b[:n] = b"\0" * n
            self.left -= n
            return n

    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        tf.addfile(_info("zeros.jpg", size), Zeros(size))
    return path


def _link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    return _info(name, type=tarfile.LNKTYPE if hard else tarfile.SYMTYPE, linkname=target), None


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, len(data), mode=mode), data


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names: that is the point
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def _zinfo(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


# Each case: (id, builder(data_dir) -> archive, limits or None, words the error must contain)
CASES: list[tuple[str, Callable[[Path], Path], dict | None, tuple[str, ...]]] = [
    # bombs
    (
        "zip_ratio_bomb",
        lambda d: _zeros_zip(d / "images_train.zip", 80 * MiB),
        None,
        ("max_ratio", "TAO_SKILLS_MAX_EXTRACT_RATIO"),
    ),
    (
        "tgz_size_bomb",
        lambda d: _zeros_tgz(d / "images_train.tar.gz", 3 * MiB),
        {"max_bytes": 2 * MiB},
        ("max_bytes", "TAO_SKILLS_MAX_EXTRACT_BYTES"),
    ),
    (
        "tgz_ratio_bomb",
        lambda d: _zeros_tgz(d / "images_train.tgz", 4 * MiB),
        {"ratio_floor_bytes": MiB},
        ("max_ratio", "ratio of"),
    ),
    (
        "tgz_count_bomb",
        lambda d: _tar(d / "images_train.tar.gz", [_file(f"f{i}.jpg", b"") for i in range(300)]),
        {"max_members": 200},
        ("more than 200 members", "TAO_SKILLS_MAX_EXTRACT_MEMBERS"),
    ),
    (
        "zip_count_bomb",
        lambda d: _zip(d / "images_train.zip", [(f"f{i}.jpg", b"") for i in range(300)]),
        {"max_members": 200},
        ("max_members",),
    ),
    (
        "tgz_many_empty_files",  # costs blocks and inodes although the content is 0 bytes
        lambda d: _tar(d / "images_train.tar.gz", [_file(f"{i}", b"") for i in range(3000)]),
        {"ratio_floor_bytes": 4 * MiB},
        ("max_ratio",),
    ),
    (
        "member_over_cap",
        lambda d: _tar(d / "images_train.tar.gz", [_file("big.jpg", b"y" * 5000)]),
        {"max_member_bytes": 1000},
        ("big.jpg", "max_member_bytes"),
    ),
    # duplicates and link tricks
    ("tar_duplicate", lambda d: _tar(d / "a.tar.gz", [_file("a.jpg", b"1"), _file("a.jpg", b"2")]), None, ("appears twice",)),
    ("zip_duplicate", lambda d: _zip(d / "a.zip", [("a.jpg", b"1"), ("a.jpg", b"2")]), None, ("appears twice",)),
    (
        "hardlink_then_overwrite",
        lambda d: _tar(d / "a.tar.gz", [_file("t.jpg", b"keep"), _link("h.jpg", "t.jpg", hard=True), _file("h.jpg", b"evil")]),
        None,
        ("h.jpg", "appears twice"),
    ),
    (
        "symlink_then_overwrite",
        lambda d: _tar(d / "a.tar.gz", [_link("s.jpg", "../../victim"), _file("s.jpg", b"evil")]),
        None,
        ("s.jpg",),
    ),
    (
        "write_through_symlink_dir",
        lambda d: _tar(d / "a.tar.gz", [_file("sub/a.jpg"), _link("d", "sub"), _file("d/x.jpg", b"evil")]),
        None,
        ("d/x.jpg", "through the symlink"),
    ),
    (
        "hardlink_to_non_member",
        lambda d: _tar(d / "a.tar.gz", [_link("h.jpg", "etc/passwd", hard=True)]),
        None,
        ("not an earlier regular file",),
    ),
    ("hardlink_outside", lambda d: _tar(d / "a.tar.gz", [_link("h", "../x", hard=True)]), None, ("outside",)),
    ("symlink_absolute", lambda d: _tar(d / "a.tar.gz", [_link("p", "/etc/passwd")]), None, ("absolute",)),
    ("symlink_escape", lambda d: _tar(d / "a.tar.gz", [_link("e", "../../outside")]), None, ("outside",)),
    (
        "zip_symlink_escape",
        lambda d: _zip(d / "a.zip", [(_zinfo("link", 0o120777), b"../../outside")]),
        None,
        ("link", "outside"),
    ),
    # traversal and special members
    ("tar_traversal", lambda d: _tar(d / "a.tar.gz", [_file("ok.jpg"), _file("../evil.txt")]), None, ("..",)),
    ("tar_absolute", lambda d: _tar(d / "a.tar.gz", [_file("/tmp/tao_skills_abs_evil.txt")]), None, ("absolute",)),
    ("zip_traversal", lambda d: _zip(d / "a.zip", [("ok.jpg", b"1"), ("../evil.txt", b"x")]), None, ("..",)),
    ("zip_backslash_traversal", lambda d: _zip(d / "a.zip", [("..\\evil.txt", b"x")]), None, ("..",)),
    ("tar_fifo_member", lambda d: _tar(d / "a.tar.gz", [(_info("p", type=tarfile.FIFOTYPE), None)]), None, ("FIFO",)),
    ("tar_device_member", lambda d: _tar(d / "a.tar.gz", [(_info("c", type=tarfile.CHRTYPE), None)]), None, ("device",)),
    ("zip_fifo_member", lambda d: _zip(d / "a.zip", [(_zinfo("p", stat.S_IFIFO | 0o644), b"")]), None, ("FIFO",)),
    ("corrupt_gzip", lambda d: _write(d / "a.tar.gz", b"\x1f\x8b" + b"junk" * 40), None, ("corrupt",)),
    ("truncated_zip", lambda d: _truncate(_zip(d / "a.zip", [("a.jpg", b"1" * 4000)])), None, ("corrupt",)),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_archive_refused_nothing_written_outside_cache(tmp_path, case):
    _id, build, limits, words = case
    data = tmp_path / "data"
    data.mkdir()
    archive = build(data)
    before = _snapshot(tmp_path)
    with pytest.raises(StagingError) as exc:
        stage(archive, field=FIELD, limits=ArchiveLimits(**(limits or {})))
    err = exc.value
    assert err.field == FIELD and err.fix and archive.name in err.message
    for word in words:
        assert word in str(err), (word, str(err))
    assert _snapshot(tmp_path) == before
    assert _files_in_cache(tmp_path) == []
    assert not staged_destination(archive).exists()
    for outside in (tmp_path / "evil.txt", tmp_path / "outside", tmp_path / "victim", Path("/tmp/tao_skills_abs_evil.txt")):
        assert not os.path.lexists(outside)


def test_limits_from_environment(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "images_train.tar.gz", [_file(f"f{i}.jpg") for i in range(20)])
    monkeypatch.setenv("TAO_SKILLS_MAX_EXTRACT_MEMBERS", "10")
    with pytest.raises(StagingError, match="more than 10 members") as exc:
        stage(archive, field=FIELD)
    assert "TAO_SKILLS_MAX_EXTRACT_MEMBERS" in exc.value.fix and "20" not in exc.value.fix.split("least")[0]
    monkeypatch.setenv("TAO_SKILLS_MAX_EXTRACT_MEMBERS", "100")
    assert stage(archive, field=FIELD).extracted
    monkeypatch.setenv("TAO_SKILLS_MAX_EXTRACT_RATIO", "lots")
    with pytest.raises(StagingError, match="TAO_SKILLS_MAX_EXTRACT_RATIO") as exc:
        ArchiveLimits.from_env()
    assert exc.value.field == "TAO_SKILLS_MAX_EXTRACT_RATIO"
    assert ArchiveLimits.from_env(max_ratio=5).max_ratio == 5  # an argument beats the environment


def test_free_disk_checked_before_writing(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "images_train.tar.gz", [_file("a.jpg", b"1" * 10000)])

    class Usage:
        total, used, free = 10**9, 10**9, 1000

    monkeypatch.setattr(archives.shutil, "disk_usage", lambda p: Usage)
    before = _snapshot(tmp_path)
    with pytest.raises(StagingError, match="not enough free disk space") as exc:
        stage(archive, field=FIELD)
    assert "TAO_SKILLS_HOME" in exc.value.fix
    assert _snapshot(tmp_path) == before and _files_in_cache(tmp_path) == []


def test_setuid_and_setgid_bits_dropped(tmp_path):
    tar = _tar(tmp_path / "images_train.tar.gz", [_file("run.sh", b"#!/bin/sh\n", mode=0o6755), _file("a.jpg", mode=0o4777)])
    got = stage(tar, field=FIELD).path
    for name in ("run.sh", "a.jpg"):
        mode = (got / name).stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), (name, oct(mode))
        assert not mode & stat.S_IWOTH
    z = _zip(tmp_path / "images_val.zip", [(_zinfo("s.jpg", stat.S_IFREG | 0o6777), b"x")])
    mode = (stage(z, field=FIELD).path / "s.jpg").stat().st_mode
    assert stat.S_IMODE(mode) == 0o644


def test_good_archives_of_every_kind_extract(tmp_path):
    files = [_file("images_train/a.jpg", b"1"), _file("images_train/sub/b.png", b"2")]
    for name, mode in (
        ("t.tar", "w"),
        ("t.tar.gz", "w:gz"),
        ("t.tgz", "w:gz"),
        ("t.tar.bz2", "w:bz2"),
        ("t.tar.xz", "w:xz"),
    ):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        archive = _tar(d / name.replace("t.", "images_train."), files, mode=mode)
        got = stage(archive, field=FIELD).path
        assert (got / "a.jpg").read_bytes() == b"1" and (got / "sub" / "b.png").read_bytes() == b"2", name
    z = _zip(tmp_path / "images_train.zip", [("a.jpg", b"1")])
    assert (stage(z, field=FIELD).path / "a.jpg").read_bytes() == b"1"


def test_default_limits_refuse_the_many_empty_files_probe(tmp_path):
    """A small tgz of 100,001 empty files (the probe's case) is refused by the default limits."""
    archive = _empty_members_tgz(tmp_path / "images_train.tar.gz", 100_001)
    with tarfile.open(archive) as tf:  # a well-formed tar: the first members read back
        assert [m.name for m, _ in zip(tf, range(3), strict=False)] == ["0", "1", "2"]
    assert archive.stat().st_size < 2 * MiB
    with pytest.raises(StagingError, match="max_ratio"):
        stage(archive, field=FIELD)
    assert _files_in_cache(tmp_path) == []


def _empty_members_tgz(path: Path, n: int) -> Path:
    """A gzip tar of ``n`` empty regular files named 0..n-1, written from one ustar header
    template (only the name and checksum change), so 100,001 members take well under a second."""
    import gzip

    template = bytearray(tarfile.TarInfo("").tobuf(format=tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8
    base = sum(template)
    out = bytearray()
    for i in range(n):
        name = str(i).encode()
        header = bytearray(template)
        header[: len(name)] = name
        header[148:156] = b"%06o\0 " % (base + sum(name))
        out += header
    out += b"\0" * 1024
    path.write_bytes(gzip.compress(bytes(out), compresslevel=6))
    return path


# -- sources that are not regular files: refused before any open ----------------------------


@pytest.mark.timeout(30)
def test_fifo_source_refused_without_opening(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    fifo = data / "images_train.tar.gz"
    os.mkfifo(fifo)
    for call in (
        lambda: stage(fifo, field=FIELD),
        lambda: resolve_data_source(data, DS, field=FIELD),
        lambda: resolve_spec_path(fifo, field=FIELD),
        lambda: resolve_data_source(fifo, DS, field=FIELD),
    ):
        with pytest.raises(StagingError, match="FIFO") as exc:
            call()
        assert exc.value.details["kind"] == "fifo" and "not opened" in exc.value.message
    # a FIFO with a same-stem name is refused too, not skipped over
    other = tmp_path / "other"
    other.mkdir()
    os.mkfifo(other / "images_train.zip")
    with pytest.raises(StagingError, match="FIFO"):
        resolve_data_source(other, DS, field=FIELD)


@pytest.mark.timeout(30)
def test_device_and_socket_sources_refused(tmp_path):
    with pytest.raises(StagingError, match="device node"):
        stage("/dev/zero", field=FIELD)
    with pytest.raises(StagingError, match="device node"):
        resolve_spec_path("/dev/null", field=FIELD)
    sock_path = tmp_path / "images_train.tar.gz"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(StagingError, match="socket"):
            resolve_data_source(tmp_path, DS, field=FIELD)
    link = tmp_path / "images_val.tar.gz"
    link.symlink_to("/dev/zero")  # a symlink to a device is followed by os.stat and refused
    with pytest.raises(StagingError, match="device node"):
        stage(link, field=FIELD)


def test_format_read_from_content_not_name(tmp_path):
    z = tmp_path / "z"
    z.mkdir()
    with zipfile.ZipFile(z / "images_train.tar.gz", "w") as zf:  # a zip wearing a .tar.gz name
        zf.writestr("a.jpg", b"1")
    assert (stage(z / "images_train.tar.gz", field=FIELD).path / "a.jpg").read_bytes() == b"1"
    t = tmp_path / "t"
    t.mkdir()
    _tar(t / "images_train.tgz", [_file("b.jpg", b"2")], mode="w:bz2")  # bz2 inside a .tgz name
    assert (stage(t / "images_train.tgz", field=FIELD).path / "b.jpg").read_bytes() == b"2"


def test_streamed_extraction_checks_free_disk_per_member(tmp_path, monkeypatch):
    """A tar read in streaming mode cannot be planned first: the free disk is re-read as members
    are written and the member that would eat into the reserve is refused."""
    from collections import namedtuple

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|gz") as tf:
        for i in range(3):
            tf.addfile(_info(f"images/{i}.jpg", 2 * MiB), io.BytesIO(b"\1" * (2 * MiB)))
    usage = namedtuple("usage", "total used free")
    written = []

    def disk_usage(path):
        done = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        written.append(done)
        return usage(100 * MiB, 0, 6 * MiB - done)  # 6 MiB free before the first member

    monkeypatch.setattr(archives.shutil, "disk_usage", disk_usage)
    dest = tmp_path / "out"
    dest.mkdir()
    limits = ArchiveLimits(reserve_bytes=1 * MiB)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r|gz") as tf, pytest.raises(StagingError) as exc:
        archives.extract_tar_stream(tf, Path("images.tar.gz"), len(buf.getvalue()), dest, field_=FIELD, limits=limits)
    assert "not enough free disk space" in exc.value.message and exc.value.field == FIELD
    assert sorted(p.name for p in dest.rglob("*.jpg")) == ["0.jpg", "1.jpg"]  # the third never started
    assert len(written) >= 2  # the disk was read again once it got close


def test_streamed_extraction_refuses_like_the_planner(tmp_path):
    """The per-member checks of a streamed tar are the planner's (traversal here)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|gz") as tf:
        tf.addfile(_info("images/ok.jpg", 2), io.BytesIO(b"ok"))
        tf.addfile(_info("images/../../evil.jpg", 1), io.BytesIO(b"x"))
    buf.seek(0)
    dest = tmp_path / "out"
    dest.mkdir()
    with tarfile.open(fileobj=buf, mode="r|gz") as tf, pytest.raises(StagingError) as exc:
        archives.extract_tar_stream(tf, Path("images.tar.gz"), len(buf.getvalue()), dest, field_=FIELD, limits=ArchiveLimits())
    assert "path traversal" in exc.value.message
    assert not (tmp_path / "evil.jpg").exists()
