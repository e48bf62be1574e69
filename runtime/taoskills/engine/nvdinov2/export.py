"""NVDINOv2 export action: student backbone -> ONNX, checked against onnxruntime.

ONNX graph (see ``taoskills/engine/README.md``): input ``input`` float32 [B, 3, H, W]
(ImageNet-normalised RGB, H/W = ``export.input_height/width``, B dynamic when
``export.batch_size == -1``); outputs ``embedding`` [B, D] (CLS after the final LayerNorm) and
``patch_tokens`` [B, (H/p)*(W/p), D]. Exporter: TorchScript for ``Dinov2Model``; the dynamo
exporter for ``Dinov2WithRegistersModel`` (its antialiased bicubic position-embedding resize has
no TorchScript ONNX symbolic in torch's exporter). After export the file is run in
onnxruntime on a seeded batch and compared with PyTorch; max |diff| >= 1e-3 fails the action.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taoskills.engine.common import pick_device
from taoskills.engine.contract import ActionContext
from taoskills.engine.nvdinov2 import model as M
from taoskills.engine.nvdinov2.common import load_student
from taoskills.engine.nvdinov2.spec import check
from taoskills.errors import SpecError, TaoSkillsError

log = logging.getLogger("taoskills.engine.nvdinov2")
TOLERANCE = 1e-3
SDPA_MIN_OPSET = 14  # ONNX export of scaled_dot_product_attention (TorchScript exporter)
DYNAMO_MIN_OPSET = 17  # lowest opset the dynamo exporter's down-conversion reached for these graphs


class ExportWrapper(torch.nn.Module):
    """pixel_values -> (embedding [B, D], patch_tokens [B, N, D])."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.n_pre = M.num_prefix_tokens(backbone)

    def forward(self, x: torch.Tensor):
        out = self.backbone(pixel_values=x)
        return out.pooler_output, out.last_hidden_state[:, self.n_pre :]


def _export(wrapper, x, path: Path, *, dynamo: bool, opset: int, dynamic: bool, verbose: bool, big: bool) -> None:
    names = dict(input_names=["input"], output_names=["embedding", "patch_tokens"])
    if dynamo:
        kw: dict[str, Any] = dict(dynamo=True, external_data=big, optimize=True)
        if dynamic:
            kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
    else:
        kw = dict(dynamo=False)
        if dynamic:
            kw["dynamic_axes"] = {"input": {0: "batch"}, "embedding": {0: "batch"}, "patch_tokens": {0: "batch"}}
    torch.onnx.export(wrapper, (x,), str(path), opset_version=opset, verbose=verbose, **names, **kw)


def run(ctx: ActionContext) -> dict[str, float]:
    """Export ``export.checkpoint`` to ``export.onnx_file``; KPI ``onnx_max_abs_diff``."""
    import onnx
    import onnxruntime as ort

    cfg = ctx.cfg
    check(cfg, "export")
    ex, bb = cfg["export"], cfg["model"]["backbone"]
    opset = int(ex["opset_version"])
    registers = bb["num_register_tokens"] > 0
    if registers and opset < DYNAMO_MIN_OPSET:
        raise SpecError(
            f"export.opset_version={opset} cannot be honoured for a backbone with register tokens: "
            "Dinov2WithRegisters exports only through the dynamo exporter, which emits opset 18 and converts "
            f"down to {DYNAMO_MIN_OPSET} at the lowest.",
            field="export.opset_version",
            fix=f"set export.opset_version to {DYNAMO_MIN_OPSET} or higher.",
        )
    use_sdpa = cfg["train"]["use_custom_attention"] and opset >= SDPA_MIN_OPSET
    if cfg["train"]["use_custom_attention"] and not use_sdpa:
        log.info(
            "export.opset_version=%d < %d: tracing attention with the eager kernel (same function as SDPA).",
            opset,
            SDPA_MIN_OPSET,
        )
    device = pick_device(want_gpu=not ex["on_cpu"], gpu_id=ex["gpu_id"], field="export.gpu_id")
    backbone = load_student(cfg, str(ex["checkpoint"]), field="export.checkpoint", attn="sdpa" if use_sdpa else "eager").to(
        device
    )
    wrapper = ExportWrapper(backbone).eval()
    dynamic = ex["batch_size"] == -1
    trace_b = 2 if dynamic else ex["batch_size"]
    h, w = ex["input_height"], ex["input_width"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(trace_b, 3, h, w, generator=gen).to(device)
    path = Path(str(ex["onnx_file"])).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    big = sum(p.numel() for p in backbone.parameters()) * 4 > 1.8e9
    exporter = "dynamo" if registers else "torchscript"
    log.info(
        "exporting with the %s exporter, opset %d, %s batch, input %dx%d",
        exporter,
        opset,
        "dynamic" if dynamic else f"fixed {trace_b}",
        h,
        w,
    )
    try:
        with torch.no_grad():
            _export(wrapper, x, path, dynamo=registers, opset=opset, dynamic=dynamic, verbose=ex["verbose"], big=big)
    except Exception as exc:
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if "opset" in str(exc).lower() or "UnsupportedOperator" in type(exc).__name__:
            raise SpecError(
                f"ONNX export failed at export.opset_version={opset}: {text}",
                field="export.opset_version",
                fix="set export.opset_version=17.",
            ) from exc
        raise
    got = onnx.load(str(path), load_external_data=False)
    file_opset = next((o.version for o in got.opset_import if o.domain in ("", "ai.onnx")), None)
    if file_opset != opset:
        path.unlink(missing_ok=True)
        raise SpecError(
            f"The exporter could not produce opset {opset} (it produced {file_opset}).",
            field="export.opset_version",
            fix=f"set export.opset_version={file_opset}.",
        )
    check_b = 3 if dynamic else trace_b
    xc = torch.randn(check_b, 3, h, w, generator=gen)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"input": xc.numpy()})
    with torch.no_grad():
        ref = [t.float().cpu().numpy() for t in wrapper.to("cpu")(xc)]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(onnx_out, ref))
    shapes = {o.name: list(a.shape) for o, a in zip(sess.get_outputs(), onnx_out)}
    msg = (
        f"Exported {path} (opset {opset}, {exporter} exporter); onnxruntime vs PyTorch on a batch of {check_b}: "
        f"max abs diff {diff:.3g}, outputs {shapes}."
    )
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi={"onnx_max_abs_diff": diff})
    if not diff < TOLERANCE:
        raise TaoSkillsError(
            f"ONNX output differs from PyTorch by {diff:.3g} (tolerance {TOLERANCE}).",
            field="export.onnx_file",
            fix="try export.opset_version=17 or 18 and train.use_custom_attention=false; "
            "report the model settings if it persists.",
        )
    return {"onnx_max_abs_diff": diff}
