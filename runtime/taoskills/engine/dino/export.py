"""DINO export action: ONNX (deformable attention as GridSample), checked against PyTorch in onnxruntime.

Graph: input ``inputs [B, 3, export.input_height, export.input_width]`` (normalised RGB;
``B`` dynamic when ``export.batch_size`` is -1), outputs ``pred_logits [B, Q, num_classes]``
(pre-sigmoid) and ``pred_boxes [B, Q, 4]`` (cx, cy, w, h in [0, 1]) — TAO DINO's export
outputs. Written with the TorchScript-based exporter (``dynamo=False``) at
``export.opset_version`` (≥ 16 for GridSample). The file is then run in onnxruntime on images
of the spec's data sources (or synthetic scenes) and must match PyTorch within ``ATOL``
(absolute, both outputs); the measured differences go to ``export_check.json`` and the status line.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.dino import common as C
from taoskills.engine.dino.spec import check
from taoskills.errors import TaoSkillsError

log = logging.getLogger("taoskills.engine.dino")
#: Largest accepted |onnxruntime - PyTorch| on pred_logits and pred_boxes (float32 on CPU).
ATOL = 1e-3


class ExportError(TaoSkillsError):
    """The ONNX file does not reproduce the PyTorch outputs."""

    code = "export_mismatch"


class _Wrapper(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        mask = torch.zeros(inputs.shape[0], inputs.shape[2], inputs.shape[3], dtype=torch.bool, device=inputs.device)
        out = self.model(inputs, mask)
        return out["pred_logits"], out["pred_boxes"]


def check_images(cfg: dict, width: int, height: int, n: int) -> torch.Tensor:
    """``n`` normalised images for the ONNX check: from the spec's data sources (test, inference,
    calibration, val, train — first found), else synthetic shape scenes. Real scenes keep the
    top-k query selection away from near-ties, which random noise would make order-unstable."""
    import tempfile

    import numpy as np
    from PIL import Image

    from taoskills.engine.dino import data as D
    from taoskills.engine.dino.synthetic import write_shapes_coco

    ds = cfg["dataset"]
    dirs = [
        (ds.get(k) or {}).get("image_dir") for k in ("test_data_sources", "infer_data_sources", "quant_calibration_data_sources")
    ]
    dirs += [
        s.get("image_dir") for k in ("val_data_sources", "train_data_sources") for s in (ds.get(k) or []) if isinstance(s, dict)
    ]
    files = []
    for d in dirs:
        try:
            files = D.list_images(d, "image_dir")[:n] if d else []
        except Exception:  # noqa: BLE001 - a missing folder just means: try the next source
            files = []
        if files:
            break
    tmp = None
    if not files:
        tmp = tempfile.TemporaryDirectory()
        src = write_shapes_coco(tmp.name, n_images=n, size=max(width, height))
        files = D.list_images(src["image_dir"], "image_dir")
    aug = ds["augmentation"]
    mean, std = np.array(aug["input_mean"], np.float32), np.array(aug["input_std"], np.float32)
    arrs = []
    for f in (files * n)[:n]:
        img = Image.open(f).convert("RGB").resize((width, height), Image.BILINEAR)
        arrs.append(((np.asarray(img, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
    if tmp is not None:
        tmp.cleanup()
    return torch.from_numpy(np.stack(arrs))


def export_onnx(
    model, path: Path, width: int, height: int, *, opset: int = 17, batch: int = -1, check_in: torch.Tensor | None = None
):
    """Write ``model`` to ``path`` and compare it with PyTorch in onnxruntime on ``check_in``
    (``[B,3,H,W]``; default random). Returns ``{"max_abs_diff_logits", "max_abs_diff_boxes"}``;
    ExportError above :data:`ATOL`."""
    import numpy as np
    import onnxruntime as ort

    os.environ.setdefault("TRANSFORMERS_DISABLE_TORCH_CHECK", "1")
    wrapper = _Wrapper(model.cpu()).eval()  # the exporter restores the wrapper's own mode afterwards
    n = 1 if batch == -1 else batch
    dummy = torch.randn(n, 3, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    dyn = {"inputs": {0: "batch"}, "pred_logits": {0: "batch"}, "pred_boxes": {0: "batch"}} if batch == -1 else None
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(path),
        input_names=["inputs"],
        output_names=["pred_logits", "pred_boxes"],
        opset_version=opset,
        dynamic_axes=dyn,
        dynamo=False,
    )
    if check_in is None:
        check_in = torch.randn(2 if batch == -1 else n, 3, height, width)
    with torch.no_grad():
        ref_logits, ref_boxes = wrapper(check_in)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_logits, got_boxes = sess.run(None, {"inputs": check_in.numpy()})
    diff = {
        "max_abs_diff_logits": float(np.abs(got_logits - ref_logits.numpy()).max()),
        "max_abs_diff_boxes": float(np.abs(got_boxes - ref_boxes.numpy()).max()),
    }
    if max(diff.values()) > ATOL:
        raise ExportError(
            f"ONNX outputs differ from PyTorch by {max(diff.values()):.2e} (> {ATOL:g}).",
            field="export.opset_version",
            fix="export with opset_version 17 on torch 2.4+; report the versions if it persists.",
            details=diff,
        )
    return diff


def run(ctx: ActionContext) -> dict[str, float]:
    """Export ``export.checkpoint`` to ``export.onnx_file``; returns the measured ONNX/PyTorch differences."""
    cfg = ctx.cfg
    check(cfg, "export")
    ex = cfg["export"]
    model = C.load_model(cfg, ex["checkpoint"], field="export.checkpoint")
    path = Path(ex["onnx_file"]).expanduser()
    w, h = ex["input_width"], ex["input_height"]
    images = check_images(cfg, w, h, 2 if ex["batch_size"] == -1 else ex["batch_size"])
    diff = export_onnx(model, path, w, h, opset=ex["opset_version"], batch=ex["batch_size"], check_in=images)
    info = {"onnx_file": str(path), "atol": ATOL, **diff}
    (ctx.results_dir / "export_check.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    log.info(
        "wrote %s (onnxruntime vs PyTorch: logits %.2e, boxes %.2e)",
        path,
        diff["max_abs_diff_logits"],
        diff["max_abs_diff_boxes"],
    )
    return diff
