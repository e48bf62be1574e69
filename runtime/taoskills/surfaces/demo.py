"""The main job on its embedded default: NVDINOv2 train -> inference -> export on real
photographs, with the built-in engine on the local platform, through the service API.

Data: photographs shipped in the scikit-image wheel (see :mod:`taoskills.data.sample_data`
for the list and licences), written as ``images_train.tar.gz`` (exercising archive
staging) and an ``images_test/`` folder. Runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

# Small, real run: ViT-S student/teacher (the skill's smoke profile) at CPU-friendly crop
# sizes. Every key is a TAO nvdinov2 spec key and the engine honours each one. TAO's
# scheduler defaults are sized for millions of steps (lr warm-up 100000 steps); the spec
# builder fits them to this run's length (taoskills.specs.schedules), as it does for any run.
BATCH = 8


def demo_overrides(epochs: int, n_train: int) -> dict[str, object]:
    """Spec overrides for the demo: crop sizes, prototypes and run length (no scheduler keys:
    :mod:`taoskills.specs.schedules` fits warm-up, decay and teacher schedules to
    ``epochs x ceil(n_train / BATCH)`` steps)."""
    return {
        "dataset.batch_size": BATCH,
        "dataset.workers": 2,
        "dataset.transform.global_crops_size": 112,
        "dataset.transform.n_local_crops": 4,
        "dataset.transform.local_crops_size": 56,
        "model.backbone.drop_path_rate": 0.1,
        "train.num_prototypes": 1024,
        "train.num_epochs": epochs,
        "train.checkpoint_interval": epochs,
    }


console = Console(stderr=True)


def run_demo(out_dir: Path, *, epochs: int = 10, n_train: int = 32, n_test: int = 8) -> int:
    """Run the demo; returns a process exit code (0 when all three jobs COMPLETE)."""
    from taoskills.data.sample_data import write_sample_archive, write_sample_images
    from taoskills.service import Service
    from taoskills.surfaces.follow import follow_job

    out_dir = Path(out_dir).resolve()
    data = out_dir / "data"
    train_root, test_root = data / "train", data / "test"
    started = time.monotonic()
    if not (train_root / "images_train.tar.gz").exists():
        write_sample_archive(train_root, name="images_train.tar.gz", n=n_train)
    if not (test_root / "images_test").is_dir():
        write_sample_images(test_root / "images_test", n=n_test)
    svc = Service(home=out_dir / "home")

    console.print(f"[bold]1/3 train[/] NVDINOv2 on {n_train} photos ({train_root / 'images_train.tar.gz'})")
    train = svc.launch_job(
        "tao-train-nvdinov2",
        "train",
        automl_policy="off",
        profile="smoke",
        data_sources={"train_datasets": str(train_root)},
        overrides=demo_overrides(epochs, n_train),
    )
    status = follow_job(svc, train.job_id)
    if status.status != "COMPLETE":
        return _failed(svc, status)
    losses = _loss_curve(Path(status.results_dir))

    console.print("[bold]2/3 inference[/] embeddings for the test photos")
    inf = svc.launch_job(
        "tao-train-nvdinov2", "inference", parent_job_id=train.job_id, data_sources={"inference_dataset": str(test_root)}
    )
    inf_status = follow_job(svc, inf.job_id)
    if inf_status.status != "COMPLETE":
        return _failed(svc, inf_status)

    console.print("[bold]3/3 export[/] ONNX, checked against PyTorch in onnxruntime")
    exp = svc.launch_job("tao-train-nvdinov2", "export", parent_job_id=train.job_id)
    exp_status = follow_job(svc, exp.job_id)
    if exp_status.status != "COMPLETE":
        return _failed(svc, exp_status)

    ckpt = svc.resolve_checkpoint(train.job_id, "inference")
    embeddings = Path(inf_status.results_dir) / "inference" / "embeddings.npy"
    onnx_file = svc.store.get(exp.job_id).spec["export"]["onnx_file"]
    summary = {
        "train_job": train.job_id,
        "train_loss_first_epoch": losses[0] if losses else None,
        "train_loss_last_epoch": losses[-1] if losses else None,
        "checkpoint": ckpt.path,
        "embeddings": str(embeddings),
        "onnx": onnx_file,
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"checkpoint: {ckpt.path}")
    print(f"embeddings: {embeddings}")
    print(f"onnx:       {onnx_file}")
    if losses:
        print(f"train_loss: {losses[0]:.4f} (first epoch) -> {losses[-1]:.4f} (epoch {len(losses)} of {len(losses)})")
    print(f"summary:    {out_dir / 'summary.json'} ({summary['wall_time_s']} s)")
    return 0


def _loss_curve(results_dir: Path) -> list[float]:
    from taoskills.jobs import monitor

    summary = monitor.progress(results_dir, "train")
    return [value for epoch, value in summary.kpi_history.get("train_loss", []) if epoch is not None]


def _failed(svc, status) -> int:
    console.print(f"[bold red]{status.job_id} ended {status.status}[/]")
    if status.failure:
        console.print(json.dumps(status.failure, indent=2)[:4000])
    console.print(svc.job_logs(status.job_id, tail=40).text)
    return 1


# ----------------------------------------------------------------------------- MAE and DINO

#: The DINO demo model: the smallest real config TAO Core 7.3.0's dino ModelConfig accepts that
#: trains in minutes on CPU (resnet_34, 2 feature levels, 1 encoder + 2 decoder layers), at 128 px.
DINO_DEMO = {
    "model.backbone": "resnet_34",
    "model.hidden_dim": 64,
    "model.nheads": 4,
    "model.dim_feedforward": 128,
    "model.enc_layers": 1,
    "model.dec_layers": 2,
    "model.num_queries": 20,
    "model.num_select": 20,
    "model.dn_number": 20,
    "model.return_interm_indices": [3, 4],
    "model.num_feature_levels": 2,
    "dataset.batch_size": 4,
    "dataset.workers": 1,
    "dataset.augmentation.scales": [128],
    "dataset.augmentation.train_random_resize": [128],
    "dataset.augmentation.train_random_crop_min": 96,
    "dataset.augmentation.train_random_crop_max": 128,
    "dataset.augmentation.random_resize_max_size": 128,
    "dataset.augmentation.test_random_resize": 128,
    "dataset.augmentation.fixed_padding": False,
    "train.activation_checkpoint": False,
    "train.num_gpus": 1,
    "train.checkpoint_interval": 1,
    "train.validation_interval": 1,
}


def _step(svc, n: str, title: str, skill: str, action: str, **request):
    """Launch one job, follow it; returns its final JobStatus (``None`` after printing a failure)."""
    from taoskills.surfaces.follow import follow_job

    console.print(f"[bold]{n} {action}[/] {title}")
    handle = svc.launch_job(skill, action, **request)
    status = follow_job(svc, handle.job_id)
    if status.status != "COMPLETE":
        _failed(svc, status)
        return None
    return status


def _finish(out_dir: Path, started: float, summary: dict[str, object]) -> int:
    summary["wall_time_s"] = round(time.monotonic() - started, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    for key, value in summary.items():
        print(f"{key + ':':<22}{value}")
    print(f"{'summary:':<22}{out_dir / 'summary.json'}")
    return 0


def run_mae_demo(out_dir: Path, *, epochs: int | None = None) -> int:
    """MAE pretrain -> finetune (from the pretrain checkpoint) -> evaluate -> inference -> export.

    Data: :func:`taoskills.engine.mae.sample.write_classification_set` (4 classes of real photo
    crops, class folders ``images_train/ images_val/ images_test/``); model and schedule:
    :func:`taoskills.engine.mae.sample.demo_overrides` (``convnextv2_atto`` at 64 px). Returns a
    process exit code (0 when all five jobs COMPLETE).
    """
    from taoskills.engine.mae.sample import demo_overrides as mae_overrides
    from taoskills.engine.mae.sample import write_classification_set
    from taoskills.service import Service

    out_dir = Path(out_dir).resolve()
    root = out_dir / "data"
    started = time.monotonic()
    sample = write_classification_set(root, num_classes=4)
    svc = Service(home=out_dir / "home")
    skill = "tao-train-mask-auto-encoder"
    sources = {"train_datasets": str(root), "eval_dataset": str(root), "inference_dataset": str(root)}
    pre = _step(
        svc,
        "1/5",
        "MAE pretraining (masked reconstruction)",
        skill,
        "train",
        automl_policy="off",
        data_sources={"train_datasets": sources["train_datasets"]},
        overrides={**mae_overrides("pretrain", epochs=epochs), "train.num_gpus": 1},
    )
    if pre is None:
        return 1
    ptm = svc.resolve_checkpoint(pre.job_id, "evaluate").path
    fine = _step(
        svc,
        "2/5",
        f"finetune from {Path(ptm).name}",
        skill,
        "train",
        automl_policy="off",
        parent_job_id=pre.job_id,  # its checkpoint (ptm) becomes train.pretrained_model_path
        data_sources={"train_datasets": sources["train_datasets"], "eval_dataset": sources["eval_dataset"]},
        overrides={
            **mae_overrides("finetune", epochs=epochs),
            "model.num_classes": len(sample["classes"]),
            "train.num_gpus": 1,
        },
    )
    if fine is None:
        return 1
    done = {}
    for n, action, role in (
        ("3/5", "evaluate", "eval_dataset"),
        ("4/5", "inference", "inference_dataset"),
        ("5/5", "export", None),
    ):
        data = {role: sources[role]} if role else {}
        done[action] = _step(svc, n, "from the finetune job", skill, action, parent_job_id=fine.job_id, data_sources=data)
        if done[action] is None:
            return 1
    return _finish(
        out_dir,
        started,
        {
            "pretrain_job": pre.job_id,
            "pretrain_train_loss": pre.kpis.get("train_loss"),
            "finetune_job": fine.job_id,
            "finetune_checkpoint": svc.resolve_checkpoint(fine.job_id, "evaluate").path,
            "evaluate_ACC_all": done["evaluate"].kpis.get("ACC_all"),
            "predictions": str(Path(done["inference"].results_dir) / "inference"),
            "onnx": svc.store.get(done["export"].job_id).spec["export"]["onnx_file"],
        },
    )


def run_dino_demo(out_dir: Path, *, epochs: int | None = None) -> int:
    """DINO train -> evaluate -> inference -> export on real photo crops with drawn shapes.

    Data: :func:`taoskills.data.sample_data.write_sample_detection` (COCO boxes, 1-based ids, 3
    classes) for train/val; model :data:`DINO_DEMO`. Prints where the annotated images are.
    Returns a process exit code (0 when all four jobs COMPLETE).
    """
    from taoskills.data.sample_data import DETECTION_CLASSES, write_sample_detection
    from taoskills.service import Service

    out_dir = Path(out_dir).resolve()
    root = out_dir / "data"
    started = time.monotonic()
    write_sample_detection(root, n=16, size=128)
    (root / "label_map.txt").write_text("\n".join(DETECTION_CLASSES) + "\n", encoding="utf-8")
    svc = Service(home=out_dir / "home")
    skill = "tao-train-dino"
    train = _step(
        svc,
        "1/4",
        f"DINO ({DINO_DEMO['model.backbone']}) on {root}",
        skill,
        "train",
        automl_policy="off",
        data_sources={"train_datasets": str(root)},
        overrides={**DINO_DEMO, "dataset.num_classes": len(DETECTION_CLASSES) + 1, "train.num_epochs": epochs or 10},
    )
    if train is None:
        return 1
    done = {}
    for n, action, role in (
        ("2/4", "evaluate", "eval_dataset"),
        ("3/4", "inference", "inference_dataset"),
        ("4/4", "export", None),
    ):
        data = {role: str(root)} if role else {}
        # evaluate/inference take the trained size from the train job (dataset.augmentation is carried);
        # export at it too (TAO's DINO export default is 640x640)
        size = {"export.input_width": 128, "export.input_height": 128} if action == "export" else {}
        extra = {"overrides": size}
        done[action] = _step(svc, n, "from the train job", skill, action, parent_job_id=train.job_id, data_sources=data, **extra)
        if done[action] is None:
            return 1
    return _finish(
        out_dir,
        started,
        {
            "train_job": train.job_id,
            "val_mAP50": train.kpis.get("val_mAP50"),
            "checkpoint": svc.resolve_checkpoint(train.job_id, "evaluate").path,
            "test_mAP50": done["evaluate"].kpis.get("test_mAP50"),
            "annotated_images": str(Path(done["inference"].results_dir) / "inference"),
            "onnx": svc.store.get(done["export"].job_id).spec["export"]["onnx_file"],
        },
    )


# ----------------------------------------------------------------------------- Grounding DINO

#: The Grounding DINO demo's size on top of the skill's smoke profile (swin_tiny_224_1k, d_model 64,
#: 1+2 layers, 100 queries, log_scale auto + class_embed_bias): 96 px synthetic shape scenes
#: (100 queries need >= 100 encoder tokens: 12x12 + 6x6 + 3x3 at levels 2-4).
GDINO_SIZE = {
    "dataset.augmentation.scales": [96],
    "dataset.augmentation.train_random_resize": [96],
    "dataset.augmentation.train_random_crop_min": 80,
    "dataset.augmentation.train_random_crop_max": 96,
    "dataset.augmentation.random_resize_max_size": 96,
    "dataset.augmentation.test_random_resize": 96,
}
#: Default inference prompts: two trained labels and a caption never used as a label ("red square").
GDINO_CAPTIONS = ("red circle", "green square", "red square")


def run_gdino_demo(
    out_dir: Path, *, epochs: int | None = None, captions: tuple[str, ...] | list[str] = GDINO_CAPTIONS, n_train: int = 64
) -> int:
    """Grounding DINO train -> evaluate -> inference with ``captions`` -> export on synthetic captioned
    shapes (:mod:`taoskills.engine.grounding_dino.synthetic`: ODVG + label map for training, COCO with
    ids from 0 for validation), with an offline WordPiece BERT folder as ``model.text_encoder_type``
    (:func:`taoskills.engine.grounding_dino.text_encoder.write_text_encoder`; production uses a local
    bert-base-uncased copy). Prints where the annotated images are; returns a process exit code (0 when
    all four jobs COMPLETE)."""
    from taoskills.engine.grounding_dino import synthetic as Y
    from taoskills.engine.grounding_dino import text_encoder as T
    from taoskills.service import Service

    out_dir = Path(out_dir).resolve()
    data = out_dir / "data"
    started = time.monotonic()
    train_root, val_root = data / "train", data / "val"
    if not (train_root / "annotations_odvg.jsonl").is_file():
        Y.write_shapes(train_root, n=n_train, size=96, seed=0)
        Y.write_shapes(val_root, n=16, size=96, seed=1)
    bert = T.write_text_encoder(data / "bert", [*Y.vocabulary_texts(), *captions])
    svc = Service(home=out_dir / "home")
    skill = "tao-train-grounding-dino"
    text = {"model.text_encoder_type": str(bert)}
    n_epochs = epochs or 8
    train = _step(
        svc,
        "1/4",
        f"Grounding DINO (smoke profile, swin_tiny_224_1k) on {train_root}",
        skill,
        "train",
        automl_policy="off",
        profile="smoke",
        data_sources={"train_datasets": str(train_root), "eval_dataset": str(val_root)},
        overrides={
            **text,
            **GDINO_SIZE,
            "train.num_epochs": n_epochs,
            "train.checkpoint_interval": n_epochs,
            "train.validation_interval": n_epochs,
            "train.optim.lr_steps": [max(1, n_epochs - 2)],
        },
    )
    if train is None:
        return 1
    done = {}
    for n, action, role, extra in (
        ("2/4", "evaluate", "eval_dataset", GDINO_SIZE),
        ("3/4", "inference", "inference_dataset", {**GDINO_SIZE, "dataset.infer_data_sources.captions": list(captions)}),
        ("4/4", "export", None, {"export.input_width": 96, "export.input_height": 96}),
    ):
        sources = {role: str(val_root)} if role else {}
        title = f"captions {list(captions)}" if action == "inference" else "from the train job"
        done[action] = _step(svc, n, title, skill, action, parent_job_id=train.job_id, data_sources=sources, overrides=extra)
        if done[action] is None:
            return 1
    inference = Path(done["inference"].results_dir) / "inference"
    return _finish(
        out_dir,
        started,
        {
            "train_job": train.job_id,
            "val_mAP50": train.kpis.get("val_mAP50"),
            "checkpoint": svc.resolve_checkpoint(train.job_id, "evaluate").path,
            "test_mAP50": done["evaluate"].kpis.get("test_mAP50"),
            "captions": list(captions),
            "annotated_images": str(inference / "images_annotated"),
            "detections": str(inference / "detections.json"),
            "onnx": svc.store.get(done["export"].job_id).spec["export"]["onnx_file"],
        },
    )
