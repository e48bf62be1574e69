"""Helpers shared by MAE evaluate, inference and export: reading a train checkpoint and checking it
against the spec (stage, arch, classes, input size), then building the model it holds."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from taoskills.engine.common import pick_device
from taoskills.engine.lightning import load_checkpoint_file
from taoskills.engine.mae import model as M
from taoskills.errors import SpecError

log = logging.getLogger("taoskills.engine.mae")

__all__ = ["Loaded", "load_model", "pick_device", "checkpoint_meta"]


@dataclass
class Loaded:
    """A model rebuilt from a MAE checkpoint: ``stage`` (pretrain|finetune), ``classes`` (names, finetune)."""

    model: torch.nn.Module
    stage: str
    classes: list[str] = field(default_factory=list)


def checkpoint_meta(obj: Any) -> tuple[str | None, dict[str, Any], list[str]]:
    """(train.stage, saved cfg, class names) of a checkpoint written by the MAE train action."""
    hp = (obj.get("hyper_parameters") or {}) if isinstance(obj, dict) else {}
    cfg = hp.get("cfg") or {}
    stage = hp.get("stage") or (cfg.get("train") or {}).get("stage")
    if stage is None and isinstance(obj, dict):
        keys = M.checkpoint_state(obj, field="checkpoint").keys()
        stage = "pretrain" if any(".decoder" in k or k.startswith("decoder") for k in keys) else "finetune"
    return stage, cfg, list(hp.get("classes") or [])


def _agree(cfg: dict[str, Any], saved: dict[str, Any], key: str, field_name: str, path: str) -> None:
    a, b = key.split(".", 1)
    theirs = saved.get(a, {})
    for part in b.split("."):
        theirs = theirs.get(part) if isinstance(theirs, dict) else None
    mine = cfg[a]
    for part in b.split("."):
        mine = mine[part]
    if theirs is not None and theirs != mine:
        raise SpecError(
            f"{field_name}={path} was trained with {key}={theirs}; the spec has {key}={mine}.",
            field=key,
            fix=f"set {key}={theirs} (carry {key} forward from the train job) so the checkpoint and the spec match.",
        )


def load_model(cfg: dict[str, Any], path: str, *, field_name: str, want: str) -> Loaded:
    """Rebuild the model in checkpoint ``path`` for ``want``: ``"classifier"`` (finetune checkpoints;
    pretrain ones are refused with the MAE skill's fix), ``"pretrain"`` (the reconstruction model), or
    ``"any"`` (finetune -> classifier, pretrain -> classifier backbone with an untrained head).

    Stage mismatch between the checkpoint and ``train.stage``, and differing ``model.arch``,
    ``model.num_classes`` (finetune) or input size, raise SpecError naming the key and the fix.
    """
    obj = load_checkpoint_file(path, field=field_name)
    stage, saved, classes = checkpoint_meta(obj)
    if want == "classifier" and stage == "pretrain":
        raise SpecError(
            f"Inference with pretrain checkpoints: {field_name}={path} holds a pretrained MAE encoder and "
            "no classifier (the MAE predict dataloader raises NotImplementedError for train.stage: pretrain).",
            field=field_name,
            fix="use a finetune checkpoint (train.stage: finetune) for inference and classification-style "
            "evaluation, or restrict a pretrain-only run to train/evaluate/export.",
        )
    spec_stage = cfg["train"]["stage"]
    if stage != spec_stage:
        raise SpecError(
            f"Stage mismatch: {field_name}={path} is a train.stage={stage} checkpoint but the spec has train.stage={spec_stage}.",
            field="train.stage",
            fix=f"set train.stage={stage} to match the checkpoint (pretrain vs finetune), or pass a {spec_stage} checkpoint.",
        )
    _agree(cfg, saved, "model.arch", field_name, path)
    _agree(cfg, saved, "dataset.augmentation.input_size", field_name, path)
    if stage == "finetune":
        _agree(cfg, saved, "model.num_classes", field_name, path)
    sd = M.checkpoint_state(obj, field=field_name)
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    if want == "pretrain":
        net = M.build_pretrain(cfg)
        net.load_state_dict(sd)
        return Loaded(net.eval(), stage, classes)
    if stage == "finetune":
        net = M.build_classifier(cfg, drop_path=0.0)
        try:
            net.load_state_dict(sd)
        except RuntimeError as exc:
            raise SpecError(
                f"{field_name}={path} does not fit model.arch={cfg['model']['arch']} with "
                f"model.num_classes={cfg['model']['num_classes']}: {str(exc).splitlines()[0]}",
                field="model.num_classes",
                fix="num_classes mismatch: set model.arch and model.num_classes to the values of the train job.",
            ) from exc
        return Loaded(net.eval(), stage, classes)
    net = M.build_classifier(cfg, num_classes=1, drop_path=0.0)
    M.load_pretrained(net, sd, field=field_name)
    return Loaded(net.eval(), stage, classes)
