"""One image rule: taoskills.tao's extensions and listing, used by preflight, staging and the
built-in engine, agree on every file (TIFF included), and every listed file really decodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taoskills import tao
from taoskills.data import preflight, staging
from taoskills.engine import common as engine_common
from taoskills.engine.nvdinov2 import data as engine_data

PIL = pytest.importorskip("PIL.Image")

_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def test_one_list_everywhere():
    assert preflight.IMAGE_EXTENSIONS is tao.IMAGE_EXTENSIONS
    assert engine_common.IMAGE_EXTS is tao.IMAGE_EXTENSIONS
    assert staging.ARCHIVE_SUFFIXES is tao.ARCHIVE_SUFFIXES is engine_common.ARCHIVE_SUFFIXES
    assert set(_FORMAT) == set(tao.IMAGE_EXTENSIONS)  # this test covers every extension
    for name in ("a.tar.gz", "a.TGZ", "a.zip", "a.tar", "a.tar.bz2", "a.tar.xz", "a.tbz2", "a.txz"):
        assert tao.is_archive_name(name) and engine_common.is_archive(Path(name))
    assert tao.archive_stem("images_train.tar.gz") == "images_train" and not tao.is_archive_name(".tar")


@pytest.mark.timeout(60)
def test_preflight_and_engine_list_the_same_files_and_all_decode(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    expected = []
    for i, ext in enumerate(tao.IMAGE_EXTENSIONS):
        for variant in (ext, ext.upper()):
            p = folder / ("sub" if i % 2 else "") / f"img_{i}{variant}"
            PIL.new("RGB", (12, 10), (i * 30, 10, 200)).save(p, _FORMAT[ext])
            expected.append(p)
    # not images, or hidden: none of them may be listed by anyone
    (folder / "notes.txt").write_text("x")
    (folder / "._img_0.jpg").write_bytes(b"AppleDouble junk")
    (folder / ".cache").mkdir()
    PIL.new("RGB", (4, 4)).save(folder / ".cache" / "thumb.png")
    os.mkfifo(folder / "pipe.png")

    listed = sorted(engine_common.list_images(folder, field="images_dir"))
    assert listed == sorted(expected)
    assert sorted(tao.iter_image_files(folder)) == listed

    res = {r.name: r for r in preflight.check_image_folder(folder, field="images_dir")}
    assert res["image_folder.readable"].ok, res["image_folder.readable"].message
    assert res["image_folder.count"].details["images"] == len(listed)

    for p in listed:  # the engine's own loader decodes every file preflight accepted
        assert engine_data.load_rgb(p).size == (12, 10)
    assert engine_common.check_readable(listed, field="images_dir") == [(12, 10)] * len(listed)


def test_a_tiff_only_folder_passes_preflight_and_the_engine(tmp_path):
    for i in range(3):
        PIL.new("RGB", (8, 8), (i, i, i)).save(tmp_path / f"scan_{i}.tif", "TIFF")
    res = {r.name: r for r in preflight.check_image_folder(tmp_path, field="images_dir", batch_size=3)}
    assert all(r.ok for r in res.values())
    assert len(engine_common.list_images(tmp_path, field="images_dir")) == 3
    # and the resolver takes the folder as a data source of photos given directly
    ds = staging.DataSource(source="train_datasets", path="images_train.tar.gz", runtime="extracted_folder")
    assert staging.resolve_data_source(tmp_path, ds, field="images_dir").rule == "images_in_root"
