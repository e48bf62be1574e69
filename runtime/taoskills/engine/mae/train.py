"""MAE train action: ``train.stage: pretrain`` (masked reconstruction) or ``finetune`` (classification).

Outputs in ``<results_dir>/train`` (docs/tao-contract.md §3.4-3.5): ``model_epoch_EEE_step_SSSSS.pth``
(full Lightning checkpoint: ``state_dict`` with ``model.*`` keys, optimiser, loops,
``hyper_parameters`` = {cfg, stage, classes}), ``<model.arch>_latest.pth`` (symlink to the newest,
e.g. ``convnextv2_atto_latest.pth`` as the MAE skill names it), ``status.json`` with per-epoch
KPIs (``train_loss``; ``val_loss`` and, for finetune, ``ACC_all`` when validation data is set),
``experiment.yaml`` and ``lightning_logs/``. Epochs are zero-indexed (TAO convention).

Optimiser (TAO Core 7.3.0 mae OptimConfig; MAE recipe): AdamW, betas (momentum, 0.95) for
pretrain and (momentum, 0.999) for finetune, no weight decay on biases/norms/tokens, linear warm-up
over ``warmup_epochs`` then MultiStep (``milestones`` epochs x ``gamma``) or cosine to 0; finetune
adds layer-wise lr decay and ``backbone_multiplier`` (see :func:`model.param_groups`).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine import lightning as L
from taoskills.engine.contract import ActionContext
from taoskills.engine.mae import data as D
from taoskills.engine.mae import model as M
from taoskills.engine.mae.augment import Mixup
from taoskills.engine.mae.common import checkpoint_meta
from taoskills.engine.mae.spec import PRECISIONS, STRUCTURAL_KEYS, check, unset
from taoskills.errors import NotSupported, PreflightError, SpecError

log = logging.getLogger("taoskills.engine.mae")


class MAEModule(pl.LightningModule):
    """``self.model``: the pretraining model (stage pretrain) or a :class:`model.Classifier`."""

    def __init__(self, cfg: dict[str, Any], classes: list[str] | None = None) -> None:
        super().__init__()
        self.stage = cfg["train"]["stage"]
        self.classes = list(classes or [])
        self.save_hyperparameters(
            {"cfg": {k: cfg[k] for k in ("model", "dataset", "train")}, "stage": self.stage, "classes": self.classes}
        )
        self.cfg = cfg
        if self.stage == "pretrain":
            self.model = M.build_pretrain(cfg)
        else:
            self.model = M.build_classifier(cfg)
            self.mixup = Mixup(cfg["dataset"]["augmentation"], cfg["model"]["num_classes"])
        self._sum = {"train": 0.0, "val": 0.0}
        self._n = {"train": 0, "val": 0}
        self._correct = torch.zeros(max(len(self.classes), 1), dtype=torch.long)
        self._total = torch.zeros(max(len(self.classes), 1), dtype=torch.long)
        self._val_done = False

    # -- optimisation
    def configure_optimizers(self):
        opt = self.cfg["train"]["optim"]
        groups = M.param_groups(self.model, self.cfg, stage=self.stage)
        for g in groups:
            g["lr"] = opt["lr"] * g["lr_scale"]
        beta2 = 0.95 if self.stage == "pretrain" else 0.999
        optim = torch.optim.AdamW(groups, lr=opt["lr"], betas=(opt["momentum"], beta2))
        epochs = self.cfg["train"]["num_epochs"]
        per_epoch = max(1, math.ceil(self.trainer.estimated_stepping_batches / epochs))
        warm = opt["warmup_epochs"] * per_epoch
        total = epochs * per_epoch

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if opt["lr_scheduler"] == "cosine":
                span = max(total - warm, 1)
                return 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))
            epoch = step // per_epoch
            return opt["gamma"] ** sum(1 for m in opt["milestones"] if epoch >= m)

        sched = torch.optim.lr_scheduler.LambdaLR(optim, factor)
        return {"optimizer": optim, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- steps
    def _loss(self, x: torch.Tensor, y: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.stage == "pretrain":
            loss, _, _ = self.model(x)
            return loss, None
        if train:
            x, target = self.mixup(x, y)
            logits = self.model(x)
            return torch.sum(-target * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean(), None
        logits = self.model(x)
        return torch.nn.functional.cross_entropy(logits.float(), y), logits

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, _ = self._loss(x, y, True)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train_loss became {loss.item()} at step {self.global_step}; lower train.optim.lr or use train.precision=fp32."
            )
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        self._sum["train"] += float(loss.detach())
        self._n["train"] += 1
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss, logits = self._loss(x, y, False)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        self._sum["val"] += float(loss) * x.shape[0]
        self._n["val"] += x.shape[0]
        if logits is not None:
            pred = logits.argmax(-1).cpu()
            yc = y.cpu()
            self._total += torch.bincount(yc, minlength=self._total.numel())
            self._correct += torch.bincount(yc[pred == yc], minlength=self._total.numel())
        self._val_done = True

    def on_train_epoch_start(self) -> None:
        self._sum["train"], self._n["train"] = 0.0, 0

    def on_validation_epoch_start(self) -> None:
        self._sum["val"], self._n["val"] = 0.0, 0
        self._correct.zero_()
        self._total.zero_()

    def _mean(self, part: str) -> float | None:
        v = torch.tensor([self._sum[part], float(self._n[part])], device=self.device)
        if self.trainer.world_size > 1:
            v = self.all_gather(v).sum(0)
        return float(v[0] / v[1]) if v[1] > 0 else None

    def epoch_kpis(self) -> dict[str, float | None]:
        """KPIs of the epoch's status line: train_loss, and val_loss / ACC_all after a validation pass."""
        kpi: dict[str, float | None] = {"train_loss": self._mean("train")}
        if self._val_done:
            kpi["val_loss"] = self._mean("val")
            if self.stage == "finetune":
                c, t = self._correct.to(self.device), self._total.to(self.device)
                if self.trainer.world_size > 1:
                    c, t = self.all_gather(c).sum(0), self.all_gather(t).sum(0)
                kpi["ACC_all"] = float(c.sum() / t.sum().clamp_min(1))
            self._val_done = False
        return kpi


def _loader(samples, transform, bs: int, workers: int, *, train: bool, pin: bool):
    return torch.utils.data.DataLoader(
        D.ImageSet(samples, transform),
        batch_size=bs,
        shuffle=train,
        drop_last=train,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin,
    )


def _data(cfg: dict[str, Any], world: int) -> tuple[list, list | None, list[str]]:
    """(train samples, val samples or None, class names) after the folder checks."""
    ds, stage = cfg["dataset"], cfg["train"]["stage"]
    if stage == "pretrain":
        train = [(f, -1) for f in D.list_images(ds["train_data_sources"], field="dataset.train_data_sources")]
        classes: list[str] = []
        val = None
        if not unset(ds["val_data_sources"]):
            val = [(f, -1) for f in D.list_images(ds["val_data_sources"], field="dataset.val_data_sources")]
    else:
        classes, train = D.class_folders(ds["train_data_sources"], field="dataset.train_data_sources")
        n = cfg["model"]["num_classes"]
        if n != len(classes):
            raise PreflightError(
                f"num_classes mismatch (finetune only): model.num_classes={n} but dataset.train_data_sources has "
                f"{len(classes)} class folders ({', '.join(classes[:10])}).",
                field="model.num_classes",
                fix=f"set model.num_classes={len(classes)} to match the dataset class count.",
            )
        val = None
        if not unset(ds["val_data_sources"]):
            val_classes, val = D.class_folders(ds["val_data_sources"], field="dataset.val_data_sources")
            if val_classes != classes:
                raise PreflightError(
                    f"dataset.val_data_sources has classes {val_classes[:10]} but the training set has {classes[:10]}.",
                    field="dataset.val_data_sources",
                    fix="use the same class sub-folder names in the train and val folders.",
                )
    D.check_readable([f for f, _ in train], field="dataset.train_data_sources")
    if val:
        D.check_readable([f for f, _ in val], field="dataset.val_data_sources")
    if ds["batch_size"] * world > len(train):
        raise PreflightError(
            f"dataset.batch_size={ds['batch_size']} (x {world} device(s)) is larger than the {len(train)} training images; "
            "incomplete batches are dropped, so no step would run.",
            field="dataset.batch_size",
            fix=f"set dataset.batch_size to at most {len(train) // world}, or add images.",
        )
    return train, val, classes


def _init_weights(module: MAEModule, cfg: dict[str, Any]) -> dict[str, list[str]] | None:
    """Load ``train.pretrained_model_path`` (finetune: backbone only, head re-initialised)."""
    tr = cfg["train"]
    path = tr["pretrained_model_path"]
    if unset(path):
        if module.stage == "finetune":
            log.warning(
                "Stage mismatch check: train.stage=finetune without train.pretrained_model_path trains the "
                "classifier from scratch. Set train.pretrained_model_path to a pretrain checkpoint (or the "
                "parent pretrain job) to fine-tune pretrained MAE weights."
            )
        return None
    field = "train.pretrained_model_path"
    obj = L.load_checkpoint_file(str(path), field=field)
    _, saved, _ = checkpoint_meta(obj)
    theirs = (saved.get("model") or {}).get("arch")
    if theirs and theirs != cfg["model"]["arch"]:
        raise SpecError(
            f"{field}={path} holds a {theirs} model but model.arch={cfg['model']['arch']}.",
            field="model.arch",
            fix=f"set model.arch={theirs} (carry it forward from the pretrain job).",
        )
    sd = M.checkpoint_state(obj, field=field)
    if module.stage == "finetune":
        report = M.load_pretrained(module.model, sd, field=field)
        return report
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    res = module.model.load_state_dict(sd, strict=False)
    if len(res.missing_keys) == len(module.model.state_dict()):
        raise SpecError(
            f"{field}={path}: no weight matches the {cfg['model']['arch']} pretraining model.",
            field=field,
            fix="pass a pretrain checkpoint of the same model.arch.",
        )
    log.info(
        "continuing pretraining from %s (missing %d, unexpected %d keys)", path, len(res.missing_keys), len(res.unexpected_keys)
    )
    return {"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys), "dropped": []}


def run(ctx: ActionContext) -> dict[str, float]:
    """Train MAE per ``ctx.cfg``; returns the last epoch's KPIs.

    Raises SpecError / NotSupported / PreflightError (each naming the key and the fix) before any
    training when a value cannot be honoured.
    """
    cfg = ctx.cfg
    check(cfg, "train")
    tr, ds = cfg["train"], cfg["dataset"]
    precision = PRECISIONS[tr["precision"]]
    if precision == "16-mixed" and not torch.cuda.is_available():
        raise NotSupported(
            "train.precision=fp16 needs a CUDA GPU; fp16 mixed precision cannot run on this CPU-only host.",
            field="train.precision",
            fix="set train.precision to fp32 or bf16.",
        )
    accelerator, devices, nodes = L.devices(tr)
    world = L.world_size(devices, nodes)
    if tr["distributed_strategy"] == "fsdp" and accelerator != "gpu":
        raise NotSupported(
            "train.distributed_strategy=fsdp needs CUDA GPUs.", field="train.distributed_strategy", fix="use ddp on a CPU host."
        )
    if world == 1 and tr["distributed_strategy"] == "fsdp":
        log.info("train.distributed_strategy=fsdp on one device: nothing to shard; training runs unsharded.")
    train_samples, val_samples, classes = _data(cfg, world)
    aug = ds["augmentation"]
    if tr["stage"] == "pretrain":
        log.info(
            "train.stage=pretrain: masked reconstruction, mask_ratio=%s, norm_pix_loss=%s; auto_aug, color_jitter, "
            "re_prob, mixup/cutmix and smoothing apply to finetune only (as in MAE).",
            tr["mask_ratio"],
            tr["norm_pix_loss"],
        )
    resume = tr["resume_training_checkpoint_path"]
    resume = None if unset(resume) else str(Path(resume).expanduser())
    if resume:
        L.check_resume(resume, cfg, STRUCTURAL_KEYS, hint="pass pretrain checkpoints as train.pretrained_model_path to finetune.")
    if tr["seed"] is not None and tr["seed"] >= 0:
        pl.seed_everything(tr["seed"], workers=True, verbose=False)
    torch.backends.cudnn.benchmark = tr["cudnn"]["benchmark"]
    torch.backends.cudnn.deterministic = tr["cudnn"]["deterministic"]

    module = MAEModule(cfg, classes)
    if not resume:
        report = _init_weights(module, cfg)
        if report is not None:
            ctx.info["pretrained_load"] = report
            ctx.status.write(
                "RUNNING",
                f"Loaded train.pretrained_model_path: {len(report['missing'])} missing and {len(report['unexpected'])} "
                f"unexpected backbone keys; {len(report['dropped'])} pretraining-only keys dropped; head re-initialised.",
            )
    if tr["freeze"]:
        log.info("froze %d parameter tensors (train.freeze=%s)", M.apply_freeze(module.model, tr["freeze"]), tr["freeze"])

    workers, pin = ds["num_workers_per_gpu"], accelerator == "gpu"
    train_loader = _loader(
        train_samples, D.TrainTransform(aug, finetune=tr["stage"] == "finetune"), ds["batch_size"], workers, train=True, pin=pin
    )
    val_loader = None
    if val_samples:
        val_loader = _loader(val_samples, D.EvalTransform(aug), ds["batch_size"], workers, train=False, pin=pin)

    callbacks: list = [L.TaoTrainCallback(ctx, latest_name=f"{cfg['model']['arch']}_latest.pth")]
    ck = tr["checkpointer"]
    if ck["enable_topk"]:
        from pytorch_lightning.callbacks import ModelCheckpoint

        class _TopK(ModelCheckpoint):
            FILE_EXTENSION = ".pth"

        monitor = ck["monitor"] or tr["optim"]["monitor_name"]
        callbacks.append(
            _TopK(
                dirpath=ck["dirpath"] or str(ctx.results_dir),
                filename=ck["filename"],
                monitor=monitor,
                mode=ck["mode"] or ("max" if monitor == "ACC_all" else "min"),
                save_top_k=ck["save_top_k"],
                auto_insert_metric_name=ck["auto_insert_metric_name"],
            )
        )
    if world > 1:
        strategy = "fsdp" if tr["distributed_strategy"] == "fsdp" else "ddp_find_unused_parameters_true"
    else:
        strategy = "auto"
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=tr["num_epochs"],
        default_root_dir=str(ctx.results_dir),
        logger=L.loggers(cfg, ctx.results_dir),
        callbacks=callbacks,
        enable_checkpointing=ck["enable_topk"],
        accumulate_grad_batches=tr["accum_grad_batches"],
        check_val_every_n_epoch=tr["validation_interval"],
        limit_val_batches=1.0 if val_loader is not None else 0,
        enable_progress_bar=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=resume)
    return {k: float(v) for k, v in (ctx.info.get("kpis") or {}).items()}
