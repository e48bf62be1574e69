"""Sample photographs from the scikit-image wheel (taoskills.data.sample_data)."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

from taoskills.data import sample_data as sd

pytestmark = pytest.mark.torch  # needs the engine extra


def test_photos_present_and_licensed():
    photos = sd.available_photos()
    assert len(photos) >= 8
    for p in photos:
        assert p.name in sd.PHOTOS
        assert sd.PHOTOS[p.name][1]  # every photo has a credit/licence line
    for name, (_title, credit) in sd.PHOTOS.items():
        assert name in sd.SAMPLE_ATTRIBUTION and credit in sd.SAMPLE_ATTRIBUTION
    # drawn / synthetic images are not used
    for drawn in ("logo.png", "horse.png", "text.png", "chessboard_RGB.png", "page.png"):
        assert drawn not in sd.PHOTOS


def test_write_sample_images_deterministic_real_crops(tmp_path):
    a = sd.write_sample_images(tmp_path / "a", n=20, size=64)
    b = sd.write_sample_images(tmp_path / "b", n=20, size=64)
    assert len(a) == 20 and [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.suffix == ".jpg"
        assert pa.read_bytes() == pb.read_bytes()
        with Image.open(pa) as im:
            assert im.mode == "RGB" and im.size == (64, 64)
    arrays = [np.asarray(Image.open(p), dtype=np.float32) for p in a]
    # crops of photographs: not constant, not identical to each other
    assert all(arr.std() > 5 for arr in arrays)
    assert len({arr.tobytes() for arr in arrays}) == 20
    # the first image of a photo is its centred square: compare with the source photo directly
    src = sd.skimage_data_dir() / "astronaut.png"
    with Image.open(src) as im:
        ref = np.asarray(im.convert("RGB").resize((64, 64), Image.BICUBIC), dtype=np.float32)
    first = np.asarray(Image.open(tmp_path / "a" / "astronaut_000.jpg"), dtype=np.float32)
    assert np.abs(first - ref).mean() < 8  # only JPEG loss


def test_write_sample_archive(tmp_path):
    arc = sd.write_sample_archive(tmp_path, name="images_test.tar.gz", n=5, size=32)
    assert arc == tmp_path / "images_test.tar.gz"
    with tarfile.open(arc) as tar:
        names = sorted(tar.getnames())
    assert "ATTRIBUTION.txt" in names
    assert len([n for n in names if n.endswith(".jpg")]) == 5


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        sd.write_sample_images(tmp_path, n=0)


def test_write_sample_detection_deterministic(tmp_path):
    a = sd.write_sample_detection(tmp_path / "a", n=4, size=64, first_category_id=0)
    b = sd.write_sample_detection(tmp_path / "b", n=4, size=64, first_category_id=0)
    for key in ("coco", "odvg", "label_map"):
        assert a[key].read_bytes() == b[key].read_bytes()
    import json

    coco = json.loads(a["coco"].read_text())
    assert [c["id"] for c in coco["categories"]] == [0, 1, 2]
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w < 64 and y + h < 64 and w > 0 and h > 0
    assert json.loads(a["label_map"].read_text()) == {"0": "red_box", "1": "green_disc", "2": "blue_diamond"}
