"""The DINO detector assembled from its parts, and its post-processor.

``DINO(cfg)`` reads the structural keys of ``cfg["model"]`` and ``dataset.num_classes``
(TAO Core 7.3.0 dino ModelConfig): backbone, return_interm_indices / num_feature_levels,
hidden_dim, nheads, dim_feedforward, enc/dec layers and points, dropout_ratio, num_queries,
two_stage_type (``standard`` = mixed query selection: anchors from the top-Q encoder
proposals, learned content queries when ``embed_init_tgt``), use_dn and the dn settings,
aux_loss, pe_temperatureH/W. Parameter names start with ``backbone.0.`` for the backbone and
contain ``sampling_offsets`` / ``reference_points`` for TAO's ``linear_proj_names``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from taoskills.engine.dino import transformer as T
from taoskills.engine.dino.backbone import Backbone, SinePositionEmbedding
from taoskills.engine.dino.dn import cxcywh_to_xyxy, prepare_for_cdn


class DINO(nn.Module):
    """``forward(images [B,3,H,W], mask [B,H,W] bool True = padding, targets=None) -> dict``:
    ``pred_logits [B,Q,C]`` (pre-sigmoid), ``pred_boxes [B,Q,4]`` (cxcywh in [0,1] of the valid
    image), plus in training ``aux_outputs``, ``interm_outputs``, ``dn_outputs``, ``dn_meta``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        m = cfg["model"]
        self.num_classes = cfg["dataset"]["num_classes"]
        d, nh, levels = m["hidden_dim"], m["nheads"], m["num_feature_levels"]
        self.hidden_dim, self.num_queries = d, m["num_queries"]
        self.two_stage = m["two_stage_type"] == "standard"
        self.embed_init_tgt = m["embed_init_tgt"] or not self.two_stage
        self.aux_loss = m["aux_loss"]
        self.use_dn = m["use_dn"]
        self.dn = {
            "dn_number": m["dn_number"],
            "label_noise_ratio": m["dn_label_noise_ratio"],
            "box_noise_scale": m["dn_box_noise_scale"],
        }
        self.backbone = nn.ModuleList([Backbone(m["backbone"], list(m["return_interm_indices"]))])
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, kernel_size=1), nn.GroupNorm(32, d)) for c in self.backbone[0].channels
        )
        self.position = SinePositionEmbedding(d // 2, m["pe_temperatureH"], m["pe_temperatureW"])
        self.level_embed = nn.Parameter(torch.empty(levels, d))
        config = T.msda_config(d, nh, levels, m["enc_n_points"], m["dec_n_points"], m["dim_feedforward"], m["dropout_ratio"])
        act_ckpt = bool((cfg.get("train") or {}).get("activation_checkpoint", False))
        self.encoder = T.Encoder(config, m["enc_layers"], activation_checkpoint=act_ckpt)
        self.class_embed = nn.Linear(d, self.num_classes)
        self.bbox_embed = T.MLP(d, d, 4, 3)
        self.decoder = T.Decoder(config, d, nh, m["dim_feedforward"], m["dropout_ratio"], m["dec_layers"], self.bbox_embed)
        self.tgt_embed = nn.Embedding(self.num_queries, d)
        self.label_enc = nn.Embedding(self.num_classes + 1, d)
        if self.two_stage:
            self.enc_output = nn.Linear(d, d)
            self.enc_output_norm = nn.LayerNorm(d)
            self.enc_out_class_embed = nn.Linear(d, self.num_classes)
            self.enc_out_bbox_embed = T.MLP(d, d, 4, 3)
        else:
            self.refpoint_embed = nn.Embedding(self.num_queries, 4)
        self._reset()

    @torch.no_grad()
    def _reset(self) -> None:
        bias = -math.log((1 - 0.01) / 0.01)
        for lin in [self.class_embed] + ([self.enc_out_class_embed] if self.two_stage else []):
            nn.init.constant_(lin.bias, bias)
        for mlp in [self.bbox_embed] + ([self.enc_out_bbox_embed] if self.two_stage else []):
            nn.init.constant_(mlp.layers[-1].weight, 0.0)
            nn.init.constant_(mlp.layers[-1].bias, 0.0)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        for mod in self.modules():
            if hasattr(mod, "sampling_offsets") and hasattr(mod, "attention_weights"):
                T.reset_msda(mod)
        nn.init.normal_(self.level_embed)
        if not self.two_stage:
            nn.init.uniform_(self.refpoint_embed.weight)

    def _flatten(self, images: torch.Tensor, mask: torch.Tensor):
        feats = self.backbone[0](images, mask)
        srcs, masks, poss, shapes = [], [], [], []
        for lvl, (f, m) in enumerate(feats):
            s = self.input_proj[lvl](f)
            shapes.append((int(s.shape[2]), int(s.shape[3])))
            srcs.append(s.flatten(2).transpose(1, 2))
            masks.append(m)
            poss.append((self.position(m).flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)).to(s.dtype))
        ratios = torch.stack([T.valid_ratios(m) for m in masks], 1)
        pad = torch.cat([m.flatten(1) for m in masks], 1)
        shapes_t = torch.as_tensor(shapes, dtype=torch.long, device=images.device)
        sizes = [h * w for h, w in shapes]
        level_start = torch.as_tensor([0] + list(torch.tensor(sizes).cumsum(0)[:-1].tolist()), device=images.device)
        return torch.cat(srcs, 1), torch.cat(poss, 1), pad, shapes, shapes_t, level_start, ratios

    def forward(self, images: torch.Tensor, mask: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        src, pos, pad, shapes, shapes_t, level_start, ratios = self._flatten(images, mask)
        valid = ~pad
        memory = self.encoder(src, pos, valid, shapes_t, shapes, level_start, ratios)
        b = images.shape[0]
        interm = None
        if self.two_stage:
            mem, props = T.encoder_proposals(memory, pad, shapes)
            mem = self.enc_output_norm(self.enc_output(mem))
            cls_all = self.enc_out_class_embed(mem)
            box_all = self.enc_out_bbox_embed(mem) + props
            k = min(self.num_queries, mem.shape[1])
            _, ref_undetached, tgt_undetached = T.select_queries(cls_all, box_all, mem, k)
            ref = ref_undetached.detach()
            if self.embed_init_tgt:
                tgt = self.tgt_embed.weight[:k][None].expand(b, -1, -1)
            else:
                tgt = tgt_undetached.detach()
            interm = {"pred_logits": self.enc_out_class_embed(tgt_undetached), "pred_boxes": ref_undetached.sigmoid()}
        else:
            tgt = self.tgt_embed.weight[None].expand(b, -1, -1)
            ref = self.refpoint_embed.weight[None].expand(b, -1, -1)
            k = self.num_queries
        attn_mask, meta = None, None
        if self.training and self.use_dn and targets is not None:
            dn_tgt, dn_ref, attn_mask, meta = prepare_for_cdn(
                targets, num_queries=k, num_classes=self.num_classes, label_enc=self.label_enc, **self.dn
            )
            if meta is not None:
                tgt = torch.cat([dn_tgt.to(tgt.dtype), tgt], 1)
                ref = torch.cat([dn_ref.to(ref.dtype), ref], 1)
        hs, boxes = self.decoder(tgt, ref, memory, valid, shapes_t, shapes, level_start, ratios, attn_mask)
        logits = [self.class_embed(h) for h in hs]
        pad_size = meta.pad_size if meta is not None else 0
        layers = [{"pred_logits": lg[:, pad_size:], "pred_boxes": bx[:, pad_size:]} for lg, bx in zip(logits, boxes)]
        out: dict[str, Any] = dict(layers[-1])
        if self.training:
            out["aux_outputs"] = layers[:-1] if self.aux_loss else []
            out["interm_outputs"] = interm
            if meta is not None:
                dn_layers = [{"pred_logits": lg[:, :pad_size], "pred_boxes": bx[:, :pad_size]} for lg, bx in zip(logits, boxes)]
                out["dn_outputs"] = dn_layers if self.aux_loss else dn_layers[-1:]
                out["dn_meta"] = meta
        return out


@torch.no_grad()
def postprocess(logits: torch.Tensor, boxes: torch.Tensor, sizes: torch.Tensor, num_select: int) -> list[dict[str, torch.Tensor]]:
    """Top ``num_select`` (query, class) pairs per image (TAO DINO PostProcess).

    ``logits [B,Q,C]``, ``boxes [B,Q,4]`` cxcywh normalised, ``sizes [B,2]`` (h, w) in pixels.
    Returns per image ``scores [K]`` (sigmoid), ``labels [K]`` (class index), ``boxes [K,4]``
    (x0, y0, x1, y1 pixels).
    """
    b, q, c = logits.shape
    prob = logits.sigmoid().view(b, -1)
    k = min(num_select, q * c)
    scores, idx = torch.topk(prob, k, dim=1)
    qi = torch.div(idx, c, rounding_mode="floor")
    labels = idx % c
    xyxy = torch.gather(cxcywh_to_xyxy(boxes), 1, qi[..., None].expand(-1, -1, 4))
    h, w = sizes.unbind(1)
    xyxy = xyxy * torch.stack([w, h, w, h], 1)[:, None].to(xyxy.dtype)
    return [{"scores": s, "labels": lab, "boxes": bx} for s, lab, bx in zip(scores, labels, xyxy)]
