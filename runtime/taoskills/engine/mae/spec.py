"""MAE spec: TAO's defaults, the architecture table and the checks the engine makes before it runs (torch-free).

``DEFAULTS`` mirrors ``OmegaConf.structured(ExperimentConfig)`` of TAO Core 7.3.0
``nvidia_tao_core/config/mae/default_config.py`` (the dataclass ``value``s, which is what TAO's
Hydra runner merges a spec onto); tests compare the two. ``ARCHS`` gives every ``model.arch`` of
that config's enum its family and sizes. ``check(cfg, action)`` raises on any value the engine
cannot honour, naming the key and the fix.
"""

from __future__ import annotations

import re
from typing import Any

from taoskills.engine.schema_defaults import schema_defaults
from taoskills.errors import Issue, NotSupported, SpecError

SOURCE = "TAO Core 7.3.0 mae ExperimentConfig"

#: model.arch -> family and sizes. ViT: ViT paper / MAE (He et al. 2022) B/16, L/16, H/14.
#: ConvNeXt-V2: Woo et al. 2023 Table (atto ... huge depths and widths). Hiera: Ryali et al. 2023
#: Table 2 (tiny ... huge, 224 px). Extra entries (e.g. tiny test archs) may be added at run time.
ARCHS: dict[str, dict[str, Any]] = {
    "vit_base_patch16": {"family": "vit", "hidden": 768, "depth": 12, "heads": 12, "patch": 16},
    "vit_large_patch16": {"family": "vit", "hidden": 1024, "depth": 24, "heads": 16, "patch": 16},
    "vit_huge_patch14": {"family": "vit", "hidden": 1280, "depth": 32, "heads": 16, "patch": 14},
    "convnextv2_atto": {"family": "convnextv2", "depths": [2, 2, 6, 2], "dims": [40, 80, 160, 320]},
    "convnextv2_femto": {"family": "convnextv2", "depths": [2, 2, 6, 2], "dims": [48, 96, 192, 384]},
    "convnextv2_pico": {"family": "convnextv2", "depths": [2, 2, 6, 2], "dims": [64, 128, 256, 512]},
    "convnextv2_nano": {"family": "convnextv2", "depths": [2, 2, 8, 2], "dims": [80, 160, 320, 640]},
    "convnextv2_tiny": {"family": "convnextv2", "depths": [3, 3, 9, 3], "dims": [96, 192, 384, 768]},
    "convnextv2_base": {"family": "convnextv2", "depths": [3, 3, 27, 3], "dims": [128, 256, 512, 1024]},
    "convnextv2_large": {"family": "convnextv2", "depths": [3, 3, 27, 3], "dims": [192, 384, 768, 1536]},
    "convnextv2_huge": {"family": "convnextv2", "depths": [3, 3, 27, 3], "dims": [352, 704, 1408, 2816]},
    "hiera_tiny_224": {"family": "hiera", "embed": 96, "depths": [1, 2, 7, 2], "heads": [1, 2, 4, 8]},
    "hiera_small_224": {"family": "hiera", "embed": 96, "depths": [1, 2, 11, 2], "heads": [1, 2, 4, 8]},
    "hiera_base_224": {"family": "hiera", "embed": 96, "depths": [2, 3, 16, 3], "heads": [1, 2, 4, 8]},
    "hiera_large_224": {"family": "hiera", "embed": 144, "depths": [2, 6, 36, 4], "heads": [2, 4, 8, 16]},
    "hiera_huge_224": {"family": "hiera", "embed": 256, "depths": [2, 6, 36, 4], "heads": [4, 8, 16, 32]},
}
#: Pixel stride of the mask grid: ConvNeXt-V2 FCMAE masks 32x32 px patches (its total
#: downsampling); Hiera masks units of 8x8 tokens of 4 px = 32 px. ViT masks one patch.
MASK_STRIDE = {"convnextv2": 32, "hiera": 32}
#: Attention heads of the ViT/Hiera MAE decoder (MAE: 16).
DECODER_HEADS = 16
#: train.precision -> Lightning precision.
PRECISIONS = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}
ENGINE_SUFFIXES = (".engine", ".trt", ".plan", ".onnx")
RAND_AUG = re.compile(r"^rand(-(m\d+(\.\d+)?|n\d+|mstd\d+(\.\d+)?|inc[01]|mmax\d+(\.\d+)?|w\d+|p\d+(\.\d+)?))*$")


#: TAO Core's sections the engine uses unchanged, read from the packaged schemas (taoskills.engine.schema_defaults).
_SHARED = schema_defaults(
    "tao-train-mask-auto-encoder", "wandb", "dataset", "train", "gen_trt_engine", "export", "inference", "evaluate"
)

DEFAULTS: dict[str, Any] = {
    "model_name": None,
    "encryption_key": None,
    "results_dir": "",
    "wandb": _SHARED["wandb"],
    "dataset": _SHARED["dataset"],
    "train": _SHARED["train"],
    "model": {
        "arch": "convnextv2_base",
        "num_classes": 1000,
        "drop_path_rate": 0.1,
        "global_pool": True,
        "decoder_depth": 1,
        "decoder_embed_dim": 512,
    },
    "inference": _SHARED["inference"],
    "evaluate": _SHARED["evaluate"],
    "gen_trt_engine": _SHARED["gen_trt_engine"],
    "export": _SHARED["export"],
}

#: Keys that define the network's shape; a resumed run, evaluate, inference and export must agree
#: with the checkpoint on them (the runtime carries them forward from the parent job).
STRUCTURAL_KEYS = ("train.stage", "model.arch", "model.num_classes", "dataset.augmentation.input_size")


def unset(value: Any) -> bool:
    """True for a value TAO treats as "not given": None, "" or the MISSING marker ``???``."""
    return value is None or value == "" or value == "???"


def arch_info(cfg: dict[str, Any]) -> dict[str, Any]:
    """``ARCHS[model.arch]`` (SpecError when unknown)."""
    arch = cfg["model"]["arch"]
    if arch not in ARCHS:
        raise SpecError(
            f"model.arch={arch!r} is not a MAE architecture.",
            field="model.arch",
            fix=f"use one of {', '.join(ARCHS)}.",
        )
    return ARCHS[arch]


def stride(cfg: dict[str, Any]) -> int:
    """Pixel multiple the input size must be: the ViT patch size, else the 32 px mask grid."""
    info = arch_info(cfg)
    return info["patch"] if info["family"] == "vit" else MASK_STRIDE[info["family"]]


def _prob(issues: list[Issue], key: str, value: float, hint: str) -> None:
    if not 0.0 <= value <= 1.0:
        issues.append(Issue(key, f"({value}) must be within [0, 1].", hint, "bounds"))


def check_model(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Structural keys shared by every action."""
    m = cfg["model"]
    if m["arch"] not in ARCHS:
        issues.append(Issue("model.arch", f"{m['arch']!r} is not a MAE architecture.", f"use one of {', '.join(ARCHS)}.", "enum"))
        return
    family = ARCHS[m["arch"]]["family"]
    if m["num_classes"] < 1:
        issues.append(Issue("model.num_classes", "must be >= 1.", "set it to the number of class folders."))
    if not 0.0 <= m["drop_path_rate"] < 1.0:
        issues.append(Issue("model.drop_path_rate", "must be within [0, 1).", "use e.g. 0.1."))
    if m["decoder_depth"] < 1:
        issues.append(Issue("model.decoder_depth", "must be >= 1.", "use 1 (TAO default)."))
    if m["decoder_embed_dim"] < 1:
        issues.append(Issue("model.decoder_embed_dim", "must be >= 1.", "use 512 (TAO default)."))
    elif family != "convnextv2" and m["decoder_embed_dim"] % DECODER_HEADS:
        issues.append(
            Issue(
                "model.decoder_embed_dim",
                f"({m['decoder_embed_dim']}) must be a multiple of {DECODER_HEADS} (the decoder's attention heads).",
                "use e.g. 512.",
            )
        )
    if not m["global_pool"] and family != "vit":
        raise NotSupported(
            f"model.global_pool=false: {m['arch']} has no class token, so it always classifies the global "
            "average of its last feature map.",
            field="model.global_pool",
            fix="set model.global_pool=true (or use a vit_* arch for class-token pooling).",
        )
    aug = cfg["dataset"]["augmentation"]
    size, step = aug["input_size"], stride(cfg)
    if size < step or size % step:
        issues.append(
            Issue(
                "dataset.augmentation.input_size",
                f"({size}) must be a positive multiple of {step} for {m['arch']} "
                + ("(its patch size)." if family == "vit" else "(the 32 px mask grid)."),
                f"use e.g. 224 (or {max(step, size // step * step)}).",
            )
        )
    if cfg["train"]["stage"] not in ("pretrain", "finetune"):
        issues.append(
            Issue("train.stage", f"{cfg['train']['stage']!r} is not pretrain|finetune.", "use pretrain or finetune.", "enum")
        )


def check_augmentation(aug: dict[str, Any], issues: list[Issue]) -> None:
    """dataset.augmentation.* (train transforms, mixup/cutmix)."""
    key = "dataset.augmentation."
    for name in ("mean", "std"):
        v = aug[name]
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
            issues.append(Issue(key + name, f"must be a list of 3 numbers (RGB), got {v!r}.", "use ImageNet's values."))
        elif name == "std" and min(v) <= 0:
            issues.append(Issue(key + name, "must be > 0.", "use ImageNet's [0.229, 0.224, 0.225]."))
    if not 0 < aug["min_scale"] <= aug["max_scale"]:
        issues.append(Issue(key + "min_scale", "must satisfy 0 < min_scale <= max_scale.", "use 0.1 and 2.0 (TAO defaults)."))
    if not 0 < aug["min_ratio"] <= aug["max_ratio"]:
        issues.append(Issue(key + "min_ratio", "must satisfy 0 < min_ratio <= max_ratio.", "use 0.75 and 1.33."))
    for name in ("hflip", "re_prob", "mixup_prob", "mixup_switch_prob"):
        _prob(issues, key + name, aug[name], "use a probability.")
    if aug["interpolation"] not in ("bilinear", "bicubic", "random"):
        issues.append(
            Issue(key + "interpolation", f"{aug['interpolation']!r} is not bilinear|bicubic|random.", "use bilinear.", "enum")
        )
    if not 0.0 <= aug["smoothing"] < 1.0:
        issues.append(Issue(key + "smoothing", "must be within [0, 1).", "use 0.1."))
    if aug["color_jitter"] < 0:
        issues.append(Issue(key + "color_jitter", "must be >= 0 (0 = off).", "use 0 or e.g. 0.4."))
    aa = aug["auto_aug"]
    if not (unset(aa) or str(aa).lower() == "none" or RAND_AUG.match(str(aa))):
        raise NotSupported(
            f"dataset.augmentation.auto_aug={aa!r}: the built-in engine implements RandAugment policies "
            "('rand-m<M>[-n<N>][-mstd<S>][-inc<0|1>]') only, not AutoAugment or AugMix policies.",
            field=key + "auto_aug",
            fix="use 'rand-m9-mstd0.5-inc1' (TAO default), or '' to turn it off.",
        )
    for name in ("mixup", "cutmix"):
        if aug[name] < 0:
            issues.append(Issue(key + name, "must be >= 0 (the Beta distribution's alpha; 0 = off).", "use 0.8 / 1.0."))
    mm = aug["cutmix_minmax"]
    if mm is not None and not (
        isinstance(mm, list) and len(mm) == 2 and all(isinstance(x, (int, float)) for x in mm) and 0 < mm[0] <= mm[1] <= 1
    ):
        issues.append(
            Issue(
                key + "cutmix_minmax",
                f"must be null or [min, max] box-size ratios within (0, 1], got {mm!r}.",
                "use null (box size from the cutmix Beta distribution) or e.g. [0.2, 0.8].",
            )
        )
    if aug["mixup_mode"] not in ("batch", "pair", "elem"):
        issues.append(Issue(key + "mixup_mode", f"{aug['mixup_mode']!r} is not batch|pair|elem.", "use batch.", "enum"))


def check_train(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Train-only keys (data, loop, optimiser, schedule, masking)."""
    ds, tr, opt = cfg["dataset"], cfg["train"], cfg["train"]["optim"]
    if unset(ds["train_data_sources"]):
        issues.append(
            Issue(
                "dataset.train_data_sources",
                "is not set.",
                "set it to an extracted image folder (class sub-folders for finetune).",
                "required",
            )
        )
    if ds["batch_size"] < 1:
        issues.append(Issue("dataset.batch_size", "must be >= 1.", "use e.g. 32."))
    if ds["num_workers_per_gpu"] < 0:
        issues.append(Issue("dataset.num_workers_per_gpu", "must be >= 0.", "use 2."))
    check_augmentation(ds["augmentation"], issues)
    if tr["stage"] == "pretrain" and not 0.0 < tr["mask_ratio"] < 1.0:
        issues.append(Issue("train.mask_ratio", f"({tr['mask_ratio']}) must be within (0, 1).", "use 0.75 (MAE default)."))
    if tr["accum_grad_batches"] < 1:
        issues.append(Issue("train.accum_grad_batches", "must be >= 1.", "use 1."))
    if tr["precision"] not in PRECISIONS:
        issues.append(Issue("train.precision", f"{tr['precision']!r} is not fp32|fp16|bf16.", "use fp32.", "enum"))
    if tr["distributed_strategy"] not in ("ddp", "fsdp"):
        issues.append(Issue("train.distributed_strategy", f"{tr['distributed_strategy']!r} is not ddp|fsdp.", "use ddp.", "enum"))
    if tr["num_epochs"] < 1:
        issues.append(Issue("train.num_epochs", "must be >= 1.", "use e.g. 10."))
    if tr["checkpoint_interval"] < 1:
        issues.append(Issue("train.checkpoint_interval", "must be >= 1.", "use 1."))
    if tr["checkpoint_interval_unit"] not in ("epoch", "step"):
        issues.append(
            Issue(
                "train.checkpoint_interval_unit", f"{tr['checkpoint_interval_unit']!r} is not epoch|step.", "use epoch.", "enum"
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
    elif tr["validation_interval"] > tr["num_epochs"] >= 1:
        issues.append(
            Issue(
                "train.validation_interval",
                f"({tr['validation_interval']}) is larger than train.num_epochs ({tr['num_epochs']}).",
                "make validation_interval <= num_epochs (TAO asserts this at train start).",
            )
        )
    if tr["num_gpus"] < 1 or tr["num_nodes"] < 1:
        issues.append(Issue("train.num_gpus", "num_gpus and num_nodes must be >= 1.", "use 1."))
    if not isinstance(tr["freeze"], list) or not all(isinstance(x, str) for x in tr["freeze"]):
        issues.append(
            Issue("train.freeze", "must be a list of parameter-name prefixes.", "use [] or e.g. ['embeddings'].", "type")
        )
    if opt["type"] != "AdamW":
        issues.append(Issue("train.optim.type", f"{opt['type']!r} is not supported.", "use AdamW (TAO's only option).", "enum"))
    if opt["monitor_name"] not in ("train_loss", "val_loss"):
        issues.append(
            Issue("train.optim.monitor_name", f"{opt['monitor_name']!r} is not val_loss|train_loss.", "use train_loss.", "enum")
        )
    elif opt["monitor_name"] == "val_loss" and unset(ds["val_data_sources"]):
        issues.append(
            Issue(
                "train.optim.monitor_name",
                "is val_loss but dataset.val_data_sources is not set, so no val_loss is computed.",
                "set dataset.val_data_sources or use train_loss.",
            )
        )
    for name, hint in (("lr", "2e-4"), ("backbone_multiplier", "0.1"), ("weight_decay", "0.05")):
        if not 0.0 < opt[name] <= 1.0:
            issues.append(Issue(f"train.optim.{name}", f"({opt[name]}) must be within (0, 1] (TAO bounds, > 0).", f"use {hint}."))
    if not 0.0 < opt["momentum"] < 1.0:
        issues.append(Issue("train.optim.momentum", f"({opt['momentum']}) must be within (0, 1) (AdamW beta1).", "use 0.9."))
    if not 0.0 < opt["layer_decay"] <= 1.0:
        issues.append(Issue("train.optim.layer_decay", f"({opt['layer_decay']}) must be within (0, 1].", "use 0.75 (1.0 = off)."))
    if opt["lr_scheduler"] not in ("MultiStep", "cosine"):
        issues.append(
            Issue("train.optim.lr_scheduler", f"{opt['lr_scheduler']!r} is not MultiStep|cosine.", "use MultiStep.", "enum")
        )
    ms = opt["milestones"]
    if not (isinstance(ms, list) and all(isinstance(x, int) and x >= 1 for x in ms) and ms == sorted(ms)):
        issues.append(
            Issue("train.optim.milestones", f"must be an increasing list of epochs >= 1, got {ms!r}.", "use e.g. [88, 96].")
        )
    if not opt["gamma"] > 0:
        issues.append(Issue("train.optim.gamma", "must be > 0.", "use 0.1."))
    if not 0 <= opt["warmup_epochs"] <= 100:
        issues.append(Issue("train.optim.warmup_epochs", "must be within [0, 100] (TAO bounds).", "use 1."))
    ck = tr["checkpointer"]
    if ck["enable_topk"] and ck["mode"] not in (None, "", "min", "max"):
        issues.append(Issue("train.checkpointer.mode", f"{ck['mode']!r} is not min|max.", "use min."))


def _check_run(cfg: dict[str, Any], action: str, issues: list[Issue], data_key: str) -> None:
    run = cfg[action]
    if not unset(run["trt_engine"]):
        raise NotSupported(
            f"{action}.trt_engine is set: the built-in engine runs PyTorch checkpoints, not TensorRT engines.",
            field=f"{action}.trt_engine",
            fix=f"remove {action}.trt_engine and set {action}.checkpoint to a model_epoch_*.pth file (TensorRT runs in TAO Deploy).",
        )
    ckpt = run["checkpoint"]
    if unset(ckpt):
        issues.append(
            Issue(f"{action}.checkpoint", "is not set.", "set it to a model_epoch_*.pth file of the train job.", "required")
        )
    elif str(ckpt).lower().endswith(ENGINE_SUFFIXES):
        issues.append(
            Issue(
                f"{action}.checkpoint", f"{ckpt} is not a PyTorch checkpoint.", "pass a model_epoch_*.pth file of the train job."
            )
        )
    if unset(cfg["dataset"][data_key]):
        issues.append(Issue(f"dataset.{data_key}", "is not set.", "set it to an extracted image folder.", "required"))
    if run["batch_size"] == 0 or run["batch_size"] < -1:
        issues.append(Issue(f"{action}.batch_size", "must be >= 1, or -1 to use dataset.batch_size.", "use -1."))
    if run["num_gpus"] < 1 or run["num_nodes"] < 1:
        issues.append(Issue(f"{action}.num_gpus", "num_gpus and num_nodes must be >= 1.", "use 1."))


def check_evaluate(cfg: dict[str, Any], issues: list[Issue]) -> None:
    _check_run(cfg, "evaluate", issues, "val_data_sources")


def check_inference(cfg: dict[str, Any], issues: list[Issue]) -> None:
    if cfg["train"]["stage"] == "pretrain":
        raise NotSupported(
            "Inference with pretrain checkpoints: the MAE predict dataloader raises NotImplementedError for "
            "train.stage: pretrain (a pretrained MAE encoder has no classifier).",
            field="train.stage",
            fix="use a finetune checkpoint with train.stage: finetune for inference and classification-style evaluation, "
            "or restrict a pretrain-only run to train/evaluate/export.",
        )
    _check_run(cfg, "inference", issues, "test_data_sources")


def check_export(cfg: dict[str, Any], issues: list[Issue]) -> None:
    ex = cfg["export"]
    if ex["format"] != "onnx":
        raise NotSupported(
            f"export.format={ex['format']!r}: the built-in engine writes ONNX only.", field="export.format", fix="use onnx."
        )
    if unset(ex["checkpoint"]):
        issues.append(
            Issue("export.checkpoint", "is not set.", "set it to a model_epoch_*.pth file of the train job.", "required")
        )
    elif str(ex["checkpoint"]).lower().endswith(ENGINE_SUFFIXES):
        issues.append(
            Issue("export.checkpoint", f"{ex['checkpoint']} is not a PyTorch checkpoint.", "pass a model_epoch_*.pth file.")
        )
    if unset(ex["onnx_file"]):
        issues.append(Issue("export.onnx_file", "is not set.", "set it to the output path, e.g. /results/mae.onnx.", "required"))
    if ex["input_channel"] != 3:
        issues.append(Issue("export.input_channel", f"is {ex['input_channel']}; MAE models take RGB input.", "use 3."))
    if ARCHS.get(cfg["model"]["arch"], {}).get("family") == "hiera":
        size = cfg["dataset"]["augmentation"]["input_size"]
        for k in ("input_width", "input_height"):
            if ex[k] != size:
                issues.append(
                    Issue(
                        f"export.{k}",
                        f"({ex[k]}) differs from dataset.augmentation.input_size ({size}); Hiera's position "
                        "embeddings and mask units are fixed to the training size.",
                        f"set export.input_width and export.input_height to {size}.",
                    )
                )
    elif cfg["model"]["arch"] in ARCHS:
        step = stride(cfg)
        for k in ("input_width", "input_height"):
            if ex[k] < step or ex[k] % step:
                issues.append(
                    Issue(
                        f"export.{k}",
                        f"({ex[k]}) must be a positive multiple of {step} for {cfg['model']['arch']}.",
                        f"use dataset.augmentation.input_size ({cfg['dataset']['augmentation']['input_size']}).",
                    )
                )
    if ex["batch_size"] == 0 or ex["batch_size"] < -1:
        issues.append(Issue("export.batch_size", "must be >= 1, or -1 for a dynamic batch axis.", "use -1."))
    if ex["opset_version"] < 13:
        issues.append(Issue("export.opset_version", f"({ex['opset_version']}) is below 13.", "use 17."))


def check(cfg: dict[str, Any], action: str) -> None:
    """Raise SpecError/NotSupported for any value of ``cfg`` the ``action`` cannot honour."""
    issues: list[Issue] = []
    check_model(cfg, issues)
    {"train": check_train, "evaluate": check_evaluate, "inference": check_inference, "export": check_export}[action](cfg, issues)
    if issues:
        raise SpecError(
            f"The MAE {action} spec has {len(issues)} problem(s): " + "; ".join(str(i) for i in issues[:3]),
            issues=issues,
            field=issues[0].field,
            fix="correct the listed keys.",
        )
