"""NVDINOv2 train action: DINOv2 self-distillation with PyTorch Lightning.

Outputs in ``<results_dir>/train`` (anchor_report_tao.md §3.4-3.5): ``model_epoch_EEE_step_SSSSS.pth``
(full Lightning checkpoint, for ``train.resume_training_checkpoint_path``),
``student_epoch_EEE_step_SSSSS.pth`` / ``teacher_epoch_EEE_step_SSSSS.pth`` (backbone state dicts,
for inference/export/``train.pretrained_model_path``), ``nvdinov2_model_latest.pth`` (symlink to
the newest model_epoch file), ``status.json`` with a ``train_loss`` KPI per epoch,
``experiment.yaml`` and ``lightning_logs/``. Epochs are zero-indexed (TAO convention).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine.contract import ActionContext, format_duration
from taoskills.engine.nvdinov2 import data as D
from taoskills.engine.nvdinov2 import model as M
from taoskills.engine.nvdinov2.spec import CPU_BAD_PRECISIONS, check, unset
from taoskills.errors import NotSupported, PreflightError, SpecError

log = logging.getLogger("taoskills.engine.nvdinov2")


class NVDINOv2Module(pl.LightningModule):
    """Student (backbone + DINO head), EMA teacher, losses and TAO schedules."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": {k: cfg[k] for k in ("model", "dataset", "train")}})
        self.cfg = cfg
        head_cfg, tr = cfg["model"]["head"], cfg["train"]
        self.student = torch.nn.ModuleDict({"backbone": M.build_backbone(cfg)})
        dim = self.student["backbone"].config.hidden_size
        self.student["head"] = M.DINOHead(
            dim, tr["num_prototypes"], head_cfg["num_layers"], head_cfg["hidden_dim"], head_cfg["bottleneck_dim"]
        )
        self.teacher = torch.nn.ModuleDict({"backbone": M.build_backbone(cfg, drop_path=0.0)})
        self.teacher["head"] = M.DINOHead(
            dim, tr["num_prototypes"], head_cfg["num_layers"], head_cfg["hidden_dim"], head_cfg["bottleneck_dim"]
        )
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.n_global = cfg["dataset"]["transform"]["n_global_crops"]
        self.use_ibot = not cfg["model"]["distill"]["disable_masking"]
        self.sched = tr["schedulers"]
        self._epoch_sum = 0.0
        self._epoch_n = 0

    def configure_optimizers(self):
        groups = M.param_groups(self.student["backbone"], self.student["head"], self.cfg["train"]["layerwise_decay"])
        return torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999))

    def _apply_schedules(self, step: int) -> None:
        lr = M.cosine_schedule(step, self.sched["learning_rate"])
        ll = self.sched["last_layer_learning_rate"]
        last_lr = M.cosine_schedule(step, ll, freeze_steps=int(ll.get("freeze_steps", 0)))
        wd = M.cosine_schedule(step, self.sched["weight_decay"])
        for group in self.optimizers().optimizer.param_groups:
            base = last_lr if group["is_last_layer"] else lr
            group["lr"] = base * group["lr_multiplier"]
            group["weight_decay"] = wd * group["wd_multiplier"]

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._apply_schedules(self.global_step)

    def training_step(self, batch, batch_idx):
        glob, loc, masks = batch["global"], batch["local"], batch["masks"]
        n_g = self.n_global
        bsz = glob.shape[0] // n_g
        temp = M.cosine_schedule(self.global_step, self.sched["teacher_temperature"])
        use_masks = self.use_ibot and bool(masks.any())
        n_pre = M.num_prefix_tokens(self.student["backbone"])

        with torch.no_grad():
            t_out = self.teacher["backbone"](pixel_values=glob).last_hidden_state
            t_cls = self.teacher["head"](t_out[:, 0])
            t_probs = M.sinkhorn_knopp(t_cls, temp).chunk(n_g)
            if use_masks:
                t_patch = self.teacher["head"](t_out[:, n_pre:][masks])
                t_patch_probs = M.sinkhorn_knopp(t_patch, temp)

        s_out = self.student["backbone"](pixel_values=glob, bool_masked_pos=masks if use_masks else None).last_hidden_state
        s_cls_emb = s_out[:, 0]
        s_logits = list(self.student["head"](s_cls_emb).chunk(n_g))
        if loc is not None:
            l_out = self.student["backbone"](pixel_values=loc).pooler_output
            s_logits += list(self.student["head"](l_out).chunk(loc.shape[0] // bsz))

        loss_dino = M.dino_loss(s_logits, list(t_probs), n_g)
        loss = loss_dino
        if use_masks:
            loss_ibot = M.ibot_loss(self.student["head"](s_out[:, n_pre:][masks]), t_patch_probs, masks)
            loss = loss + loss_ibot
            self.log("ibot_loss", loss_ibot, on_step=True, on_epoch=False, batch_size=bsz)
        if bsz >= 2:
            loss_koleo = sum(M.koleo_loss(c) for c in s_cls_emb.chunk(n_g))
            loss = loss + M.KOLEO_WEIGHT * loss_koleo
            self.log("koleo_loss", loss_koleo, on_step=True, on_epoch=False, batch_size=bsz)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"train_loss became {loss.item()} at step {self.global_step}; lower "
                "train.schedulers.learning_rate.val_base or use train.precision=32-true."
            )
        self.log("dino_loss", loss_dino, on_step=True, on_epoch=False, batch_size=bsz)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=bsz, sync_dist=True)
        self._epoch_sum += float(loss.detach())
        self._epoch_n += 1
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        m = M.cosine_schedule(max(self.global_step - 1, 0), self.sched["momentum"])
        s_params = list(self.student.parameters())
        t_params = list(self.teacher.parameters())
        torch._foreach_mul_(t_params, m)
        torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1.0 - m)

    def on_train_epoch_start(self) -> None:
        self._epoch_sum, self._epoch_n = 0.0, 0
        self.teacher.eval()

    def epoch_loss(self) -> float | None:
        """Mean train loss of the current epoch over all ranks (None before the first step)."""
        value = torch.tensor([self._epoch_sum, float(self._epoch_n)], device=self.device)
        if self.trainer.world_size > 1:
            value = self.all_gather(value).sum(0)
        return float(value[0] / value[1]) if value[1] > 0 else None


class TaoCallback(pl.Callback):
    """Per-epoch status lines (TAO train format) and TAO-named checkpoints."""

    def __init__(self, ctx: ActionContext) -> None:
        self.ctx = ctx
        self.out = ctx.results_dir
        tr = ctx.cfg["train"]
        self.unit, self.interval = tr["checkpoint_interval_unit"], tr["checkpoint_interval"]
        self.replace = tr["checkpointer"]["replace_periodic"]
        self.saved: list[Path] = []
        self.t0 = time.time()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t0 = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch, max_epoch = trainer.current_epoch, trainer.max_epochs
        dt = time.time() - self.t0
        loss = pl_module.epoch_loss()
        kpi = {"train_loss": loss} if loss is not None else None
        self.ctx.status.write(
            "RUNNING",
            "Training loop in progress",
            kpi=kpi,
            epoch=epoch,
            max_epoch=max_epoch,
            time_per_epoch=format_duration(dt),
            eta=format_duration(dt * (max_epoch - epoch - 1)),
        )
        self.ctx.info["train_loss"] = loss
        log.info("epoch %d/%d train_loss=%.4f (%.1fs)", epoch, max_epoch - 1, loss if loss is not None else float("nan"), dt)
        if self.unit == "epoch" and ((epoch + 1) % self.interval == 0 or epoch + 1 == max_epoch):
            self.save(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.unit == "step" and trainer.global_step % self.interval == 0:
            self.save(trainer, pl_module)

    def save(self, trainer, pl_module) -> None:
        tag = f"epoch_{trainer.current_epoch:03d}_step_{trainer.global_step:05d}"
        model_path = self.out / f"model_{tag}.pth"
        if model_path.exists():
            return
        trainer.save_checkpoint(str(model_path))
        if not trainer.is_global_zero:
            return
        files = [model_path]
        for role in ("student", "teacher"):
            p = self.out / f"{role}_{tag}.pth"
            sd = {k: v.detach().cpu().clone() for k, v in getattr(pl_module, role)["backbone"].state_dict().items()}
            torch.save(sd, p)
            files.append(p)
        latest = self.out / "nvdinov2_model_latest.pth"
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(model_path.name)
        if self.replace:
            for old in self.saved:
                old.unlink(missing_ok=True)
        self.saved = files
        log.info("saved %s (+ student/teacher weights)", model_path.name)


def _devices(tr: dict[str, Any]) -> tuple[str, Any, int]:
    """(accelerator, devices, num_nodes) for Lightning from train.num_gpus/gpu_ids/num_nodes."""
    n, ids, nodes = tr["num_gpus"], list(tr["gpu_ids"] or []), tr["num_nodes"]
    if not torch.cuda.is_available():
        if n > 1 or nodes > 1:
            raise PreflightError(
                f"train.num_gpus={n}, train.num_nodes={nodes} but this host has no CUDA GPU.",
                field="train.num_gpus",
                fix="run on a GPU host, or set train.num_gpus=1 and train.num_nodes=1 to train on the CPU (small data only).",
            )
        log.warning("No CUDA GPU found: train.num_gpus=1 runs on the CPU (slow; fine for small data).")
        return "cpu", 1, 1
    if len(ids) != n:
        log.warning(
            "train.gpu_ids %s has %d entries but train.num_gpus=%d; using GPUs %s (as TAO reconciles).",
            ids,
            len(ids),
            n,
            list(range(n)),
        )
        ids = list(range(n))
    bad = [i for i in ids if i >= torch.cuda.device_count()]
    if bad:
        raise PreflightError(
            f"train.gpu_ids {bad} do not exist (this host has {torch.cuda.device_count()} GPU(s)).",
            field="train.gpu_ids",
            fix="use ids from 0 to device_count-1.",
        )
    return "gpu", ids, nodes


def _loggers(cfg: dict[str, Any], out: Path) -> list:
    from pytorch_lightning.loggers import CSVLogger

    loggers: list = []
    try:
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="lightning_logs"))
    except ImportError:
        loggers.append(CSVLogger(str(out), name="lightning_logs"))
    wb = cfg["wandb"]
    if wb["enable"]:
        try:
            import wandb  # noqa: F401
        except ImportError:
            log.warning(
                "wandb.enable=true but the wandb package is not installed: W&B logging is off for this "
                "run (as TAO does when W&B is not logged in). Metrics are in status.json and lightning_logs. "
                "Set wandb.enable=false to silence this, or pip install wandb and set WANDB_API_KEY."
            )
            return loggers
        if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled")):
            log.warning(
                "wandb.enable=true but WANDB_API_KEY is not set: W&B logging is off for this run "
                "(as TAO does when W&B is not logged in). Set WANDB_API_KEY (or WANDB_MODE=offline), "
                "or set wandb.enable=false."
            )
            return loggers
        from pytorch_lightning.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=wb["project"],
                entity=wb["entity"] or None,
                group=wb["group"] or None,
                tags=list(wb["tags"] or []),
                name=wb["name"],
                id=wb["run_id"] or None,
                save_dir=str(out),
                reinit=wb["reinit"],
                sync_tensorboard=wb["sync_tensorboard"],
                save_code=wb["save_code"],
            )
        )
    return loggers


def _check_resume(path: str, cfg: dict[str, Any]) -> None:
    obj = M.load_checkpoint_file(path, field="train.resume_training_checkpoint_path")
    if not (isinstance(obj, dict) and "state_dict" in obj and "optimizer_states" in obj):
        raise SpecError(
            f"train.resume_training_checkpoint_path={path} is not a full training checkpoint.",
            field="train.resume_training_checkpoint_path",
            fix="resume from a model_epoch_*.pth file (or nvdinov2_model_latest.pth); student_epoch_* files "
            "hold weights only - pass those as train.pretrained_model_path instead.",
        )
    own = (obj.get("hyper_parameters") or {}).get("cfg") or {}
    for key in (
        "model.backbone.student_type",
        "model.backbone.patch_size",
        "model.backbone.img_size",
        "model.backbone.num_register_tokens",
        "model.head.num_layers",
        "model.head.hidden_dim",
        "model.head.bottleneck_dim",
        "train.num_prototypes",
    ):
        theirs, mine = own, cfg
        for part in key.split("."):
            theirs = theirs.get(part) if isinstance(theirs, dict) else None
            mine = mine[part]
        if theirs is not None and theirs != mine:
            raise SpecError(
                f"train.resume_training_checkpoint_path was trained with {key}={theirs}; the spec has {mine}.",
                field=key,
                fix=f"set {key}={theirs} to resume that run.",
            )


def run(ctx: ActionContext) -> dict[str, float]:
    """Train NVDINOv2 per ``ctx.cfg``; returns the final KPI ``{"train_loss": last epoch mean}``.

    Raises SpecError / NotSupported / PreflightError (each naming the key and the fix) before any
    training when a value cannot be honoured.
    """
    cfg = ctx.cfg
    check(cfg, "train")
    tr, ds = cfg["train"], cfg["dataset"]
    if not unset(cfg["model"]["distill"]["pretrained_non_distill_pl_model_path"]):
        log.warning(
            "model.distill.pretrained_non_distill_pl_model_path is only used for distillation "
            "(model.distill.enable=true); it has no effect on this run."
        )
    accelerator, devices, nodes = _devices(tr)
    if accelerator == "cpu" and tr["precision"] in CPU_BAD_PRECISIONS:
        raise NotSupported(
            f"train.precision={tr['precision']} needs a CUDA GPU; fp16 mixed precision cannot run on this CPU-only host.",
            field="train.precision",
            fix='set train.precision to "32-true" or "bf16-mixed".',
        )
    files = D.list_images(ds["train_dataset"]["images_dir"], field="dataset.train_dataset.images_dir")
    D.check_readable(files, field="dataset.train_dataset.images_dir")
    world = (len(devices) if isinstance(devices, list) else devices) * nodes
    if ds["batch_size"] * world > len(files):
        raise PreflightError(
            f"dataset.batch_size={ds['batch_size']} (x {world} device(s)) is larger than the {len(files)} images in "
            "dataset.train_dataset.images_dir; training drops incomplete batches, so no step would run.",
            field="dataset.batch_size",
            fix=f"set dataset.batch_size to at most {len(files) // world}, or add images.",
        )
    resume = tr["resume_training_checkpoint_path"]
    resume = None if unset(resume) else str(Path(resume).expanduser())
    if resume:
        _check_resume(resume, cfg)
    if tr["seed"] is not None and tr["seed"] >= 0:
        pl.seed_everything(tr["seed"], workers=True, verbose=False)
    torch.backends.cudnn.benchmark = tr["cudnn"]["benchmark"]
    torch.backends.cudnn.deterministic = tr["cudnn"]["deterministic"]

    module = NVDINOv2Module(cfg)
    if not unset(tr["pretrained_model_path"]) and not resume:
        sd = M.backbone_weights(tr["pretrained_model_path"], field="train.pretrained_model_path")
        M.load_backbone_weights(module.student["backbone"], sd, field="train.pretrained_model_path")
        M.load_backbone_weights(module.teacher["backbone"], sd, field="train.pretrained_model_path")
        log.info("loaded pretrained backbone weights into student and teacher from %s", tr["pretrained_model_path"])

    loader = torch.utils.data.DataLoader(
        D.MultiCropDataset(files, ds["transform"]),
        batch_size=ds["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=ds["workers"],
        persistent_workers=True,
        pin_memory=bool(ds["pin_memory"]) and accelerator == "gpu",
        collate_fn=D.Collate(
            cfg["model"]["backbone"]["patch_size"],
            ds["transform"]["global_crops_size"],
            masking=not cfg["model"]["distill"]["disable_masking"],
        ),
    )

    callbacks: list = [TaoCallback(ctx)]
    ck = tr["checkpointer"]
    if ck["enable_topk"]:
        from pytorch_lightning.callbacks import ModelCheckpoint

        class _TopK(ModelCheckpoint):
            FILE_EXTENSION = ".pth"

        callbacks.append(
            _TopK(
                dirpath=ck["dirpath"] or str(ctx.results_dir),
                filename=ck["filename"],
                monitor="train_loss",
                mode=ck["mode"] or "min",
                save_top_k=ck["save_top_k"],
                auto_insert_metric_name=ck["auto_insert_metric_name"],
                save_on_train_epoch_end=True,
            )
        )
    # DDP must tolerate parameters without a gradient in a step (e.g. the mask token when a batch
    # has no iBOT mask, or with model.distill.disable_masking=true).
    strategy = "ddp_find_unused_parameters_true" if world > 1 else "auto"
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy=strategy,
        precision=tr["precision"],
        max_epochs=tr["num_epochs"],
        default_root_dir=str(ctx.results_dir),
        logger=_loggers(cfg, ctx.results_dir),
        callbacks=callbacks,
        enable_checkpointing=ck["enable_topk"],
        gradient_clip_val=tr["clip_grad_norm"] or None,
        gradient_clip_algorithm="norm",
        enable_progress_bar=False,
        log_every_n_steps=1,
        sync_batchnorm=world > 1,
        deterministic=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=resume)
    loss = ctx.info.get("train_loss")
    return {"train_loss": float(loss)} if loss is not None else {}
