"""Helpers shared by DINO's train, evaluate, inference and export: COCO mAP, checkpoints, devices."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import torch

from taoskills.engine.dino.model import DINO
from taoskills.errors import NotSupported, PreflightError, SpecError

log = logging.getLogger("taoskills.engine.dino")

#: Keys a checkpoint must share with the spec that loads it (TAO carries them forward from train).
STRUCTURAL_KEYS = (
    "model.backbone",
    "model.num_queries",
    "model.num_feature_levels",
    "model.return_interm_indices",
    "model.hidden_dim",
    "model.nheads",
    "model.dim_feedforward",
    "model.enc_layers",
    "model.dec_layers",
    "model.enc_n_points",
    "model.dec_n_points",
    "model.two_stage_type",
    "dataset.num_classes",
)


def coco_map(gt: dict[str, Any], detections: list[dict[str, Any]], cat_ids: list[int] | None = None) -> dict[str, float]:
    """COCO bbox AP with faster-coco-eval (same numbers as pycocotools).

    ``gt``: a :func:`data.load_coco` dict; ``detections``: ``{image_id, category_id, bbox [x,y,w,h] px,
    score}``. Returns ``mAP`` (AP@[.5:.95]), ``mAP50``, ``mAP75``, ``mAP_small/medium/large``; all 0.0
    when there are no detections.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    names = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large")
    if not detections or not gt["annotations"]:
        return dict.fromkeys(names, 0.0)
    doc = {k: gt[k] for k in ("images", "annotations", "categories")}
    doc["annotations"] = [
        {**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]), "iscrowd": a.get("iscrowd", 0)} for a in doc["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(doc)
        coco_dt = coco_gt.loadRes(detections)
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        if cat_ids:
            ev.params.catIds = list(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {n: max(float(v), 0.0) for n, v in zip(names, ev.stats[:6])}


def to_detections(preds: list[dict[str, torch.Tensor]], targets, category_of: dict[int, int], conf: float = 0.0) -> list[dict]:
    """Post-processed predictions (pixels of the original image) -> COCO result dicts."""
    out = []
    for p, t in zip(preds, targets):
        iid = int(t["image_id"])
        for s, lab, b in zip(p["scores"].tolist(), p["labels"].tolist(), p["boxes"].tolist()):
            if s < conf or lab not in category_of:
                continue
            out.append(
                {"image_id": iid, "category_id": category_of[lab], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            )
    return out


def model_state(path: str, *, field: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model weights, training cfg or {}) of a DINO checkpoint: a full Lightning file
    (``model_epoch_*.pth`` / ``dino_model_latest.pth``, weights under ``state_dict`` with the
    ``model.`` prefix) or a plain state dict."""
    from taoskills.engine.lightning import load_checkpoint_file

    obj = load_checkpoint_file(path, field=field)
    cfg: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        cfg = (obj.get("hyper_parameters") or {}).get("cfg") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise SpecError(
            f"{field}={path} holds no model weights.", field=field, fix="pass a model_epoch_*.pth file of a DINO train job."
        )
    sd = {(k[6:] if k.startswith("model.") else k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return sd, cfg


def check_structure(own: dict[str, Any], cfg: dict[str, Any], field: str) -> None:
    """SpecError when ``cfg`` differs from the checkpoint's training config ``own`` in a structural key."""
    for key in STRUCTURAL_KEYS:
        theirs, mine = own, cfg
        for part in key.split("."):
            theirs = theirs.get(part) if isinstance(theirs, dict) else None
            mine = mine.get(part) if isinstance(mine, dict) else None
        if theirs is not None and theirs != mine:
            raise SpecError(
                f"{field} was trained with {key}={theirs} but the spec has {mine}; the checkpoint shape would not match.",
                field=key,
                fix=f"set {key}={theirs} (carry the train spec's structural keys forward).",
            )


def load_model(cfg: dict[str, Any], path: str, *, field: str) -> DINO:
    """DINO built from ``cfg`` with the weights of ``path`` (eval mode). Structural mismatches are SpecErrors."""
    sd, own = model_state(path, field=field)
    check_structure(own, cfg, field)
    model = DINO(cfg)
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise SpecError(
            f"{field}={path} does not fit this DINO model (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}).",
            field=field,
            fix="use the spec the checkpoint was trained with (model.* and dataset.num_classes).",
        )
    return model.eval()


def load_pretrained_model(model: DINO, path: str, *, field: str = "train.pretrained_model_path") -> dict[str, int]:
    """Non-strict load of full-model weights; tensors of another shape (e.g. a class head for another
    num_classes) are skipped. Returns counts ``{"loaded", "skipped"}``; SpecError when nothing fits."""
    sd, _ = model_state(path, field=field)
    own = model.state_dict()
    fit = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not fit:
        raise SpecError(f"{field}={path} has no tensor that fits this model.", field=field, fix="pass a DINO checkpoint.")
    model.load_state_dict(fit, strict=False)
    return {"loaded": len(fit), "skipped": len(sd) - len(fit)}


def pick_device(num_gpus: int, gpu_id: int, field: str, *, want_gpu: bool = True) -> torch.device:
    """cuda:<gpu_id> when present (and wanted), else CPU. More than one GPU is NotSupported for
    single-device actions; a GPU id beyond the device count is a PreflightError."""
    if num_gpus > 1:
        raise NotSupported(
            f"{field}={num_gpus}: the built-in engine runs this action on one device.", field=field, fix=f"set {field}=1."
        )
    if not want_gpu or not torch.cuda.is_available():
        return torch.device("cpu")
    if gpu_id >= torch.cuda.device_count():
        raise PreflightError(f"GPU {gpu_id} does not exist.", field=field, fix="use a GPU id from 0 to device_count-1.")
    return torch.device(f"cuda:{gpu_id}")


def trt_predictor(path: str, action: str):
    """(model-like callable ``(images [B,3,H,W], mask) -> {"pred_logits", "pred_boxes"}``, engine
    (width, height)) for a TensorRT engine built from DINO's ONNX (input ``inputs``). A fixed-batch
    engine gets short batches padded. NotSupported without TensorRT or CUDA (TAO deploy container)."""
    from taoskills.engine.tensorrt import Runner

    runner = Runner(path, what=f"DINO TensorRT {action}", field=f"{action}.trt_engine")
    shape = runner.input_shapes.get("inputs")
    if shape is None or len(shape) != 4 or shape[2] < 1 or shape[3] < 1:
        raise SpecError(
            f"{action}.trt_engine={path} has no fixed-size 'inputs' [B,3,H,W] input (got {runner.input_shapes}).",
            field=f"{action}.trt_engine",
            fix="build it with gen_trt_engine from a DINO export job's ONNX.",
        )
    fixed = shape[0] if shape[0] > 0 else None

    def predict(images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n = images.shape[0]
        if fixed and n < fixed:
            images = torch.cat([images, images.new_zeros((fixed - n, *images.shape[1:]))])
        out = runner(inputs=images)
        return {"pred_logits": out["pred_logits"][:n], "pred_boxes": out["pred_boxes"][:n]}

    return predict, (shape[3], shape[2])
