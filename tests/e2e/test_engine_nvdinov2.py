"""NVDINOv2 built-in engine end to end on real sample photos: train (CLI subprocess), resume,
inference, export (checked with onnxruntime), and the documented failure modes.

Tiny settings keep this to well under a minute of CPU: ViT-S (the smallest TAO backbone) at
img_size 56, 42/28 px crops, 8 images, batch 4, 2 epochs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from taoskills.data.sample_data import write_sample_archive, write_sample_images
from taoskills.engine.cli import main

pytestmark = [pytest.mark.torch, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "skills" / "tao-train-nvdinov2" / "references"

TINY = [
    "model.backbone.student_type=vit_s",
    "model.backbone.teacher_type=vit_s",
    "model.backbone.img_size=56",
    "model.backbone.drop_path_rate=0.1",
    "model.head.hidden_dim=64",
    "model.head.bottleneck_dim=32",
    "train.num_prototypes=64",
    "train.precision=32-true",
]
TRAIN = [
    "dataset.batch_size=4",
    "dataset.workers=1",
    "dataset.transform.global_crops_size=42",
    "dataset.transform.local_crops_size=28",
    "dataset.transform.n_local_crops=1",
    "train.num_epochs=2",
    "train.checkpoint_interval=2",
    "train.schedulers.learning_rate.val_base=1e-4",
    "train.schedulers.learning_rate.warm_up_steps=2",
    "train.schedulers.learning_rate.max_decay_steps=4",
    "train.schedulers.last_layer_learning_rate.freeze_steps=1",
    "train.schedulers.teacher_temperature.warm_up_steps=2",
    "train.schedulers.teacher_temperature.max_decay_steps=2",
]


def _spec(tmp: Path, action: str) -> Path:
    """The packaged spec template for ``action`` (or, before it exists, TAO Core's defaults)."""
    template = TEMPLATES / f"spec_template_{action}.yaml"
    out = tmp / f"spec_{action}.yaml"
    if template.is_file():
        out.write_text(template.read_text())
    else:
        import nvidia_tao_core.config.nvdinov2.default_config as dc
        import omegaconf

        out.write_text(omegaconf.OmegaConf.to_yaml(omegaconf.OmegaConf.structured(dc.ExperimentConfig)))
    return out


def _status(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nvdinov2")
    images = tmp / "images"
    write_sample_images(images, n=8, size=64)
    return tmp, images


@pytest.fixture(scope="module")
def trained(work):
    """One real training run through the console entry point (a subprocess)."""
    tmp, images = work
    results = tmp / "results"
    env = dict(os.environ, TS_ENGINE_TEST_KEY="not-a-real-key")
    cmd = [
        sys.executable,
        "-m",
        "taoskills.engine",
        "nvdinov2",
        "train",
        "-e",
        str(_spec(tmp, "train")),
        f"results_dir={results}",
        f"dataset.train_dataset.images_dir={images}",
        "encryption_key=${oc.env:TS_ENGINE_TEST_KEY}",
        *TINY,
        *TRAIN,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return proc, results / "train"


def test_train_outputs_and_status(trained):
    proc, out = trained
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "Execution status: PASS"
    for role in ("model", "student", "teacher"):
        assert (out / f"{role}_epoch_001_step_00004.pth").is_file()
    assert len(list(out.glob("model_epoch_*.pth"))) == 1  # checkpoint_interval=2 of 2 epochs
    latest = out / "nvdinov2_model_latest.pth"
    assert latest.is_symlink() and os.readlink(latest) == "model_epoch_001_step_00004.pth"
    lines = _status(out / "status.json")
    assert lines[0]["status"] == "STARTED" and lines[-1]["status"] == "SUCCESS"
    assert "finished successfully" in lines[-1]["message"]
    epochs = [line for line in lines if "epoch" in line]
    assert [e["epoch"] for e in epochs] == [0, 1] and all(e["max_epoch"] == 2 for e in epochs)
    assert all(np.isfinite(e["kpi"]["train_loss"]) and e["kpi"]["train_loss"] > 0 for e in epochs)
    assert lines[-1]["kpi"]["train_loss"] == epochs[-1]["kpi"]["train_loss"]
    exp = yaml.safe_load((out / "experiment.yaml").read_text())
    assert exp["train"]["num_epochs"] == 2 and exp["model"]["backbone"]["student_type"] == "vit_s"
    assert exp["encryption_key"] == "${oc.env:TS_ENGINE_TEST_KEY}"
    assert "not-a-real-key" not in (out / "experiment.yaml").read_text() + proc.stdout + proc.stderr
    # the wandb default (enable: true) is reported, not silently dropped
    assert "wandb.enable=true" in proc.stdout


def test_student_file_is_plain_backbone_weights(trained):
    import torch

    _, out = trained
    sd = torch.load(out / "student_epoch_001_step_00004.pth", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert sd["embeddings.cls_token"].shape[-1] == 384 and "layernorm.weight" in sd
    teacher = torch.load(out / "teacher_epoch_001_step_00004.pth", weights_only=True)
    assert sd.keys() == teacher.keys()
    assert any(not torch.equal(sd[k], teacher[k]) for k in sd)  # EMA teacher lags the student


def test_resume_from_model_epoch(work, trained):
    tmp, images = work
    _, out = trained
    results = tmp / "resumed"
    code = main(
        [
            "nvdinov2",
            "train",
            "-e",
            str(_spec(tmp, "train")),
            f"results_dir={results}",
            f"dataset.train_dataset.images_dir={images}",
            "wandb.enable=false",
            *TINY,
            *TRAIN,
            "train.num_epochs=3",
            "train.checkpoint_interval=1",
            f"train.resume_training_checkpoint_path={out / 'nvdinov2_model_latest.pth'}",
        ]
    )
    assert code == 0
    epochs = [line for line in _status(results / "train" / "status.json") if "epoch" in line]
    assert [e["epoch"] for e in epochs] == [2]  # epochs 0-1 came from the checkpoint
    assert (results / "train" / "model_epoch_002_step_00006.pth").is_file()
    assert not (results / "train" / "model_epoch_001_step_00004.pth").exists()


def test_inference_embeddings(work, trained):
    tmp, images = work
    _, out = trained
    results = tmp / "results"
    code = main(
        [
            "nvdinov2",
            "inference",
            "-e",
            str(_spec(tmp, "inference")),
            f"results_dir={results}",
            f"inference.checkpoint={out / 'student_epoch_001_step_00004.pth'}",
            f"dataset.test_dataset.images_dir={images}",
            "inference.batch_size=3",
            *TINY,
        ]
    )
    assert code == 0
    inf = results / "inference"
    emb = np.load(inf / "embeddings.npy")
    index = json.loads((inf / "embeddings_index.json").read_text())
    assert emb.shape == (8, 384) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert [r["row"] for r in index] == list(range(8))
    assert sorted(r["image"] for r in index) == sorted(p.name for p in images.iterdir())
    assert len({emb[i].tobytes() for i in range(8)}) == 8  # different photos, different embeddings
    assert list((inf / "visualizations").glob("*_pca.png"))  # vis_after_n_batches: 1 in the template
    assert _status(inf / "status.json")[-1]["status"] == "SUCCESS"


def test_export_onnx_matches_pytorch(work, trained):
    import onnxruntime as ort

    tmp, images = work
    _, out = trained
    results = tmp / "results"
    onnx_file = tmp / "onnx" / "nvdinov2.onnx"
    code = main(
        [
            "nvdinov2",
            "export",
            "-e",
            str(_spec(tmp, "export")),
            f"results_dir={results}",
            f"export.checkpoint={out / 'student_epoch_001_step_00004.pth'}",
            f"export.onnx_file={onnx_file}",
            "export.input_width=56",
            "export.input_height=56",
            "export.opset_version=17",
            *TINY,
        ]
    )
    assert code == 0
    final = _status(results / "export" / "status.json")[-1]
    assert final["status"] == "SUCCESS" and final["kpi"]["onnx_max_abs_diff"] < 1e-3
    # Independent check: ONNX embeddings of real photos == the inference action's embeddings.
    from taoskills.engine.nvdinov2 import data as D

    index = json.loads((results / "inference" / "embeddings_index.json").read_text())
    batch = np.stack([D.eval_transform(D.load_rgb(Path(r["path"])), 56).numpy() for r in index[:5]])
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    emb, patches = sess.run(None, {"input": batch})
    assert emb.shape == (5, 384) and patches.shape == (5, 16, 384)
    ref = np.load(results / "inference" / "embeddings.npy")[:5]
    assert np.abs(emb - ref).max() < 1e-3


def test_export_register_model_needs_dynamo_opset(work):
    import torch

    from taoskills.engine.nvdinov2 import model as M
    from taoskills.engine.nvdinov2.spec import DEFAULTS

    tmp, _ = work
    cfg = json.loads(json.dumps(DEFAULTS))
    cfg["model"]["backbone"].update(student_type="vit_s", teacher_type="vit_s", img_size=28, num_register_tokens=4)
    weights = tmp / "student_reg.pth"
    torch.save(M.build_backbone(cfg).state_dict(), weights)
    reg = [
        "model.backbone.num_register_tokens=4",
        "model.backbone.img_size=28",
        "model.backbone.student_type=vit_s",
        "model.backbone.teacher_type=vit_s",
    ]
    results = tmp / "reg"
    base = [
        "nvdinov2",
        "export",
        "-e",
        str(_spec(tmp, "export")),
        f"results_dir={results}",
        f"export.checkpoint={weights}",
        f"export.onnx_file={tmp / 'reg.onnx'}",
        "export.input_width=28",
        "export.input_height=28",
        *reg,
    ]
    assert main([*base, "export.opset_version=12"]) == 1
    failure = _status(results / "export" / "status.json")[-1]
    assert failure["status"] == "FAILURE" and "export.opset_version" in failure["message"]
    assert main([*base, "export.opset_version=17", "export.batch_size=2"]) == 0
    final = _status(results / "export" / "status.json")[-1]
    assert final["kpi"]["onnx_max_abs_diff"] < 1e-3


# ---------------------------------------------------------------- failures


def _fail(tmp: Path, action: str, *args: str) -> str:
    results = tmp / f"fail_{abs(hash(args))}"
    code = main(["nvdinov2", action, "-e", str(_spec(tmp, action)), f"results_dir={results}", *args])
    assert code == 1
    last = _status(results / action / "status.json")[-1]
    assert last["status"] == "FAILURE" and last["verbosity"] == "ERROR"
    return last["message"]


def test_archive_as_images_dir(work):
    tmp, _ = work
    archive = write_sample_archive(tmp / "arch", n=2, size=32)
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={archive}", *TINY, *TRAIN)
    assert "archive" in msg and "extracted folder" in msg


def test_empty_folder_and_unreadable_image(work):
    tmp, images = work
    empty = tmp / "empty"
    empty.mkdir()
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={empty}", *TINY, *TRAIN)
    assert "holds no images" in msg
    broken = tmp / "broken"
    write_sample_images(broken, n=4, size=32)
    (broken / "corrupt.jpg").write_bytes(b"not a jpeg")
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={broken}", *TINY, *TRAIN)
    assert "corrupt.jpg" in msg


def test_batch_larger_than_dataset_and_workers_zero(work):
    tmp, images = work
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={images}", *TINY, *TRAIN, "dataset.batch_size=16")
    assert "dataset.batch_size" in msg and "at most 8" in msg
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={images}", *TINY, *TRAIN, "dataset.workers=0")
    assert "persistent_workers option needs num_workers > 0" in msg


def test_fp16_mixed_on_cpu(work):
    import torch

    if torch.cuda.is_available():
        pytest.skip("host has a GPU")
    tmp, images = work
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={images}", *TINY, *TRAIN, "train.precision=16-mixed")
    assert "train.precision" in msg and "32-true" in msg and "bf16-mixed" in msg


def test_full_checkpoint_and_engine_file_to_inference(work, trained):
    tmp, images = work
    _, out = trained
    for ckpt in (out / "nvdinov2_model_latest.pth", out / "model_epoch_001_step_00004.pth"):
        msg = _fail(tmp, "inference", f"inference.checkpoint={ckpt}", f"dataset.test_dataset.images_dir={images}", *TINY)
        assert "unexpected keys such as state_dict, optimizer state" in msg and "student_epoch_" in msg
    msg = _fail(
        tmp, "inference", f"inference.checkpoint={tmp / 'model.engine'}", f"dataset.test_dataset.images_dir={images}", *TINY
    )
    assert "TensorRT engine passed to PyT inference" in msg


def test_structure_mismatch_and_distill(work, trained):
    tmp, images = work
    _, out = trained
    args = [f"inference.checkpoint={out / 'student_epoch_001_step_00004.pth'}", f"dataset.test_dataset.images_dir={images}"]
    msg = _fail(tmp, "inference", *args, *TINY, "model.backbone.student_type=vit_b", "model.backbone.teacher_type=vit_b")
    assert "vit_s (embed_dim 384" in msg and "model.backbone" in msg
    msg = _fail(tmp, "train", f"dataset.train_dataset.images_dir={images}", *TINY, *TRAIN, "model.distill.enable=true")
    assert "model.distill.enable" in msg


def test_wrong_checkpoint_kinds_for_train(work, trained):
    tmp, images = work
    _, out = trained
    base = [f"dataset.train_dataset.images_dir={images}", *TINY, *TRAIN]
    msg = _fail(tmp, "train", *base, f"train.resume_training_checkpoint_path={out / 'student_epoch_001_step_00004.pth'}")
    assert "not a full training checkpoint" in msg and "pretrained_model_path" in msg
    msg = _fail(
        tmp,
        "train",
        *base,
        f"train.pretrained_model_path={out / 'student_epoch_001_step_00004.pth'}",
        "model.backbone.num_register_tokens=4",
    )
    assert "train.pretrained_model_path" in msg and "num_register_tokens 0" in msg
