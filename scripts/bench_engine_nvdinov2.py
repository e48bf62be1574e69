"""NVDINOv2 entry for ``scripts/bench_engine.py``: timed training steps of the engine's own module.

Each step is what the engine's train loop runs per batch (``NVDINOv2Module.training_step``:
teacher forward, student forward on global and local crops, DINO + iBOT + KoLeo losses; then
backward, gradient clipping, AdamW, the teacher EMA update) on a real multi-crop batch of the
sample photos (:mod:`taoskills.data.sample_data`). The baseline in the same run is the
teacher's inference forward pass on the global crops. Peak memory: resident set (CPU,
``resource.getrusage``) or ``torch.cuda.max_memory_allocated`` (GPU).

Profiles (all the skill's smoke profile: vit_s, 1024 prototypes, batch 8): ``smoke`` — CPU
test crops (56 px global / 2 x 28 px local, as the short-run tests train), the reference
config of ``taoskills/engine/throughput.yaml``; ``demo`` — the demo's crops (112 / 4 x 56);
``default`` — TAO's crops (224 / 8 x 98). ``save_s_per_gb``: one ``torch.save`` of the
student and teacher state to a temporary file, per GB written.
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"global_crops_size": 56, "n_local_crops": 2, "local_crops_size": 28, "batch": 8},
    "demo": {"global_crops_size": 112, "n_local_crops": 4, "local_crops_size": 56, "batch": 8},
    "default": {"global_crops_size": 224, "n_local_crops": 8, "local_crops_size": 98, "batch": 8},
}


def nvdinov2_cfg(profile: str) -> tuple[dict[str, Any], int]:
    """(cfg, batch size): the engine's defaults with the skill's smoke overrides and the profile's crops."""
    from taoskills.engine.nvdinov2 import spec as S

    if profile not in PROFILES:
        raise SystemExit(f"unknown NVDINOv2 profile {profile!r}; use {' or '.join(PROFILES)}")
    p = PROFILES[profile]
    cfg = copy.deepcopy(S.DEFAULTS)
    bb = cfg["model"]["backbone"]
    bb.update(student_type="vit_s", teacher_type="vit_s", img_size=224, drop_path_rate=0.1)
    cfg["train"].update(num_prototypes=1024, use_custom_attention=False)
    cfg["dataset"]["transform"].update({k: v for k, v in p.items() if k != "batch"})
    return cfg, p["batch"]


def bench_nvdinov2(args: argparse.Namespace) -> dict[str, Any]:
    """Time NVDINOv2 training steps and teacher inference passes on one real multi-crop batch."""
    from taoskills.data.sample_data import write_sample_images
    from taoskills.engine.nvdinov2 import data as D
    from taoskills.engine.nvdinov2 import model as M
    from taoskills.engine.nvdinov2.train import NVDINOv2Module

    cfg, batch = nvdinov2_cfg(args.profile)
    batch = args.batch or batch
    dev = torch.device(args.device or "cpu")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_sample_images(Path(tmp), n=batch)
        ds = D.MultiCropDataset(files, cfg["dataset"]["transform"])
        items = [ds[i] for i in range(batch)]
    collate = D.Collate(cfg["model"]["backbone"]["patch_size"], cfg["dataset"]["transform"]["global_crops_size"])
    b = collate(items)
    b = {k: (v.to(dev) if v is not None else None) for k, v in b.items()}
    module = NVDINOv2Module(cfg).to(dev)
    module.train()
    module.teacher.eval()
    groups = M.param_groups(module.student["backbone"], module.student["head"], cfg["train"]["layerwise_decay"])
    for g in groups:
        g["lr"] = 1e-4
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999))
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = module.training_step(b, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.student.parameters(), 3.0)
        opt.step()
        module.on_train_batch_end(None, b, 0)

    @torch.no_grad()
    def infer_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            module.teacher["backbone"](pixel_values=b["global"][:batch])

    def timed(fn, n: int) -> list[float]:
        for _ in range(args.warmup):
            fn()
        sync()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
        return out

    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        warnings.filterwarnings("ignore", message=".*trainer.*")
        tr = timed(train_step, args.steps)
    inf = timed(infer_step, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        t = time.perf_counter()
        torch.save(state, Path(tmp) / "state.pth")
        save_s = time.perf_counter() - t
        save_gb = (Path(tmp) / "state.pth").stat().st_size / 1e9
    med_tr, med_inf = statistics.median(tr), statistics.median(inf)
    tf = cfg["dataset"]["transform"]
    result: dict[str, Any] = {
        "network": "nvdinov2",
        "profile": args.profile,
        "device": str(dev)
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({platform.processor() or platform.machine()})"),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "arch": cfg["model"]["backbone"]["student_type"],
        "global_crops_size": tf["global_crops_size"],
        "n_local_crops": tf["n_local_crops"],
        "local_crops_size": tf["local_crops_size"],
        "batch_size": batch,
        "params_M": round(sum(p.numel() for p in module.student.parameters()) / 1e6, 3),
        "train_step_s_median": round(med_tr, 4),
        "train_step_s_p90": round(sorted(tr)[int(0.9 * (len(tr) - 1))], 4),
        "train_images_per_s": round(batch / med_tr, 2),
        "infer_step_s_median": round(med_inf, 4),
        "infer_images_per_s": round(batch / med_inf, 2),
        "train_over_infer": round(med_tr / med_inf, 2),
        "save_s_per_gb": round(save_s / save_gb, 3),
    }
    if dev.type == "cuda":
        result["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
    else:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
        result["peak_rss_GiB"] = round(kib / 2**20, 3)
    return result


if __name__ == "__main__":  # pragma: no cover - run through scripts/bench_engine.py
    sys.exit("run: python scripts/bench_engine.py nvdinov2 [--profile smoke]")
