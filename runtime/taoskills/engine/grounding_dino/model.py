"""Grounding DINO network from TAO spec keys: transformers' ``GroundingDinoForObjectDetection``
with a Swin / ResNet-50 backbone config built locally and the BERT text encoder of
``model.text_encoder_type`` (see :mod:`.text_encoder`). Also: TAO's loss weighting over the
transformers loss terms, TAO's post-processing (top-``num_select`` over queries x phrases), the
optimiser parameter groups and checkpoint loading.

Key mapping (TAO Core 7.3.0 grounding_dino ModelConfig -> transformers GroundingDinoConfig):
hidden_dim->d_model, nheads->encoder/decoder_attention_heads, enc_layers/dec_layers,
dim_feedforward->encoder/decoder_ffn_dim, enc_n_points/dec_n_points, dropout_ratio->dropout,
num_queries, num_feature_levels, return_interm_indices->backbone out_indices, two_stage_type
standard->two_stage, embed_init_tgt->embedding_init_target, pe_temperatureH->
positional_embedding_temperature, aux_loss->auxiliary_loss, set_cost_*->class/bbox/giou_cost,
focal_alpha, max_text_len.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from taoskills.engine.grounding_dino import contrastive as C
from taoskills.engine.grounding_dino import loss as GL
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.engine.grounding_dino.spec import BACKBONES
from taoskills.errors import SpecError

log = logging.getLogger("taoskills.engine.grounding_dino")

#: TAO module names (``model.backbone_names``, ``train.freeze``) -> transformers parameter prefixes.
TAO_ALIASES = {
    "backbone.0": "model.backbone.",
    "backbone": "model.backbone.",
    "bert": "model.text_backbone.",
    "feat_map": "model.text_projection.",
    "input_proj": "model.input_proj_vision.",
    "transformer.encoder": "model.encoder.",
    "transformer.decoder": "model.decoder.",
    "transformer": "model.",
}


def backbone_config(cfg: dict[str, Any]) -> Any:
    """transformers ``SwinConfig`` / ``ResNetConfig`` for ``model.backbone`` with
    ``out_indices = model.return_interm_indices`` (1-based stages, as in TAO)."""
    from transformers import ResNetConfig, SwinConfig

    m = cfg["model"]
    out = list(m["return_interm_indices"])
    if m["backbone"] not in BACKBONES:  # a local folder (spec.backbone_folder)
        from transformers import AutoConfig

        bcfg = AutoConfig.from_pretrained(str(Path(str(m["backbone"])).expanduser()), local_files_only=True)
        return type(bcfg)(**{**bcfg.to_dict(), "out_features": None, "out_indices": out})
    spec = dict(BACKBONES[m["backbone"]])
    kind = spec.pop("type")
    if kind == "swin":
        return SwinConfig(out_indices=out, drop_path_rate=0.2, **spec)
    return ResNetConfig(out_indices=out, embedding_size=64, **spec)


def write_backbone(
    folder: str | Path,
    *,
    kind: str = "swin",
    embed_dim: int = 32,
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 4, 8),
    window_size: int = 4,
) -> Path:
    """Write a small transformers backbone config to ``folder`` for ``model.backbone`` (engine
    extension for CPU-sized runs and tests; TAO's names build the real Swin/ResNet sizes).

    ``kind="swin"``: ``SwinConfig`` (``embed_dim``, ``depths``, ``num_heads``, ``window_size``, no drop
    path). ``kind="resnet"``: a basic-block ``ResNetConfig`` with one block per stage and widths
    16/32/64/128 (the size the DINO engine's CPU tests use); convolutions learn far faster from
    scratch on a few dozen images than a Swin does (tests/e2e/test_engine_grounding_dino.py).
    """
    from transformers import ResNetConfig, SwinConfig

    if kind == "resnet":
        ResNetConfig(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=16, layer_type="basic").save_pretrained(
            folder
        )
    elif kind == "swin":
        SwinConfig(
            embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads), window_size=window_size, drop_path_rate=0.0
        ).save_pretrained(folder)
    else:
        raise ValueError(f"kind={kind!r}: use swin or resnet")
    return Path(folder)


def gdino_config(cfg: dict[str, Any], text_config: Any) -> Any:
    """``GroundingDinoConfig`` from the TAO ``model`` keys (see the module docstring)."""
    from transformers import GroundingDinoConfig

    m = cfg["model"]
    return GroundingDinoConfig(
        backbone_config=backbone_config(cfg),
        text_config=text_config,
        num_queries=m["num_queries"],
        encoder_layers=m["enc_layers"],
        decoder_layers=m["dec_layers"],
        encoder_ffn_dim=m["dim_feedforward"],
        decoder_ffn_dim=m["dim_feedforward"],
        encoder_attention_heads=m["nheads"],
        decoder_attention_heads=m["nheads"],
        d_model=m["hidden_dim"],
        dropout=m["dropout_ratio"],
        num_feature_levels=m["num_feature_levels"],
        encoder_n_points=m["enc_n_points"],
        decoder_n_points=m["dec_n_points"],
        two_stage=m["two_stage_type"] == "standard",
        embedding_init_target=m["embed_init_tgt"],
        positional_embedding_temperature=int(m["pe_temperatureH"]),
        auxiliary_loss=bool(m["aux_loss"]),
        class_cost=m["set_cost_class"],
        bbox_cost=m["set_cost_bbox"],
        giou_cost=m["set_cost_giou"],
        bbox_loss_coefficient=m["bbox_loss_coef"],
        giou_loss_coefficient=m["giou_loss_coef"],
        focal_alpha=m["focal_alpha"],
        max_text_len=m["max_text_len"],
        disable_custom_kernels=True,
    )


def build_model(cfg: dict[str, Any], *, load_text_weights: bool = True) -> torch.nn.Module:
    """``GroundingDinoForObjectDetection`` (random init) for ``cfg``; the BERT weights of a
    ``model.text_encoder_type`` folder that has them are loaded when ``load_text_weights``."""
    from transformers import GroundingDinoForObjectDetection

    name = cfg["model"]["text_encoder_type"]
    text_cfg = T.load_text_config(name)
    if text_cfg.max_position_embeddings < cfg["model"]["max_text_len"]:
        raise SpecError(
            f"model.max_text_len={cfg['model']['max_text_len']} exceeds the text encoder's "
            f"max_position_embeddings ({text_cfg.max_position_embeddings}).",
            field="model.max_text_len",
            fix=f"set model.max_text_len <= {text_cfg.max_position_embeddings} (256 is TAO's default).",
        )
    model = GroundingDinoForObjectDetection(gdino_config(cfg, text_cfg))
    GL.install(model)  # multi-span positives + per-image focal targets (loss.py)
    C.apply(model, cfg["model"])  # model.log_scale / model.class_embed_bias
    if load_text_weights and T.has_weights(name):
        missing, unexpected = model.model.text_backbone.load_state_dict(T.load_text_weights(name), strict=False)
        log.info("loaded BERT weights from %s (missing %d, unexpected %d)", name, len(missing), len(unexpected))
    elif load_text_weights:
        log.warning("model.text_encoder_type=%s has no weights: the text encoder starts from random init.", name)
    if cfg["model"]["pretrained_backbone_path"] not in (None, "", "???"):
        load_backbone_weights(model, str(cfg["model"]["pretrained_backbone_path"]))
    return model


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise TypeError("not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(model: Any, path: str) -> None:
    """Load a backbone state dict (transformers Swin/ResNet keys, optionally prefixed) into the
    backbone; SpecError naming ``model.pretrained_backbone_path`` when nothing matches."""
    field = "model.pretrained_backbone_path"
    sd = _state_dict_of(_load(path, field))
    target = model.model.backbone.conv_encoder.model
    own = target.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        for prefix in ("", "model.model.backbone.conv_encoder.model.", "backbone.", "swin.", "resnet.", "model."):
            key = k[len(prefix) :] if k.startswith(prefix) else ""
            if key in own and own[key].shape == v.shape:
                picked[key] = v
                break
    if not picked:
        raise SpecError(
            f"{field}={path}: no tensor matches the {type(target).__name__} backbone by name and shape.",
            field=field,
            fix="pass a transformers Swin/ResNet state dict of the same model.backbone, or leave it unset.",
        )
    target.load_state_dict(picked, strict=False)
    log.info("loaded %d/%d backbone tensors from %s", len(picked), len(own), path)


def _load(path: str, field: str) -> Any:
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(f"{field}={path} does not exist.", field=field, fix="pass the path of an existing checkpoint file.")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise SpecError(
            f"{field}={path} is not a readable PyTorch checkpoint ({type(exc).__name__}).",
            field=field,
            fix="pass a model_epoch_*.pth file written by the Grounding DINO train action.",
        ) from exc


def load_weights(model: torch.nn.Module, path: str, *, field: str, strict: bool = True) -> None:
    """Load a train checkpoint (``model_epoch_*.pth``: Lightning ``state_dict`` with ``model.``
    prefix) or a plain state dict into ``model``. Structure mismatches raise SpecError naming
    the structural keys to carry over from the train job."""
    try:
        sd = _state_dict_of(_load(path, field))
    except TypeError as exc:
        raise SpecError(f"{field}={path} holds no state dict.", field=field, fix="pass a model_epoch_*.pth file.") from exc
    if any(k.startswith("model.model.") for k in sd):
        sd = {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
    own = model.state_dict()
    bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if bad or (strict and (missing or unexpected)):
        detail = (
            f"size mismatch for {bad[:3]}"
            if bad
            else f"Missing key(s) in state_dict: {missing[:3]}; Unexpected key(s) in state_dict: {unexpected[:3]}"
        )
        raise SpecError(
            f"{field}={path} does not fit the model built from this spec ({detail}).",
            field=field,
            fix="carry model.backbone, num_queries, num_feature_levels, return_interm_indices, hidden_dim, nheads, "
            "enc_layers, dec_layers, dim_feedforward, max_text_len and text_encoder_type over from the train job "
            "(build the spec with parent_job_id).",
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)


# ----------------------------------------------------------------------------- loss


def weighted_loss(loss_dict: dict[str, torch.Tensor], cfg: dict[str, Any]) -> torch.Tensor:
    """TAO's weighting of the transformers loss terms: ``loss_ce*`` x cls_loss_coef,
    ``loss_bbox*`` x bbox_loss_coef, ``loss_giou*`` x giou_loss_coef; encoder (``_enc``) terms
    also x interm_loss_coef (boxes dropped when ``no_interm_box_loss``); auxiliary decoder terms
    (``_0``..) as the last layer's; ``loss_types`` selects labels/boxes (TAO Core 7.3.0 keys)."""
    m = cfg["model"]
    coef = {"loss_ce": m["cls_loss_coef"], "loss_bbox": m["bbox_loss_coef"], "loss_giou": m["giou_loss_coef"]}
    use = set(m["loss_types"])
    total = None
    for key, value in loss_dict.items():
        base = next((b for b in coef if key == b or key.startswith(b + "_")), None)
        if base is None:
            continue
        if (base == "loss_ce" and "labels" not in use) or (base != "loss_ce" and "boxes" not in use):
            continue
        w = coef[base]
        if key.endswith("_enc"):
            if base != "loss_ce" and m["no_interm_box_loss"]:
                continue
            w *= m["interm_loss_coef"]
        total = value * w if total is None else total + value * w
    if total is None:
        raise SpecError("no loss term is active.", field="model.loss_types", fix="use [labels, boxes].")
    return total


# ----------------------------------------------------------------------------- post-processing


def phrase_maps(input_ids: torch.Tensor, max_text_len: int) -> list[torch.Tensor]:
    """Per sample a float [num_phrases, max_text_len] map: row i is 1/len over the tokens of the
    i-th '.'-separated phrase (transformers ``build_label_maps``, normalised as TAO's positive map)."""
    from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

    maps = build_label_maps(torch.zeros(1, 1, max_text_len), input_ids.long())  # type: ignore[arg-type]
    return [(mp.float() / mp.sum(-1, keepdim=True).clamp_min(1)) for mp in maps]


def post_process(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    maps: list[torch.Tensor],
    sizes: list[tuple[int, int]],
    num_select: int,
) -> list[dict[str, torch.Tensor]]:
    """TAO-style detections per image: phrase score = sigmoid token scores averaged over the
    phrase's tokens; top ``num_select`` over (queries x phrases).

    ``logits`` [B, Q, T] (``-inf`` on padding), ``boxes`` [B, Q, 4] normalised cx,cy,w,h,
    ``sizes`` (height, width) in pixels of the original images. Returns per image
    ``{"scores" [K], "labels" [K] (phrase index), "boxes" [K, 4] x1,y1,x2,y2 pixels}``.
    """
    prob = logits.sigmoid().nan_to_num(0.0)
    out = []
    for b, mp in enumerate(maps):
        cls = prob[b] @ mp.to(prob.dtype).t()  # [Q, C]
        q, c = cls.shape
        k = min(num_select, q * c)
        scores, idx = cls.flatten().topk(k)
        qi, labels = idx // c, idx % c
        cx, cy, w, h = boxes[b, qi].unbind(-1)
        hgt, wid = sizes[b]
        xyxy = torch.stack([(cx - w / 2) * wid, (cy - h / 2) * hgt, (cx + w / 2) * wid, (cy + h / 2) * hgt], -1)
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, wid)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, hgt)
        out.append({"scores": scores, "labels": labels, "boxes": xyxy})
    return out


# ----------------------------------------------------------------------------- optimiser


def _prefixes(names: list[str]) -> list[str]:
    return [TAO_ALIASES.get(n, n if n.endswith(".") else n + ".") for n in names]


def freeze(model: torch.nn.Module, names: list[str]) -> None:
    """``train.freeze``: turn off gradients of the modules named (TAO names such as
    ``backbone``, ``bert``, ``transformer.encoder``, ``input_proj``, or transformers prefixes)."""
    for name, prefix in zip(names, _prefixes(names)):
        hit = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        if not hit:
            raise SpecError(
                f"train.freeze names {name!r}, which matches no module.",
                field="train.freeze",
                fix=f"use TAO names ({', '.join(k for k in TAO_ALIASES if k != 'backbone.0')}) or transformers prefixes.",
            )
        for p in hit:
            p.requires_grad_(False)


def param_groups(model: torch.nn.Module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Optimiser groups as TAO builds them: ``model.backbone_names`` at ``lr_backbone``,
    ``model.linear_proj_names`` at ``lr * lr_linear_proj_mult``, the rest at ``lr``
    (frozen parameters dropped)."""
    opt, m = cfg["train"]["optim"], cfg["model"]
    bb = _prefixes(list(m["backbone_names"]))
    proj = list(m["linear_proj_names"])
    groups: dict[str, list] = {"main": [], "backbone": [], "proj": []}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if any(n.startswith(x) for x in bb):
            groups["backbone"].append(p)
        elif any(x in n for x in proj):
            groups["proj"].append(p)
        else:
            groups["main"].append(p)
    lrs = {"main": opt["lr"], "backbone": opt["lr_backbone"], "proj": opt["lr"] * opt["lr_linear_proj_mult"]}
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items() if ps]
