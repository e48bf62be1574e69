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
