"""Grounding DINO spec: TAO's defaults and the checks the engine makes before it runs (torch-free).

``DEFAULTS`` mirrors ``OmegaConf.structured(ExperimentConfig)`` of TAO Core 7.3.0
``nvidia_tao_core/config/grounding_dino/default_config.py`` (the dataclass ``value``s, which is
what TAO's Hydra runner merges a spec onto); the tests compare the two. ``check(cfg, action)``
raises on any value the engine cannot honour, naming the key and the fix.
"""

from __future__ import annotations

from typing import Any

from taoskills.engine.grounding_dino.contrastive import log_scale_value
from taoskills.engine.grounding_dino.defaults import DEFAULTS, SOURCE
from taoskills.errors import Issue, NotSupported, SpecError

__all__ = ["DEFAULTS", "SOURCE", "check"]

#: TAO backbone name -> transformers backbone config (``SwinConfig`` / ``ResNetConfig`` kwargs).
#: Swin sizes: Liu et al. 2021 (Swin-T/B/L: embed 96/128/192, depths [2,2,6,2]/[2,2,18,2],
#: heads [3,6,12,24]/[4,8,16,32]/[6,12,24,48]; window 7 at 224 px, 12 at 384 px).
BACKBONES: dict[str, dict[str, Any]] = {
    "swin_tiny_224_1k": {"type": "swin", "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin_base_224_22k": {
        "type": "swin",
        "embed_dim": 128,
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
        "window_size": 7,
    },
    "swin_base_384_22k": {
        "type": "swin",
        "embed_dim": 128,
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
        "window_size": 12,
    },
    "swin_large_224_22k": {
        "type": "swin",
        "embed_dim": 192,
        "depths": [2, 2, 18, 2],
        "num_heads": [6, 12, 24, 48],
        "window_size": 7,
    },
    "swin_large_384_22k": {
        "type": "swin",
        "embed_dim": 192,
        "depths": [2, 2, 18, 2],
        "num_heads": [6, 12, 24, 48],
        "window_size": 12,
    },
    "resnet_50": {"type": "resnet", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"},
}

#: TAO ``train.precision`` -> PyTorch Lightning precision string.
PRECISIONS = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}

#: Checkpoint suffixes that are TensorRT/ONNX artefacts, not PyTorch weights.
ENGINE_SUFFIXES = (".engine", ".trt", ".plan", ".onnx")

#: The ``model.*`` keys that fix the network's structure (a checkpoint only loads into the same values).
STRUCTURAL_KEYS = (
    "model.backbone",
    "model.num_queries",
    "model.num_feature_levels",
    "model.return_interm_indices",
    "model.hidden_dim",
    "model.nheads",
    "model.enc_layers",
    "model.dec_layers",
    "model.dim_feedforward",
    "model.dec_n_points",
    "model.enc_n_points",
    "model.two_stage_type",
    "model.embed_init_tgt",
    "model.max_text_len",
    "model.text_encoder_type",
)

TAO_ENGINE = "run it with the TAO container engine (engine: tao)"


def unset(value: Any) -> bool:
    """True for a value TAO treats as "not given": None, "" or the MISSING marker ``???``."""
    return value is None or value == "" or value == "???"


def sources(value: Any) -> list[dict[str, Any]]:
    """A data-source field as a list of dicts, dropping entries whose ``image_dir`` is unset
    (TAO's templates carry an empty second train source)."""
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return [s for s in items if isinstance(s, dict) and not unset(s.get("image_dir"))]


def backbone_folder(value: Any) -> bool:
    """True when ``value`` is a local folder with a transformers Swin/ResNet ``config.json``
    (an engine extension for small runs; TAO itself accepts only the names in BACKBONES)."""
    import json
    from pathlib import Path

    p = Path(str(value)).expanduser() / "config.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("model_type") in ("swin", "resnet")
    except (OSError, ValueError, AttributeError):
        return False


def _not_supported(key: str, value: Any, why: str, fix: str) -> NotSupported:
    return NotSupported(f"{key}={value!r}: {why}", field=key, fix=fix)


def check_model(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Structural and loss keys shared by every action; NotSupported for what transformers'
    Grounding DINO cannot do (TAO Core 7.3.0 grounding_dino ModelConfig keys)."""
    m = cfg["model"]
    if m["backbone"] not in BACKBONES and not backbone_folder(m["backbone"]):
        raise _not_supported(
            "model.backbone",
            m["backbone"],
            "the built-in engine builds the backbones transformers provides "
            f"({', '.join(BACKBONES)}, or a local folder with a transformers Swin/ResNet config.json); "
            "this one needs TAO's own model code.",
            f"use one of {', '.join(BACKBONES)}, or {TAO_ENGINE}.",
        )
    if m["decoder_sa_type"] != "sa":
        raise _not_supported(
            "model.decoder_sa_type",
            m["decoder_sa_type"],
            "transformers' Grounding DINO decoder has plain self-attention only.",
            f"set model.decoder_sa_type=sa, or {TAO_ENGINE}.",
        )
    if m["use_dn"] and m["dn_number"] > 0:
        raise _not_supported(
            "model.dn_number",
            m["dn_number"],
            "transformers' Grounding DINO has no contrastive denoising queries.",
            f"set model.dn_number=0 (TAO's Grounding DINO default), or {TAO_ENGINE}.",
        )
    for key, bad, why in (
        ("pre_norm", True, "transformers' Grounding DINO layers are post-norm."),
        ("dilation", True, "backbone dilation is not available in transformers' Swin/ResNet backbones."),
    ):
        if m[key] is bad:
            raise _not_supported(f"model.{key}", bad, why, f"set model.{key}=false, or {TAO_ENGINE}.")
    try:
        log_scale_value(m["log_scale"])
    except (TypeError, ValueError):
        issues.append(
            Issue("model.log_scale", f"{m['log_scale']!r} is not none, auto or a number.", "use none, auto or a float.")
        )
    if m["fix_refpoints_hw"] != -1:
        raise _not_supported(
            "model.fix_refpoints_hw", m["fix_refpoints_hw"], "reference boxes are always learned here.", "use -1 (the default)."
        )
    if m["pe_temperatureH"] != m["pe_temperatureW"]:
        raise _not_supported(
            "model.pe_temperatureW",
            m["pe_temperatureW"],
            "transformers uses one sine-embedding temperature for both axes.",
            f"set model.pe_temperatureW={m['pe_temperatureH']} (same as pe_temperatureH).",
        )
    if m["focal_gamma"] != 2.0:
        raise _not_supported(
            "model.focal_gamma",
            m["focal_gamma"],
            "transformers' Grounding DINO focal loss uses gamma 2.",
            f"set model.focal_gamma=2.0, or {TAO_ENGINE}.",
        )
    if m["two_stage_type"] not in ("standard", "no"):
        issues.append(Issue("model.two_stage_type", f"{m['two_stage_type']!r} is not standard|no.", "use standard.", "enum"))
    for key in ("num_queries", "hidden_dim", "nheads", "enc_layers", "dec_layers", "dim_feedforward", "max_text_len"):
        if m[key] < 1:
            issues.append(
                Issue(f"model.{key}", "must be >= 1.", f"set model.{key} to 1 or more (default {DEFAULTS['model'][key]}).")
            )
    for key in ("dec_n_points", "enc_n_points"):
        if m[key] < 1:
            issues.append(Issue(f"model.{key}", "must be >= 1.", "use 4."))
    if m["hidden_dim"] % 32 or (m["nheads"] >= 1 and m["hidden_dim"] % m["nheads"]):
        issues.append(
            Issue(
                "model.hidden_dim",
                f"({m['hidden_dim']}) must be a multiple of 32 (GroupNorm of 32 groups on the input projections) "
                f"and of model.nheads ({m['nheads']}).",
                "use e.g. 256 (default), 128 or 64.",
            )
        )
    if not 1 <= m["num_select"] <= m["num_queries"]:
        issues.append(
            Issue(
                "model.num_select",
                f"({m['num_select']}) must be within [1, model.num_queries={m['num_queries']}].",
                "keep model.num_select <= model.num_queries (e.g. 300 with 900 queries).",
            )
        )
    idx = m["return_interm_indices"]
    if not (isinstance(idx, list) and idx and all(isinstance(i, int) and 1 <= i <= 4 for i in idx) and idx == sorted(set(idx))):
        issues.append(
            Issue(
                "model.return_interm_indices",
                f"must be increasing backbone stage indices within 1..4, got {idx!r}.",
                "use [1, 2, 3, 4] (default) or e.g. [2, 3, 4].",
            )
        )
    elif not len(idx) <= m["num_feature_levels"] <= 5:
        issues.append(
            Issue(
                "model.num_feature_levels",
                f"({m['num_feature_levels']}) must be within [len(model.return_interm_indices)={len(idx)}, 5] "
                "(extra levels come from stride-2 convolutions on the last stage).",
                f"set model.num_feature_levels={len(idx)} (TAO: the length must match).",
            )
        )
    if not 0.0 <= m["dropout_ratio"] < 1.0:
        issues.append(Issue("model.dropout_ratio", "must be within [0, 1).", "use 0.0."))
    if not 0.0 < m["focal_alpha"] < 1.0:
        issues.append(Issue("model.focal_alpha", "must be within (0, 1).", "use 0.25."))
    for key in ("set_cost_class", "set_cost_bbox", "set_cost_giou", "cls_loss_coef", "bbox_loss_coef", "giou_loss_coef"):
        if m[key] < 0:
            issues.append(Issue(f"model.{key}", "must be >= 0.", f"use {DEFAULTS['model'][key]}."))
    if m["interm_loss_coef"] < 0:
        issues.append(Issue("model.interm_loss_coef", "must be >= 0.", "use 1.0."))
    bad_losses = [t for t in m["loss_types"] if t not in ("labels", "boxes")]
    if bad_losses or not m["loss_types"]:
        issues.append(
            Issue(
                "model.loss_types",
                f"must be a non-empty subset of [labels, boxes], got {m['loss_types']!r}.",
                "use [labels, boxes].",
            )
        )
    if unset(m["text_encoder_type"]):
        issues.append(
            Issue(
                "model.text_encoder_type", "is not set.", "set it to a local BERT folder (config.json + vocab.txt [+ weights])."
            )
        )


def check_data(cfg: dict[str, Any], action: str, issues: list[Issue]) -> None:
    """Dataset keys: data sources per action, batch size, workers, max_labels, augmentation."""
    ds, aug = cfg["dataset"], cfg["dataset"]["augmentation"]
    need = {
        "train": ("train_data_sources", "val_data_sources"),
        "evaluate": ("test_data_sources",),
        "inference": ("infer_data_sources",),
        "quantize": ("quant_calibration_data_sources", "val_data_sources"),
    }.get(action, ())
    for key in need:
        if key == "infer_data_sources":
            inf = ds[key] if isinstance(ds[key], dict) else {}
            dirs = inf.get("image_dir") or []
            dirs = [dirs] if isinstance(dirs, str) else dirs
            if not [d for d in dirs if not unset(d)]:
                issues.append(
                    Issue("dataset.infer_data_sources.image_dir", "is not set.", "set it to a list of image folders.", "required")
                )
            caps = inf.get("captions") or []
            caps = [caps] if isinstance(caps, str) else caps
            if not [c for c in caps if isinstance(c, str) and c.strip()]:
                issues.append(
                    Issue(
                        "dataset.infer_data_sources.captions",
                        "is empty: Grounding DINO inference needs the text prompts to look for.",
                        'set it to a list of phrases, e.g. ["fire extinguisher", "cone"].',
                        "required",
                    )
                )
            continue
        got = sources(ds[key])
        if not got:
            issues.append(Issue(f"dataset.{key}", "is not set.", "set image_dir and json_file of the data source.", "required"))
        for i, s in enumerate(got):
            where = f"dataset.{key}" + (f"[{i}]" if isinstance(ds[key], list) else "")
            if unset(s.get("json_file")):
                issues.append(
                    Issue(f"{where}.json_file", "is not set.", "set the annotation file of the data source.", "required")
                )
    if ds["batch_size"] < 1:
        issues.append(Issue("dataset.batch_size", "must be >= 1.", "use e.g. 4."))
    if ds["workers"] < 0:
        issues.append(Issue("dataset.workers", "must be >= 0.", "use e.g. 4 (0 loads in the main process)."))
    if ds["max_labels"] < 1:
        issues.append(Issue("dataset.max_labels", "must be >= 1 (TAO: > 0).", "use 50."))
    if ds["dataset_type"] not in ("serialized", "default"):
        issues.append(
            Issue("dataset.dataset_type", f"{ds['dataset_type']!r} is not serialized|default.", "use serialized.", "enum")
        )
    if not 0.0 <= aug["horizontal_flip_prob"] <= 1.0:
        issues.append(Issue("dataset.augmentation.horizontal_flip_prob", "must be within [0, 1].", "use 0.5."))
    for key in ("scales", "train_random_resize"):
        v = aug[key]
        if not (isinstance(v, list) and v and all(isinstance(x, int) and x >= 1 for x in v)):
            issues.append(
                Issue(
                    f"dataset.augmentation.{key}",
                    f"must be a non-empty list of sizes in pixels, got {v!r}.",
                    "use e.g. [480, 512, 544].",
                )
            )
    if aug["train_random_crop_min"] < 1 or aug["train_random_crop_max"] < aug["train_random_crop_min"]:
        issues.append(
            Issue(
                "dataset.augmentation.train_random_crop_max",
                f"({aug['train_random_crop_max']}) must be >= train_random_crop_min ({aug['train_random_crop_min']}) >= 1.",
                "use e.g. 384 and 600.",
            )
        )
    for key in ("random_resize_max_size", "test_random_resize"):
        if aug[key] < 1:
            issues.append(
                Issue(f"dataset.augmentation.{key}", "must be >= 1.", f"use {DEFAULTS['dataset']['augmentation'][key]}.")
            )
    if aug["fixed_random_crop"] is not None and aug["fixed_random_crop"] < 1:
        issues.append(Issue("dataset.augmentation.fixed_random_crop", "must be >= 1 or unset.", "leave it unset or use 1024."))
    for key in ("input_mean", "input_std"):
        v = aug[key]
        if not (isinstance(v, list) and len(v) == 3 and (key == "input_mean" or all(x > 0 for x in v))):
            issues.append(Issue(f"dataset.augmentation.{key}", "must be 3 numbers (std > 0).", "use the ImageNet values."))


def check_train(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Train-loop, optimiser and scheduler keys (TAO Core 7.3.0 GDINOTrainExpConfig)."""
    tr, opt = cfg["train"], cfg["train"]["optim"]
    if tr["precision"] not in PRECISIONS:
        issues.append(
            Issue("train.precision", f"{tr['precision']!r} is not fp32|fp16|bf16.", "use fp32 (or bf16 on a GPU).", "enum")
        )
    if tr["num_epochs"] < 1:
        issues.append(Issue("train.num_epochs", "must be >= 1.", "use e.g. 10."))
    if tr["checkpoint_interval"] < 1:
        issues.append(Issue("train.checkpoint_interval", "must be >= 1.", "use 1."))
    if tr["checkpoint_interval_unit"] not in ("epoch", "step"):
        issues.append(Issue("train.checkpoint_interval_unit", "must be epoch|step.", "use epoch.", "enum"))
    elif tr["checkpoint_interval_unit"] == "epoch" and tr["checkpoint_interval"] > tr["num_epochs"] >= 1:
        issues.append(
            Issue(
                "train.checkpoint_interval",
                f"({tr['checkpoint_interval']}) is larger than train.num_epochs ({tr['num_epochs']}).",
                "make checkpoint_interval <= num_epochs (TAO asserts this at train start).",
            )
        )
    if not 1 <= tr["validation_interval"]:
        issues.append(Issue("train.validation_interval", "must be >= 1.", "use 1."))
    elif tr["validation_interval"] > tr["num_epochs"] >= 1:
        issues.append(
            Issue(
                "train.validation_interval",
                f"({tr['validation_interval']}) is larger than train.num_epochs ({tr['num_epochs']}): no validation would run.",
                "make validation_interval <= num_epochs (TAO asserts this at train start).",
            )
        )
    if tr["clip_grad_norm"] < 0:
        issues.append(Issue("train.clip_grad_norm", "must be >= 0 (0 turns clipping off).", "use 0.1."))
    if tr["distributed_strategy"] not in ("ddp", "fsdp"):
        issues.append(Issue("train.distributed_strategy", "must be ddp|fsdp.", "use ddp.", "enum"))
    elif tr["distributed_strategy"] == "fsdp":
        raise _not_supported(
            "train.distributed_strategy", "fsdp", "the built-in engine trains with DDP only.", f"use ddp, or {TAO_ENGINE}."
        )
    if tr["is_dry_run"]:
        raise _not_supported("train.is_dry_run", True, "dry runs are not implemented by the built-in engine.", "set it to false.")
    if opt["optimizer"] not in ("AdamW", "SGD"):
        issues.append(Issue("train.optim.optimizer", f"{opt['optimizer']!r} is not AdamW|SGD.", "use AdamW.", "enum"))
    if opt["lr_scheduler"] not in ("MultiStep", "StepLR"):
        issues.append(
            Issue("train.optim.lr_scheduler", f"{opt['lr_scheduler']!r} is not MultiStep|StepLR.", "use MultiStep.", "enum")
        )
    if opt["monitor_name"] not in ("val_loss", "train_loss"):
        issues.append(Issue("train.optim.monitor_name", "must be val_loss|train_loss.", "use val_loss.", "enum"))
    for key in ("lr", "lr_backbone", "lr_linear_proj_mult", "momentum", "weight_decay", "lr_decay"):
        if opt[key] < 0:
            issues.append(Issue(f"train.optim.{key}", "must be >= 0.", f"use {DEFAULTS['train']['optim'][key]}."))
    if not opt["lr"] > 0:
        issues.append(Issue("train.optim.lr", "must be > 0.", "use 2e-4."))
    if opt["lr_scheduler"] == "StepLR" and opt["lr_step_size"] < 1:
        issues.append(Issue("train.optim.lr_step_size", "must be >= 1 with StepLR.", "use 10."))
    if not all(isinstance(s, int) and s >= 0 for s in opt["lr_steps"] or []):
        issues.append(Issue("train.optim.lr_steps", "must be a list of epoch numbers >= 0.", "use [10]."))
    ck = tr["checkpointer"]
    if ck["enable_topk"]:
        raise _not_supported(
            "train.checkpointer.enable_topk",
            True,
            "top-k checkpoints are not implemented for Grounding DINO here.",
            "set it to false.",
        )
    if tr["num_gpus"] < 1 or tr["num_nodes"] < 1:
        issues.append(Issue("train.num_gpus", "num_gpus and num_nodes must be >= 1.", "use 1."))


def _check_weights(section: str, key: str, value: Any, issues: list[Issue]) -> None:
    if unset(value):
        issues.append(
            Issue(f"{section}.{key}", "is not set.", "set it to a model_epoch_*.pth file of the train job.", "required")
        )
    elif str(value).lower().endswith(ENGINE_SUFFIXES):
        raise SpecError(
            f"{section}.{key}={value} is a TensorRT/ONNX file; the PyTorch {section} action loads .pth checkpoints only.",
            field=f"{section}.{key}",
            fix="pass the model_epoch_*.pth checkpoint of the train job (TensorRT engines run in TAO Deploy).",
        )


def check_action(cfg: dict[str, Any], action: str, issues: list[Issue]) -> None:
    """Per-action keys (evaluate / inference / export / quantize)."""
    if action in ("evaluate", "inference"):
        sec = cfg[action]
        if not unset(sec["trt_engine"]):
            raise _not_supported(
                f"{action}.trt_engine",
                sec["trt_engine"],
                "TensorRT engines run in TAO Deploy, not in the built-in engine.",
                f"remove {action}.trt_engine and set {action}.checkpoint, or {TAO_ENGINE}.",
            )
        _check_weights(action, "checkpoint", sec["checkpoint"], issues)
        if sec["num_gpus"] != 1:
            raise _not_supported(
                f"{action}.num_gpus", sec["num_gpus"], "this action runs on one device.", f"set {action}.num_gpus=1."
            )
        if sec["batch_size"] == 0 or sec["batch_size"] < -1:
            issues.append(Issue(f"{action}.batch_size", "must be >= 1, or -1 to use dataset.batch_size.", "use -1."))
        for k in ("input_width", "input_height"):
            if sec[k] is not None and sec[k] < 32:
                issues.append(
                    Issue(f"{action}.{k}", "must be >= 32 or unset.", "leave it unset to resize by test_random_resize.")
                )
        if (sec["input_width"] is None) != (sec["input_height"] is None):
            issues.append(
                Issue(f"{action}.input_width", "input_width and input_height must be set together.", "set both or neither.")
            )
    if action == "inference":
        inf = cfg["inference"]
        if not 0.0 <= inf["conf_threshold"] <= 1.0:
            issues.append(Issue("inference.conf_threshold", "must be within [0, 1].", "use 0.5."))
        if inf["outline_width"] < 1:
            issues.append(Issue("inference.outline_width", "must be >= 1.", "use 3."))
    if action == "export":
        ex = cfg["export"]
        _check_weights("export", "checkpoint", ex["checkpoint"], issues)
        if unset(ex["onnx_file"]):
            issues.append(Issue("export.onnx_file", "is not set.", "set the output path, e.g. /results/gdino.onnx.", "required"))
        if ex["format"] != "onnx":
            raise _not_supported(
                "export.format", ex["format"], "the built-in engine writes ONNX only.", f"use onnx, or {TAO_ENGINE}."
            )
        if ex["serialize_nvdsinfer"]:
            raise _not_supported(
                "export.serialize_nvdsinfer",
                True,
                "DeepStream config files are not written here.",
                f"set it to false, or {TAO_ENGINE}.",
            )
        if ex["input_channel"] != 3:
            issues.append(Issue("export.input_channel", f"is {ex['input_channel']}; Grounding DINO takes RGB input.", "use 3."))
        for k in ("input_width", "input_height"):
            if ex[k] < 32:
                issues.append(Issue(f"export.{k}", "must be >= 32.", "keep the template value (960x544)."))
        if ex["batch_size"] == 0 or ex["batch_size"] < -1:
            issues.append(Issue("export.batch_size", "must be >= 1, or -1 for a dynamic batch axis.", "use -1."))
        if ex["opset_version"] < 17:
            issues.append(
                Issue("export.opset_version", "must be >= 17 (LayerNorm, GridSample of the deformable attention).", "use 17.")
            )


def check(cfg: dict[str, Any], action: str) -> None:
    """Raise SpecError/NotSupported for any value of ``cfg`` the ``action`` cannot honour."""
    issues: list[Issue] = []
    check_model(cfg, issues)
    check_data(cfg, action, issues)
    if action == "train":
        check_train(cfg, issues)
    else:
        check_action(cfg, action, issues)
    if issues:
        raise SpecError(
            f"The Grounding DINO {action} spec has {len(issues)} problem(s).",
            issues=issues,
            field=issues[0].field,
            fix="correct the listed keys.",
        )
