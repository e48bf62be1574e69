"""DINO quantize action: INT8 ONNX by static post-training quantization, with mAP before and after.

Honours TAO Core 7.3.0's ``quantize`` block (common ModelQuantizationConfig) for the ONNX path:
``backend: modelopt.onnx``, ``mode: static_ptq``, ``algorithm`` ``minmax``/``max`` (min-max
ranges) or ``entropy``, ``model_path`` (the FP32 ONNX written by export), ``skip_names``
(node-name substrings kept in float). The built-in engine runs it with onnxruntime's
``quantize_static`` (QDQ format, INT8 weights and activations, per-channel weights),
calibrated on ``dataset.quant_calibration_data_sources.image_dir`` resized to the ONNX input
size. When ``dataset.test_data_sources`` is set, both models are evaluated there (COCO mAP,
faster-coco-eval); KPIs ``fp32_mAP``, ``fp32_mAP50``, ``int8_mAP``, ``int8_mAP50``,
``mAP50_drop``. Output: ``<results_dir>/quantize/<model>_int8.onnx`` and ``quantize_report.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.dino import common as C
from taoskills.engine.dino import data as D
from taoskills.engine.dino.model import postprocess
from taoskills.engine.dino.spec import TAO_ENGINE, check_model, unset
from taoskills.errors import Issue, NotSupported, SpecError

log = logging.getLogger("taoskills.engine.dino")
_ALGORITHMS = {"minmax": "MinMax", "max": "MinMax", "entropy": "Entropy"}


def check_quantize(cfg: dict[str, Any]) -> None:
    """SpecError / NotSupported for quantize values the onnxruntime path cannot honour."""
    q = cfg["quantize"]
    if q["backend"] != "modelopt.onnx":
        raise NotSupported(
            f"quantize.backend={q['backend']!r}: the built-in engine quantizes ONNX models only (backend modelopt.onnx, "
            "run with onnxruntime static quantization); PyTorch backends (torchao, modelopt.pytorch) are not implemented.",
            field="quantize.backend",
            fix=f"set quantize.backend=modelopt.onnx with quantize.model_path=<exported .onnx>, or {TAO_ENGINE}.",
        )
    if q["mode"] != "static_ptq":
        raise NotSupported(
            f"quantize.mode={q['mode']!r}: the ONNX path is static post-training quantization (INT8 weights and activations).",
            field="quantize.mode",
            fix=f"set quantize.mode=static_ptq, or {TAO_ENGINE}.",
        )
    if q["algorithm"] not in _ALGORITHMS:
        raise NotSupported(
            f"quantize.algorithm={q['algorithm']!r} is not available with onnxruntime calibration.",
            field="quantize.algorithm",
            fix="use minmax (or max, entropy).",
        )
    if q["layers"]:
        raise NotSupported(
            "quantize.layers (per-module dtypes) is not implemented by the built-in engine; every supported op becomes INT8.",
            field="quantize.layers",
            fix="remove quantize.layers (use quantize.skip_names to keep nodes in float).",
        )
    issues: list[Issue] = []
    check_model(cfg, issues)
    if unset(q["model_path"]) or not str(q["model_path"]).endswith(".onnx"):
        issues.append(
            Issue(
                "quantize.model_path",
                f"must be the exported .onnx file, got {q['model_path']!r}.",
                "run export first and pass export.onnx_file.",
            )
        )
    cal = cfg["dataset"]["quant_calibration_data_sources"]
    if not isinstance(cal, dict) or unset(cal.get("image_dir")):
        issues.append(
            Issue(
                "dataset.quant_calibration_data_sources",
                "is not set.",
                "set it to {image_dir, json_file} of calibration images.",
                "required",
            )
        )
    if issues:
        raise SpecError(
            f"The DINO quantize spec has {len(issues)} problem(s).",
            issues=issues,
            field=issues[0].field,
            fix="correct the listed keys.",
        )


def _input_hw(session) -> tuple[int, int]:
    shape = session.get_inputs()[0].shape
    return int(shape[2]), int(shape[3])


def _batch(paths: list[Path], aug: dict[str, Any], hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    mean, std = np.array(aug["input_mean"], np.float32), np.array(aug["input_std"], np.float32)
    arrs = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((hw[1], hw[0]), Image.BILINEAR)
        arrs.append(((np.asarray(img, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
    return np.stack(arrs)


def onnx_map(path: Path, cfg: dict[str, Any], gt: dict[str, Any]) -> dict[str, float]:
    """COCO mAP of an ONNX DINO on ``gt`` (images resized to the graph's input size)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hw = _input_hw(sess)
    fixed_batch = sess.get_inputs()[0].shape[0]
    bs = fixed_batch if isinstance(fixed_batch, int) else 4
    dets: list[dict] = []
    imgs = gt["images"]
    for s in range(0, len(imgs), bs):
        chunk = imgs[s : s + bs]
        if len(chunk) < bs and isinstance(fixed_batch, int):
            chunk = chunk + [chunk[-1]] * (bs - len(chunk))
        x = _batch([Path(gt["paths"][i["id"]]) for i in chunk], cfg["dataset"]["augmentation"], hw)
        logits, boxes = sess.run(None, {"inputs": x})
        sizes = torch.tensor([[i["height"], i["width"]] for i in chunk])
        preds = postprocess(torch.from_numpy(logits), torch.from_numpy(boxes), sizes, cfg["model"]["num_select"])
        targets = [{"image_id": torch.tensor(i["id"])} for i in chunk]
        n = len(imgs[s : s + bs])
        dets.extend(C.to_detections(preds[:n], targets[:n], gt["category_of"]))
    return C.coco_map(gt, dets, cfg["dataset"]["eval_class_ids"])


def run(ctx: ActionContext) -> dict[str, float]:
    """Quantize ``quantize.model_path`` to INT8; returns the mAP KPIs (when test data is set) and node counts."""
    import onnxruntime as ort
    from onnxruntime import quantization as Q

    cfg = ctx.cfg
    check_quantize(cfg)
    q, ds = cfg["quantize"], cfg["dataset"]
    src = Path(q["model_path"]).expanduser()
    if not src.is_file():
        raise SpecError(
            f"quantize.model_path={src} does not exist.",
            field="quantize.model_path",
            fix="run export first and pass its onnx_file.",
        )
    cal_files = D.list_images(
        ds["quant_calibration_data_sources"]["image_dir"], "dataset.quant_calibration_data_sources.image_dir"
    )
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    hw, fixed_batch = _input_hw(sess), sess.get_inputs()[0].shape[0]
    bs = fixed_batch if isinstance(fixed_batch, int) else 1
    del sess
    batches = [cal_files[i : i + bs] for i in range(0, len(cal_files) - bs + 1, bs)]

    class Reader(Q.CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            nxt = next(self.it, None)
            return None if nxt is None else {"inputs": _batch(nxt, ds["augmentation"], hw)}

    import onnx

    graph = onnx.load(str(src))
    skip = [n.name for n in graph.graph.node if any(s in n.name for s in q["skip_names"] or [])]
    pre = ctx.results_dir / f"{src.stem}_preprocessed.onnx"
    Q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    dst = ctx.results_dir / f"{src.stem}_int8.onnx"
    Q.quantize_static(
        str(pre),
        str(dst),
        Reader(),
        quant_format=Q.QuantFormat.QDQ,
        activation_type=Q.QuantType.QInt8,
        weight_type=Q.QuantType.QInt8,
        per_channel=True,
        calibrate_method=getattr(Q.CalibrationMethod, _ALGORITHMS[q["algorithm"]]),
        nodes_to_exclude=skip,
    )
    pre.unlink(missing_ok=True)
    n_q = sum(1 for n in onnx.load(str(dst)).graph.node if n.op_type == "QuantizeLinear")
    report: dict[str, Any] = {
        "fp32_onnx": str(src),
        "int8_onnx": str(dst),
        "calibration_images": len(batches) * bs,
        "quantize_nodes": n_q,
    }
    kpis: dict[str, float] = {"quantize_nodes": float(n_q)}
    test = ds["test_data_sources"]
    if isinstance(test, dict) and not unset(test.get("json_file")):
        gt = D.load_coco([test], "dataset.test_data_sources", contiguous=ds["contiguous_labels"])
        before, after = onnx_map(src, cfg, gt), onnx_map(dst, cfg, gt)
        kpis.update(
            fp32_mAP=before["mAP"],
            fp32_mAP50=before["mAP50"],
            int8_mAP=after["mAP"],
            int8_mAP50=after["mAP50"],
            mAP50_drop=before["mAP50"] - after["mAP50"],
        )
        log.info("mAP50 FP32 %.4f -> INT8 %.4f (mAP %.4f -> %.4f)", before["mAP50"], after["mAP50"], before["mAP"], after["mAP"])
    else:
        log.warning("dataset.test_data_sources is not set: mAP before/after quantization is not measured.")
    report.update(kpis)
    (ctx.results_dir / "quantize_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return kpis
