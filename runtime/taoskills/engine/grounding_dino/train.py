"""Grounding DINO train action (PyTorch Lightning, shared TAO plumbing in ``engine/lightning.py``).

Outputs in ``<results_dir>/train`` (docs/tao-contract.md §3.4-3.5): ``model_epoch_EEE_step_SSSSS.pth``
(full Lightning checkpoint: ``state_dict`` with ``model.`` prefix + optimiser; used by resume,
evaluate, inference, export), ``gdino_model_latest.pth`` (symlink to the newest; valid only when
"latest" is requested), ``status.json`` with ``train_loss`` per epoch and ``val_mAP``/``val_mAP50``
every ``train.validation_interval`` epochs, ``experiment.yaml``, ``lightning_logs/``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine import lightning as L
from taoskills.engine.contract import ActionContext
from taoskills.engine.grounding_dino import common as C
from taoskills.engine.grounding_dino import data as D
from taoskills.engine.grounding_dino import metrics
from taoskills.engine.grounding_dino import model as M
from taoskills.engine.grounding_dino import text_encoder as T
from taoskills.engine.grounding_dino.spec import PRECISIONS, STRUCTURAL_KEYS, check, sources, unset
from taoskills.errors import PreflightError, SpecError

log = logging.getLogger("taoskills.engine.grounding_dino")
LATEST = "gdino_model_latest.pth"


class GDINOModule(pl.LightningModule):
    """transformers Grounding DINO + TAO loss weighting, optimiser groups, val COCO mAP."""

    def __init__(self, cfg: dict[str, Any], val: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": {k: cfg[k] for k in ("model", "dataset", "train")}})
        self.cfg = cfg
        self.model = M.build_model(cfg)
        if not cfg["model"]["train_backbone"]:
            M.freeze(self.model, ["backbone"])
        if cfg["train"]["freeze"]:
            M.freeze(self.model, list(cfg["train"]["freeze"]))
        self.val = val or {}
        self._dets: list[dict[str, Any]] = []
        self._sum, self._n = 0.0, 0
        self.val_kpis: dict[str, float] = {}

    def forward(self, batch: dict[str, Any]):
        keys = ("pixel_values", "pixel_mask", "input_ids", "attention_mask", "token_type_ids")
        try:
            return self.model(**{k: batch[k] for k in keys}, labels=batch.get("labels"))
        except RuntimeError as exc:
            if "selected index k out of range" not in str(exc):
                raise
            h, w = batch["pixel_values"].shape[-2:]
            raise SpecError(
                f"model.num_queries={self.cfg['model']['num_queries']} is more than the encoder's feature tokens at "
                f"{w}x{h} px (two-stage query selection takes the top num_queries tokens).",
                field="model.num_queries",
                fix="lower model.num_queries (and num_select), or train at a larger input size "
                "(dataset.augmentation.scales / random_resize_max_size) or with more model.return_interm_indices.",
            ) from exc

    def training_step(self, batch, batch_idx):
        out = self(batch)
        loss = M.weighted_loss(out.loss_dict, self.cfg)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train_loss became {loss.item()} at step {self.global_step}; lower train.optim.lr or use train.precision=fp32."
            )
        bs = batch["pixel_values"].shape[0]
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        self._sum += float(loss.detach())
        self._n += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self._sum, self._n = 0.0, 0

    def on_validation_epoch_start(self) -> None:
        self._dets = []

    def validation_step(self, batch, batch_idx):
        preds = C.predict(self.model, batch, self.cfg["model"]["num_select"], self.device)
        self._dets.extend(C.coco_dets(preds, batch["keys"], self.val["cat_ids"]))

    def on_validation_epoch_end(self) -> None:
        dets = self._dets
        if self.trainer.world_size > 1:
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, dets)
            dets = [d for part in gathered for d in part]
        res = metrics.coco_map(self.val["gt"], dets, self.cfg["dataset"]["eval_class_ids"])
        self.val_kpis = {"val_mAP": res["mAP"], "val_mAP50": res["mAP50"]}
        self.log("val_mAP", res["mAP"], sync_dist=False, batch_size=1)
        self.log("val_mAP50", res["mAP50"], sync_dist=False, batch_size=1)
        log.info("Validation mAP50 %.4f, mAP %.4f", res["mAP50"], res["mAP"])

    def epoch_kpis(self) -> dict[str, float | None]:
        """The epoch's KPIs for TAO's status line (val KPIs on validation epochs)."""
        kpi: dict[str, float | None] = {"train_loss": self._sum / self._n if self._n else None}
        ep = self.current_epoch + 1
        if ep % self.cfg["train"]["validation_interval"] == 0:
            kpi.update(self.val_kpis)
        return kpi

    def configure_optimizers(self):
        opt_cfg = self.cfg["train"]["optim"]
        groups = M.param_groups(self.model, self.cfg)
        if opt_cfg["optimizer"] == "SGD":
            opt = torch.optim.SGD(groups, lr=opt_cfg["lr"], momentum=opt_cfg["momentum"], weight_decay=opt_cfg["weight_decay"])
        else:
            opt = torch.optim.AdamW(groups, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
        if opt_cfg["lr_scheduler"] == "StepLR":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opt_cfg["lr_step_size"], gamma=opt_cfg["lr_decay"])
        else:
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(opt_cfg["lr_steps"]), gamma=opt_cfg["lr_decay"])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def preflight(cfg: dict[str, Any], records: list[dict[str, Any]], vocab: list[str], tok: Any, val_names: list[str]) -> None:
    """Engine-side checks of the seed's error patterns before any training step."""
    m, ds = cfg["model"], cfg["dataset"]
    longest = sorted(vocab, key=lambda n: len(tok.tokenize(n)), reverse=True)[: ds["max_labels"]]
    for what, names in (("the training label map", longest), ("dataset.val_data_sources categories", val_names)):
        n = len(tok(D.caption_of(names))["input_ids"])
        if n > m["max_text_len"]:
            raise SpecError(
                f"The caption of {what} needs {n} tokens but model.max_text_len={m['max_text_len']}: the text token "
                "length and the label position maps would disagree ('mat1 and mat2 shapes cannot be multiplied' in TAO).",
                field="model.max_text_len",
                fix=f"restore model.max_text_len (256) or at least {n}, or regenerate the label maps with the same length "
                "(fewer / shorter labels, lower dataset.max_labels).",
            )
    most = max(len(r["boxes"]) for r in records)
    if most > m["num_queries"]:
        raise SpecError(
            f"model.num_queries={m['num_queries']} is too small for the matched ODVG targets: an image has {most} boxes "
            "(TAO fails with 'index is out of bounds for dimension 0' in criterion.py).",
            field="model.num_queries",
            fix=f"increase model.num_queries (at least {most}; 900 is TAO's default) and keep model.num_select <= num_queries.",
        )


def run(ctx: ActionContext) -> dict[str, float]:
    """Train per ``ctx.cfg``; returns the last epoch's KPIs (train_loss, val_mAP, val_mAP50)."""
    cfg = ctx.cfg
    check(cfg, "train")
    tr, ds = cfg["train"], cfg["dataset"]
    tr_l = {**tr, "precision": PRECISIONS[tr["precision"]]}
    accelerator, devices, nodes = L.devices(tr_l)
    tok = T.load_tokenizer(cfg["model"]["text_encoder_type"])
    records, vocab = D.read_odvg(cfg)
    gt, val_root, val_names = D.read_coco(sources(ds["val_data_sources"])[0], "dataset.val_data_sources")
    preflight(cfg, records, vocab, tok, val_names)
    metrics.check_eval_class_ids(ds["eval_class_ids"], gt, "dataset.val_data_sources")
    world = L.world_size(devices, nodes)
    if ds["batch_size"] * world > len(records):
        raise PreflightError(
            f"dataset.batch_size={ds['batch_size']} (x {world} device(s)) is larger than the {len(records)} training images; "
            "incomplete batches are dropped, so no step would run.",
            field="dataset.batch_size",
            fix=f"set dataset.batch_size to at most {len(records) // world}, or add images.",
        )
    resume = (
        None if unset(tr["resume_training_checkpoint_path"]) else str(Path(tr["resume_training_checkpoint_path"]).expanduser())
    )
    if resume:
        L.check_resume(resume, cfg, STRUCTURAL_KEYS)
    if tr["seed"] is not None and tr["seed"] >= 0:
        pl.seed_everything(tr["seed"], workers=True, verbose=False)
    torch.backends.cudnn.benchmark = tr["cudnn"]["benchmark"]
    torch.backends.cudnn.deterministic = tr["cudnn"]["deterministic"]

    val = {
        "gt": gt,
        "cat_ids": sorted(int(c["id"]) for c in gt["categories"]),
    }
    module = GDINOModule(cfg, val)
    if not unset(tr["pretrained_model_path"]) and not resume:
        M.load_weights(module.model, str(tr["pretrained_model_path"]), field="train.pretrained_model_path", strict=False)
        log.info("loaded pretrained weights from %s", tr["pretrained_model_path"])
    workers = min(ds["workers"], os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        D.TrainSet(records, cfg),
        batch_size=ds["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=bool(ds["pin_memory"]) and accelerator == "gpu",
        collate_fn=D.TrainCollate(tok, cfg),
    )
    items = [(val_root / im["file_name"], im["id"]) for im in gt["images"]]
    val_loader = C.eval_loader(cfg, tok, items, D.caption_of(val_names), ds["batch_size"])
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy="ddp_find_unused_parameters_true" if world > 1 else "auto",
        precision=tr_l["precision"],
        max_epochs=tr["num_epochs"],
        default_root_dir=str(ctx.results_dir),
        logger=L.loggers(cfg, ctx.results_dir),
        callbacks=[L.TaoTrainCallback(ctx, latest_name=LATEST)],
        enable_checkpointing=False,
        gradient_clip_val=tr["clip_grad_norm"] or None,
        gradient_clip_algorithm="norm",
        check_val_every_n_epoch=tr["validation_interval"],
        enable_progress_bar=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Consider using tensor.detach.*")
        trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader, ckpt_path=resume)
    return dict(ctx.info.get("kpis") or {})
