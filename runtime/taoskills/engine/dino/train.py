"""DINO train action (PyTorch Lightning, shared TAO plumbing in ``taoskills.engine.lightning``).

Outputs in ``<results_dir>/train`` (TAO results contract): ``model_epoch_EEE_step_SSSSS.pth``
(full Lightning checkpoint: resume, evaluate, inference, export), ``dino_model_latest.pth``
(link to the newest), ``status.json`` with ``train_loss`` each epoch and ``val_mAP`` /
``val_mAP50`` every ``train.validation_interval`` epochs, ``experiment.yaml``, ``lightning_logs/``.
Optimiser (TAO Core 7.3.0 dino OptimConfig): AdamW (or SGD) with ``lr`` for the transformer,
``lr_backbone`` for parameters named by ``model.backbone_names``, ``lr * lr_linear_proj_mult``
for those named by ``model.linear_proj_names``; MultiStep(``lr_steps``, ``lr_decay``) or
StepLR(``lr_step_size``, ``lr_decay``) per epoch; gradient clipping ``train.clip_grad_norm``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine import lightning as L
from taoskills.engine.contract import ActionContext
from taoskills.engine.dino import common as C
from taoskills.engine.dino import data as D
from taoskills.engine.dino.backbone import load_pretrained_backbone
from taoskills.engine.dino.criterion import SetCriterion
from taoskills.engine.dino.model import DINO, postprocess
from taoskills.engine.dino.spec import PRECISIONS, check, unset
from taoskills.errors import PreflightError

log = logging.getLogger("taoskills.engine.dino")


def param_groups(model: torch.nn.Module, m: dict[str, Any], opt: dict[str, Any]) -> list[dict[str, Any]]:
    """Three AdamW groups as TAO's DINO: backbone (``lr_backbone``), linear projections (``lr ×
    lr_linear_proj_mult``), the rest (``lr``). Frozen parameters are left out."""

    def named(name: str, keys: list[str]) -> bool:
        return any(k in name for k in keys)

    groups: dict[str, list] = {"main": [], "backbone": [], "proj": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if named(name, m["backbone_names"]):
            groups["backbone"].append(p)
        elif named(name, m["linear_proj_names"]):
            groups["proj"].append(p)
        else:
            groups["main"].append(p)
    lrs = {"main": opt["lr"], "backbone": opt["lr_backbone"], "proj": opt["lr"] * opt["lr_linear_proj_mult"]}
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items() if ps]


class DINOModule(pl.LightningModule):
    """DINO + criterion + COCO validation. ``epoch_kpis()`` feeds TAO's status lines."""

    def __init__(self, cfg: dict[str, Any], val_gt: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": {k: cfg[k] for k in ("model", "dataset", "train")}})
        self.cfg = cfg
        self.model = DINO(cfg)
        self.criterion = SetCriterion(cfg["model"], cfg["dataset"]["num_classes"])
        self.val_gt = val_gt
        self._loss_sum, self._loss_n = 0.0, 0
        self._val: list[dict] = []
        self.val_kpis: dict[str, float] = {}

    def configure_optimizers(self):
        opt_cfg = self.cfg["train"]["optim"]
        groups = param_groups(self.model, self.cfg["model"], opt_cfg)
        if opt_cfg["optimizer"] == "SGD":
            opt = torch.optim.SGD(groups, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"], weight_decay=opt_cfg["weight_decay"])
        else:
            opt = torch.optim.AdamW(groups, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
        if opt_cfg["lr_scheduler"] == "StepLR":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opt_cfg["lr_step_size"], gamma=opt_cfg["lr_decay"])
        else:
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(opt_cfg["lr_steps"]), gamma=opt_cfg["lr_decay"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def training_step(self, batch, batch_idx):
        images, mask, targets = batch
        out = self.model(images, mask, targets)
        n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=images.device)
        if self.trainer.world_size > 1:
            n = self.all_gather(n).sum() / self.trainer.world_size
        loss, named = self.criterion(out, targets, max(float(n), 1.0))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train_loss became {loss.item()} at step {self.global_step}; lower train.optim.lr or train.clip_grad_norm."
            )
        bs = images.shape[0]
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        for k in ("loss_ce", "loss_bbox", "loss_giou"):
            if k in named:
                self.log(k, named[k], on_step=True, on_epoch=False, batch_size=bs)
        self._loss_sum += float(loss.detach())
        self._loss_n += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = 0.0, 0

    def validation_step(self, batch, batch_idx):
        images, mask, targets = batch
        out = self.model(images, mask)
        sizes = torch.stack([t["orig_size"] for t in targets])
        preds = postprocess(out["pred_logits"].float(), out["pred_boxes"].float(), sizes, self.cfg["model"]["num_select"])
        preds = [{k: v.cpu() for k, v in p.items()} for p in preds]
        self._val.extend(C.to_detections(preds, targets, self.val_gt["category_of"], self.cfg["train"]["conf_threshold"]))

    def on_validation_epoch_end(self) -> None:
        dets = self._val
        if self.trainer.world_size > 1:
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, dets)
            dets = [d for part in gathered for d in part]
        self._val = []
        if self.trainer.sanity_checking:
            return
        stats = C.coco_map(self.val_gt, dets, self.cfg["dataset"]["eval_class_ids"])
        self.val_kpis = {"val_mAP": stats["mAP"], "val_mAP50": stats["mAP50"]}
        self.log_dict({k: torch.tensor(v) for k, v in self.val_kpis.items()}, sync_dist=False, rank_zero_only=True)
        log.info("Validation mAP: %.4f", stats["mAP"])
        log.info("Validation mAP50: %.4f", stats["mAP50"])

    def epoch_kpis(self) -> dict[str, float | None]:
        """``train_loss`` (epoch mean on this rank) plus the KPIs of the validation run of this epoch, if any."""
        kpis: dict[str, float | None] = {"train_loss": self._loss_sum / self._loss_n if self._loss_n else None}
        kpis.update(self.val_kpis)
        self.val_kpis = {}
        return kpis


def build_loaders(cfg: dict[str, Any], world: int):
    """(train loader, val loader, val ground truth) after the COCO preflight checks."""
    ds = cfg["dataset"]
    contiguous = ds["contiguous_labels"]
    train_gt = D.load_coco(ds["train_data_sources"], "dataset.train_data_sources", contiguous=contiguous)
    val_gt = D.load_coco(ds["val_data_sources"], "dataset.val_data_sources", contiguous=contiguous)
    D.check_num_classes(train_gt, ds["num_classes"], "dataset.train_data_sources")
    D.check_num_classes(val_gt, ds["num_classes"], "dataset.val_data_sources")
    n = len(train_gt["images"])
    if n < ds["batch_size"] * world:
        raise PreflightError(
            f"dataset.train_data_sources has {n} images, fewer than dataset.batch_size={ds['batch_size']} x {world} device(s).",
            field="dataset.batch_size",
            fix=f"set dataset.batch_size to at most {max(n // world, 1)}, or add images.",
        )
    if not val_gt["images"]:
        raise PreflightError(
            "dataset.val_data_sources lists no images.",
            field="dataset.val_data_sources",
            fix="point it at a COCO split with images (reuse the train source if there is no val split).",
        )
    collate = D.collate_for(cfg)
    common = {"num_workers": ds["workers"], "collate_fn": collate, "persistent_workers": ds["workers"] > 0}
    train = torch.utils.data.DataLoader(
        D.CocoDetection(train_gt, ds["augmentation"], train=True), batch_size=ds["batch_size"], shuffle=True, **common
    )
    val = torch.utils.data.DataLoader(
        D.CocoDetection(val_gt, ds["augmentation"], train=False), batch_size=ds["batch_size"], shuffle=False, **common
    )
    return train, val, val_gt


def run(ctx: ActionContext) -> dict[str, float]:
    """Train DINO per ``ctx.cfg``; returns the last KPIs (``train_loss``, ``val_mAP``, ``val_mAP50``).

    Raises SpecError / NotSupported / PreflightError (naming key and fix) before training when a
    value cannot be honoured.
    """
    cfg = ctx.cfg
    check(cfg, "train")
    tr, m = cfg["train"], cfg["model"]
    accelerator, devices, nodes = L.devices({**tr, "precision": PRECISIONS[tr["precision"]]})
    world = L.world_size(devices, nodes)
    train_loader, val_loader, val_gt = build_loaders(cfg, world)
    resume = (
        None if unset(tr["resume_training_checkpoint_path"]) else str(Path(tr["resume_training_checkpoint_path"]).expanduser())
    )
    if resume:
        L.check_resume(resume, cfg, C.STRUCTURAL_KEYS)
    if tr["seed"] is not None and tr["seed"] >= 0:
        pl.seed_everything(tr["seed"], workers=True, verbose=False)
    torch.backends.cudnn.benchmark = tr["cudnn"]["benchmark"]
    torch.backends.cudnn.deterministic = tr["cudnn"]["deterministic"]

    module = DINOModule(cfg, val_gt)
    if not unset(m["pretrained_backbone_path"]) and not resume:
        info = load_pretrained_backbone(module.model.backbone[0], m["pretrained_backbone_path"])
        log.info("loaded %d backbone tensors from %s (BatchNorm frozen)", info["loaded"], m["pretrained_backbone_path"])
    if not unset(tr["pretrained_model_path"]) and not resume:
        info = C.load_pretrained_model(module.model, tr["pretrained_model_path"])
        log.info("loaded %d tensors from %s (%d skipped)", info["loaded"], tr["pretrained_model_path"], info["skipped"])
    if not m["train_backbone"]:
        module.model.backbone.requires_grad_(False)
    for prefix in tr["freeze"] or []:
        hit = [p for n, p in module.model.named_parameters() if n.startswith(prefix)]
        if not hit:
            raise PreflightError(
                f"train.freeze entry {prefix!r} names no parameter.",
                field="train.freeze",
                fix="use module prefixes such as backbone.0.",
            )
        for p in hit:
            p.requires_grad_(False)

    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy="ddp_find_unused_parameters_true" if world > 1 else "auto",
        precision=PRECISIONS[tr["precision"]],
        max_epochs=tr["num_epochs"],
        default_root_dir=str(ctx.results_dir),
        logger=L.loggers(cfg, ctx.results_dir),
        callbacks=[L.TaoTrainCallback(ctx)],
        enable_checkpointing=False,
        gradient_clip_val=tr["clip_grad_norm"] or None,
        gradient_clip_algorithm="norm",
        check_val_every_n_epoch=tr["validation_interval"],
        enable_progress_bar=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        fast_dev_run=bool(tr["is_dry_run"]),
        sync_batchnorm=world > 1,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=resume)
    return {k: float(v) for k, v in (ctx.info.get("kpis") or {}).items()}
