"""NVDINOv2 train action: DINOv2 self-distillation with PyTorch Lightning.

Outputs in ``<results_dir>/train`` (docs/tao-contract.md §3.4-3.5): ``model_epoch_EEE_step_SSSSS.pth``
(full Lightning checkpoint, for ``train.resume_training_checkpoint_path``),
``student_epoch_EEE_step_SSSSS.pth`` / ``teacher_epoch_EEE_step_SSSSS.pth`` (backbone state dicts,
for inference/export/``train.pretrained_model_path``), ``nvdinov2_model_latest.pth`` (symlink to
the newest model_epoch file), ``status.json`` with a ``train_loss`` KPI per epoch,
``experiment.yaml`` and ``lightning_logs/``. With ``TAO_SKILLS_LEAN_CHECKPOINTS=1`` (smoke-profile
jobs) the model_epoch files are lean (:mod:`taoskills.engine.nvdinov2.checkpoint`). Epochs are zero-indexed (TAO convention).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine import lightning as L
from taoskills.engine.common import check_readable, list_images
from taoskills.engine.contract import ActionContext
from taoskills.engine.nvdinov2 import checkpoint as C
from taoskills.engine.nvdinov2 import data as D
from taoskills.engine.nvdinov2 import model as M
from taoskills.engine.nvdinov2.spec import check, unset
from taoskills.errors import PreflightError

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
        self.lean_tag: str | None = None  # set while a lean save is written (checkpoint.py)
        self.resume_path: str | None = None  # where a lean checkpoint's companions lie

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.lean_tag is not None:
            C.make_lean(checkpoint, self.lean_tag)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.resume_path is not None:
            C.restore_backbones(checkpoint, self.resume_path)

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

    def epoch_kpis(self) -> dict[str, float | None]:
        """The epoch's KPIs for TAO's status line."""
        return {"train_loss": self.epoch_loss()}

    def epoch_loss(self) -> float | None:
        """Mean train loss of the current epoch over all ranks (None before the first step)."""
        value = torch.tensor([self._epoch_sum, float(self._epoch_n)], device=self.device)
        if self.trainer.world_size > 1:
            value = self.all_gather(value).sum(0)
        return float(value[0] / value[1]) if value[1] > 0 else None


#: Keys a resumed run must share with the checkpoint it resumes.
RESUME_KEYS = (
    "model.backbone.student_type",
    "model.backbone.patch_size",
    "model.backbone.img_size",
    "model.backbone.num_register_tokens",
    "model.head.num_layers",
    "model.head.hidden_dim",
    "model.head.bottleneck_dim",
    "train.num_prototypes",
)


def _student_teacher_files(tag: str, trainer, module: NVDINOv2Module, out: Path) -> list[Path]:
    """student_/teacher_<tag>.pth: backbone state dicts (for inference, export, pretrained_model_path)."""
    files = []
    for role in ("student", "teacher"):
        p = out / f"{role}_{tag}.pth"
        sd = {k: v.detach().cpu().clone() for k, v in getattr(module, role)["backbone"].state_dict().items()}
        torch.save(sd, p)
        files.append(p)
    return files


class _TrainCallback(L.TaoTrainCallback):
    """TAO status lines and checkpoints; with ``TAO_SKILLS_LEAN_CHECKPOINTS`` its saves are lean (checkpoint.py)."""

    lean = False

    def save(self, trainer, pl_module) -> None:
        if self.lean:
            pl_module.lean_tag = L.checkpoint_tag(trainer.current_epoch, trainer.global_step)
        try:
            super().save(trainer, pl_module)
        finally:
            pl_module.lean_tag = None


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
    accelerator, devices, nodes = L.devices(tr)
    files = list_images(ds["train_dataset"]["images_dir"], field="dataset.train_dataset.images_dir")
    check_readable(files, field="dataset.train_dataset.images_dir")
    world = L.world_size(devices, nodes)
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
        L.check_resume(
            resume,
            cfg,
            RESUME_KEYS,
            hint="student_epoch_* files hold weights only - pass those as train.pretrained_model_path instead.",
        )
        C.companions(L.load_checkpoint_file(resume, field=C.FIELD), resume)  # a lean save needs its companions
    if tr["seed"] is not None and tr["seed"] >= 0:
        pl.seed_everything(tr["seed"], workers=True, verbose=False)
    torch.backends.cudnn.benchmark = tr["cudnn"]["benchmark"]
    torch.backends.cudnn.deterministic = tr["cudnn"]["deterministic"]

    module = NVDINOv2Module(cfg)
    module.resume_path = resume
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

    cb = _TrainCallback(ctx, extra_files=_student_teacher_files)
    cb.lean = C.lean_enabled()
    callbacks: list = [cb]
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
        logger=L.loggers(cfg, ctx.results_dir),
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
