"""Grounding DINO built-in engine end to end on synthetic captioned shapes: train (CLI
subprocess, real learning: val mAP50 >= 0.5 on unseen images), a caption never used as a label but
made of a known word ("red" after training on red circles / triangles and blue / green squares),
evaluate, inference with captions, export (checked in onnxruntime), quantize to INT8 ONNX
(mAP before/after).

Tiny settings (CPU, one torch thread): a basic-block ResNet with one block per stage
(``model.backbone`` as a local config folder, ``model.write_backbone(kind="resnet")``, the engine's
extension for small runs), 64 px images, d_model 64, 1 encoder / 2 decoder layers, 30 queries,
``model.log_scale=auto`` + ``model.class_embed_bias=true`` (TAO's keys for training from scratch:
without them the contrastive logits start saturated and val mAP50 stalls near 0.1-0.2), a 2-layer
BERT of width 64 with a WordPiece vocabulary trained on the label words; 192 images x 14 epochs at
lr 1e-3, x0.1 after epoch 11 (672 steps; about 100 s of one idle core).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from taoskills.engine.cli import main
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import pretrain as P
from taoskills.engine.grounding_dino import synthetic as Y
from taoskills.engine.grounding_dino import text_encoder as T

pytestmark = [pytest.mark.slow, pytest.mark.torch]

REPO = Path(__file__).resolve().parents[2]
#: "red" with two shapes and "square" with two colours, so both are learnt as words (never as labels).
CLASSES = ("red circle", "blue square", "red triangle", "green square")
TEMPLATES = REPO / "skills" / "tao-train-grounding-dino" / "references"
#: Validation images: 32 (about 48 objects). With 16, val mAP50 and the INT8 drop moved by ~0.1 between
#: runs that differ in nothing that matters (final val 0.51, INT8 drop 0.12 > 0.1 once the loss read every
#: image's own targets; engine README, "Multi-span positives").
VAL_IMAGES = 32


def _status(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _spec(tmp: Path, action: str) -> Path:
    """The packaged spec template for ``action`` (or TAO Core's defaults when it is missing)."""
    template = TEMPLATES / f"spec_template_{action}.yaml"
    out = tmp / f"spec_{action}.yaml"
    if template.is_file():
        out.write_text(template.read_text())
    else:
        omegaconf = pytest.importorskip("omegaconf")
        dc = pytest.importorskip("nvidia_tao_core.config.grounding_dino.default_config")
        out.write_text(omegaconf.OmegaConf.to_yaml(omegaconf.OmegaConf.structured(dc.ExperimentConfig)))
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gdino")
    train = Y.write_shapes(tmp / "train", n=192, size=64, seed=0, classes=CLASSES)
    val = Y.write_shapes(tmp / "val", n=VAL_IMAGES, size=64, seed=1, classes=CLASSES)
    bert = T.write_text_encoder(tmp / "bert", Y.vocabulary_texts(CLASSES))
    backbone = M.write_backbone(tmp / "resnet", kind="resnet")
    # the ResNet starts pretrained on shapes x colours (pretrain.py, ~12 s): from scratch, val mAP50
    # after 14 epochs was 0.41 / 0.68 / 0.38 / 0.54 for train.seed 1234 / 1 / 2 / 3; pretrained
    # 0.84 / 0.64 for 1234 / 2 (engine README, "Deterministic vocabulary and a pretrained backbone")
    pretrained = tmp / "resnet_pretrained.pth"
    P.pretrain_backbone(backbone, pretrained, steps=400, seed=0)
    model = [
        f"model.pretrained_backbone_path={pretrained}",
        f"model.backbone={backbone}",
        f"model.text_encoder_type={bert}",
        "model.hidden_dim=64",
        "model.nheads=4",
        "model.enc_layers=1",
        "model.dec_layers=2",
        "model.dim_feedforward=128",
        "model.num_queries=30",
        "model.num_select=30",
        "model.max_text_len=32",
        "model.return_interm_indices=[2,3,4]",
        "model.num_feature_levels=3",
        "model.log_scale=auto",
        "model.class_embed_bias=true",
        "dataset.augmentation.scales=[64]",
        "dataset.augmentation.train_random_resize=[64]",
        "dataset.augmentation.train_random_crop_min=48",
        "dataset.augmentation.train_random_crop_max=64",
        "dataset.augmentation.random_resize_max_size=64",
        "dataset.augmentation.test_random_resize=64",
        "dataset.augmentation.fixed_random_crop=null",
        "dataset.batch_size=4",
        "dataset.workers=1",
        "wandb.enable=false",
        "dataset.eval_class_ids=null",  # TAO's templates carry [1] (score category 1 only)
    ]
    return tmp, train, val, model


@pytest.fixture(scope="module")
def trained(work):
    tmp, train, val, model = work
    results = tmp / "results"
    cmd = [
        sys.executable,
        "-m",
        "taoskills.engine",
        "grounding_dino",
        "train",
        "-e",
        str(_spec(tmp, "train")),
        f"results_dir={results}",
        *model,
        f"dataset.train_data_sources=[{{image_dir: {train['images']}, json_file: {train['odvg']}, label_map: {train['label_map']}}}]",
        f"dataset.val_data_sources={{image_dir: {val['images']}, json_file: {val['coco']}}}",
        "train.num_epochs=14",
        "train.checkpoint_interval=7",
        "train.validation_interval=2",
        "train.optim.lr=1e-3",
        "train.optim.lr_backbone=1e-3",
        "train.optim.lr_steps=[11]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0, cpu0 = time.monotonic(), os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)
    cpu1 = os.times()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "Execution status: PASS"
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    print(f"Grounding DINO tiny train: {time.monotonic() - t0:.0f} s wall, {cpu:.0f} s CPU (1 torch thread)")
    return results / "train"


def test_train_learns_and_writes_tao_results(trained):
    names = sorted(p.name for p in trained.iterdir())
    assert "model_epoch_006_step_00336.pth" in names and "model_epoch_013_step_00672.pth" in names
    latest = trained / "gdino_model_latest.pth"
    assert latest.is_symlink() and os.readlink(latest) == "model_epoch_013_step_00672.pth"
    lines = _status(trained / "status.json")
    epochs = [ln for ln in lines if "epoch" in ln]
    assert [ln["epoch"] for ln in epochs] == list(range(14))
    val = [ln["kpi"]["val_mAP50"] for ln in epochs if "val_mAP50" in ln["kpi"]]
    assert len(val) == 7 and all("val_mAP" in ln["kpi"] for ln in epochs if "val_mAP50" in ln["kpi"])
    losses = [ln["kpi"]["train_loss"] for ln in epochs]
    print(f"Grounding DINO tiny: train_loss {losses[0]:.2f} -> {losses[-1]:.2f}, val_mAP50 {[round(v, 3) for v in val]}")
    assert losses[-1] < 0.9 * losses[0]  # measured 21.1-22.0 -> 14.1-15.3 (the class head starts at prior 0.01)
    # real learning: validation mAP50 on 32 unseen images (4 classes) reaches 0.5
    assert val[-1] >= 0.5 and val[-1] > val[0], val
    assert lines[-1]["status"] == "SUCCESS"


def _ap50_for(dets: list[dict], gt: dict, keep) -> float:
    """AP50 of class-agnostic ``dets`` against the ground-truth boxes whose category passes ``keep``."""
    from taoskills.engine.grounding_dino import metrics

    boxes = {
        "images": gt["images"],
        "categories": [{"id": 0, "name": "target"}],
        "annotations": [{**a, "category_id": 0} for a in gt["annotations"] if keep(a["category_id"])],
    }
    return metrics.coco_map(boxes, [{**d, "category_id": 0} for d in dets])["mAP50"]


def test_unseen_caption_made_of_known_words_finds_its_objects(work, trained, tmp_path):
    """Query "red" (a known word, never a label) on new scenes of the four classes plus red squares
    (never drawn in training): its detections must match the red objects clearly better than the blue /
    green ones (chance: the same AP50 against both). "square" and the two-word caption "red square"
    (never a label, both words known) are measured and printed, not asserted: "red square" is not found
    better than chance at this size (AP50 on red squares vs its neighbours, red circles + triangles and
    blue + green squares: 0.10-0.16 vs 0.44-0.58 here, 3 runs). "square" (0.43 vs 0.03 in one run, 0.07
    vs 0.08 in another) is no test of shape: every non-square here is red, so "not red" scores as well.
    Per-token scores show why ("square" is learnt as "not red": every square in training is blue or
    green; circles and squares are not told apart; a phrase's tokens score alike): engine README,
    "Why red square fails". Attribute-level ODVG spans (``tokens_positive``, ``write_shapes(spans=...)``)
    fix the last point but not the first two at this budget: README, "Multi-span positives"."""
    tmp, _, _, model = work
    drawn = (*CLASSES, "red square")
    scenes = Y.write_shapes(tmp_path / "scenes", n=32, size=64, seed=5, classes=drawn)
    gt = json.loads(scenes["coco"].read_text())
    ids = {im["file_name"]: im["id"] for im in gt["images"]}
    cats = {i: set(c.split()) for i, c in enumerate(drawn)}
    queries = {
        "red": ({i for i, w in cats.items() if "red" in w}, {i for i, w in cats.items() if "red" not in w}),
        "square": ({i for i, w in cats.items() if "square" in w}, {i for i, w in cats.items() if "square" not in w}),
        # neighbours: one word shared (red circles / triangles, blue / green squares)
        "red square": ({4}, {i for i, w in cats.items() if len(w & {"red", "square"}) == 1}),
    }
    ap = {}
    for caption, (targets, others) in queries.items():
        out = tmp_path / caption
        code = main(
            [
                "grounding_dino",
                "inference",
                "-e",
                str(_spec(tmp, "inference")),
                f"results_dir={out}",
                *model,
                f"inference.checkpoint={trained / 'model_epoch_013_step_00672.pth'}",
                f"dataset.infer_data_sources.image_dir=[{scenes['images']}]",
                f"dataset.infer_data_sources.captions=[{caption}]",
                "inference.conf_threshold=0.0",
                "inference.input_width=null",
                "inference.input_height=null",
            ]
        )
        assert code == 0
        report = json.loads((out / "inference" / "detections.json").read_text())
        dets = [
            {"image_id": ids[im["image"]], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d["score"]}
            for im in report["images"]
            for d in im["detections"]
            for x1, y1, x2, y2 in [d["bbox"]]
        ]
        ap[caption] = (_ap50_for(dets, gt, lambda c, t=targets: c in t), _ap50_for(dets, gt, lambda c, o=others: c in o))
        print(
            f"caption {caption!r} (never a label): AP50 {ap[caption][0]:.3f} on its objects vs {ap[caption][1]:.3f} on the others"
        )
    target, rest = ap["red"]
    assert target > rest + 0.1, ap  # measured (3 runs): red 0.60-0.71 vs 0.01-0.03


def test_evaluate_inference_export(work, trained, tmp_path):
    tmp, _, val, model = work
    ckpt = trained / "model_epoch_013_step_00672.pth"
    out = tmp_path / "results"
    common = [f"results_dir={out}", *model]
    code = main(
        [
            "grounding_dino",
            "evaluate",
            "-e",
            str(_spec(tmp, "evaluate")),
            *common,
            f"evaluate.checkpoint={ckpt}",
            f"dataset.test_data_sources={{image_dir: {val['images']}, json_file: {val['coco']}}}",
        ]
    )
    assert code == 0
    kpi = _status(out / "evaluate" / "status.json")[-1]["kpi"]
    train_val = [ln["kpi"]["val_mAP50"] for ln in _status(trained / "status.json") if "val_mAP50" in ln.get("kpi", {})]
    assert kpi["test_mAP50"] == pytest.approx(train_val[-1], abs=1e-6)  # same images, same weights
    assert (out / "evaluate" / "results.json").is_file()

    code = main(
        [
            "grounding_dino",
            "inference",
            "-e",
            str(_spec(tmp, "inference")),
            *common,
            f"inference.checkpoint={ckpt}",
            f"dataset.infer_data_sources.image_dir=[{val['images']}]",
            "dataset.infer_data_sources.captions=[red circle, red]",
            "inference.conf_threshold=0.05",
            "inference.input_width=null",
            "inference.input_height=null",
        ]
    )
    assert code == 0
    inf = out / "inference"
    report = json.loads((inf / "detections.json").read_text())
    assert report["captions"] == ["red circle", "red"] and len(report["images"]) == VAL_IMAGES
    dets = [d for im in report["images"] for d in im["detections"]]
    assert dets and all(d["score"] >= 0.05 and d["caption"] in ("red circle", "red") for d in dets)
    assert (
        len(list((inf / "images_annotated").glob("*.jpg"))) == VAL_IMAGES
        and len(list((inf / "labels").glob("*.json"))) == VAL_IMAGES
    )

    onnx_file = tmp_path / "gdino.onnx"
    code = main(
        [
            "grounding_dino",
            "export",
            "-e",
            str(_spec(tmp, "export")),
            *common,
            f"export.checkpoint={ckpt}",
            f"export.onnx_file={onnx_file}",
            "export.input_width=64",
            "export.input_height=64",
            "export.on_cpu=true",
        ]
    )
    assert code == 0
    kpi = _status(out / "export" / "status.json")[-1]["kpi"]
    assert kpi["onnx_max_abs_diff"] < 1e-3
    graph = onnx.load(str(onnx_file), load_external_data=False)
    assert [i.name for i in graph.graph.input] == ["inputs", "input_ids", "attention_mask", "token_type_ids"]
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17


def test_quantize_int8_onnx_with_map_before_after(work, trained, tmp_path):
    tmp, train, val, model = work
    ckpt = trained / "model_epoch_013_step_00672.pth"
    code = main(
        [
            "grounding_dino",
            "quantize",
            "-e",
            str(_spec(tmp, "quantize")),
            f"results_dir={tmp_path}",
            *model,
            f"quantize.model_path={ckpt}",
            "quantize.backend=modelopt.onnx",
            "quantize.mode=static_ptq",
            f"dataset.train_data_sources=[{{image_dir: {train['images']}, json_file: {train['odvg']}, label_map: {train['label_map']}}}]",
            f"dataset.val_data_sources={{image_dir: {val['images']}, json_file: {val['coco']}}}",
            f"dataset.quant_calibration_data_sources={{image_dir: {train['images']}, json_file: {train['coco']}}}",
            "export.input_width=64",
            "export.input_height=64",
        ]
    )
    assert code == 0
    kpi = _status(tmp_path / "quantize" / "status.json")[-1]["kpi"]
    train_val = [ln["kpi"]["val_mAP50"] for ln in _status(trained / "status.json") if "val_mAP50" in ln.get("kpi", {})]
    assert kpi["fp32_mAP50"] == pytest.approx(train_val[-1], abs=0.02)  # onnxruntime fp32 = PyTorch validation
    assert abs(kpi["mAP50_drop"]) < 0.1 and kpi["int8_mAP50"] > 0
    int8 = tmp_path / "quantize" / "model_epoch_013_step_00672_int8.onnx"
    assert int8.is_file() and int8.stat().st_size < (tmp_path / "quantize" / "model_epoch_013_step_00672.onnx").stat().st_size


def test_quantize_default_backend_names_tao_engine(work, tmp_path):
    tmp, _, _, model = work
    code = main(
        [
            "grounding_dino",
            "quantize",
            "-e",
            str(_spec(tmp, "quantize")),
            f"results_dir={tmp_path}",
            *model,
            "quantize.model_path=/x.onnx",
        ]
    )
    assert code == 1
    last = _status(tmp_path / "quantize" / "status.json")[-1]
    assert last["status"] == "FAILURE" and "modelopt.onnx" in last["message"]
