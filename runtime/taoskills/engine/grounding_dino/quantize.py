"""Grounding DINO quantize action: INT8 ONNX by onnxruntime static post-training quantization.

TAO quantizes with ModelOpt; the built-in engine honours ``quantize.backend: modelopt.onnx`` with
``quantize.mode: static_ptq`` using onnxruntime's ``quantize_static`` (QDQ format, INT8 weights and
activations of Conv/MatMul/Gemm; the deformable-attention GridSample and the heads' elementwise ops
stay float). Other backends/modes raise NotSupported naming the TAO engine.

* ``quantize.model_path``: an exported ONNX file, or a ``model_epoch_*.pth`` checkpoint that is first
  exported as the export action does (``export.input_width/height``, ``export.opset_version``).
* Calibration: the images of ``dataset.quant_calibration_data_sources`` (COCO; at most
  ``CALIB_IMAGES``), resized to the graph's input size, with the caption of its categories;
  ``quantize.algorithm`` minmax|max -> MinMax, entropy -> Entropy; ``quantize.skip_names`` excludes
  ONNX nodes whose name contains an entry.
* Outputs in ``<results_dir>/quantize``: ``<model>_int8.onnx`` (+ the float ONNX when exported here)
  and KPIs ``fp32_mAP``, ``fp32_mAP50``, ``int8_mAP``, ``int8_mAP50``, ``mAP50_drop`` measured in
  onnxruntime on ``dataset.val_data_sources`` (COCO, ids from 0).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from taoskills.engine.contract import ActionContext
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import metrics
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.engine.grounding_dino.spec import TAO_ENGINE, check, sources, unset
from taoskills.errors import NotSupported, SpecError

log = logging.getLogger("taoskills.engine.grounding_dino")
CALIB_IMAGES = 64
ALGORITHMS = {"minmax": "MinMax", "max": "MinMax", "entropy": "Entropy"}


def check_quantize(cfg: dict[str, Any]) -> None:
    """Refuse the quantize settings onnxruntime cannot honour (TAO Core 7.3.0 ModelQuantizationConfig)."""
    q = cfg["quantize"]
    if unset(q["model_path"]):
        raise SpecError(
            "quantize.model_path is not set.", field="quantize.model_path", fix="pass the exported ONNX or a model_epoch_*.pth."
        )
    if q["backend"] != "modelopt.onnx":
        raise NotSupported(
            f"quantize.backend={q['backend']!r}: the built-in engine quantizes the ONNX graph (INT8, onnxruntime) only.",
            field="quantize.backend",
            fix=f"set quantize.backend=modelopt.onnx and quantize.mode=static_ptq, or {TAO_ENGINE}.",
        )
    if q["mode"] != "static_ptq":
        raise NotSupported(
            f"quantize.mode={q['mode']!r}: onnxruntime has no 8-bit weight-only quantization of this graph.",
            field="quantize.mode",
            fix=f"set quantize.mode=static_ptq (calibrated INT8), or {TAO_ENGINE}.",
        )
    if q["algorithm"] not in ALGORITHMS:
        raise NotSupported(
            f"quantize.algorithm={q['algorithm']!r} is not an onnxruntime calibration method.",
            field="quantize.algorithm",
            fix=f"use one of {', '.join(ALGORITHMS)}, or {TAO_ENGINE}.",
        )
    if q["layers"]:
        raise NotSupported(
            "quantize.layers (per-module dtypes) is not implemented here.", field="quantize.layers", fix="leave it empty."
        )


class _Images:
    """COCO data source -> (batches of model inputs, COCO dict, keys, original sizes)."""

    def __init__(
        self, cfg: dict[str, Any], src: dict[str, Any], field: str, tok: Any, hw: tuple[int, int], limit: int | None = None
    ):
        self.gt, root, names = D.read_coco(src, field)
        self.cat_ids = sorted(int(c["id"]) for c in self.gt["categories"])
        images = self.gt["images"][:limit] if limit else self.gt["images"]
        self.items = [(root / im["file_name"], im["id"]) for im in images]
        enc = tok([D.caption_of(names)], padding="max_length", max_length=cfg["model"]["max_text_len"], return_tensors="np")
        self.text = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        self.hw, self.aug = hw, cfg["dataset"]["augmentation"]

    def feeds(self):
        for path, key in self.items:
            with Image.open(path) as im:
                img = im.convert("RGB")
            x = D.to_tensor(img.resize((self.hw[1], self.hw[0]), Image.Resampling.BILINEAR), self.aug)[None].numpy()
            yield {"inputs": x, **self.text}, key, (img.height, img.width)


def _evaluate(session: Any, data: _Images, num_select: int) -> dict[str, float]:
    dets = []
    for feed, key, size in data.feeds():
        logits, boxes = session.run(None, feed)
        maps = M.phrase_maps(torch.from_numpy(feed["input_ids"]), logits.shape[-1])
        p = M.post_process(torch.from_numpy(logits), torch.from_numpy(boxes), maps, [size], num_select)[0]
        for s, lab, b in zip(p["scores"].tolist(), p["labels"].tolist(), p["boxes"].tolist()):
            dets.append(
                {"image_id": key, "category_id": data.cat_ids[lab], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            )
    return metrics.coco_map(data.gt, dets)


def _float_onnx(ctx: ActionContext) -> Path:
    """The float ONNX to quantize: ``quantize.model_path`` itself, or an export of that checkpoint."""
    path = Path(str(ctx.cfg["quantize"]["model_path"])).expanduser()
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise SpecError(
                f"quantize.model_path={path} does not exist.", field="quantize.model_path", fix="pass the exported ONNX file."
            )
        return path
    from taoskills.engine.grounding_dino import export as E
    from taoskills.engine.grounding_dino.common import load_for_action

    ex = ctx.cfg["export"]
    tok, model = load_for_action(ctx.cfg, str(path), "quantize.model_path")
    out = ctx.results_dir / f"{path.stem}.onnx"
    args = E.sample_inputs(ctx.cfg, tok, 1, ex["input_height"], ex["input_width"], 0)
    E.export_onnx(E.ExportWrapper(model).eval(), args, out, opset=int(ex["opset_version"]), dynamic=True, verbose=False)
    log.info("exported %s to %s for quantization", path, out)
    return out


def run(ctx: ActionContext) -> dict[str, float]:
    """Quantize to INT8 ONNX; returns fp32/int8 mAP and the mAP50 drop on the validation source."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = ctx.cfg
    check_quantize(cfg)
    check(cfg, "quantize")
    q, ds = cfg["quantize"], cfg["dataset"]
    if not sources(ds["val_data_sources"]):
        raise SpecError(
            "dataset.val_data_sources is not set.",
            field="dataset.val_data_sources",
            fix="set the COCO validation source (mAP before/after).",
        )
    if q["device"] != "cpu":
        log.info("quantize.device=%s: onnxruntime calibrates on the CPU here.", q["device"])
    tok = T.load_tokenizer(cfg["model"]["text_encoder_type"])
    fp32 = _float_onnx(ctx)
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    shape = sess.get_inputs()[0].shape
    hw = (
        (shape[2], shape[3])
        if all(isinstance(v, int) for v in shape[2:])
        else (cfg["export"]["input_height"], cfg["export"]["input_width"])
    )
    calib = _Images(
        cfg, sources(ds["quant_calibration_data_sources"])[0], "dataset.quant_calibration_data_sources", tok, hw, CALIB_IMAGES
    )
    val = _Images(cfg, sources(ds["val_data_sources"])[0], "dataset.val_data_sources", tok, hw)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = (feed for feed, _, _ in calib.feeds())

        def get_next(self):
            return next(self.it, None)

    pre = ctx.results_dir / f"{fp32.stem}_pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    out = ctx.results_dir / f"{fp32.stem}_int8.onnx"
    import onnx

    skip = [n.name for n in onnx.load(str(pre)).graph.node if any(s in n.name for s in q["skip_names"])]
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        nodes_to_exclude=skip,
        calibrate_method=getattr(CalibrationMethod, ALGORITHMS[q["algorithm"]]),
    )
    pre.unlink(missing_ok=True)
    num_select = cfg["model"]["num_select"]
    before = _evaluate(sess, val, num_select)
    after = _evaluate(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), val, num_select)
    kpi = {
        "fp32_mAP": before["mAP"],
        "fp32_mAP50": before["mAP50"],
        "int8_mAP": after["mAP"],
        "int8_mAP50": after["mAP50"],
        "mAP50_drop": before["mAP50"] - after["mAP50"],
    }
    msg = (
        f"Wrote {out} (INT8 QDQ, {len(calib.items)} calibration images, {q['algorithm']}); mAP50 on "
        f"{len(val.items)} validation images: fp32 {before['mAP50']:.4f} -> int8 {after['mAP50']:.4f}; "
        f"size {fp32.stat().st_size / 1e6:.1f} MB -> {out.stat().st_size / 1e6:.1f} MB."
    )
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi=kpi)
    return kpi
