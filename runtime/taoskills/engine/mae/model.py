"""MAE networks on Hugging Face ``transformers`` modules (no timm, no torchvision).

Pretraining models (``forward(x, noise=None) -> (loss, pred, mask)``; ``mask`` is 1 where a patch
was hidden):

* ViT — ``ViTMAEForPreTraining`` (He et al. 2022): random patch masking, transformer decoder,
  per-patch MSE on hidden patches (``norm_pix_loss`` normalises each target patch).
* ConvNeXt-V2 — :class:`FCMAE`, written here as TAO's FCMAE does it (public TAO PyTorch
  ``ssl/mae/model/fcmae.py``): *dense* masking — the 32x32 px patch mask is applied once to the
  stem output, the rest of the encoder runs ordinary (not sparse) convolutions — then a 1x1
  projection, mask tokens in the hidden cells, ``model.decoder_depth`` ConvNeXt-V2 blocks of
  ``model.decoder_embed_dim`` channels and a 1x1 conv predicting each patch's pixels.
* Hiera — ``HieraForPreTraining`` (Ryali et al. 2023): mask units of 32x32 px.

Classifiers (:class:`Classifier`: ``backbone`` = the same HF base model as the pretraining encoder,
``fc_norm`` where needed, ``head``) share backbone parameter names with the pretraining encoder,
so :func:`load_pretrained` moves weights with no missing backbone keys.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch
from torch import nn

from taoskills.engine.mae.spec import ARCHS, DECODER_HEADS
from taoskills.errors import SpecError

log = logging.getLogger("taoskills.engine.mae")

#: Attribute prefixes of the pretraining encoders (HF ``base_model_prefix``) and wrapper prefixes
#: (Lightning ``model.``, our HF wrapper ``net.``, our classifier ``backbone.``, TAO ``encoder.``, DDP
#: ``module.``) stripped from checkpoint keys.
STRIP_PREFIXES = ("model.", "module.", "net.", "backbone.", "encoder.", "vit.", "convnextv2.", "hiera.")
#: Pretraining-only parts dropped before loading into a classifier (TAO's finetune loader).
DROP_PREFIXES = ("decoder", "mask_token", "pred", "proj.", "encoder_norm", "multiscale_fusion")
HEAD_INIT_STD = 2e-5  # MAE finetune head init (trunc_normal std 2e-5)


def family(cfg: dict[str, Any]) -> str:
    return ARCHS[cfg["model"]["arch"]]["family"]


# ----------------------------------------------------------------------------- HF configs


def _vit_kwargs(info: dict[str, Any], size: int) -> dict[str, Any]:
    return dict(
        hidden_size=info["hidden"],
        num_hidden_layers=info["depth"],
        num_attention_heads=info["heads"],
        intermediate_size=4 * info["hidden"],
        image_size=size,
        patch_size=info["patch"],
        qkv_bias=True,
        layer_norm_eps=1e-6,
    )


def _convnext_config(info: dict[str, Any], size: int, drop_path: float):
    from transformers import ConvNextV2Config

    return ConvNextV2Config(
        depths=list(info["depths"]), hidden_sizes=list(info["dims"]), drop_path_rate=drop_path, image_size=size, patch_size=4
    )


def _hiera_config(cfg: dict[str, Any], info: dict[str, Any], size: int, drop_path: float):
    from transformers import HieraConfig

    m, tr = cfg["model"], cfg["train"]
    return HieraConfig(
        embed_dim=info["embed"],
        depths=list(info["depths"]),
        num_heads=list(info["heads"]),
        image_size=[size, size],
        drop_path_rate=drop_path,
        mask_ratio=tr["mask_ratio"],
        normalize_pixel_loss=tr["norm_pix_loss"],
        decoder_hidden_size=m["decoder_embed_dim"],
        decoder_depth=m["decoder_depth"],
        decoder_num_heads=DECODER_HEADS,
    )


# ----------------------------------------------------------------------------- pretraining


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, (H/p)(W/p), p*p*3] (row-major patches, pixels (py, px, c))."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """Mean over hidden patches of the per-patch MSE; ``norm_pix`` normalises each target patch
    to zero mean and unit variance first (MAE ``norm_pix_loss``)."""
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def random_mask(batch: int, length: int, ratio: float, noise: torch.Tensor | None, device) -> torch.Tensor:
    """[B, L] float mask with exactly ``round(L*ratio)`` ones (hidden) per row, chosen by ``noise``."""
    if noise is None:
        noise = torch.rand(batch, length, device=device)
    n_keep = max(1, int(length * (1 - ratio)))
    ids = torch.argsort(noise, dim=1)
    mask = torch.ones(batch, length, device=device)
    mask.scatter_(1, ids[:, :n_keep], 0.0)
    return mask


class FCMAE(nn.Module):
    """ConvNeXt-V2 fully-convolutional MAE with dense masking (see the module docstring)."""

    PATCH = 32

    def __init__(self, config, decoder_dim: int, decoder_depth: int, mask_ratio: float, norm_pix: bool) -> None:
        super().__init__()
        from transformers import ConvNextV2Config, ConvNextV2Model
        from transformers.models.convnextv2.modeling_convnextv2 import ConvNextV2Layer

        self.convnextv2 = ConvNextV2Model(config)
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        self.proj = nn.Conv2d(config.hidden_sizes[-1], decoder_dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        dec_cfg = ConvNextV2Config(hidden_act=config.hidden_act)
        self.decoder = nn.Sequential(*[ConvNextV2Layer(dec_cfg, dim=decoder_dim) for _ in range(decoder_depth)])
        self.pred = nn.Conv2d(decoder_dim, self.PATCH**2 * 3, kernel_size=1)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        b, _, h, w = x.shape
        gh, gw = h // self.PATCH, w // self.PATCH
        mask = random_mask(b, gh * gw, self.mask_ratio, noise, x.device)
        stem = self.convnextv2.embeddings(x)
        cells = mask.reshape(b, 1, gh, gw)
        stem = stem * (1.0 - nn.functional.interpolate(cells, size=stem.shape[-2:], mode="nearest"))
        feat = self.convnextv2.encoder(stem).last_hidden_state
        d = self.proj(feat)
        d = d * (1.0 - cells) + self.mask_token.to(d.dtype) * cells
        pred = self.pred(self.decoder(d)).flatten(2).transpose(1, 2)
        loss = masked_mse(pred.float(), patchify(x, self.PATCH).float(), mask, self.norm_pix)
        return loss, pred, mask


class _HFPretrain(nn.Module):
    """ViTMAEForPreTraining / HieraForPreTraining with the common (loss, pred, mask) output."""

    def __init__(self, net: nn.Module, fam: str) -> None:
        super().__init__()
        self.net, self.fam = net, fam

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        out = self.net(pixel_values=x, noise=noise)
        mask = out.mask if self.fam == "vit" else (~out.bool_masked_pos).float()
        return out.loss, out.logits, mask


def build_pretrain(cfg: dict[str, Any]) -> nn.Module:
    """The pretraining model of ``model.arch`` (random init), sized by ``dataset.augmentation.input_size``."""
    info, fam = ARCHS[cfg["model"]["arch"]], family(cfg)
    m, tr = cfg["model"], cfg["train"]
    size = cfg["dataset"]["augmentation"]["input_size"]
    if fam == "vit":
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        conf = ViTMAEConfig(
            **_vit_kwargs(info, size),
            decoder_hidden_size=m["decoder_embed_dim"],
            decoder_num_hidden_layers=m["decoder_depth"],
            decoder_num_attention_heads=DECODER_HEADS,
            decoder_intermediate_size=4 * m["decoder_embed_dim"],
            mask_ratio=tr["mask_ratio"],
            norm_pix_loss=tr["norm_pix_loss"],
        )
        return _HFPretrain(ViTMAEForPreTraining(conf), fam)
    if fam == "convnextv2":
        return FCMAE(
            _convnext_config(info, size, 0.0), m["decoder_embed_dim"], m["decoder_depth"], tr["mask_ratio"], tr["norm_pix_loss"]
        )
    from transformers import HieraForPreTraining

    return _HFPretrain(HieraForPreTraining(_hiera_config(cfg, info, size, 0.0)), fam)


# ----------------------------------------------------------------------------- classifier


class _DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def _vit_layer_with_drop_path(layer: nn.Module, p: float) -> None:
    """Give an HF ``ViTLayer`` stochastic depth on both residual branches (HF ViT has none)."""
    layer.drop_path = _DropPath(p)

    def forward(hidden_states, attention_mask=None, **kwargs):
        h, _ = layer.attention(layer.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + layer.drop_path(layer.dropout(h))
        h = layer.mlp(layer.layernorm_after(hidden_states))
        return hidden_states + layer.drop_path(layer.dropout(h))

    layer.forward = forward


class Classifier(nn.Module):
    """Backbone + pooling + linear head; ``forward(x) -> logits`` and ``features(x) -> [B, D]``.

    ViT: ``model.global_pool`` true -> mean of the patch tokens then the final LayerNorm (the
    pretrained norm serves as MAE's fc_norm), false -> class token after the final LayerNorm.
    ConvNeXt-V2: HF ``pooler_output`` (LayerNorm of the global average). Hiera: global average of
    the last stage, then ``fc_norm``.
    """

    def __init__(self, cfg: dict[str, Any], num_classes: int, drop_path: float) -> None:
        super().__init__()
        info, self.fam = ARCHS[cfg["model"]["arch"]], family(cfg)
        size = cfg["dataset"]["augmentation"]["input_size"]
        self.size, self.global_pool = size, bool(cfg["model"]["global_pool"])
        self.fc_norm: nn.Module | None = None
        if self.fam == "vit":
            from transformers import ViTConfig, ViTModel

            self.backbone = ViTModel(ViTConfig(**_vit_kwargs(info, size)), add_pooling_layer=False)
            if drop_path > 0:
                n = len(self.backbone.layers)
                for i, layer in enumerate(self.backbone.layers):
                    _vit_layer_with_drop_path(layer, drop_path * i / max(n - 1, 1))
            dim = info["hidden"]
        elif self.fam == "convnextv2":
            from transformers import ConvNextV2Model

            self.backbone = ConvNextV2Model(_convnext_config(info, size, drop_path))
            dim = info["dims"][-1]
        else:
            from transformers import HieraModel

            self.backbone = HieraModel(_hiera_config(cfg, info, size, drop_path), add_pooling_layer=False)
            dim = self.backbone.num_features
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.dim = dim
        self.head = nn.Linear(dim, num_classes)
        self.reset_head()

    def reset_head(self) -> None:
        """MAE finetune head init: trunc-normal weights (std 2e-5), zero bias."""
        nn.init.trunc_normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.fam == "vit":
            bb = self.backbone
            interp = tuple(x.shape[-2:]) != (self.size, self.size)
            h = bb.embeddings(x, interpolate_pos_encoding=interp)
            for layer in bb.layers:
                h = layer(h, None)
            return bb.layernorm(h[:, 1:].mean(1)) if self.global_pool else bb.layernorm(h[:, 0])
        if self.fam == "convnextv2":
            return self.backbone(pixel_values=x).pooler_output
        return self.fc_norm(self.backbone(pixel_values=x).last_hidden_state.mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(cfg: dict[str, Any], num_classes: int | None = None, *, drop_path: float | None = None) -> Classifier:
    """Classifier of ``model.arch`` with ``num_classes`` outputs (default ``model.num_classes``)."""
    n = cfg["model"]["num_classes"] if num_classes is None else num_classes
    dp = cfg["model"]["drop_path_rate"] if drop_path is None else drop_path
    return Classifier(cfg, n, dp)


# ----------------------------------------------------------------------------- loading


def checkpoint_state(obj: Any, *, field: str) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint object: its ``model``, ``model_state`` or ``state_dict`` entry,
    or the object itself when it is already a tensor dict (TAO MAE finetune loader)."""
    if isinstance(obj, dict):
        for key in ("model", "model_state", "state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise SpecError(
        f"{field} holds no model weights (no model, model_state or state_dict entry).",
        field=field,
        fix="pass a model_epoch_*.pth file written by the MAE train action.",
    )


def _strip(key: str, target: set[str]) -> str:
    while key not in target:
        for p in STRIP_PREFIXES:
            if key.startswith(p):
                key = key[len(p) :]
                break
        else:
            return key
    return key


def interpolate_pos_embed(pe: torch.Tensor, n_target: int) -> torch.Tensor:
    """Resize a ViT position table [1, 1+N, D] (class token first) to [1, 1+n_target, D] (bicubic on the grid)."""
    cls, grid = pe[:, :1], pe[:, 1:]
    old, new = int(math.isqrt(grid.shape[1])), int(math.isqrt(n_target))
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(pe.dtype)], dim=1)


def backbone_state(sd: dict[str, torch.Tensor], backbone: nn.Module, fam: str, *, field: str) -> tuple[dict, list[str]]:
    """Map checkpoint keys onto ``backbone``'s names: strip wrapper prefixes, drop decoder, mask-token
    and prediction keys (and any classifier head), interpolate ViT position embeddings, reshape
    same-size tensors (e.g. GRN). Returns (state for ``backbone``, dropped keys)."""
    own = backbone.state_dict()
    target = set(own)
    out, dropped = {}, []
    for key, value in sd.items():
        k = _strip(key, target)
        if k not in target and (k.startswith(DROP_PREFIXES) or re.match(r"^(head|fc_norm|classifier)\b", k)):
            dropped.append(key)
            continue
        if k in target and own[k].shape != value.shape:
            if k.endswith("position_embeddings") and fam == "vit":
                value = interpolate_pos_embed(value, own[k].shape[1] - 1)
                log.info("interpolated %s from %s to %s", k, tuple(sd[key].shape), tuple(value.shape))
            elif own[k].numel() == value.numel():
                value = value.reshape(own[k].shape)
            elif k.endswith("position_embeddings"):
                raise SpecError(
                    f"{field}: position embeddings {tuple(value.shape)} do not fit {tuple(own[k].shape)}; Hiera's "
                    "position embeddings are not interpolated.",
                    field="dataset.augmentation.input_size",
                    fix="finetune at the dataset.augmentation.input_size the checkpoint was pretrained with.",
                )
            else:
                raise SpecError(
                    f"{field}: {k} has shape {tuple(value.shape)} but {tuple(own[k].shape)} is expected.",
                    field="model.arch",
                    fix="set model.arch to the architecture the checkpoint was trained with.",
                )
        out[k] = value
    return out, dropped


def load_pretrained(classifier: Classifier, sd: dict[str, torch.Tensor], *, field: str) -> dict[str, list[str]]:
    """Load pretrained weights into ``classifier.backbone`` non-strictly and re-initialise the head.

    Returns ``{"missing": backbone keys not in the checkpoint, "unexpected": checkpoint keys the
    backbone does not have, "dropped": pretraining-only keys removed}``. SpecError when nothing matches.
    """
    state, dropped = backbone_state(sd, classifier.backbone, classifier.fam, field=field)
    if not state:
        raise SpecError(
            f"{field}: no key of the checkpoint matches a {classifier.fam} backbone.",
            field=field,
            fix="pass a checkpoint of the same model.arch written by the MAE train action.",
        )
    res = classifier.backbone.load_state_dict(state, strict=False)
    classifier.reset_head()
    report = {"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys), "dropped": dropped}
    log.info(
        "loaded %d backbone tensors from %s; missing %s, unexpected %s, dropped %d pretraining-only keys",
        len(state) - len(res.unexpected_keys),
        field,
        report["missing"] or "none",
        report["unexpected"] or "none",
        len(dropped),
    )
    return report


# ----------------------------------------------------------------------------- optimiser groups


def _layer_id(name: str, fam: str, depths: list[int]) -> int:
    if name.startswith("embeddings"):
        return 0
    if fam == "vit":
        m = re.match(r"layers\.(\d+)\.", name)
        return int(m.group(1)) + 1 if m else len(depths) + 1
    m = re.match(r"encoder\.stages\.(\d+)\.(?:layers\.(\d+))?", name)
    if not m:
        return num_layers(fam, depths) + 1
    stage, block = int(m.group(1)), int(m.group(2) or 0)
    if fam == "convnextv2":  # ConvNeXt(-V2) grouping: the long third stage in blocks of 3
        return [1, 2, 3 + block // 3, num_layers(fam, depths)][stage]
    return sum(depths[:stage]) + block + 1


def num_layers(fam: str, depths: list[int]) -> int:
    """Number of layer-decay steps below the head."""
    if fam == "convnextv2":
        return 4 + (depths[2] - 1) // 3
    return sum(depths) if fam == "hiera" else len(depths)


def param_groups(model: Classifier, cfg: dict[str, Any], *, stage: str) -> list[dict[str, Any]]:
    """AdamW groups. Finetune: lr x ``layer_decay``^(L+1-layer) for backbone layers and x
    ``backbone_multiplier`` for the backbone; head at the base lr. No weight decay on biases,
    norms and tokens. Pretrain: one decayed and one undecayed group. Each group has ``lr_scale``."""
    opt = cfg["train"]["optim"]
    info = ARCHS[cfg["model"]["arch"]]
    depths = [0] * info["depth"] if info["family"] == "vit" else list(info["depths"])
    top = num_layers(info["family"], depths) + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name.endswith(("cls_token", "position_embeddings", "mask_token"))
        if stage == "finetune" and name.startswith("backbone."):
            lid = _layer_id(name[len("backbone.") :], info["family"], depths)
            scale = opt["layer_decay"] ** (top - lid) * opt["backbone_multiplier"]
        else:
            lid, scale = top, 1.0
        g = groups.setdefault(
            (lid, no_wd), {"params": [], "lr_scale": scale, "weight_decay": 0.0 if no_wd else opt["weight_decay"]}
        )
        g["params"].append(p)
    return list(groups.values())


def apply_freeze(model: nn.Module, prefixes: list[str]) -> int:
    """``requires_grad=False`` on parameters whose name (with or without ``backbone.``) starts with a
    prefix; returns the number frozen. SpecError naming ``train.freeze`` when a prefix matches nothing."""
    frozen = 0
    for pref in prefixes:
        hit = [p for n, p in model.named_parameters() if n.startswith(pref) or n.removeprefix("backbone.").startswith(pref)]
        if not hit:
            names = sorted({n.split(".")[0] + "." + n.split(".")[1] for n, _ in model.named_parameters() if "." in n})
            raise SpecError(
                f"train.freeze entry {pref!r} matches no parameter.",
                field="train.freeze",
                fix=f"use parameter-name prefixes such as {', '.join(names[:6])}.",
            )
        for p in hit:
            p.requires_grad_(False)
        frozen += len(hit)
    return frozen
