"""Helpers shared by the Grounding DINO actions: device choice, tokenizer + model from a
checkpoint, batched prediction with one caption."""

from __future__ import annotations

import logging
from typing import Any

import torch

from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.errors import PreflightError

log = logging.getLogger("taoskills.engine.grounding_dino")


def pick_device(gpu_id: int = 0) -> torch.device:
    """cuda:<gpu_id> when CUDA is present, else the CPU (logged)."""
    if not torch.cuda.is_available():
        log.warning("No CUDA GPU found: running on the CPU.")
        return torch.device("cpu")
    if gpu_id >= torch.cuda.device_count():
        raise PreflightError(
            f"GPU {gpu_id} does not exist (this host has {torch.cuda.device_count()}).",
            field="gpu_ids",
            fix="use a GPU id from 0 to device_count-1.",
        )
    return torch.device(f"cuda:{gpu_id}")


def load_for_action(cfg: dict[str, Any], path: str, field: str) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, eval-mode model with the weights of ``path``)."""
    tok = T.load_tokenizer(cfg["model"]["text_encoder_type"])
    model = M.build_model(cfg, load_text_weights=False)
    M.load_weights(model, path, field=field)
    return tok, model.eval()


@torch.no_grad()
def predict(
    model: torch.nn.Module, batch: dict[str, Any], num_select: int, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Detections (``model.post_process``) of an :class:`~.data.EvalCollate` batch, on the CPU."""
    keys = ("pixel_values", "pixel_mask", "input_ids", "attention_mask", "token_type_ids")
    out = model(**{k: batch[k].to(device) for k in keys})
    maps = M.phrase_maps(batch["input_ids"], out.logits.shape[-1])
    return M.post_process(out.logits.float().cpu(), out.pred_boxes.float().cpu(), maps, batch["sizes"], num_select)


def coco_dets(preds: list[dict[str, torch.Tensor]], keys: list[Any], cat_ids: list[int]) -> list[dict[str, Any]]:
    """COCO result rows (``bbox`` x, y, w, h) from :func:`predict` output; phrase i -> ``cat_ids[i]``."""
    rows = []
    for p, key in zip(preds, keys):
        for s, lab, b in zip(p["scores"].tolist(), p["labels"].tolist(), p["boxes"].tolist()):
            rows.append(
                {"image_id": key, "category_id": cat_ids[lab], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            )
    return rows


def eval_loader(
    cfg: dict[str, Any], tok: Any, items: list, caption: str, batch_size: int, size=None
) -> torch.utils.data.DataLoader:
    """DataLoader over ``items`` [(path, key)] with one ``caption`` for every image."""
    import os

    return torch.utils.data.DataLoader(
        D.EvalSet(items, cfg, size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(cfg["dataset"]["workers"], os.cpu_count() or 1),
        collate_fn=D.EvalCollate(tok, cfg, caption),
    )
