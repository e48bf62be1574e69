"""DINO spec: TAO's defaults and the checks the engine makes before it runs (torch-free).

``DEFAULTS`` mirrors ``OmegaConf.structured(ExperimentConfig)`` of TAO Core 7.3.0
``nvidia_tao_core/config/dino/default_config.py`` (the dataclass ``value``s TAO's Hydra runner
merges a spec onto); tests compare the two. ``check(cfg, action)`` raises SpecError /
NotSupported for any value the built-in engine cannot honour, naming the key and the fix.
"""

from __future__ import annotations

from typing import Any

from taoskills.engine.dino.defaults import DEFAULTS, SOURCE
from taoskills.errors import Issue, NotSupported, SpecError

__all__ = ["DEFAULTS", "SOURCE", "check", "unset"]


#: Backbones of the built-in engine: transformers ResNetConfig arguments (torchvision resnet34/50 layouts).
BACKBONES: dict[str, dict[str, Any]] = {
    "resnet_34": {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512], "layer_type": "basic"},
    "resnet_50": {"depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048], "layer_type": "bottleneck"},
}
#: TAO's train.precision spellings -> PyTorch Lightning precision.
PRECISIONS = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}
#: Checkpoint suffixes that are TensorRT/ONNX artefacts, not PyTorch weights.
ENGINE_SUFFIXES = (".engine", ".trt", ".plan", ".onnx")
TAO_ENGINE = "run it with the TAO engine (container nvcr.io/nvidia/tao/tao-toolkit:*-pyt)"


def unset(value: Any) -> bool:
    """True for a value TAO treats as "not given": None, "" or the MISSING marker ``???``."""
    return value is None or value == "" or value == "???"


def _need(issues: list[Issue], ok: bool, field: str, reason: str, fix: str, code: str = "invalid") -> None:
    if not ok:
        issues.append(Issue(field, reason, fix, code))


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_model(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Structural model keys shared by every action (backbone, levels, transformer, queries, dn, losses)."""
    m, nc = cfg["model"], cfg["dataset"]["num_classes"]
    if m["backbone"] not in BACKBONES:
        raise NotSupported(
            f"model.backbone={m['backbone']!r} is not supported by the built-in engine (it builds "
            f"{', '.join(BACKBONES)} from transformers' ResNet).",
            field="model.backbone",
            fix=f"use model.backbone=resnet_50 or resnet_34, or {TAO_ENGINE} for {m['backbone']}.",
        )
    if m["dilation"]:
        raise NotSupported(
            "model.dilation=true (dilated last ResNet stage) is not supported by the built-in engine.",
            field="model.dilation",
            fix=f"set model.dilation=false, or {TAO_ENGINE}.",
        )
    if m["pre_norm"]:
        raise NotSupported(
            "model.pre_norm=true is not supported by the built-in engine (post-norm layers, as DINO's default).",
            field="model.pre_norm",
            fix=f"set model.pre_norm=false, or {TAO_ENGINE}.",
        )
    if m["decoder_sa_type"] != "sa":
        raise NotSupported(
            f"model.decoder_sa_type={m['decoder_sa_type']!r}: the built-in engine implements 'sa' (decoder self-attention).",
            field="model.decoder_sa_type",
            fix=f"set model.decoder_sa_type=sa, or {TAO_ENGINE}.",
        )
    _need(
        issues,
        m["two_stage_type"] in ("standard", "no"),
        "model.two_stage_type",
        f"{m['two_stage_type']!r} is not standard|no.",
        "use standard (mixed query selection).",
        "enum",
    )
    idx = m["return_interm_indices"]
    _need(
        issues,
        isinstance(idx, list) and len(idx) == m["num_feature_levels"],
        "model.return_interm_indices",
        f"has {len(idx) if isinstance(idx, list) else idx} entries but model.num_feature_levels={m['num_feature_levels']} "
        "(return_interm_indices vs num_feature_levels mismatch; TAO requires equal lengths).",
        "make len(model.return_interm_indices) == model.num_feature_levels, e.g. [1, 2, 3, 4] with 4 levels.",
    )
    if isinstance(idx, list):
        _need(
            issues,
            all(isinstance(i, int) and 1 <= i <= 4 for i in idx) and idx == sorted(set(idx)),
            "model.return_interm_indices",
            f"{idx} must be increasing ResNet stage numbers within 1..4 (1 = stride 4, 4 = stride 32).",
            "use e.g. [1, 2, 3, 4] (4 levels) or [2, 3, 4] (3 levels).",
        )
    for k in ("hidden_dim", "nheads", "dim_feedforward", "enc_n_points", "dec_n_points", "enc_layers", "dec_layers"):
        _need(issues, m[k] >= 1, f"model.{k}", f"must be >= 1, got {m[k]}.", f"set model.{k} to 1 or more.")
    if m["hidden_dim"] >= 1 and m["nheads"] >= 1:
        _need(
            issues,
            m["hidden_dim"] % m["nheads"] == 0 and m["hidden_dim"] % 2 == 0,
            "model.hidden_dim",
            f"({m['hidden_dim']}) must be even and divisible by model.nheads ({m['nheads']}).",
            "use e.g. hidden_dim=256 with nheads=8.",
        )
        _need(
            issues,
            m["hidden_dim"] % 32 == 0,
            "model.hidden_dim",
            f"({m['hidden_dim']}) must be a multiple of 32 (GroupNorm(32) on the input projections, as in DINO).",
            "use 256 (TAO default), or e.g. 64/128 for small runs.",
        )
    _need(issues, m["num_queries"] >= 1, "model.num_queries", "must be >= 1.", "use e.g. 300.")
    _need(
        issues,
        1 <= m["num_select"] <= m["num_queries"] * max(nc, 1),
        "model.num_select",
        f"({m['num_select']}) must be within 1..num_queries*num_classes ({m['num_queries']}*{nc}); the post-processor takes "
        "the top num_select of num_queries x num_classes scores (TAO: num_select < num_queries * num_classes).",
        f"set model.num_select to at most {m['num_queries'] * max(nc, 1) - 1}, e.g. min(300, num_queries).",
    )
    if m["use_dn"]:
        _need(issues, m["dn_number"] >= 1, "model.dn_number", "must be >= 1 with model.use_dn=true.", "use 100, or use_dn=false.")
        _need(issues, m["dn_box_noise_scale"] >= 0, "model.dn_box_noise_scale", "must be >= 0.", "use 1.0.")
        _need(issues, 0 <= m["dn_label_noise_ratio"] <= 1, "model.dn_label_noise_ratio", "must be within [0, 1].", "use 0.5.")
    for k in ("cls_loss_coef", "bbox_loss_coef", "giou_loss_coef", "interm_loss_coef"):
        _need(issues, m[k] >= 0, f"model.{k}", "must be >= 0.", "use TAO's 2.0 / 5.0 / 2.0 / 1.0.")
    _need(issues, 0 < m["focal_alpha"] < 1, "model.focal_alpha", "must be within (0, 1).", "use 0.25.")
    _need(issues, 0 <= m["dropout_ratio"] < 1, "model.dropout_ratio", "must be within [0, 1).", "use 0.0.")
    _need(issues, m["pe_temperatureH"] > 0 and m["pe_temperatureW"] > 0, "model.pe_temperatureH", "must be > 0.", "use 20.")
    bad = [t for t in m["loss_types"] if t not in ("labels", "boxes")]
    _need(issues, not bad, "model.loss_types", f"{bad} are not labels|boxes.", "use [labels, boxes].")
    _need(issues, nc >= 1, "dataset.num_classes", "must be >= 1 (max(category_id) + 1).", "set dataset.num_classes.")


def _sources(issues: list[Issue], value: Any, field: str, *, many: bool, json: bool = True) -> None:
    if unset(value) or value == []:
        issues.append(
            Issue(
                field,
                "is not set"
                + (
                    " (DINO always builds a validation loader; omitting val data fails at start in TAO)."
                    if "val" in field
                    else "."
                ),
                "set it to "
                + ("a list of " if many else "")
                + "{image_dir, json_file} (COCO annotations)"
                + ("; reuse the train source if there is no separate split." if "val" in field else "."),
                "required",
            )
        )
        return
    items = value if many else [value]
    if many and not isinstance(value, list):
        items = [value]
    for i, src in enumerate(items):
        key = f"{field}[{i}]" if many else field
        if not isinstance(src, dict) or unset(src.get("image_dir")) or (json and unset(src.get("json_file"))):
            issues.append(
                Issue(key, f"must have image_dir{' and json_file' if json else ''}, got {src!r}.", "give both paths.", "required")
            )


def check_train(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Train-only keys: data sources, augmentation, loop, optimiser, schedule."""
    ds, tr, aug, opt = cfg["dataset"], cfg["train"], cfg["dataset"]["augmentation"], cfg["train"]["optim"]
    _sources(issues, ds["train_data_sources"], "dataset.train_data_sources", many=True)
    _sources(issues, ds["val_data_sources"], "dataset.val_data_sources", many=True)
    _need(issues, ds["batch_size"] >= 1, "dataset.batch_size", "must be >= 1.", "use e.g. 4.")
    _need(issues, ds["workers"] >= 0, "dataset.workers", "must be >= 0.", "use e.g. 8 (0 loads in the main process).")
    if ds["train_sampler"] != "default_sampler":
        raise NotSupported(
            f"dataset.train_sampler={ds['train_sampler']!r} is not implemented by the built-in engine.",
            field="dataset.train_sampler",
            fix=f"use default_sampler, or {TAO_ENGINE}.",
        )
    _need(
        issues,
        ds["dataset_type"] in ("serialized", "default"),
        "dataset.dataset_type",
        "is not serialized|default.",
        "use serialized.",
    )
    sc = aug["scales"]
    _need(
        issues,
        isinstance(sc, list) and sc and all(isinstance(s, int) and s >= 32 for s in sc),
        "dataset.augmentation.scales",
        f"must be a non-empty list of shorter-side sizes >= 32, got {sc!r}.",
        "use e.g. [480, 512, ..., 800].",
    )
    rr = aug["train_random_resize"]
    _need(
        issues,
        isinstance(rr, list) and rr and all(isinstance(s, int) and s >= 32 for s in rr),
        "dataset.augmentation.train_random_resize",
        f"must be a non-empty list of sizes >= 32, got {rr!r}.",
        "use e.g. [400, 500, 600].",
    )
    _need(
        issues,
        32 <= aug["train_random_crop_min"] < aug["train_random_crop_max"],
        "dataset.augmentation.train_random_crop_max",
        f"({aug['train_random_crop_max']}) must be larger than train_random_crop_min ({aug['train_random_crop_min']}, >= 32).",
        "use e.g. crop_min=384, crop_max=600.",
    )
    _need(
        issues,
        0 <= aug["horizontal_flip_prob"] <= 1,
        "dataset.augmentation.horizontal_flip_prob",
        "must be within [0, 1].",
        "use 0.5.",
    )
    _need(
        issues,
        aug["random_resize_max_size"] >= max([s for s in sc if isinstance(s, int)] or [0]),
        "dataset.augmentation.random_resize_max_size",
        f"({aug['random_resize_max_size']}) is smaller than the largest of augmentation.scales.",
        "use e.g. 1333 (or the largest scale).",
    )
    if tr["precision"] not in PRECISIONS:
        issues.append(
            Issue("train.precision", f"{tr['precision']!r} is not fp32|fp16|bf16.", "use fp32 (or fp16 on a GPU).", "enum")
        )
    if tr["distributed_strategy"] != "ddp":
        raise NotSupported(
            f"train.distributed_strategy={tr['distributed_strategy']!r}: the built-in engine trains with DDP only.",
            field="train.distributed_strategy",
            fix=f"use ddp, or {TAO_ENGINE}.",
        )
    if tr["checkpointer"]["enable_topk"]:
        raise NotSupported(
            "train.checkpointer.enable_topk=true (best-k checkpoints) is not implemented by the built-in DINO engine.",
            field="train.checkpointer.enable_topk",
            fix="set enable_topk=false (every checkpoint_interval epoch is kept and val_mAP50 is in status.json).",
        )
    _need(issues, tr["num_epochs"] >= 1, "train.num_epochs", "must be >= 1.", "use e.g. 10.")
    _need(issues, tr["checkpoint_interval"] >= 1, "train.checkpoint_interval", "must be >= 1.", "use 1.")
    if tr["checkpoint_interval_unit"] not in ("epoch", "step"):
        issues.append(Issue("train.checkpoint_interval_unit", "is not epoch|step.", "use epoch.", "enum"))
    elif tr["checkpoint_interval_unit"] == "epoch" and tr["checkpoint_interval"] > tr["num_epochs"] >= 1:
        issues.append(
            Issue(
                "train.checkpoint_interval",
                f"({tr['checkpoint_interval']}) is larger than train.num_epochs ({tr['num_epochs']}).",
                "make checkpoint_interval <= num_epochs (TAO asserts this at train start).",
            )
        )
    _need(
        issues,
        1 <= tr["validation_interval"] <= max(tr["num_epochs"], 1),
        "train.validation_interval",
        f"({tr['validation_interval']}) must be within 1..train.num_epochs ({tr['num_epochs']}).",
        "use 1 (TAO asserts validation_interval <= num_epochs).",
    )
    _need(issues, tr["clip_grad_norm"] >= 0, "train.clip_grad_norm", "must be >= 0 (0 turns clipping off).", "use 0.1.")
    _need(issues, 0 <= tr["conf_threshold"] < 1, "train.conf_threshold", "must be within [0, 1).", "use 0.0.")
    if opt["optimizer"] not in ("AdamW", "SGD"):
        issues.append(Issue("train.optim.optimizer", f"{opt['optimizer']!r} is not AdamW|SGD.", "use AdamW.", "enum"))
    if opt["lr_scheduler"] not in ("MultiStep", "StepLR"):
        issues.append(
            Issue("train.optim.lr_scheduler", f"{opt['lr_scheduler']!r} is not MultiStep|StepLR.", "use MultiStep.", "enum")
        )
    for k in ("lr", "lr_backbone", "lr_linear_proj_mult", "lr_decay"):
        _need(issues, _num(opt[k]) and opt[k] >= 0, f"train.optim.{k}", "must be >= 0.", "use TAO's 2e-4 / 2e-5 / 0.1 / 0.1.")
    _need(issues, opt["lr"] > 0, "train.optim.lr", "must be > 0.", "use 2e-4.")
    _need(issues, opt["weight_decay"] >= 0, "train.optim.weight_decay", "must be >= 0.", "use 1e-4.")
    _need(issues, 0 <= opt["momentum"] < 1, "train.optim.momentum", "must be within [0, 1).", "use 0.9.")
    _need(issues, opt["lr_step_size"] >= 1, "train.optim.lr_step_size", "must be >= 1.", "use 11.")
    steps = opt["lr_steps"]
    _need(
        issues,
        isinstance(steps, list) and all(isinstance(s, int) and s >= 1 for s in steps),
        "train.optim.lr_steps",
        f"must be a list of epochs >= 1, got {steps!r}.",
        "use e.g. [11].",
    )


def _checkpoint(issues: list[Issue], value: Any, field: str) -> None:
    if unset(value):
        issues.append(Issue(field, "is not set.", "set it to a model_epoch_*.pth file of the train job.", "required"))
    elif str(value).lower().endswith(ENGINE_SUFFIXES):
        issues.append(
            Issue(
                field,
                f"{value} is a TensorRT/ONNX file, not PyTorch weights (TensorRT engine passed to PyT action).",
                "pass the model_epoch_*.pth checkpoint of the train job (TensorRT runs in the TAO deploy container).",
            )
        )


def _trt(value: Any, field: str) -> bool:
    """True when ``field`` names a TensorRT engine (TensorRT evaluate/inference); NotSupported
    naming the TAO deploy container when TensorRT is not importable here."""
    if unset(value):
        return False
    from taoskills.engine.tensorrt import require

    require(f"DINO TensorRT {field.split('.')[0]}", field)
    return True


def _geometry(issues: list[Issue], block: dict[str, Any], prefix: str) -> None:
    for k in ("input_width", "input_height"):
        v = block.get(k)
        _need(issues, v is None or v >= 32, f"{prefix}.{k}", f"must be >= 32, got {v}.", "use e.g. 640 (or leave unset).")


def check_evaluate(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Evaluate keys: checkpoint, test data (COCO), batch size."""
    ev = cfg["evaluate"]
    if not _trt(ev["trt_engine"], "evaluate.trt_engine"):
        _checkpoint(issues, ev["checkpoint"], "evaluate.checkpoint")
    _sources(issues, cfg["dataset"]["test_data_sources"], "dataset.test_data_sources", many=False)
    _need(issues, ev["batch_size"] == -1 or ev["batch_size"] >= 1, "evaluate.batch_size", "must be >= 1 or -1.", "use -1.")
    _need(issues, 0 <= ev["conf_threshold"] < 1, "evaluate.conf_threshold", "must be within [0, 1).", "use 0.0.")
    _geometry(issues, ev, "evaluate")


def check_inference(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Inference keys: checkpoint, images, class map, threshold."""
    inf = cfg["inference"]
    if not _trt(inf["trt_engine"], "inference.trt_engine"):
        _checkpoint(issues, inf["checkpoint"], "inference.checkpoint")
    _sources(issues, cfg["dataset"]["infer_data_sources"], "dataset.infer_data_sources", many=False, json=False)
    _need(issues, inf["batch_size"] == -1 or inf["batch_size"] >= 1, "inference.batch_size", "must be >= 1 or -1.", "use -1.")
    _need(issues, 0 <= inf["conf_threshold"] <= 1, "inference.conf_threshold", "must be within [0, 1].", "use 0.5.")
    _need(issues, inf["outline_width"] >= 1, "inference.outline_width", "must be >= 1.", "use 3.")
    _geometry(issues, inf, "inference")


def check_export(cfg: dict[str, Any], issues: list[Issue]) -> None:
    """Export keys: checkpoint, onnx_file, geometry, opset (GridSample needs >= 16), batch size."""
    ex = cfg["export"]
    _checkpoint(issues, ex["checkpoint"], "export.checkpoint")
    if unset(ex["onnx_file"]):
        issues.append(
            Issue("export.onnx_file", "is not set.", "set it to the output path, e.g. /results/export/dino.onnx.", "required")
        )
    if ex["format"] != "onnx":
        raise NotSupported(
            f"export.format={ex['format']!r}: the built-in engine writes ONNX only.",
            field="export.format",
            fix=f"use onnx, or {TAO_ENGINE}.",
        )
    if ex["serialize_nvdsinfer"]:
        raise NotSupported(
            "export.serialize_nvdsinfer=true (DeepStream nvinfer config) is not written by the built-in engine.",
            field="export.serialize_nvdsinfer",
            fix=f"set it to false, or {TAO_ENGINE}.",
        )
    _need(issues, ex["input_channel"] == 3, "export.input_channel", f"is {ex['input_channel']}; DINO takes RGB input.", "use 3.")
    _geometry(issues, ex, "export")
    _need(
        issues,
        ex["opset_version"] >= 16,
        "export.opset_version",
        f"({ex['opset_version']}) is below 16; deformable attention exports as ONNX GridSample (opset >= 16).",
        "use 17.",
    )
    _need(
        issues, ex["batch_size"] == -1 or ex["batch_size"] >= 1, "export.batch_size", "must be >= 1 or -1 (dynamic).", "use -1."
    )


CHECKS = {"train": check_train, "evaluate": check_evaluate, "inference": check_inference, "export": check_export}


def check(cfg: dict[str, Any], action: str) -> None:
    """Raise SpecError (all problems listed) or NotSupported for values ``action`` cannot honour."""
    issues: list[Issue] = []
    check_model(cfg, issues)
    CHECKS[action](cfg, issues)
    if issues:
        raise SpecError(
            f"The DINO {action} spec has {len(issues)} problem(s).",
            issues=issues,
            field=issues[0].field,
            fix="correct the listed keys.",
        )
