"""Detection dataset checks: COCO / ODVG / label maps, num_classes vs category ids, val split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taoskills.data.annotations import check_coco, check_detection_datasets, check_odvg, check_val_split
from taoskills.data.preflight import run_preflight
from taoskills.data.sample_data import write_sample_detection


@pytest.fixture(scope="module")
def dino_data(tmp_path_factory) -> dict[str, Path]:
    return write_sample_detection(tmp_path_factory.mktemp("dino"), n=6, size=96, first_category_id=1)


@pytest.fixture(scope="module")
def gdino_val(tmp_path_factory) -> dict[str, Path]:
    return write_sample_detection(tmp_path_factory.mktemp("gdino_val"), n=4, size=96, first_category_id=0)


def _by_name(results):
    return {r.name: r for r in results}


def _dino_spec(d: dict[str, Path], num_classes=4, val=True) -> dict:
    src = {"image_dir": str(d["images"]), "json_file": str(d["coco"])}
    return {
        "dataset": {
            "train_data_sources": [src],
            "val_data_sources": [dict(src)] if val else [{"image_dir": "", "json_file": ""}],
            "test_data_sources": {"image_dir": "", "json_file": ""},
            "num_classes": num_classes,
        }
    }


def test_sample_detection_dataset_is_consistent(dino_data):
    coco = json.loads(dino_data["coco"].read_text())
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert len(coco["images"]) == 6 and coco["annotations"]
    assert all((dino_data["images"] / im["file_name"]).is_file() for im in coco["images"])
    lines = dino_data["odvg"].read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["detection"]["instances"]


def test_good_dino_train_spec_passes(dino_data):
    results = check_detection_datasets("dino", "train", _dino_spec(dino_data))
    report = run_preflight(results)
    assert report.ok, report.issues
    names = {r.name for r in results}
    assert {"coco.parse", "coco.categories", "coco.annotations", "coco.num_classes", "annotations.images_exist"} <= names
    assert "dataset.val_split" in names
    # train and val sections were both read
    assert {r.field for r in results if r.name == "coco.parse"} == {
        "dataset.train_data_sources[0].json_file",
        "dataset.val_data_sources[0].json_file",
    }


@pytest.mark.parametrize(("num_classes", "ok"), [(1, False), (3, False), (4, True), (91, True), ("4", False), (None, None)])
def test_num_classes_must_exceed_the_largest_category_id(dino_data, num_classes, ok):
    res = _by_name(check_coco(dino_data["coco"], field="json_file", num_classes=num_classes))
    if ok is None:
        assert "coco.num_classes" not in res
        return
    check = res["coco.num_classes"]
    assert check.ok is ok and check.field == "dataset.num_classes"
    if not ok:
        assert "max(category_id) + 1 = 4" in check.message and "device-side assert" in check.message
        assert check.fix == "Set dataset.num_classes=4 (or more)."
        assert check.details["max_category_id"] == 3


def test_num_classes_counts_annotation_ids_outside_categories(tmp_path, dino_data):
    data = json.loads(dino_data["coco"].read_text())
    data["annotations"][0]["category_id"] = 7
    bad = tmp_path / "annotations.json"
    bad.write_text(json.dumps(data))
    res = _by_name(check_coco(bad, field="json_file", num_classes=4))
    assert not res["coco.annotations"].ok and "category_id 7 is not in categories" in res["coco.annotations"].message
    assert not res["coco.num_classes"].ok and "=8" in res["coco.num_classes"].fix


def test_coco_problems_are_named(tmp_path, dino_data):
    data = json.loads(dino_data["coco"].read_text())
    data["annotations"][1]["image_id"] = 999
    data["annotations"][2]["bbox"] = [1, 2, -3, 4]
    data["categories"].append({"id": 1, "name": "dup"})
    f = tmp_path / "a.json"
    f.write_text(json.dumps(data))
    res = _by_name(check_coco(f, field="json_file"))
    assert not res["coco.categories"].ok and "category id 1 appears twice" in res["coco.categories"].message
    msg = res["coco.annotations"].message
    assert "image_id 999 is not in images" in msg and "annotations[2] bbox" in msg

    for content, words in (
        ("{not json", "not valid JSON"),
        ("[]", "missing or non-list images"),
        ('{"images": []}', "annotations"),
    ):
        f.write_text(content)
        res = _by_name(check_coco(f, field="json_file"))
        assert not res["coco.parse"].ok and words in res["coco.parse"].message
    assert not check_coco(tmp_path, field="json_file")[0].ok  # a folder


def test_images_named_by_the_annotations_must_exist(tmp_path, dino_data):
    images = tmp_path / "images"
    images.mkdir()
    res = _by_name(check_coco(dino_data["coco"], field="j", image_dir=str(images), image_field="dataset.x.image_dir"))
    check = res["annotations.images_exist"]
    assert not check.ok and "dataset.x.image_dir" in check.message and len(check.details["missing"]) == 6


@pytest.mark.timeout(30)
def test_fifo_annotation_file_is_not_opened(tmp_path):
    fifo = tmp_path / "annotations.json"
    os.mkfifo(fifo)
    res = check_coco(fifo, field="json_file")
    assert len(res) == 1 and not res[0].ok and "fifo" in res[0].message and "not opened" in res[0].message
    assert not check_odvg(fifo, field="j")[0].ok


def test_dino_val_split_is_always_required(dino_data):
    results = check_detection_datasets("dino", "train", _dino_spec(dino_data, val=False))
    val = _by_name(results)["dataset.val_split"]
    assert not val.ok and val.severity == "error" and "FileNotFoundError" in val.message and "eval_dataset" in val.fix
    assert not run_preflight(results).ok
    assert check_val_split("dino", "evaluate", {}) == []


def test_grounding_dino_train_spec(dino_data, gdino_val):
    spec = {
        "dataset": {
            "train_data_sources": [
                {
                    "image_dir": str(dino_data["images"]),
                    "json_file": str(dino_data["odvg"]),
                    "label_map": str(dino_data["label_map"]),
                }
            ],
            "val_data_sources": {"image_dir": str(gdino_val["images"]), "json_file": str(gdino_val["coco"])},
        }
    }
    results = check_detection_datasets("grounding_dino", "train", spec)
    report = run_preflight(results)
    assert report.ok and not report.warnings, (report.issues, report.warnings)
    names = {r.name for r in results}
    assert {"odvg.parse", "odvg.label_map", "odvg.labels", "coco.parse", "dataset.val_split"} <= names
    assert "coco.num_classes" not in names  # Grounding DINO has no dataset.num_classes

    # 1-based val ids: a warning that names the rule
    spec["dataset"]["val_data_sources"]["json_file"] = str(dino_data["coco"])
    res = _by_name(check_detection_datasets("grounding_dino", "train", spec))
    assert not res["coco.ids_from_zero"].ok and res["coco.ids_from_zero"].severity == "warning"
    # no val split: a warning, not an error
    spec["dataset"]["val_data_sources"] = {"image_dir": "", "json_file": ""}
    res = check_detection_datasets("grounding_dino", "train", spec)
    assert run_preflight(res).ok and not _by_name(res)["dataset.val_split"].ok


def test_odvg_problems_are_named(tmp_path, dino_data):
    lines = dino_data["odvg"].read_text().splitlines()
    rec = json.loads(lines[0])
    rec["detection"]["instances"][0]["label"] = 9
    bad = [
        json.dumps(rec),
        "{broken",
        json.dumps({"filename": "x.jpg"}),
        json.dumps({"grounding": {"caption": " ", "regions": []}}),
    ]
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(bad) + "\n")
    res = _by_name(check_odvg(f, field="json_file", label_map=dino_data["label_map"], label_map_field="label_map"))
    msg = res["odvg.parse"].message
    assert "line 2 is not JSON" in msg and "line 3 has neither" in msg and "line 4 has no 'filename'" in msg
    assert "caption is empty" in msg
    assert not res["odvg.labels"].ok and "9" in res["odvg.labels"].message and res["odvg.labels"].field == "label_map"

    f.write_text("")
    assert "no records" in _by_name(check_odvg(f, field="j"))["odvg.parse"].message

    lm = tmp_path / "lm.json"
    lm.write_text(json.dumps({"zero": "red_box"}))
    res = _by_name(check_odvg(dino_data["odvg"], field="j", label_map=lm))
    assert not res["odvg.label_map"].ok and "'zero'" in res["odvg.label_map"].message
    lm.write_text(json.dumps({"0": "cat", "1": "green_disc", "2": "blue_diamond"}))
    res = _by_name(check_odvg(dino_data["odvg"], field="j", label_map=lm))
    assert res["odvg.labels"].ok and not res["odvg.label_names"].ok and res["odvg.label_names"].severity == "warning"


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"dataset": "nope"},
        {"dataset": {"train_data_sources": "str", "val_data_sources": 5}},
        {"dataset": {"train_data_sources": [None, {"json_file": 3}], "val_data_sources": [{"json_file": "s3://b/a.json"}]}},
        {"dataset": {"train_data_sources": [{"json_file": "???"}]}},
    ],
)
def test_malformed_specs_never_raise(spec):
    for network, action in (("dino", "train"), ("grounding_dino", "train"), ("dino", "evaluate"), ("mae", "train")):
        results = check_detection_datasets(network, action, spec)
        assert all(r.name == "dataset.val_split" for r in results)
