"""MAE class-folder preflight (taoskills.data.classification) and its wiring into the service:
each refusal names the field, the reason and the fix, before anything is launched."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from taoskills.data.classification import check_mae_datasets
from taoskills.data.preflight import check_network_datasets
from taoskills.errors import PreflightError

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00"
    b"\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01\xf6\x178U\x00\x00\x00\x00IEND\xaeB`\x82"
)


def _classes(root: Path, names: list[str], n: int = 2) -> Path:
    for c in names:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / c / f"{c}_{i}.png").write_bytes(PNG)
    return root


def _spec(stage: str, *, train=None, val=None, test=None, num_classes=None) -> dict:
    return {
        "train": {"stage": stage},
        "model": {"num_classes": num_classes},
        "dataset": {"train_data_sources": train, "val_data_sources": val, "test_data_sources": test, "batch_size": 2},
    }


def _failed(results) -> dict[str, object]:
    return {r.name: r for r in results if not r.ok}


def test_finetune_class_count_must_match_num_classes(tmp_path):
    train = _classes(tmp_path / "train", ["cat", "dog", "owl"])
    bad = _failed(check_mae_datasets("train", _spec("finetune", train=str(train), num_classes=4)))
    r = bad["classification.num_classes"]
    assert r.field == "model.num_classes" and "num_classes mismatch" in r.message and "model.num_classes=3" in r.fix
    assert not _failed(check_mae_datasets("train", _spec("finetune", train=str(train), num_classes=3)))


def test_finetune_val_classes_must_equal_train_classes(tmp_path):
    train = _classes(tmp_path / "train", ["cat", "dog"])
    val = _classes(tmp_path / "val", ["cat", "eel"])
    r = _failed(check_mae_datasets("train", _spec("finetune", train=str(train), val=str(val), num_classes=2)))
    assert r["classification.same_classes"].field == "dataset.val_data_sources"
    assert "eel" in r["classification.same_classes"].message and "dog" in r["classification.same_classes"].message


@pytest.mark.parametrize("layout", ["flat", "empty_class", "loose"])
def test_finetune_needs_class_subfolders_with_images(tmp_path, layout):
    root = tmp_path / "train"
    if layout == "flat":
        root.mkdir()
        (root / "a.png").write_bytes(PNG)
    elif layout == "empty_class":
        _classes(root, ["cat"])
        (root / "dog").mkdir()
    else:
        _classes(root, ["cat"])
        (root / "stray.png").write_bytes(PNG)
    r = _failed(check_mae_datasets("train", _spec("finetune", train=str(root), num_classes=1)))["classification.classes"]
    assert r.field == "dataset.train_data_sources" and "sub-folder" in r.fix
    if layout == "empty_class":
        assert "dog" in r.message


def test_evaluate_finetune_checks_val_classes_pretrain_accepts_any_folder(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(PNG)
    assert _failed(check_mae_datasets("evaluate", _spec("finetune", val=str(flat), num_classes=2)))
    assert not _failed(check_mae_datasets("evaluate", _spec("pretrain", val=str(flat))))
    assert not _failed(check_mae_datasets("train", _spec("pretrain", train=str(flat))))
    assert not _failed(check_mae_datasets("inference", _spec("finetune", test=str(flat))))


def test_local_archive_refused_with_the_seed_reason(tmp_path):
    src = _classes(tmp_path / "images_train", ["cat"])
    archive = tmp_path / "images_train.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="images_train")
    for stage in ("pretrain", "finetune"):
        r = _failed(check_mae_datasets("train", _spec(stage, train=str(archive), num_classes=1)))["classification.archive"]
        assert r.field == "dataset.train_data_sources" and "zero samples" in r.message and "extract" in r.fix


def test_inference_with_pretrain_stage_refused(tmp_path):
    test = tmp_path / "test"
    test.mkdir()
    (test / "a.png").write_bytes(PNG)
    r = _failed(check_mae_datasets("inference", _spec("pretrain", test=str(test))))["mae.pretrain_inference"]
    assert r.field == "train.stage" and "NotImplementedError" in r.message and "finetune checkpoint" in r.fix


def test_dispatch_by_network(tmp_path):
    train = _classes(tmp_path / "train", ["a", "b"])
    assert _failed(check_network_datasets("mae", "train", _spec("finetune", train=str(train), num_classes=5)))
    assert check_network_datasets("nvdinov2", "train", {}) == []


@pytest.mark.torch  # places the job on the built-in engine, which needs the engine extra
def test_service_launch_refuses_num_classes_mismatch_before_anything_runs(tmp_path, monkeypatch):
    from taoskills.service import Service

    home = tmp_path / "home"
    monkeypatch.setenv("TAO_SKILLS_HOME", str(home))
    data = tmp_path / "data"
    _classes(data / "images_train", ["cat", "dog", "owl"], n=4)
    svc = Service(home=home)
    with pytest.raises(PreflightError) as exc:
        svc.launch_job(
            "tao-train-mask-auto-encoder",
            "train",
            automl_policy="off",
            data_sources={"train_datasets": str(data)},
            overrides={
                "train.stage": "finetune",
                "model.num_classes": 5,
                "model.arch": "convnextv2_atto",
                "dataset.batch_size": 2,
                "train.num_gpus": 1,
            },
        )
    assert exc.value.field == "model.num_classes" and "model.num_classes=3" in exc.value.fix
    assert svc.store.list() == []  # no record written
    assert not (home / "jobs").exists() or not list((home / "jobs").iterdir())


def test_service_preflight_reports_dino_annotation_checks(tmp_path):
    from taoskills.service import Service

    img = tmp_path / "images"
    img.mkdir()
    (img / "a.png").write_bytes(PNG)
    ann = tmp_path / "annotations.json"
    ann.write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": 1, "height": 1}], '
        '"annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0}], '
        '"categories": [{"id": 7, "name": "x"}]}'
    )
    src = {"image_dir": str(img), "json_file": str(ann)}
    spec = {"dataset": {"train_data_sources": [src], "val_data_sources": [src], "num_classes": 3, "batch_size": 1}}
    report = Service(home=tmp_path / "home").preflight("tao-train-dino", "train", spec, engine="builtin")
    assert not report.ok and any(i["field"] == "dataset.num_classes" for i in report.issues), report.issues


def test_dino_onnx_quantize_needs_the_exported_onnx():
    spec = {
        "quantize": {"backend": "modelopt.onnx", "mode": "static_ptq", "model_path": "/r/train/model_epoch_000_step_00002.pth"}
    }
    bad = _failed(check_network_datasets("dino", "quantize", spec))["quantize.onnx_model"]
    assert bad.field == "quantize.model_path" and "export" in bad.fix
    spec["quantize"]["model_path"] = "/r/export/dino.onnx"
    assert "quantize.onnx_model" not in _failed(check_network_datasets("dino", "quantize", spec))
    torchao = check_network_datasets("dino", "quantize", {"quantize": {"backend": "torchao"}})
    assert "quantize.onnx_model" not in {r.name for r in torchao}
