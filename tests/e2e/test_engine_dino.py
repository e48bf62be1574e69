"""DINO through the engine CLI (in-process, as ``tao-skills-engine dino <action>``): TAO's seed error
patterns fail before any training; a tiny DINO learns the synthetic shapes set; evaluate, inference
and export consume the train checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from taoskills.engine.cli import main
from taoskills.engine.dino import spec as S
from taoskills.engine.dino.synthetic import write_shapes_coco

pytestmark = pytest.mark.torch  # needs the engine extra (torch, transformers, Lightning)

TINY_BACKBONE = {"depths": [1, 1, 1, 1], "hidden_sizes": [16, 32, 64, 128], "embedding_size": 16, "layer_type": "basic"}
TINY_MODEL = {
    "backbone": "resnet_tiny",
    "hidden_dim": 64,
    "nheads": 4,
    "dim_feedforward": 128,
    "enc_layers": 1,
    "dec_layers": 2,
    "num_queries": 20,
    "num_select": 20,
    "dn_number": 20,
    "return_interm_indices": [2, 3, 4],
    "num_feature_levels": 3,
}
AUG_128 = {
    "scales": [128],
    "train_random_resize": [128],
    "train_random_crop_min": 96,
    "train_random_crop_max": 128,
    "random_resize_max_size": 128,
    "test_random_resize": 128,
    "fixed_padding": False,
}


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setitem(S.BACKBONES, "resnet_tiny", TINY_BACKBONE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread avoids OpenMP spin contention
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_coco(tmp_path_factory.mktemp("shapes"), n_images=32, size=128, seed=0)


def _spec(tmp: Path, src: dict, **sections) -> dict:
    spec = {
        "results_dir": str(tmp / "results"),
        "wandb": {"enable": False},
        "model": dict(TINY_MODEL),
        "dataset": {
            "train_data_sources": [src],
            "val_data_sources": [src],
            "test_data_sources": src,
            "infer_data_sources": {"image_dir": src["image_dir"]},
            "num_classes": 4,
            "batch_size": 4,
            "workers": 0,
            "augmentation": dict(AUG_128),
        },
        "train": {"activation_checkpoint": False, "num_epochs": 1},
    }
    for sec, values in sections.items():
        spec.setdefault(sec, {}).update(values)
    return spec


def _run(tmp: Path, network_action: str, spec: dict, *overrides: str) -> tuple[int, list[dict]]:
    path = tmp / f"{network_action}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    rc = main(["dino", network_action, "-e", str(path), *overrides])
    status = Path(spec["results_dir"]) / network_action / "status.json"
    lines = [json.loads(x) for x in status.read_text().splitlines()] if status.exists() else []
    return rc, lines


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dataset": {"num_classes": 3}}, "dataset.num_classes", "device-side assert"),
        ({"dataset": {"batch_size": 64}}, "dataset.batch_size", "fewer than dataset.batch_size"),
        ({"dataset": {"val_data_sources": None}}, "dataset.val_data_sources", "validation loader"),
        ({"model": {"num_select": 20 * 4 + 1}}, "model.num_select", "num_queries * num_classes"),
        ({"model": {"num_feature_levels": 4}}, "model.return_interm_indices", "mismatch"),
        ({"missing_image": True}, "dataset.train_data_sources[0].image_dir", "FileNotFoundError"),
    ],
)
def test_seed_error_patterns_fail_before_training(tmp_path, shapes, change, field, words):
    src = dict(shapes)
    if change.pop("missing_image", False):
        doc = json.loads(Path(src["json_file"]).read_text())
        doc["images"].append({"id": 999, "file_name": "gone.png", "width": 128, "height": 128})
        src["json_file"] = str(tmp_path / "broken.json")
        Path(src["json_file"]).write_text(json.dumps(doc))
    spec = _spec(tmp_path, src)
    for sec, values in change.items():
        spec[sec].update(values)
    if spec["dataset"]["val_data_sources"] is None:
        del spec["dataset"]["val_data_sources"]
    rc, lines = _run(tmp_path, "train", spec)
    assert rc == 1 and lines[-1]["status"] == "FAILURE"
    assert field in lines[-1]["message"] and words in lines[-1]["message"]
    assert not list((tmp_path / "results" / "train").glob("*.pth"))


def test_evaluate_checkpoint_errors(tmp_path, shapes):
    spec = _spec(tmp_path, shapes, evaluate={"checkpoint": str(tmp_path / "results" / "dino_model_latest.pth")})
    rc, lines = _run(tmp_path, "evaluate", spec)
    assert rc == 1 and "evaluate.checkpoint" in lines[-1]["message"] and "does not exist" in lines[-1]["message"]
    spec["evaluate"]["checkpoint"] = str(tmp_path / "model.engine")
    rc, lines = _run(tmp_path, "evaluate", spec)
    assert rc == 1 and "TensorRT" in lines[-1]["message"]


@pytest.mark.slow
def test_dino_learns_shapes_then_evaluate_inference_export(tmp_path, shapes):
    # measured: val_mAP50 0.33 / 0.61 / 0.77 / 0.92 at epochs 5 / 10 / 15 / 20 with the packages of
    # 2026-12-02 (0.43 / 0.73 / 0.87 at 5 / 10 / 15 the day before, same code: a dependency moved)
    epochs = 20
    spec = _spec(
        tmp_path,
        shapes,
        train={
            "num_epochs": epochs,
            "validation_interval": 5,
            "checkpoint_interval": 5,
            "optim": {"lr": 1e-3, "lr_backbone": 1e-3, "lr_steps": [100]},
        },
    )
    t0 = time.time()
    rc, lines = _run(tmp_path, "train", spec)
    train_s = time.time() - t0
    assert rc == 0, lines[-1]
    epochs_lines = [x for x in lines if "epoch" in x]
    assert [x["epoch"] for x in epochs_lines] == list(range(epochs))
    losses = [x["kpi"]["train_loss"] for x in epochs_lines]
    val = [x["kpi"]["val_mAP50"] for x in epochs_lines if "val_mAP50" in x["kpi"]]
    assert len(val) == epochs // 5 and all("val_mAP" in x["kpi"] for x in epochs_lines if "val_mAP50" in x["kpi"])
    print(f"DINO tiny: {train_s:.0f}s, train_loss {losses[0]:.2f} -> {losses[-1]:.2f}, val_mAP50 {val}")
    assert losses[-1] < 0.5 * losses[0]
    assert val[-1] >= 0.8 and val[-1] > val[0]  # issue 11's learning bar; measured 0.92 (mAP 0.41) after 160 steps
    out = tmp_path / "results" / "train"
    assert sorted(p.name for p in out.glob("model_epoch_*.pth")) == [
        "model_epoch_004_step_00040.pth",
        "model_epoch_009_step_00080.pth",
        "model_epoch_014_step_00120.pth",
        "model_epoch_019_step_00160.pth",
    ]
    latest = out / "dino_model_latest.pth"
    assert latest.is_symlink() and latest.resolve().name == "model_epoch_019_step_00160.pth"
    ckpt = str(out / "model_epoch_019_step_00160.pth")

    rc, lines = _run(tmp_path, "evaluate", {**spec, "evaluate": {"checkpoint": ckpt}})
    assert rc == 0, lines[-1]
    kpi = lines[-1]["kpi"]
    print(f"DINO tiny evaluate: test_mAP {kpi['test_mAP']:.3f} test_mAP50 {kpi['test_mAP50']:.3f}")
    assert kpi["test_mAP50"] == pytest.approx(val[-1], abs=1e-6) and kpi["test_mAP"] > 0.2

    wrong = {**spec, "model": {**spec["model"], "num_queries": 30, "num_select": 30}, "evaluate": {"checkpoint": ckpt}}
    rc, lines = _run(tmp_path, "evaluate", wrong)
    assert rc == 1 and "model.num_queries=20" in lines[-1]["message"]

    classmap = tmp_path / "label_map.txt"
    classmap.write_text("background\nrectangle\nellipse\ntriangle\n")
    ds = {**spec["dataset"], "infer_data_sources": {"image_dir": shapes["image_dir"], "classmap": str(classmap)}}
    rc, lines = _run(tmp_path, "inference", {**spec, "dataset": ds, "inference": {"checkpoint": ckpt, "conf_threshold": 0.3}})
    assert rc == 0, lines[-1]
    inf_dir = tmp_path / "results" / "inference"
    assert len(list((inf_dir / "images_annotated").glob("*.png"))) == 32
    records = json.loads((inf_dir / "detections.json").read_text())
    dets = [d for r in records for d in r["detections"]]
    assert (
        dets and all(d["score"] >= 0.3 for d in dets) and {d["class_name"] for d in dets} <= {"rectangle", "ellipse", "triangle"}
    )

    onnx_file = tmp_path / "results" / "export" / "dino.onnx"
    rc, lines = _run(
        tmp_path,
        "export",
        {**spec, "export": {"checkpoint": ckpt, "onnx_file": str(onnx_file), "input_width": 128, "input_height": 128}},
    )
    assert rc == 0, lines[-1]
    diff = lines[-1]["kpi"]
    print(f"DINO tiny ONNX vs PyTorch: {diff}")
    assert onnx_file.is_file() and max(diff.values()) <= 1e-3

    ds = {**spec["dataset"], "quant_calibration_data_sources": shapes}
    quant = {"backend": "modelopt.onnx", "mode": "static_ptq", "model_path": str(onnx_file)}
    rc, lines = _run(tmp_path, "quantize", {**spec, "dataset": ds, "quantize": quant})
    assert rc == 0, lines[-1]
    kpi = lines[-1]["kpi"]
    print(f"DINO tiny INT8: {kpi}")
    assert (tmp_path / "results" / "quantize" / "dino_int8.onnx").is_file() and kpi["quantize_nodes"] > 0
    assert kpi["fp32_mAP50"] == pytest.approx(val[-1], abs=0.02) and kpi["int8_mAP50"] > 0.3


@pytest.mark.slow
def test_resume_continues_and_refuses_other_structure(tmp_path, shapes):
    src = write_shapes_coco(tmp_path / "small", n_images=8, size=96, seed=1)
    aug = {**AUG_128, "scales": [96], "train_random_resize": [96], "train_random_crop_min": 64, "train_random_crop_max": 96}
    spec = _spec(tmp_path, src, dataset={"augmentation": aug}, train={"num_epochs": 1})
    rc, lines = _run(tmp_path, "train", spec)
    assert rc == 0, lines[-1]
    ckpt = tmp_path / "results" / "train" / "model_epoch_000_step_00002.pth"
    assert ckpt.is_file()
    spec["train"].update(num_epochs=2, resume_training_checkpoint_path=str(ckpt))
    rc, lines = _run(tmp_path, "train", spec)
    assert rc == 0, lines[-1]
    assert [x["epoch"] for x in lines if "epoch" in x] == [0, 1]  # epoch 0 from the first run, epoch 1 resumed
    assert (tmp_path / "results" / "train" / "model_epoch_001_step_00004.pth").is_file()
    spec["model"]["dec_layers"] = 3
    rc, lines = _run(tmp_path, "train", spec)
    assert rc == 1 and "model.dec_layers=2" in lines[-1]["message"]
