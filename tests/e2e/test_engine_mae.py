"""MAE built-in engine end to end on real sample photos (scikit-image): pretrain -> finetune
(parent checkpoint) -> evaluate -> inference -> export, real learning, and the MAE skill's error
patterns as the engine raises them.

Two tiny architectures of the TAO families are added to the arch table for speed (a 2-layer
64-d ViT with 8 px patches, and a 16..128-channel ConvNeXt-V2 with depths 1/1/3/1); the real
``convnextv2_atto`` runs once through the console entry point. Images are 64 px, 4 classes
(chance accuracy 0.25), 12 train / 5 val images per class. Runs that check plumbing, not learning
(the console entry point, Hiera, the from-scratch warning) train one epoch on the 20 val images.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from taoskills.engine.cli import main
from taoskills.engine.mae import spec as S
from taoskills.engine.mae.sample import write_classification_set

pytestmark = [pytest.mark.slow, pytest.mark.torch]

TINY = {
    "vit_tiny_patch8": {"family": "vit", "hidden": 64, "depth": 2, "heads": 2, "patch": 8},
    "convnextv2_tiny_test": {"family": "convnextv2", "depths": [1, 1, 3, 1], "dims": [16, 32, 64, 128]},
    "hiera_tiny_test": {"family": "hiera", "embed": 16, "depths": [1, 1, 2, 1], "heads": [1, 1, 2, 2]},
}
CHANCE = 0.25
COMMON = [
    "dataset.augmentation.input_size=64",
    "model.decoder_embed_dim=64",
    "dataset.batch_size=8",
    "dataset.num_workers_per_gpu=0",
    "wandb.enable=false",
    "train.optim.warmup_epochs=0",
]
PRETRAIN_EPOCHS, FINETUNE_EPOCHS = 3, 8
FINETUNE = [
    "train.stage=finetune",
    "model.num_classes=4",
    "train.optim.lr=2e-3",
    "train.optim.backbone_multiplier=1.0",
    "train.optim.lr_scheduler=cosine",
    # a learning-capacity check on 48 images: strong batch mixing and RandAugment slow it down
    "dataset.augmentation.mixup=0",
    "dataset.augmentation.cutmix=0",
    "dataset.augmentation.auto_aug=''",
]


@pytest.fixture(scope="module", autouse=True)
def tiny_archs():
    S.ARCHS.update(TINY)
    yield
    for name in TINY:
        S.ARCHS.pop(name, None)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mae")
    data = write_classification_set(tmp / "data", num_classes=4, train=12, val=5, test=2, size=64)
    spec = tmp / "spec.yaml"
    spec.write_text("{}\n")  # everything else: TAO Core defaults + overrides
    return tmp, data, spec


def _status(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _epochs(path: Path) -> list[dict]:
    return [line["kpi"] for line in _status(path) if "epoch" in line]


def _engine(spec: Path, action: str, arch: str, *over: str) -> int:
    return main(["mae", action, "-e", str(spec), f"model.arch={arch}", *COMMON, *over])


def _chain(work, arch: str) -> dict:
    """Pretrain, then finetune from its last checkpoint, then evaluate on the val folder."""
    tmp, data, spec = work
    root = tmp / arch
    rc = _engine(
        spec,
        "train",
        arch,
        f"results_dir={root}/pretrain",
        f"dataset.train_data_sources={data['train']}",
        f"train.num_epochs={PRETRAIN_EPOCHS}",
        "train.optim.lr=1e-3",
    )
    assert rc == 0
    pre_dir = root / "pretrain" / "train"
    pre_ckpt = sorted(pre_dir.glob("model_epoch_*.pth"))[-1]
    rc = _engine(
        spec,
        "train",
        arch,
        f"results_dir={root}/finetune",
        f"dataset.train_data_sources={data['train']}",
        f"dataset.val_data_sources={data['val']}",
        f"train.num_epochs={FINETUNE_EPOCHS}",
        f"train.checkpoint_interval={FINETUNE_EPOCHS}",
        "train.validation_interval=2",
        f"train.pretrained_model_path={pre_ckpt}",
        *FINETUNE,
    )
    assert rc == 0
    ft_dir = root / "finetune" / "train"
    ft_ckpt = sorted(ft_dir.glob("model_epoch_*.pth"))[-1]
    rc = _engine(
        spec,
        "evaluate",
        arch,
        f"results_dir={root}/finetune",
        f"dataset.val_data_sources={data['val']}",
        f"evaluate.checkpoint={ft_ckpt}",
        "train.stage=finetune",
        "model.num_classes=4",
    )
    assert rc == 0
    return {"root": root, "pre_dir": pre_dir, "pre_ckpt": pre_ckpt, "ft_dir": ft_dir, "ft_ckpt": ft_ckpt}


@pytest.fixture(scope="module")
def vit(work):
    return _chain(work, "vit_tiny_patch8")


@pytest.fixture(scope="module")
def convnext(work):
    return _chain(work, "convnextv2_tiny_test")


@pytest.mark.parametrize("chain", ["vit", "convnext"])
def test_pretrain_reconstruction_loss_falls(chain, request):
    run = request.getfixturevalue(chain)
    losses = [k["train_loss"] for k in _epochs(run["pre_dir"] / "status.json")]
    assert len(losses) == PRETRAIN_EPOCHS
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.parametrize("chain", ["vit", "convnext"])
def test_finetune_beats_chance_on_held_out_images(chain, request):
    run = request.getfixturevalue(chain)
    final = _status(run["root"] / "finetune" / "evaluate" / "status.json")[-1]
    assert final["status"] == "SUCCESS"
    acc = final["kpi"]["ACC_all"]
    print(f"{chain}: held-out ACC_all {acc:.3f} (chance {CHANCE})")
    assert acc >= 2.4 * CHANCE, final["kpi"]
    epochs = _epochs(run["ft_dir"] / "status.json")
    assert [set(k) for k in epochs[1::2]] == [{"train_loss", "val_loss", "ACC_all"}] * (FINETUNE_EPOCHS // 2)
    assert [set(k) for k in epochs[0::2]] == [{"train_loss"}] * (FINETUNE_EPOCHS // 2)  # validation_interval=2
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]


@pytest.mark.parametrize("chain", ["vit", "convnext"])
def test_pretrain_checkpoint_loads_into_finetune_with_no_missing_backbone_keys(chain, request):
    import torch

    from taoskills.engine.mae import model as M

    run = request.getfixturevalue(chain)
    msg = [
        line["message"] for line in _status(run["ft_dir"] / "status.json") if "pretrained_model_path" in line.get("message", "")
    ]
    assert msg and msg[0].startswith("Loaded train.pretrained_model_path: 0 missing and 0 unexpected backbone keys")
    obj = torch.load(run["pre_ckpt"], map_location="cpu", weights_only=False)
    assert obj["hyper_parameters"]["stage"] == "pretrain"
    cfg = {**obj["hyper_parameters"]["cfg"], "train": {**obj["hyper_parameters"]["cfg"]["train"], "stage": "finetune"}}
    clf = M.build_classifier(cfg, num_classes=4)
    rep = M.load_pretrained(clf, M.checkpoint_state(obj, field="x"), field="x")
    assert rep["missing"] == [] and rep["unexpected"] == []
    assert all(
        k.startswith(("model.decoder", "model.net.decoder", "model.mask_token", "model.pred", "model.proj"))
        for k in rep["dropped"]
    )


def test_checkpoints_latest_link_and_status(vit):
    names = sorted(p.name for p in vit["pre_dir"].glob("model_epoch_*.pth"))
    assert names == ["model_epoch_000_step_00006.pth", "model_epoch_001_step_00012.pth", "model_epoch_002_step_00018.pth"]
    latest = vit["pre_dir"] / "vit_tiny_patch8_latest.pth"
    assert latest.is_symlink() and latest.readlink().name == names[-1]
    lines = _status(vit["pre_dir"] / "status.json")
    assert lines[0]["status"] == "STARTED" and lines[-1]["status"] == "SUCCESS"
    assert [line["epoch"] for line in lines if "epoch" in line] == [0, 1, 2]


def test_evaluate_per_class_kpis(vit, work):
    _, data, _ = work
    final = _status(vit["root"] / "finetune" / "evaluate" / "status.json")[-1]["kpi"]
    assert {f"ACC_{c}" for c in data["classes"]} <= set(final) and "val_loss" in final
    rows = json.loads((vit["root"] / "finetune" / "evaluate" / "per_class_accuracy.json").read_text())
    assert [r["class"] for r in rows] == data["classes"] and all(r["images"] == 5 for r in rows)
    assert sum(r["correct"] for r in rows) / 20 == pytest.approx(final["ACC_all"])


def test_inference_writes_named_predictions(vit, work):
    _, data, spec = work
    out = vit["root"] / "finetune"
    rc = _engine(
        spec,
        "inference",
        "vit_tiny_patch8",
        f"results_dir={out}",
        f"dataset.test_data_sources={data['test']}",
        f"inference.checkpoint={vit['ft_ckpt']}",
        "train.stage=finetune",
        "model.num_classes=4",
    )
    assert rc == 0
    with open(out / "inference" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and set(rows[0]) == {"image", "path", "class_id", "class_name", "confidence"}
    assert all(r["class_name"] in data["classes"] and data["classes"][int(r["class_id"])] == r["class_name"] for r in rows)
    js = json.loads((out / "inference" / "predictions.json").read_text())
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in js)
    right = sum(r["class_name"] == Path(r["image"]).name.rsplit("_", 1)[0] for r in js)
    assert right / len(js) > CHANCE


@pytest.mark.parametrize(
    "chain,stage", [("vit", "finetune"), ("vit", "pretrain"), ("convnext", "finetune"), ("convnext", "pretrain")]
)
def test_export_onnx_matches_pytorch(chain, stage, request):
    run = request.getfixturevalue(chain)
    tmp, _, spec = request.getfixturevalue("work")
    arch = "vit_tiny_patch8" if chain == "vit" else "convnextv2_tiny_test"
    ckpt = run["ft_ckpt"] if stage == "finetune" else run["pre_ckpt"]
    onnx_file = run["root"] / f"{stage}.onnx"
    extra = ["train.stage=finetune", "model.num_classes=4"] if stage == "finetune" else []
    rc = _engine(
        spec,
        "export",
        arch,
        f"results_dir={run['root']}/{stage}",
        f"export.checkpoint={ckpt}",
        f"export.onnx_file={onnx_file}",
        "export.input_width=64",
        "export.input_height=64",
        *extra,
    )
    assert rc == 0 and onnx_file.is_file()
    final = _status(run["root"] / stage / "export" / "status.json")[-1]
    assert final["kpi"]["onnx_max_abs_diff"] < 1e-3
    import onnx

    out = onnx.load(str(onnx_file)).graph.output[0]
    assert out.name == ("logits" if stage == "finetune" else "features")


def test_seed_error_inference_with_pretrain_checkpoint(vit, work):
    _, data, spec = work
    out = vit["root"] / "bad_inference"
    rc = _engine(
        spec,
        "inference",
        "vit_tiny_patch8",
        f"results_dir={out}",
        f"dataset.test_data_sources={data['test']}",
        f"inference.checkpoint={vit['pre_ckpt']}",
        "train.stage=finetune",
        "model.num_classes=4",
    )
    assert rc == 1
    msg = _status(out / "inference" / "status.json")[-1]["message"]
    assert "Inference with pretrain checkpoints" in msg and "use a finetune checkpoint" in msg
    assert not (out / "inference" / "predictions.csv").exists()


def test_seed_error_stage_mismatch(vit, work):
    _, data, spec = work
    out = vit["root"] / "bad_stage"
    rc = _engine(
        spec,
        "evaluate",
        "vit_tiny_patch8",
        f"results_dir={out}",
        f"dataset.val_data_sources={data['val']}",
        f"evaluate.checkpoint={vit['ft_ckpt']}",
    )  # train.stage defaults to pretrain
    assert rc == 1
    msg = _status(out / "evaluate" / "status.json")[-1]["message"]
    assert "Stage mismatch" in msg and "set train.stage=finetune" in msg


def test_seed_error_num_classes_mismatch(work):
    tmp, data, spec = work
    out = tmp / "bad_classes"
    rc = _engine(
        spec,
        "train",
        "vit_tiny_patch8",
        f"results_dir={out}",
        f"dataset.train_data_sources={data['train']}",
        *FINETUNE[:1],
        "model.num_classes=3",
    )
    assert rc == 1
    msg = _status(out / "train" / "status.json")[-1]["message"]
    assert "num_classes mismatch" in msg and "model.num_classes=4" in msg
    assert not list((out / "train").glob("*.pth"))


def test_seed_warning_finetune_without_pretrained_model(work, caplog):
    tmp, data, spec = work
    caplog.set_level("WARNING", logger="taoskills.engine.mae")
    rc = _engine(
        spec,
        "train",
        "vit_tiny_patch8",
        f"results_dir={tmp}/scratch",
        f"dataset.train_data_sources={data['val']}",
        "train.num_epochs=1",
        *FINETUNE,
    )
    assert rc == 0
    assert any("without train.pretrained_model_path trains the classifier from scratch" in r.message for r in caplog.records)


def test_console_entry_point_convnextv2_atto(work):
    """The real TAO arch through ``python -m taoskills.engine`` (a subprocess), one pretrain epoch."""
    tmp, data, spec = work
    results = tmp / "atto"
    cmd = [
        sys.executable,
        "-m",
        "taoskills.engine",
        "mae",
        "train",
        "-e",
        str(spec),
        f"results_dir={results}",
        f"dataset.train_data_sources={data['val']}",  # 20 images: 2 full batches of 8 (drop_last)
        "model.arch=convnextv2_atto",
        *COMMON,
        "train.num_epochs=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "Execution status: PASS"
    out = results / "train"
    assert (out / "model_epoch_000_step_00002.pth").is_file()
    latest = out / "convnextv2_atto_latest.pth"
    assert latest.is_symlink() and latest.readlink().name == "model_epoch_000_step_00002.pth"
    assert _status(out / "status.json")[-1]["status"] == "SUCCESS"


def test_resume_from_model_epoch(vit, work):
    tmp, data, spec = work
    ckpt = vit["pre_dir"] / "model_epoch_001_step_00012.pth"
    out = tmp / "resumed"
    rc = _engine(
        spec,
        "train",
        "vit_tiny_patch8",
        f"results_dir={out}",
        f"dataset.train_data_sources={data['train']}",
        f"train.num_epochs={PRETRAIN_EPOCHS}",
        "train.optim.lr=1e-3",
        f"train.resume_training_checkpoint_path={ckpt}",
    )
    assert rc == 0
    assert [p.name for p in (out / "train").glob("model_epoch_*.pth")] == ["model_epoch_002_step_00018.pth"]
    assert [line["epoch"] for line in _status(out / "train" / "status.json") if "epoch" in line] == [2]
    # a structural key that differs from the checkpoint is refused
    rc = _engine(
        spec,
        "train",
        "vit_tiny_patch8",
        f"results_dir={tmp}/resumed_bad",
        f"dataset.train_data_sources={data['train']}",
        "dataset.augmentation.input_size=96",
        f"train.resume_training_checkpoint_path={ckpt}",
    )
    assert rc == 1
    assert "dataset.augmentation.input_size=64" in _status(tmp / "resumed_bad" / "train" / "status.json")[-1]["message"]


def test_hiera_pretrain_finetune_export(work):
    """Hiera through every action once (tiny arch, 1 epoch each): the family works end to end."""
    tmp, data, spec = work
    arch, root = "hiera_tiny_test", tmp / "hiera"
    assert (
        _engine(spec, "train", arch, f"results_dir={root}/pre", f"dataset.train_data_sources={data['val']}", "train.num_epochs=1")
        == 0
    )
    pre = next((root / "pre" / "train").glob("model_epoch_*.pth"))
    assert (root / "pre" / "train" / "hiera_tiny_test_latest.pth").is_symlink()
    rc = _engine(
        spec,
        "train",
        arch,
        f"results_dir={root}/ft",
        f"dataset.train_data_sources={data['val']}",
        "train.num_epochs=1",
        f"train.pretrained_model_path={pre}",
        *FINETUNE,
    )
    assert rc == 0
    msg = [line["message"] for line in _status(root / "ft" / "train" / "status.json") if "pretrained" in line.get("message", "")]
    assert msg[0].startswith("Loaded train.pretrained_model_path: 0 missing and 0 unexpected")
    ft = next((root / "ft" / "train").glob("model_epoch_*.pth"))
    rc = _engine(
        spec,
        "export",
        arch,
        f"results_dir={root}/ft",
        f"export.checkpoint={ft}",
        f"export.onnx_file={root}/hiera.onnx",
        "export.input_width=64",
        "export.input_height=64",
        "train.stage=finetune",
        "model.num_classes=4",
    )
    assert rc == 0
    assert _status(root / "ft" / "export" / "status.json")[-1]["kpi"]["onnx_max_abs_diff"] < 1e-3
