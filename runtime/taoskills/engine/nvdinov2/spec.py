"""NVDINOv2 spec: TAO's defaults and the checks the engine makes before it runs (torch-free).

``DEFAULTS`` mirrors ``OmegaConf.structured(ExperimentConfig)`` of TAO Core 7.3.0
``nvidia_tao_core/config/nvdinov2/default_config.py`` (the dataclass ``value``s, which is what
TAO's Hydra runner merges a spec onto); tests compare the two. ``check(cfg, action)`` raises
on any value the engine cannot honour, naming the key and the fix.
"""

from __future__ import annotations

from typing import Any

from taoskills.engine.registry import CPU_BAD_PRECISIONS  # noqa: F401  (one source of the rule)
from taoskills.engine.schema_defaults import schema_defaults
from taoskills.errors import Issue, NotSupported, SpecError

SOURCE = "TAO Core 7.3.0 nvdinov2 ExperimentConfig"

#: embed_dim / depth / num_heads per backbone (TAO Core nvdinov2 ``map_params``); layerscale 1e-5.
BACKBONES: dict[str, dict[str, int]] = {
    "vit_s": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
LAYERSCALE_INIT = 1e-5

#: Lightning precision strings the engine accepts (pytorch-lightning 2.x ``Trainer(precision=)``).
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")

_SCHED = {"val_base": 1e-8, "val_final": 1e-6, "val_start": 0.0, "warm_up_steps": 0, "max_decay_steps": 2500000}

#: TAO Core's sections the engine uses unchanged, read from the packaged schemas (taoskills.engine.schema_defaults).
_SHARED = schema_defaults("tao-train-nvdinov2", "wandb", "dataset", "train", "inference", "export", "gen_trt_engine")

DEFAULTS: dict[str, Any] = {
    "model_name": None,
    "encryption_key": None,
    "results_dir": "",
    "wandb": _SHARED["wandb"],
    "model": {
        "distill": {"enable": False, "disable_masking": False, "pretrained_non_distill_pl_model_path": None},
        "backbone": {
            "teacher_type": "vit_l",
            "student_type": "vit_l",
            "num_register_tokens": 0,
            "drop_path_rate": 0.4,
            "patch_size": 14,
            "img_size": 518,
        },
        "head": {"num_layers": 3, "hidden_dim": 2048, "bottleneck_dim": 384},
    },
    "dataset": _SHARED["dataset"],
    "train": _SHARED["train"],
    "inference": _SHARED["inference"],
    "export": _SHARED["export"],
    "gen_trt_engine": _SHARED["gen_trt_engine"],
}

#: Checkpoint suffixes that are TensorRT/ONNX artefacts, not PyTorch weights.
ENGINE_SUFFIXES = (".engine", ".trt", ".plan", ".onnx")


def unset(value: Any) -> bool:
    """True for a value TAO treats as "not given": None, "" or the MISSING marker ``???``."""
    return value is None or value == "" or value == "???"


def _sched_issues(cfg: dict[str, Any], issues: list[Issue]) -> None:
    for name, s in cfg["train"]["schedulers"].items():
        key = f"train.schedulers.{name}"
        if s["warm_up_steps"] < 0:
            issues.append(Issue(f"{key}.warm_up_steps", "must be >= 0.", "set it to 0 or more."))
        if s["max_decay_steps"] < s["warm_up_steps"]:
            issues.append(
                Issue(
                    f"{key}.max_decay_steps",
                    f"({s['max_decay_steps']}) is smaller than warm_up_steps ({s['warm_up_steps']}).",
                    "make max_decay_steps >= warm_up_steps (the cosine runs between them).",
                )
            )
        if s.get("freeze_steps", 0) < 0:
            issues.append(Issue(f"{key}.freeze_steps", "must be >= 0.", "set it to 0 or more."))
    tt = cfg["train"]["schedulers"]["teacher_temperature"]
    for k in ("val_base", "val_final", "val_start"):
        if not tt[k] > 0:
            issues.append(
                Issue(
                    f"train.schedulers.teacher_temperature.{k}",
                    "must be > 0 (it divides the logits).",
                    "use a temperature such as 0.04-0.07.",
                )
            )
    mo = cfg["train"]["schedulers"]["momentum"]
    for k in ("val_base", "val_final", "val_start"):
        if not 0.0 <= mo[k] <= 1.0:
            issues.append(
                Issue(f"train.schedulers.momentum.{k}", "must be within [0, 1] (EMA momentum).", "use e.g. 0.994 -> 1.0.")
            )


def check_model(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Structural keys shared by train, inference and export."""
    bb = cfg["model"]["backbone"]
    if cfg["model"]["distill"]["enable"]:
        raise NotSupported(
            "NVDINOv2 distillation (model.distill.enable=true) is not implemented by the built-in engine "
            "(TAO's PyT CLI has no separate distill action either).",
            field="model.distill.enable",
            fix="set model.distill.enable=false, or run distillation with the TAO container engine.",
        )
    for key in ("teacher_type", "student_type"):
        if bb[key] not in BACKBONES:
            issues.append(
                Issue(
                    f"model.backbone.{key}",
                    f"{bb[key]!r} is not a supported backbone.",
                    f"use one of {', '.join(BACKBONES)}.",
                    "enum",
                )
            )
    if bb["teacher_type"] != bb["student_type"] and not issues:
        raise NotSupported(
            f"teacher_type={bb['teacher_type']} differs from student_type={bb['student_type']}: that is "
            "teacher-to-student distillation, which the built-in engine does not implement.",
            field="model.backbone.student_type",
            fix="set model.backbone.teacher_type and student_type to the same value.",
        )
    if bb["num_register_tokens"] < 0:
        issues.append(Issue("model.backbone.num_register_tokens", "must be >= 0.", "use 0 (none) or e.g. 4."))
    if not 0.0 <= bb["drop_path_rate"] < 1.0:
        issues.append(Issue("model.backbone.drop_path_rate", "must be within [0, 1).", "use e.g. 0.1-0.4."))
    if bb["patch_size"] < 1:
        issues.append(Issue("model.backbone.patch_size", "must be >= 1.", "use 14 or 16."))
    elif bb["img_size"] < bb["patch_size"]:
        issues.append(Issue("model.backbone.img_size", f"({bb['img_size']}) is smaller than patch_size.", "use 224 or 518."))
    head = cfg["model"]["head"]
    for k in ("num_layers", "hidden_dim", "bottleneck_dim"):
        if head[k] < 1:
            issues.append(Issue(f"model.head.{k}", "must be >= 1.", f"set model.head.{k} to 1 or more."))


def check_train(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Train-only keys (data, transform, loop, optimiser, schedules)."""
    ds, tr, tf = cfg["dataset"], cfg["train"], cfg["dataset"]["transform"]
    patch = cfg["model"]["backbone"]["patch_size"]
    if unset(ds["train_dataset"]["images_dir"]):
        issues.append(
            Issue(
                "dataset.train_dataset.images_dir", "is not set.", "set it to an extracted folder of training images.", "required"
            )
        )
    if ds["batch_size"] < 1:
        issues.append(Issue("dataset.batch_size", "must be >= 1.", "use e.g. 8."))
    if ds["workers"] < 1:
        issues.append(
            Issue(
                "dataset.workers",
                f"is {ds['workers']}: the training data loader uses persistent workers and the "
                "persistent_workers option needs num_workers > 0 (as in TAO).",
                "set dataset.workers to 1 or more.",
                "bounds",
            )
        )
    if tf["n_global_crops"] < 1:
        issues.append(Issue("dataset.transform.n_global_crops", "must be >= 1.", "use 2 (DINOv2 default)."))
    if tf["n_local_crops"] < 0:
        issues.append(Issue("dataset.transform.n_local_crops", "must be >= 0.", "use e.g. 8."))
    if tf["n_global_crops"] < 2 and tf["n_local_crops"] < 1:
        issues.append(
            Issue(
                "dataset.transform.n_global_crops",
                "one global crop and no local crops leave no pair of views to compare.",
                "use n_global_crops=2 or add local crops.",
            )
        )
    for kind in ("global", "local"):
        sc = tf[f"{kind}_crops_scale"]
        key = f"dataset.transform.{kind}_crops_scale"
        if not (
            isinstance(sc, list) and len(sc) == 2 and all(isinstance(v, (int, float)) for v in sc) and 0 < sc[0] <= sc[1] <= 1
        ):
            issues.append(
                Issue(
                    key,
                    f"must be [min, max] with 0 < min <= max <= 1, got {sc!r}.",
                    "use e.g. [0.32, 1.0] (global) or [0.05, 0.32] (local).",
                )
            )
        size = tf[f"{kind}_crops_size"]
        if size < patch:
            issues.append(
                Issue(
                    f"dataset.transform.{kind}_crops_size",
                    f"({size}) is smaller than model.backbone.patch_size ({patch}).",
                    f"use a multiple of {patch} that is at least {patch}.",
                )
            )
    if tr["precision"] not in PRECISIONS:
        issues.append(
            Issue(
                "train.precision",
                f"{tr['precision']!r} is not a Lightning precision.",
                f"use one of {', '.join(PRECISIONS)}.",
                "enum",
            )
        )
    if tr["num_epochs"] < 1:
        issues.append(Issue("train.num_epochs", "must be >= 1.", "use e.g. 10."))
    if tr["checkpoint_interval"] < 1:
        issues.append(Issue("train.checkpoint_interval", "must be >= 1.", "use e.g. 1."))
    if tr["checkpoint_interval_unit"] not in ("epoch", "step"):
        issues.append(
            Issue(
                "train.checkpoint_interval_unit",
                f"{tr['checkpoint_interval_unit']!r} is not epoch|step.",
                "use epoch or step.",
                "enum",
            )
        )
    elif tr["checkpoint_interval_unit"] == "epoch" and tr["checkpoint_interval"] > tr["num_epochs"] >= 1:
        issues.append(
            Issue(
                "train.checkpoint_interval",
                f"({tr['checkpoint_interval']}) is larger than train.num_epochs ({tr['num_epochs']}).",
                "make checkpoint_interval <= num_epochs (TAO asserts this at train start).",
            )
        )
    if tr["validation_interval"] < 1:
        issues.append(Issue("train.validation_interval", "must be >= 1.", "use 1."))
    if tr["num_gpus"] < 1 or tr["num_nodes"] < 1:
        issues.append(Issue("train.num_gpus", "num_gpus and num_nodes must be >= 1.", "use 1."))
    if not 0.0 < tr["layerwise_decay"] <= 1.0:
        issues.append(Issue("train.layerwise_decay", "must be within (0, 1].", "use 1.0 (off) or e.g. 0.9."))
    if tr["clip_grad_norm"] < 0:
        issues.append(Issue("train.clip_grad_norm", "must be >= 0 (0 turns clipping off).", "use e.g. 3.0."))
    if tr["num_prototypes"] < 1:
        issues.append(Issue("train.num_prototypes", "must be >= 1.", "use e.g. 1024 (small data) to 131072."))
    if tr["optim"]["optim"] not in ("adamw", ""):
        issues.append(
            Issue("train.optim.optim", f"{tr['optim']['optim']!r} is not supported.", "use adamw (TAO's only option).", "enum")
        )
    ck = tr["checkpointer"]
    if ck["enable_topk"]:
        if ck["monitor"] not in (None, "", "train_loss", "train_loss_epoch"):
            issues.append(
                Issue(
                    "train.checkpointer.monitor",
                    f"{ck['monitor']!r} is not logged by NVDINOv2.",
                    "use train_loss (the only NVDINOv2 metric).",
                )
            )
        if ck["mode"] not in (None, "", "min", "max"):
            issues.append(Issue("train.checkpointer.mode", f"{ck['mode']!r} is not min|max.", "use min."))
    _sched_issues(cfg, issues)


def check_inference(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Inference keys: checkpoint (a student_epoch_* file), test images, batch size."""
    inf = cfg["inference"]
    ckpt = inf["checkpoint"]
    if not unset(inf["trt_engine"]):
        raise NotSupported(
            "inference.trt_engine is set: the PyTorch NVDINOv2 inference action only loads .pth/.tlt model "
            "weights and does not run a TensorRT engine.",
            field="inference.trt_engine",
            fix="remove inference.trt_engine and set inference.checkpoint to a student_epoch_*.pth file.",
        )
    if unset(ckpt):
        issues.append(
            Issue("inference.checkpoint", "is not set.", "set it to the student_epoch_*.pth file of the train job.", "required")
        )
    elif str(ckpt).lower().endswith(ENGINE_SUFFIXES):
        raise SpecError(
            f"TensorRT engine passed to PyT inference: inference.checkpoint={ckpt} is not a PyTorch weights file; "
            "the NVDINOv2 inference action only loads .pth or .tlt model paths.",
            field="inference.checkpoint",
            fix="pass the student_epoch_*.pth checkpoint of the train job.",
        )
    if unset(cfg["dataset"]["test_dataset"]["images_dir"]):
        issues.append(
            Issue(
                "dataset.test_dataset.images_dir", "is not set.", "set it to an extracted folder of images to embed.", "required"
            )
        )
    if inf["batch_size"] == 0 or inf["batch_size"] < -1:
        issues.append(Issue("inference.batch_size", "must be >= 1, or -1 to use dataset.batch_size.", "use e.g. 8."))
    if inf["vis_after_n_batches"] < 1:
        issues.append(Issue("inference.vis_after_n_batches", "must be >= 1.", "use e.g. 16."))
    if inf["num_gpus"] < 1:
        issues.append(Issue("inference.num_gpus", "must be >= 1.", "use 1."))


def check_export(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Export keys: checkpoint, onnx_file, input geometry, opset, batch size."""
    ex = cfg["export"]
    patch = cfg["model"]["backbone"]["patch_size"]
    if unset(ex["checkpoint"]):
        issues.append(
            Issue("export.checkpoint", "is not set.", "set it to the student_epoch_*.pth file of the train job.", "required")
        )
    elif str(ex["checkpoint"]).lower().endswith(ENGINE_SUFFIXES):
        issues.append(
            Issue(
                "export.checkpoint",
                f"{ex['checkpoint']} is not a PyTorch weights file.",
                "pass the student_epoch_*.pth checkpoint of the train job.",
            )
        )
    if unset(ex["onnx_file"]):
        issues.append(
            Issue("export.onnx_file", "is not set.", "set it to the output path, e.g. /results/nvdinov2.onnx.", "required")
        )
    if ex["input_channel"] != 3:
        issues.append(Issue("export.input_channel", f"is {ex['input_channel']}; NVDINOv2 takes RGB input.", "use 3."))
    for k in ("input_width", "input_height"):
        if ex[k] < patch:
            issues.append(
                Issue(
                    f"export.{k}",
                    f"({ex[k]}) is smaller than the patch size ({patch}).",
                    "use the training img_size, e.g. 224 or 518.",
                )
            )
    if ex["batch_size"] == 0 or ex["batch_size"] < -1:
        issues.append(Issue("export.batch_size", "must be >= 1, or -1 for a dynamic batch axis.", "use -1."))
    if ex["opset_version"] < 7:
        issues.append(Issue("export.opset_version", "is below 7.", "use 17."))


def check(cfg: dict[str, Any], action: str) -> None:
    """Raise SpecError/NotSupported for any value of ``cfg`` the ``action`` cannot honour."""
    issues: list[Issue] = []
    check_model(cfg, issues)
    {"train": check_train, "inference": check_inference, "export": check_export}[action](cfg, issues)
    if issues:
        raise SpecError(
            f"The NVDINOv2 {action} spec has {len(issues)} problem(s).",
            issues=issues,
            field=issues[0].field,
            fix="correct the listed keys.",
        )
