"""Staging: real tar/zip archives extracted, reused, re-extracted and refused."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from taoskills.bank.skill_info import DataSource
from taoskills.data.staging import (
    MARKER_NAME,
    StagedPath,
    archive_stem,
    is_archive,
    resolve_data_source,
    stage,
    staged_destination,
)
from taoskills.errors import NotSupported, StagingError

FIELD = "dataset.train_dataset.images_dir"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_SKILLS_HOME", str(tmp_path / "home"))


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tf.addfile(info, io.BytesIO(data))
    return path


def _tar_special(path: Path, info: tarfile.TarInfo, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (extra or {}).items():
            i = tarfile.TarInfo(name)
            i.size = len(data)
            tf.addfile(i, io.BytesIO(data))
        tf.addfile(info)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _no_temp_left(folder: Path) -> None:
    left = [p.name for p in folder.rglob("*") if ".staging-" in p.name or ".old-" in p.name]
    assert left == []


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "home" / "staging"


def test_names():
    assert is_archive("images_train.tar.gz") and is_archive("a.tgz") and is_archive("a.zip") and is_archive("a.TAR")
    assert not is_archive("a.jpg") and not is_archive(".tar")
    assert archive_stem("images_train.tar.gz") == "images_train"
    assert archive_stem("x.tgz") == "x"


def test_folder_is_itself(tmp_path):
    (tmp_path / "imgs").mkdir()
    got = stage(tmp_path / "imgs", field=FIELD)
    assert got == StagedPath(source=tmp_path / "imgs", path=tmp_path / "imgs", extracted=False, reused=True)


def test_extract_then_reuse_then_reextract_on_change(tmp_path):
    archive = _tar(tmp_path / "images_train.tar.gz", {"a.jpg": b"one", "sub/b.jpg": b"two"})
    first = stage(archive, field=FIELD)
    assert first.path == staged_destination(archive) and _cache(tmp_path) in first.path.parents
    assert first.path.name == "images_train" and not (tmp_path / "images_train").exists()
    assert first.extracted and not first.reused
    assert (first.path / "a.jpg").read_bytes() == b"one"
    assert (first.path / "sub" / "b.jpg").read_bytes() == b"two"
    marker = json.loads((first.path / MARKER_NAME).read_text())
    assert marker["size"] == archive.stat().st_size and marker["name"] == archive.name

    # second call: nothing written
    (first.path / "a.jpg").write_bytes(b"touched")  # would be overwritten by a re-extraction
    second = stage(archive, field=FIELD)
    assert second.reused and second.extracted and second.path == first.path
    assert (first.path / "a.jpg").read_bytes() == b"touched"

    # changed archive: re-extracted, stale files gone
    _tar(archive, {"c.jpg": b"three"})
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    third = stage(archive, field=FIELD)
    assert not third.reused
    assert _tree(third.path) == {"c.jpg", MARKER_NAME}
    _no_temp_left(tmp_path)


def test_strips_shared_top_folder_named_after_stem(tmp_path):
    archive = _tar(tmp_path / "images_train.tgz", {"images_train/a.jpg": b"1", "images_train/d/b.jpg": b"2"})
    got = stage(archive, field=FIELD)
    assert _tree(got.path) == {"a.jpg", "d", "d/b.jpg", MARKER_NAME}


def test_keeps_top_folder_with_other_name(tmp_path):
    archive = _tar(tmp_path / "images_train.tar", {"other/a.jpg": b"1"}, mode="w")
    got = stage(archive, field=FIELD)
    assert (got.path / "other" / "a.jpg").read_bytes() == b"1"


def test_zip_extract_and_strip(tmp_path):
    archive = _zip(tmp_path / "images_test.zip", {"images_test/x.png": b"p", "images_test/y/z.png": b"q"})
    got = stage(archive, field=FIELD)
    assert got.path.name == "images_test" and _cache(tmp_path) in got.path.parents
    assert _tree(got.path) == {"x.png", "y", "y/z.png", MARKER_NAME}
    assert stage(archive, field=FIELD).reused


def _assert_refused(tmp_path: Path, archive: Path, member_part: str, outside: list[Path]) -> None:
    before = _tree(tmp_path)
    with pytest.raises(StagingError) as exc:
        stage(archive, field=FIELD)
    err = exc.value
    assert err.field == FIELD and FIELD in str(err)
    assert member_part in err.message and err.fix
    assert not (tmp_path / archive_stem(archive)).exists()
    assert not staged_destination(archive).exists()
    for p in outside:
        assert not p.exists() and not p.is_symlink()
    # nothing written, temp folder cleaned (the cache may keep its empty folders)
    assert {p for p in _tree(tmp_path) if not p.startswith("home")} == {p for p in before if not p.startswith("home")}
    assert [p for p in (tmp_path / "home").rglob("*") if not p.is_dir()] == []


def test_tar_parent_traversal_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    archive = _tar(data / "images_train.tar.gz", {"ok.jpg": b"1", "../evil.txt": b"x"})
    _assert_refused(data, archive, "../evil.txt", [tmp_path / "evil.txt"])


def test_tar_absolute_member_refused(tmp_path):
    target = tmp_path / "abs_evil.txt"
    archive = _tar(tmp_path / "images_train.tar.gz", {"ok.jpg": b"1", str(target): b"x"})
    _assert_refused(tmp_path, archive, "absolute", [target])


def test_tar_symlink_escaping_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    link = tarfile.TarInfo("images_train/escape")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../outside"
    archive = _tar_special(data / "images_train.tar.gz", link, {"images_train/a.jpg": b"1"})
    _assert_refused(data, archive, "escape", [tmp_path / "outside"])


def test_tar_symlink_chain_escaping_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "images_train.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        t = tarfile.TarInfo("t")  # lexically inside ("s/.." == "."), really the parent once s -> .
        t.type, t.linkname = tarfile.SYMTYPE, "s/.."
        tf.addfile(t)
        s = tarfile.TarInfo("s")
        s.type, s.linkname = tarfile.SYMTYPE, "."
        tf.addfile(s)
    _assert_refused(data, archive, "t", [])


def test_tar_absolute_symlink_and_hardlink_refused(tmp_path):
    link = tarfile.TarInfo("passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    _assert_refused(tmp_path, _tar_special(tmp_path / "a.tar.gz", link), "passwd", [])
    hard = tarfile.TarInfo("h")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "../x"
    _assert_refused(tmp_path, _tar_special(tmp_path / "b.tar.gz", hard), "outside", [])


def test_tar_internal_symlink_allowed(tmp_path):
    link = tarfile.TarInfo("alias.jpg")
    link.type = tarfile.SYMTYPE
    link.linkname = "d/a.jpg"
    archive = _tar_special(tmp_path / "imgs.tar.gz", link, {"d/a.jpg": b"img"})
    got = stage(archive, field=FIELD)
    assert (got.path / "alias.jpg").is_symlink() and (got.path / "alias.jpg").read_bytes() == b"img"


def test_tar_fifo_and_device_refused(tmp_path):
    fifo = tarfile.TarInfo("pipe")
    fifo.type = tarfile.FIFOTYPE
    _assert_refused(tmp_path, _tar_special(tmp_path / "f.tar.gz", fifo), "FIFO", [])
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    _assert_refused(tmp_path, _tar_special(tmp_path / "d.tar.gz", dev), "device", [])


def test_member_over_size_cap_refused(tmp_path):
    archive = _tar(tmp_path / "big.tar.gz", {"a.jpg": b"x" * 10, "huge.jpg": b"y" * 5000})
    with pytest.raises(StagingError, match="huge.jpg") as exc:
        stage(archive, field=FIELD, max_member_bytes=1000)
    assert "TAO_SKILLS_MAX_MEMBER_BYTES" in exc.value.fix
    assert not staged_destination(archive).exists()
    _no_temp_left(tmp_path)
    zarchive = _zip(tmp_path / "bigz.zip", {"huge.jpg": b"y" * 5000})
    with pytest.raises(StagingError, match="max_member_bytes"):
        stage(zarchive, field=FIELD, max_member_bytes=1000)
    assert not staged_destination(zarchive).exists()


def test_zip_traversal_absolute_symlink_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _assert_refused(data, _zip(data / "t.zip", {"ok.jpg": b"1", "../evil.txt": b"x"}), "..", [tmp_path / "evil.txt"])
    _assert_refused(
        data, _zip(data / "a.zip", {"/tmp/abs_evil_taoskills.txt": b"x"}), "absolute", [Path("/tmp/abs_evil_taoskills.txt")]
    )
    archive = data / "l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "../../outside")
    _assert_refused(data, archive, "link", [tmp_path / "outside"])


def test_corrupt_archive(tmp_path):
    bad = tmp_path / "images_train.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(StagingError, match="corrupt") as exc:
        stage(bad, field=FIELD)
    assert exc.value.fix
    assert not (tmp_path / "images_train").exists()
    _no_temp_left(tmp_path)


def test_missing_path_and_plain_file(tmp_path):
    with pytest.raises(StagingError) as exc:
        stage(tmp_path / "nope.tar.gz", field=FIELD)
    assert exc.value.field == FIELD and "does not exist" in exc.value.message and exc.value.fix
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(StagingError, match="not a folder"):
        stage(tmp_path / "notes.txt", field=FIELD)
    with pytest.raises(NotSupported):
        stage("s3://bucket/images_train.tar.gz", field=FIELD)


def test_foreign_folder_in_cache_is_not_overwritten(tmp_path):
    archive = _tar(tmp_path / "images_train.tar.gz", {"a.jpg": b"1"})
    dest = staged_destination(archive)
    dest.mkdir(parents=True)
    (dest / "mine.jpg").write_bytes(b"keep")
    with pytest.raises(StagingError, match="not extracted by tao-skills"):
        stage(archive, field=FIELD)
    assert (dest / "mine.jpg").read_bytes() == b"keep"


def test_extraction_never_writes_beside_the_archive(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    archive = _tar(data / "images_train.tar.gz", {"a.jpg": b"1"})
    before = _tree(data)
    got = stage(archive, field=FIELD, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache") in got.path.parents and (got.path / "a.jpg").read_bytes() == b"1"
    assert stage(archive, field=FIELD, cache_dir=tmp_path / "cache").reused
    assert _tree(data) == before


def _ds(path: str = "images_train.tar.gz", runtime: str = "extracted_folder") -> DataSource:
    return DataSource(source="train_datasets", path=path, runtime=runtime)


def test_resolve_data_source_rules(tmp_path):
    ds = _ds()
    # 2. only the archive: staged into the cache
    _tar(tmp_path / "images_train.tar.gz", {"images_train/a.jpg": b"1"})
    got = resolve_data_source(tmp_path, ds, field=FIELD)
    assert got.rule == "archive" and got.extracted and Path(got.path) == staged_destination(tmp_path / "images_train.tar.gz")
    assert (Path(got.path) / "a.jpg").exists() and not (tmp_path / "images_train").exists()

    # 3. only an already extracted sibling folder (the user's own)
    other = tmp_path / "other"
    (other / "images_train").mkdir(parents=True)
    got = resolve_data_source(other, ds, field=FIELD)
    assert got.rule == "user_extracted_folder" and Path(got.path) == other / "images_train"

    # archive plus user's own folder: the folder is used, untouched
    both = tmp_path / "both"
    (both / "images_train").mkdir(parents=True)
    _tar(both / "images_train.tar.gz", {"a.jpg": b"1"})
    assert Path(resolve_data_source(both, ds, field=FIELD).path) == both / "images_train"
    assert not (both / "images_train" / "a.jpg").exists()

    # 4. same stem, other archive types: .zip, .tar
    for name, maker in (("images_train.zip", _zip), ("images_train.tar", lambda p, m: _tar(p, m, mode="w"))):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        maker(d / name, {"b.jpg": b"2"})
        got = resolve_data_source(d, ds, field=FIELD)
        assert got.rule == "same_stem_archive" and got.source == str(d / name)
        assert (Path(got.path) / "b.jpg").read_bytes() == b"2"

    # 1. the named folder itself
    named = tmp_path / "named"
    (named / "images_train.tar.gz").mkdir(parents=True)
    assert resolve_data_source(named, ds, field=FIELD).rule == "folder"

    # file runtime
    fds = _ds("ann.json", runtime="file")
    (named / "ann.json").write_text("{}")
    assert resolve_data_source(named, fds, field="x").path == str(named / "ann.json")


def test_folder_of_images_given_as_the_dataset_role(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(16):
        (photos / f"IMG_{i:04d}.JPG").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    got = resolve_data_source(photos, _ds(), field=FIELD)
    assert got.rule == "images_in_root" and got.path == str(photos) and not got.extracted
    assert _tree(photos) == {f"IMG_{i:04d}.JPG" for i in range(16)}  # nothing written


def test_nothing_found_states_the_rule_and_the_fix(tmp_path):
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "labels.json").write_text("{}")
    with pytest.raises(StagingError) as exc:
        resolve_data_source(empty, _ds(), field=FIELD)
    err = exc.value
    assert err.field == FIELD and "labels.json" in err.message and "docs/" in err.message
    for rule in ("images_train.tar.gz", "images_train/", ".zip", "directly in the root", ".jpg"):
        assert rule in err.message, rule
    assert str(empty / "images_train") in err.fix and "directly in" in err.fix
    with pytest.raises(StagingError, match="missing"):
        resolve_data_source(tmp_path / "nope", _ds(), field=FIELD)


def test_preview_writes_nothing(tmp_path):
    archive = _tar(tmp_path / "images_train.tar.gz", {"a.jpg": b"1"})
    got = resolve_data_source(tmp_path, _ds(), field=FIELD, stage=False)
    assert got.pending and got.path == str(archive) and not _cache(tmp_path).exists()


def test_remote_root_survives_intact():
    got = resolve_data_source("s3://bucket/data/train/", _ds(), field=FIELD)
    assert got.rule == "remote" and got.path == "s3://bucket/data/train/images_train.tar.gz"


def test_archive_given_as_the_root(tmp_path):
    archive = _zip(tmp_path / "holiday.zip", {"x.jpg": b"1"})
    got = resolve_data_source(archive, _ds(), field=FIELD)
    assert got.rule == "archive_root" and (Path(got.path) / "x.jpg").exists()


def test_strict_false_returns_not_found_instead_of_raising(tmp_path):
    got = resolve_data_source(tmp_path, _ds(), field=FIELD, strict=False)
    assert got.rule == "not_found" and got.path == str(tmp_path / "images_train.tar.gz")
    got = resolve_data_source(tmp_path / "absent", _ds("ann.json", runtime="file"), field="j", strict=False)
    assert got.rule == "not_found"
    from taoskills.data.staging import resolve_spec_path

    assert resolve_spec_path(tmp_path / "x.tar.gz", field=FIELD, strict=False).rule == "not_found"
    (tmp_path / "notes.txt").write_text("x")  # a wrong kind of file is still an error
    with pytest.raises(StagingError, match="not a folder or a supported archive"):
        resolve_spec_path(tmp_path / "notes.txt", field=FIELD, strict=False)


@pytest.mark.timeout(60)
def test_build_spec_refuses_a_fifo_data_source_instead_of_hanging(tmp_path):
    from taoskills.bank.catalog import Catalog
    from taoskills.specs.builder import build_spec

    root = tmp_path / "train"
    root.mkdir()
    os.mkfifo(root / "images_train.tar.gz")
    skill = Catalog.load().get("tao-train-nvdinov2")
    with pytest.raises(StagingError, match="FIFO"):
        build_spec(skill, "train", results_dir=tmp_path / "r", data_sources={"train_datasets": str(root)})
