"""NVDINOv2 inference action: one embedding per image.

Writes in ``<results_dir>/inference`` (format in ``taoskills/engine/README.md``):
``embeddings.npy`` float32 [N, D] (CLS token after the final LayerNorm), ``embeddings_index.json``
(``[{"row", "image", "path"}]``), and every ``inference.vis_after_n_batches``-th batch a PCA
visualisation of the patch features under ``visualizations/``. The SUCCESS line's KPI
``mean_pairwise_cosine`` (distinct pairs, in [-1, 1]) is checked: above 0.99 a WARNING line and a
log warning say the embeddings collapsed (every image nearly the same vector).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from taoskills.engine.common import check_readable, list_images, pick_device
from taoskills.engine.contract import ActionContext
from taoskills.engine.nvdinov2 import data as D
from taoskills.engine.nvdinov2 import model as M
from taoskills.engine.nvdinov2.common import load_student
from taoskills.engine.nvdinov2.spec import check

log = logging.getLogger("taoskills.engine.nvdinov2")


class _EvalSet(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return D.eval_transform(D.load_rgb(self.files[i]), self.size)


def pca_image(patch: torch.Tensor, grid: tuple[int, int], view: torch.Tensor, scale: int):
    """PIL image: the input view next to the first 3 PCA components of its patch features as RGB."""
    from PIL import Image

    x = patch.float() - patch.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    comp = x @ v[:3].t()
    comp = (comp - comp.min(0).values) / (comp.max(0).values - comp.min(0).values).clamp_min(1e-6)
    pca = (comp.reshape(grid[0], grid[1], 3).numpy() * 255).astype(np.uint8)
    pca = Image.fromarray(pca).resize((grid[1] * scale, grid[0] * scale), Image.NEAREST)
    mean = torch.tensor(D.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(D.IMAGENET_STD).view(3, 1, 1)
    rgb = ((view * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    rgb = Image.fromarray(rgb).resize(pca.size, Image.BICUBIC)
    canvas = Image.new("RGB", (pca.width * 2, pca.height))
    canvas.paste(rgb, (0, 0))
    canvas.paste(pca, (pca.width, 0))
    return canvas


def run(ctx: ActionContext) -> dict[str, float] | None:
    """Embed every image of ``dataset.test_dataset.images_dir`` with the student backbone."""
    cfg = ctx.cfg
    check(cfg, "inference")
    inf, bb = cfg["inference"], cfg["model"]["backbone"]
    images_dir = Path(str(cfg["dataset"]["test_dataset"]["images_dir"])).expanduser()
    files = list_images(images_dir, field="dataset.test_dataset.images_dir")
    check_readable(files, field="dataset.test_dataset.images_dir")
    device = pick_device(want_gpu=True, gpu_id=(inf["gpu_ids"] or [0])[0], num_gpus=inf["num_gpus"], field="inference.num_gpus")
    backbone = load_student(cfg, str(inf["checkpoint"]), field="inference.checkpoint").to(device)
    bs = inf["batch_size"] if inf["batch_size"] > 0 else cfg["dataset"]["batch_size"]
    size, patch = bb["img_size"], bb["patch_size"]
    loader = torch.utils.data.DataLoader(
        _EvalSet(files, size), batch_size=bs, shuffle=False, num_workers=min(cfg["dataset"]["workers"], os.cpu_count() or 1)
    )
    n_pre = M.num_prefix_tokens(backbone)
    grid = (size // patch, size // patch)
    vis_dir = ctx.results_dir / "visualizations"
    rows: list[np.ndarray] = []
    n_vis = 0
    with torch.no_grad():
        for b, views in enumerate(loader):
            out = backbone(pixel_values=views.to(device))
            rows.append(out.pooler_output.float().cpu().numpy())
            if b % inf["vis_after_n_batches"] == 0:
                vis_dir.mkdir(exist_ok=True)
                tokens = out.last_hidden_state[:, n_pre:].cpu()
                for j in range(views.shape[0]):
                    row = b * bs + j
                    pca_image(tokens[j], grid, views[j], patch).save(vis_dir / f"{row:05d}_{files[row].stem}_pca.png")
                    n_vis += 1
    emb = np.concatenate(rows).astype(np.float32)
    np.save(ctx.results_dir / "embeddings.npy", emb)
    index = [{"row": i, "image": str(f.relative_to(images_dir)), "path": str(f.resolve())} for i, f in enumerate(files)]
    (ctx.results_dir / "embeddings_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    msg = f"Wrote {emb.shape[0]} embeddings of dimension {emb.shape[1]} to embeddings.npy ({n_vis} PCA visualisations)."
    log.info(msg)
    ctx.status.write("RUNNING", msg)
    cos = mean_pairwise_cosine(emb)
    if cos is None:
        return None
    if cos > COLLAPSE_COSINE:
        warn = (
            f"Embeddings collapsed: mean pairwise cosine similarity {cos:.4f} > {COLLAPSE_COSINE} over "
            f"{emb.shape[0]} images (every image gets nearly the same embedding). The checkpoint learnt "
            "little: train longer or with schedules fitted to the run (leave train.schedulers.*.warm_up_steps "
            "unset so the spec builder fits them), and check that train_loss fell."
        )
        log.warning(warn)
        ctx.status.write("RUNNING", warn, verbosity="WARNING", kpi={"mean_pairwise_cosine": cos})
    return {"mean_pairwise_cosine": cos}


#: Mean pairwise cosine similarity above which embeddings count as collapsed.
COLLAPSE_COSINE = 0.99


def mean_pairwise_cosine(emb: np.ndarray) -> float | None:
    """Mean cosine similarity over distinct pairs of rows of ``emb`` [N, D]; None when N < 2."""
    if emb.shape[0] < 2:
        return None
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    n = emb.shape[0]
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))
