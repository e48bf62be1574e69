"""NVDINOv2 networks and losses (torch + transformers).

* Backbone: HF ``Dinov2Model`` (``num_register_tokens == 0``) or ``Dinov2WithRegistersModel``,
  random init from ``model.backbone`` (sizes from TAO Core nvdinov2 ``map_params``: vit_s 384/12/6,
  vit_b 768/12/12, vit_l 1024/24/16, layerscale 1e-5, MLP ratio 4). ``train.use_custom_attention``
  picks the attention kernel: true -> PyTorch SDPA (TAO uses xformers memory-efficient attention),
  false -> eager; both compute the same function and share weights.
* Head: DINOv2 ``DINOHead`` — MLP (``num_layers``, GELU, ``hidden_dim``) to ``bottleneck_dim``,
  L2-normalise, weight-normalised linear layer to ``train.num_prototypes`` (no bias).
* Losses (Oquab et al. 2023, DINOv2): DINO cross-entropy between student CLS logits
  (temperature 0.1) and Sinkhorn-Knopp-centred teacher CLS targets over every (student crop,
  other teacher global crop) pair; iBOT cross-entropy on masked patch tokens; KoLeo on the
  student's global CLS embeddings (weight 0.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from taoskills.engine.nvdinov2.spec import BACKBONES, LAYERSCALE_INIT
from taoskills.errors import SpecError

STUDENT_TEMP = 0.1
KOLEO_WEIGHT = 0.1
SINKHORN_ITERS = 3


def build_backbone(cfg: dict[str, Any], *, drop_path: float | None = None, attn: str | None = None) -> nn.Module:
    """HF DINOv2 backbone for ``cfg['model']['backbone']`` (student type), random init.

    ``drop_path`` overrides ``drop_path_rate`` (the teacher uses 0); ``attn`` overrides the
    attention implementation ("sdpa" | "eager"; default from ``train.use_custom_attention``).
    """
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    bb = cfg["model"]["backbone"]
    arch = BACKBONES[bb["student_type"]]
    attn = attn or ("sdpa" if cfg["train"]["use_custom_attention"] else "eager")
    kw = dict(
        hidden_size=arch["embed_dim"],
        num_hidden_layers=arch["depth"],
        num_attention_heads=arch["num_heads"],
        mlp_ratio=4,
        patch_size=bb["patch_size"],
        image_size=bb["img_size"],
        layerscale_value=LAYERSCALE_INIT,
        drop_path_rate=bb["drop_path_rate"] if drop_path is None else drop_path,
        use_swiglu_ffn=False,
    )
    if bb["num_register_tokens"] > 0:
        conf = Dinov2WithRegistersConfig(num_register_tokens=bb["num_register_tokens"], **kw)
        return Dinov2WithRegistersModel._from_config(conf, attn_implementation=attn)
    return Dinov2Model._from_config(Dinov2Config(**kw), attn_implementation=attn)


def num_prefix_tokens(backbone: nn.Module) -> int:
    """CLS + register tokens in front of the patch tokens."""
    return 1 + int(getattr(backbone.config, "num_register_tokens", 0) or 0)


class DINOHead(nn.Module):
    """MLP -> L2 norm -> weight-normalised prototypes. Input [N, D] -> logits [N, K]."""

    def __init__(self, in_dim: int, out_dim: int, num_layers: int = 3, hidden_dim: int = 2048, bottleneck_dim: int = 384) -> None:
        super().__init__()
        if num_layers == 1:
            layers: list[nn.Module] = [nn.Linear(in_dim, bottleneck_dim)]
        else:
            layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(num_layers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        nn.init.trunc_normal_(last.weight, std=0.02)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2, eps=1e-6)
        return self.last_layer(x)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, n_iter: int = SINKHORN_ITERS) -> torch.Tensor:
    """Teacher targets [N, K] from logits [N, K]: equipartition over prototypes (DINOv2 / SwAV).

    Rows sum to 1. Across ranks the sums are all-reduced, so N counts every rank's samples.
    """
    logits = logits.float()
    q = torch.exp((logits - logits.max()) / temp).t()  # K x N; the max shift cancels out
    n = torch.tensor(float(q.shape[1]), device=q.device)
    _all_reduce(n)
    k = q.shape[0]
    q /= _all_reduce(q.sum())
    for _ in range(n_iter):
        rows = _all_reduce(q.sum(dim=1, keepdim=True))
        q /= rows.clamp_min(1e-30)
        q /= k
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)
        q /= n
    q *= n
    return q.t()


def dino_loss(student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor], n_global: int) -> torch.Tensor:
    """Mean cross-entropy over (student crop s, teacher global crop t) pairs with s != t.

    ``student_logits``: one [B, K] tensor per crop, global crops first; ``teacher_probs``: one
    [B, K] per global crop.
    """
    total, pairs = 0.0, 0
    for si, s in enumerate(student_logits):
        lsm = F.log_softmax(s.float() / STUDENT_TEMP, dim=-1)
        for ti, t in enumerate(teacher_probs):
            if si < n_global and si == ti:
                continue
            total = total - (t * lsm).sum(dim=-1).mean()
            pairs += 1
    return total / max(pairs, 1)


def ibot_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """iBOT loss on masked patches. Logits/probs [M, K] for the M masked tokens, masks [N, T] bool.

    Each image's tokens are weighted 1/(its masked count); the sum is divided by N (DINOv2).
    """
    lsm = F.log_softmax(student_logits.float() / STUDENT_TEMP, dim=-1)
    per_token = (teacher_probs * lsm).sum(dim=-1)
    weight = (1.0 / masks.sum(-1).clamp(min=1)).unsqueeze(-1).expand_as(masks)[masks]
    return -(per_token * weight).sum() / masks.shape[0]


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimator on L2-normalised rows of x [B, D] (B >= 2)."""
    x = F.normalize(x.float(), dim=-1, p=2, eps=eps)
    dots = x @ x.t()
    dots.fill_diagonal_(-1.0)
    nn_idx = dots.argmax(dim=1)
    dist = F.pairwise_distance(x, x[nn_idx], p=2, eps=eps)
    return -torch.log(dist + eps).mean()


def cosine_schedule(step: int, s: dict[str, Any], *, freeze_steps: int = 0) -> float:
    """Value of a TAO NVDINOv2 scheduler block at optimiser step ``step``.

    0 while ``step < freeze_steps``; linear from ``val_start`` to ``val_base`` over
    ``warm_up_steps``; cosine from ``val_base`` to ``val_final`` until ``max_decay_steps``;
    ``val_final`` afterwards (DINOv2 ``CosineScheduler``; keys from TAO Core nvdinov2
    ``NVDINOv2BaseSchedulerConfig``). Steps are counted from the start of training.
    """
    if step < freeze_steps:
        return 0.0
    warm, total = int(s["warm_up_steps"]), int(s["max_decay_steps"])
    if step < warm:
        return s["val_start"] + (s["val_base"] - s["val_start"]) * step / warm
    if step >= total or total <= warm:
        return float(s["val_final"])
    progress = (step - warm) / (total - warm)
    return s["val_final"] + 0.5 * (s["val_base"] - s["val_final"]) * (1 + math.cos(math.pi * progress))


def param_groups(backbone: nn.Module, head: nn.Module, layerwise_decay: float) -> list[dict[str, Any]]:
    """AdamW groups with DINOv2's multipliers.

    lr multiplier = ``layerwise_decay ** (depth + 1 - layer_id)`` (embeddings 0, block i -> i+1,
    final norm and head depth+1); weight decay 0 for biases, norms, layer-scale, tokens and
    position embeddings; the head's prototype layer is flagged ``is_last_layer``.
    """
    depth = backbone.config.num_hidden_layers
    groups: dict[tuple, dict[str, Any]] = {}

    def add(name: str, p: nn.Parameter, layer_id: int, last: bool) -> None:
        if not p.requires_grad:
            return
        no_wd = p.ndim < 2 or "token" in name or "position_embeddings" in name or "original0" in name
        key = (layer_id, no_wd, last)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr_multiplier": layerwise_decay ** (depth + 1 - layer_id),
                "wd_multiplier": 0.0 if no_wd else 1.0,
                "is_last_layer": last,
            }
        groups[key]["params"].append(p)

    for name, p in backbone.named_parameters():
        if name.startswith("embeddings."):
            lid = 0
        elif name.startswith("encoder.layer."):
            lid = int(name.split(".")[2]) + 1
        else:
            lid = depth + 1
        add(name, p, lid, False)
    for name, p in head.named_parameters():
        add(name, p, depth + 1, name.startswith("last_layer"))
    return list(groups.values())


def describe_weights(sd: dict[str, torch.Tensor]) -> str:
    """Human summary of a backbone state dict: embed dim, blocks, patch, img_size, registers."""
    try:
        dim = sd["embeddings.cls_token"].shape[-1]
        depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
        patch = sd["embeddings.patch_embeddings.projection.weight"].shape[-1]
        grid = sd["embeddings.position_embeddings"].shape[1] - 1
        regs = sd["embeddings.register_tokens"].shape[1] if "embeddings.register_tokens" in sd else 0
    except (KeyError, ValueError, IndexError):
        return "not a DINOv2 backbone state dict"
    names = [n for n, a in BACKBONES.items() if a["embed_dim"] == dim and a["depth"] == depth]
    return (
        f"{names[0] if names else 'unknown ViT'} (embed_dim {dim}, {depth} blocks), patch_size {patch}, "
        f"img_size {int(round(math.sqrt(grid))) * patch}, num_register_tokens {regs}"
    )


LIGHTNING_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "pytorch-lightning_version", "loops")


def load_checkpoint_file(path: str, *, field: str) -> dict[str, Any]:
    """``torch.load`` (weights only) of ``path``; missing or unreadable files raise SpecError."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(
            f"{field}={path} does not exist.",
            field=field,
            fix="pass an existing checkpoint file (see the train job's results_dir/train).",
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpecError(
            f"{field}={path} cannot be loaded as a weights file ({type(exc).__name__}: {str(exc)[:200]}).",
            field=field,
            fix="pass a student_epoch_*.pth file written by NVDINOv2 train.",
        ) from exc


def backbone_weights(path: str, *, field: str) -> dict[str, torch.Tensor]:
    """Backbone state dict from a ``student_epoch_*``/``teacher_epoch_*`` file.

    A full Lightning training checkpoint (``model_epoch_*``, ``nvdinov2_model_latest.pth``) raises
    the error TAO users know: unexpected keys such as state_dict, optimizer state and scheduler state.
    """
    obj = load_checkpoint_file(path, field=field)
    if isinstance(obj, dict) and any(k in obj for k in LIGHTNING_KEYS):
        found = ", ".join(k for k in LIGHTNING_KEYS if k in obj)
        raise SpecError(
            f"{field}={path} is a full Lightning training checkpoint: the loader found unexpected keys such as "
            f"state_dict, optimizer state and scheduler state ({found}). Inference and export take the "
            "student_epoch_*.pth weights file, not model_epoch_*.pth or nvdinov2_model_latest.pth.",
            field=field,
            fix="pass the student_epoch_*.pth file next to it; keep model_epoch_*.pth for train.resume_training_checkpoint_path.",
        )
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(
            f"{field}={path} is not a state dict of tensors.",
            field=field,
            fix="pass a student_epoch_*.pth file written by NVDINOv2 train.",
        )
    for prefix in ("student.backbone.", "teacher.backbone.", "backbone."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def load_backbone_weights(backbone: nn.Module, sd: dict[str, torch.Tensor], *, field: str) -> None:
    """Strict load; a mismatch raises SpecError saying what the file holds vs what the spec built."""
    own = backbone.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or shapes:
        detail = "; ".join(
            x
            for x in (
                f"missing keys e.g. {missing[:3]}" if missing else "",
                f"unexpected keys e.g. {unexpected[:3]}" if unexpected else "",
                f"shape mismatch e.g. {shapes[:3]}" if shapes else "",
            )
            if x
        )
        raise SpecError(
            f"{field} does not match the model built from the spec ({detail}). The file holds "
            f"{describe_weights(sd)}; the spec builds {describe_weights(own)}.",
            field=field,
            fix="set model.backbone.student_type/teacher_type, patch_size, img_size and num_register_tokens "
            "to the values used for train.",
        )
    backbone.load_state_dict(sd, strict=True)
