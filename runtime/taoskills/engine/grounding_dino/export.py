"""Grounding DINO export action: checkpoint -> ONNX (image + token inputs), checked in onnxruntime.

ONNX graph (opset ``export.opset_version``, >= 17):

| | name | shape | dtype |
|---|---|---|---|
| input | ``inputs`` | [B, 3, export.input_height, export.input_width], normalised RGB | float32 |
| input | ``input_ids`` | [B, model.max_text_len] BERT ids of ``"a . b . c ."`` padded with 0 | int64 |
| input | ``attention_mask`` | [B, model.max_text_len] 1 = token, 0 = padding | int64 |
| input | ``token_type_ids`` | [B, model.max_text_len] zeros | int64 |
| output | ``pred_logits`` | [B, num_queries, max_text_len] token logits (-inf on padding) | float32 |
| output | ``pred_boxes`` | [B, num_queries, 4] normalised cx, cy, w, h | float32 |

B is dynamic when ``export.batch_size == -1``. Exporter: TorchScript at exactly the requested
opset. transformers' phrase-mask helper uses ``isin`` and ``cummax``, which have no ONNX export;
it is swapped for an equivalent broadcast version while exporting (:func:`phrase_masks`, tested
equal), and the encoder's reference points are cast back to float32 (TorchScript's ``linspace``
gives double, which onnxruntime's GridSample rejects). After export the file runs in onnxruntime on a
seeded batch with a real caption: max |ONNX - PyTorch| over finite logits and boxes must be
< ``TOLERANCE`` (1e-3), reported as KPI ``onnx_max_abs_diff``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from taoskills.engine.contract import ActionContext
from taoskills.engine.grounding_dino import common as C
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino.spec import check
from taoskills.errors import SpecError, TaoSkillsError

log = logging.getLogger("taoskills.engine.grounding_dino")
TOLERANCE = 1e-3
INPUTS = ["inputs", "input_ids", "attention_mask", "token_type_ids"]
OUTPUTS = ["pred_logits", "pred_boxes"]


def phrase_masks(input_ids: torch.Tensor, special_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Export-friendly twin of transformers' ``generate_masks_with_special_tokens_and_transfer_map``:
    the same (block attention mask [B, N, N], position ids [B, N]) from comparisons and min/max
    over a broadcast [B, N, N] grid instead of ``isin``/``cummax``/``cummin``."""
    b, n = input_ids.shape
    special = (input_ids.unsqueeze(-1) == special_tokens.view(1, 1, -1)).any(-1)  # [B, N]
    idx = torch.arange(n, device=input_ids.device)
    i, j = idx.view(1, n, 1), idx.view(1, 1, n)
    sp = special.unsqueeze(1)  # [B, 1, N] special at j
    big = torch.full((), n, device=input_ids.device, dtype=idx.dtype)
    neg = torch.full((), -1, device=input_ids.device, dtype=idx.dtype)
    next_special = torch.where(sp & (j >= i), j.expand(b, n, n), big).amin(-1)  # first special at or after i
    prev_special = torch.where(sp & (j < i), j.expand(b, n, n), neg).amax(-1)  # last special before i
    valid = (next_special != 0) & (next_special != n - 1) & (next_special != n)
    mask = (next_special.unsqueeze(2) == next_special.unsqueeze(1)) & valid.unsqueeze(1)
    mask = mask | (i == j)
    pos = torch.where(valid, idx.view(1, n) - prev_special - 1, torch.zeros_like(prev_special)).clamp(min=0).long()
    return mask, pos


@contextlib.contextmanager
def export_patches():
    """While exporting: swap the phrase-mask helper for :func:`phrase_masks`, cast the encoder's
    reference points to the model dtype, turn transformers' runtime checks off
    (``TRANSFORMERS_DISABLE_TORCH_CHECK=1``)."""
    from transformers.models.grounding_dino import modeling_grounding_dino as G

    old_fn, old_env = G.generate_masks_with_special_tokens_and_transfer_map, os.environ.get("TRANSFORMERS_DISABLE_TORCH_CHECK")
    old_ref = G.GroundingDinoEncoder.__dict__["get_reference_points"]
    ref_fn = old_ref.__func__

    def get_reference_points(spatial_shapes_list, valid_ratios, device):
        # TorchScript's linspace symbolic yields double; keep the model dtype for GridSample
        return ref_fn(spatial_shapes_list, valid_ratios, device).to(valid_ratios.dtype)

    G.generate_masks_with_special_tokens_and_transfer_map = phrase_masks
    G.GroundingDinoEncoder.get_reference_points = staticmethod(get_reference_points)
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"
    try:
        yield
    finally:
        G.generate_masks_with_special_tokens_and_transfer_map = old_fn
        G.GroundingDinoEncoder.get_reference_points = old_ref
        if old_env is None:
            os.environ.pop("TRANSFORMERS_DISABLE_TORCH_CHECK", None)
        else:
            os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = old_env


class ExportWrapper(torch.nn.Module):
    """(inputs, input_ids, attention_mask, token_type_ids) -> (pred_logits, pred_boxes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, input_ids, attention_mask, token_type_ids):
        out = self.model(pixel_values=inputs, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.logits, out.pred_boxes


def sample_inputs(cfg: dict, tok, b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded image batch and a caption of the label map / demo words padded to max_text_len."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, w, generator=gen)
    enc = tok(
        [D.caption_of(["object", "thing"])] * b,
        padding="max_length",
        max_length=cfg["model"]["max_text_len"],
        return_tensors="pt",
    )
    return x, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| over entries finite in both; entries infinite in one and not the other count as inf."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if (fa != fb).any() or (~fa & (a != b)).any():
        return float("inf")
    return float(np.abs(a[fa] - b[fb]).max()) if fa.any() else 0.0


def export_onnx(wrapper: torch.nn.Module, args: tuple, path: Path, *, opset: int, dynamic: bool, verbose: bool) -> None:
    """TorchScript ONNX export at exactly ``opset`` (the dynamo exporter emits opset 18 only)."""
    kw: dict = {}
    if dynamic:
        kw["dynamic_axes"] = {n: {0: "batch"} for n in INPUTS + OUTPUTS}
    with export_patches(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=INPUTS,
            output_names=OUTPUTS,
            verbose=verbose,
            **kw,
        )


def run(ctx: ActionContext) -> dict[str, float]:
    """Export ``export.checkpoint`` to ``export.onnx_file``; KPI ``onnx_max_abs_diff``."""
    import onnxruntime as ort

    cfg = ctx.cfg
    check(cfg, "export")
    ex = cfg["export"]
    device = torch.device("cpu") if ex["on_cpu"] else C.pick_device(ex["gpu_id"])
    tok, model = C.load_for_action(cfg, str(ex["checkpoint"]), "export.checkpoint")
    wrapper = ExportWrapper(model.to(device)).eval()
    dynamic = ex["batch_size"] == -1
    b = 2 if dynamic else ex["batch_size"]
    h, w = ex["input_height"], ex["input_width"]
    args = tuple(t.to(device) for t in sample_inputs(cfg, tok, b, h, w, 0))
    path = Path(str(ex["onnx_file"])).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    opset = int(ex["opset_version"])
    export_onnx(wrapper, args, path, opset=opset, dynamic=dynamic, verbose=ex["verbose"])
    import onnx

    file_opset = next(
        (o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")), None
    )
    if file_opset != opset:
        raise SpecError(
            f"The exporter could not produce opset {opset} (it produced {file_opset}).",
            field="export.opset_version",
            fix=f"set export.opset_version={file_opset}.",
        )
    check_b = 3 if dynamic else b
    xs = sample_inputs(cfg, tok, check_b, h, w, 1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(INPUTS, xs)})
    with torch.no_grad():
        ref = [t.float().cpu().numpy() for t in wrapper.to("cpu")(*xs)]
    diff = max(max_diff(a, r) for a, r in zip(got, ref))
    msg = (
        f"Exported {path} (opset {ex['opset_version']}, inputs {INPUTS}, {'dynamic' if dynamic else 'fixed'} batch, "
        f"{w}x{h}); onnxruntime vs PyTorch on a batch of {check_b}: max abs diff {diff:.3g} (tolerance {TOLERANCE})."
    )
    log.info(msg)
    ctx.status.write("RUNNING", msg, kpi={"onnx_max_abs_diff": diff})
    if not diff < TOLERANCE:
        raise TaoSkillsError(
            f"ONNX output differs from PyTorch by {diff:.3g} (tolerance {TOLERANCE}).",
            field="export.onnx_file",
            fix="try export.opset_version=17 or 18; report the model settings if it persists.",
        )
    return {"onnx_max_abs_diff": diff}
