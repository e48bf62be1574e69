"""MAE export action: checkpoint -> ONNX, checked against PyTorch in onnxruntime.

ONNX graph: input ``input`` float32 [B, 3, export.input_height, export.input_width] (RGB normalised
with ``dataset.augmentation.mean/std``; B dynamic when ``export.batch_size == -1``). Output
``logits`` [B, model.num_classes] for a finetune checkpoint, or ``features`` [B, D] (the pooled
backbone features the classifier head would read) for a pretrain checkpoint. Exporter: TorchScript
(``dynamo=False``) at ``export.opset_version``, falling back to the dynamo exporter when tracing
fails. After export the file is run in onnxruntime (CPU) on a seeded batch and compared with
PyTorch: max |ONNX - PyTorch| must be below ``TOLERANCE`` (1e-3, absolute) or the action fails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.mae.common import load_model, pick_device
from taoskills.engine.mae.spec import check
from taoskills.errors import SpecError, TaoSkillsError

log = logging.getLogger("taoskills.engine.mae")
TOLERANCE = 1e-3


class _Features(torch.nn.Module):
    def __init__(self, clf: torch.nn.Module) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf.features(x)


def export_onnx(
    net: torch.nn.Module, x: torch.Tensor, path: Path, *, out_name: str, opset: int, dynamic: bool, verbose: bool
) -> str:
    """Write ``net`` traced on ``x`` to ``path``; returns the exporter used (torchscript|dynamo)."""
    names = dict(input_names=["input"], output_names=[out_name])
    try:
        kw: dict[str, Any] = dict(dynamo=False)
        if dynamic:
            kw["dynamic_axes"] = {"input": {0: "batch"}, out_name: {0: "batch"}}
        with torch.no_grad():
            torch.onnx.export(net, (x,), str(path), opset_version=opset, verbose=verbose, **names, **kw)
        return "torchscript"
    except Exception as exc:  # noqa: BLE001 - fall back to the dynamo exporter
        log.info(
            "TorchScript export failed (%s: %s); trying the dynamo exporter.", type(exc).__name__, str(exc).splitlines()[0][:200]
        )
    kw = dict(dynamo=True, optimize=True)
    if dynamic:
        kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(path), opset_version=opset, verbose=verbose, **names, **kw)
    return "dynamo"


def compare(path: Path, net: torch.nn.Module, x: torch.Tensor) -> tuple[float, list[int]]:
    """(max |ONNX - PyTorch|, output shape) of the ONNX file at ``path`` vs ``net`` on ``x`` (CPU)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = net.to("cpu")(x).float().numpy()
    return float(np.abs(got - ref).max()), list(got.shape)


def run(ctx: ActionContext) -> dict[str, float]:
    """Export ``export.checkpoint`` to ``export.onnx_file``; KPI ``onnx_max_abs_diff``."""
    import onnx

    cfg = ctx.cfg
    check(cfg, "export")
    ex = cfg["export"]
    device = pick_device(want_gpu=not ex["on_cpu"], gpu_id=ex["gpu_id"], field="export.gpu_id")
    loaded = load_model(cfg, str(ex["checkpoint"]), field_name="export.checkpoint", want="any")
    finetune = loaded.stage == "finetune"
    net = (loaded.model if finetune else _Features(loaded.model)).eval().to(device)
    out_name = "logits" if finetune else "features"
    dynamic = ex["batch_size"] == -1
    trace_b = 2 if dynamic else ex["batch_size"]
    h, w = ex["input_height"], ex["input_width"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(trace_b, 3, h, w, generator=gen)
    path = Path(str(ex["onnx_file"])).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    opset = int(ex["opset_version"])
    exporter = export_onnx(net, x.to(device), path, out_name=out_name, opset=opset, dynamic=dynamic, verbose=ex["verbose"])
    file_opset = next(
        (o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")), None
    )
    if file_opset != opset:
        path.unlink(missing_ok=True)
        raise SpecError(
            f"The exporter could not produce opset {opset} (it produced {file_opset}).",
            field="export.opset_version",
            fix=f"set export.opset_version={file_opset}.",
        )
    check_b = 3 if dynamic else trace_b
    diff, shape = compare(path, net, torch.randn(check_b, 3, h, w, generator=gen))
    msg = (
        f"Exported {path} ({out_name} of a {loaded.stage} checkpoint, opset {opset}, {exporter} exporter); "
        f"onnxruntime vs PyTorch on a batch of {check_b}: max abs diff {diff:.3g}, output {shape}."
    )
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi={"onnx_max_abs_diff": diff})
    if not diff < TOLERANCE:
        raise TaoSkillsError(
            f"ONNX output differs from PyTorch by {diff:.3g} (tolerance {TOLERANCE}).",
            field="export.onnx_file",
            fix="try export.opset_version=17; report the model settings if it persists.",
        )
    return {"onnx_max_abs_diff": diff}
