"""Lightning plumbing shared by every built-in trainer (imports torch and pytorch_lightning).

* :func:`devices` — (accelerator, devices, num_nodes) from TAO's ``train.num_gpus``,
  ``train.gpu_ids`` and ``train.num_nodes`` (TAO Core 7.3.0 TrainConfig), refusing what the
  host cannot do;
* :func:`loggers` — TensorBoard (else CSV) under ``results_dir/lightning_logs`` plus W&B when
  ``wandb.enable`` and credentials allow (TAO turns W&B off when not logged in);
* :class:`TaoTrainCallback` — TAO's per-epoch ``status.json`` RUNNING lines (epoch,
  max_epoch, time_per_epoch, eta, KPIs) and TAO checkpoint names
  ``model_epoch_EEE_step_SSSSS.pth`` with a ``<network>_model_latest.pth`` link, honouring
  ``train.checkpoint_interval``/``checkpoint_interval_unit`` (results contract:
  docs/tao-contract.md §3.4-3.5; public TAO PyTorch code
  ``nvidia_tao_pytorch/core/callbacks``);
* :func:`check_resume` — a resume checkpoint is a full Lightning checkpoint whose structural
  keys match the spec.

Epochs are zero-indexed (TAO convention).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from taoskills.engine.contract import ActionContext, format_duration
from taoskills.engine.registry import CPU_BAD_PRECISIONS
from taoskills.errors import NotSupported, PreflightError, SpecError

log = logging.getLogger("taoskills.engine")


def devices(tr: dict[str, Any]) -> tuple[str, Any, int]:
    """(accelerator, devices, num_nodes) for ``pl.Trainer`` from ``train.num_gpus/gpu_ids/num_nodes``.

    On a host without CUDA: ``("cpu", 1, 1)`` when one device on one node was asked for, else
    PreflightError. ``gpu_ids`` that disagree with ``num_gpus`` are reconciled as TAO does
    (``range(num_gpus)``); ids beyond the device count are a PreflightError. fp16 precision on
    a CPU is refused (NotSupported) when ``tr`` has ``precision``.
    """
    n, ids, nodes = tr.get("num_gpus", 1), list(tr.get("gpu_ids") or []), tr.get("num_nodes", 1)
    if not torch.cuda.is_available():
        if n > 1 or nodes > 1:
            raise PreflightError(
                f"train.num_gpus={n}, train.num_nodes={nodes} but this host has no CUDA GPU.",
                field="train.num_gpus",
                fix="run on a GPU host, or set train.num_gpus=1 and train.num_nodes=1 to train on the CPU (small data only).",
            )
        if str(tr.get("precision", "")) in CPU_BAD_PRECISIONS:
            raise NotSupported(
                f"train.precision={tr['precision']} needs a CUDA GPU; fp16 mixed precision cannot run on this CPU-only host.",
                field="train.precision",
                fix='set train.precision to "32-true" or "bf16-mixed".',
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


def world_size(devs: Any, nodes: int) -> int:
    """Number of processes a Trainer with ``devices=devs, num_nodes=nodes`` runs."""
    return (len(devs) if isinstance(devs, list) else int(devs)) * nodes


def loggers(cfg: dict[str, Any], out: Path) -> list:
    """Lightning loggers for ``results_dir`` ``out``: TensorBoard when installed (else CSV), and
    W&B when ``cfg["wandb"]["enable"]`` and the package and credentials are present (warning
    otherwise, as TAO does)."""
    from pytorch_lightning.loggers import CSVLogger

    result: list = []
    try:
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        result.append(TensorBoardLogger(str(out), name="lightning_logs"))
    except ImportError:
        result.append(CSVLogger(str(out), name="lightning_logs"))
    wb = cfg.get("wandb") or {}
    if not wb.get("enable"):
        return result
    try:
        import wandb  # noqa: F401
    except ImportError:
        log.warning(
            "wandb.enable=true but the wandb package is not installed: W&B logging is off for this "
            "run (as TAO does when W&B is not logged in). Metrics are in status.json and lightning_logs. "
            "Set wandb.enable=false to silence this, or pip install wandb and set WANDB_API_KEY."
        )
        return result
    if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") in ("offline", "disabled")):
        log.warning(
            "wandb.enable=true but WANDB_API_KEY is not set: W&B logging is off for this run "
            "(as TAO does when W&B is not logged in). Set WANDB_API_KEY (or WANDB_MODE=offline), "
            "or set wandb.enable=false."
        )
        return result
    from pytorch_lightning.loggers import WandbLogger

    result.append(
        WandbLogger(
            project=wb.get("project"),
            entity=wb.get("entity") or None,
            group=wb.get("group") or None,
            tags=list(wb.get("tags") or []),
            name=wb.get("name"),
            id=wb.get("run_id") or None,
            save_dir=str(out),
            reinit=wb.get("reinit", False),
            sync_tensorboard=wb.get("sync_tensorboard", False),
            save_code=wb.get("save_code", False),
        )
    )
    return result


def _int_or_none(value: Any) -> int | None:
    try:
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if 0 < v < 10**12 else None


def progress_every() -> int | None:
    """Steps between progress lines: env ``TAO_SKILLS_PROGRESS_STEPS`` (None: about 20 lines a run, at most every 50 steps)."""
    return _int_or_none(os.environ.get("TAO_SKILLS_PROGRESS_STEPS"))


def keep_last_checkpoints() -> int | None:
    """Checkpoint saves kept per run: env ``TAO_SKILLS_KEEP_CHECKPOINTS`` (unset or ``0``: all, as TAO
    does; jobs launched by the runtime get 1 by default, see ``taoskills.security.env.job_env``;
    ``train.checkpointer.replace_periodic: true`` keeps 1). Older saves are
    deleted with their companion files (student/teacher weights); ``train.checkpoint_interval`` still
    decides when saves happen."""
    return _int_or_none(os.environ.get("TAO_SKILLS_KEEP_CHECKPOINTS"))


def checkpoint_tag(epoch: int, step: int) -> str:
    """TAO's checkpoint tag ``epoch_EEE_step_SSSSS`` (zero-indexed epoch)."""
    return f"epoch_{epoch:03d}_step_{step:05d}"


#: (trainer, module) -> KPI dict for the epoch's status line (None values are dropped).
KpiFn = Callable[[Any, Any], dict[str, float | None]]
#: (tag, trainer, module, out_dir) -> extra files written beside model_<tag>.pth (rank 0 only).
ExtraFilesFn = Callable[[str, Any, Any, Path], Iterable[Path]]


class TaoTrainCallback(pl.Callback):
    """Per-epoch TAO status lines and TAO-named checkpoints for ``ctx`` (an ActionContext).

    ``kpis(trainer, module)`` gives the epoch's KPIs (default: ``module.epoch_kpis()`` when the
    module has it, else float ``trainer.callback_metrics``). ``extra_files`` writes companion
    files per checkpoint (e.g. NVDINOv2's student/teacher weights). The last KPIs are kept in
    ``ctx.info["kpis"]`` (and each one as ``ctx.info[name]``). ``train`` keys read:
    ``checkpoint_interval`` (default 1), ``checkpoint_interval_unit`` (``epoch``|``step``),
    ``checkpointer.replace_periodic`` (keep only the newest periodic checkpoint); env
    ``TAO_SKILLS_KEEP_CHECKPOINTS`` keeps the newest N saves. Every N optimiser steps
    (:func:`progress_every`) a RUNNING line gives ``step``, ``max_step``, ``steps_per_s`` and
    ``eta`` (the per-epoch lines are unchanged); epoch KPIs also go to the Lightning loggers
    (TensorBoard ``kpi/<name>``, x = zero-indexed epoch); at the end the KPI curves are drawn
    to ``results_dir/kpi_curves.png`` (:mod:`taoskills.jobs.plots`).
    """

    def __init__(
        self,
        ctx: ActionContext,
        *,
        kpis: KpiFn | None = None,
        extra_files: ExtraFilesFn | None = None,
        latest_name: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.out = ctx.results_dir
        tr = ctx.cfg.get("train") or {}
        self.unit = tr.get("checkpoint_interval_unit", "epoch") or "epoch"
        self.interval = max(int(tr.get("checkpoint_interval", 1) or 1), 1)
        self.replace = bool((tr.get("checkpointer") or {}).get("replace_periodic", False))
        self.kpis = kpis
        self.extra_files = extra_files
        self.latest_name = latest_name or f"{ctx.network}_model_latest.pth"
        self.saved: list[list[Path]] = []
        self.keep = keep_last_checkpoints()
        self.t0 = time.time()
        self.step_t0: float | None = None
        self.step0 = 0
        self.every = progress_every()

    def _kpis(self, trainer: Any, module: Any) -> dict[str, float]:
        if self.kpis is not None:
            raw = self.kpis(trainer, module)
        elif hasattr(module, "epoch_kpis"):
            raw = module.epoch_kpis()
        else:
            raw = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        return {k: float(v) for k, v in (raw or {}).items() if v is not None}

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.t0 = time.time()
        if self.step_t0 is None:
            self.step_t0, self.step0 = self.t0, trainer.global_step

    def _progress(self, trainer: Any) -> None:
        """A RUNNING line every ``self.every`` optimiser steps: step, max_step, steps_per_s, eta."""
        step = trainer.global_step
        total = _int_or_none(getattr(trainer, "estimated_stepping_batches", None))
        every = self.every or max(1, min(50, (total or 20) // 20))
        if step < 1 or (step % every and step != 1) or self.step_t0 is None or not trainer.is_global_zero:
            return
        rate = (step - self.step0) / max(time.time() - self.step_t0, 1e-6)
        extra: dict[str, Any] = {"step": step, "steps_per_s": round(rate, 4)}
        if total:
            extra["max_step"] = total
            extra["eta"] = format_duration(max(total - step, 0) / rate) if rate > 0 else None
        self.ctx.status.write("RUNNING", f"step {step}" + (f"/{total}" if total else ""), **extra)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch, max_epoch = trainer.current_epoch, trainer.max_epochs
        dt = time.time() - self.t0
        kpi = self._kpis(trainer, pl_module)
        self.ctx.status.write(
            "RUNNING",
            "Training loop in progress",
            kpi=kpi or None,
            epoch=epoch,
            max_epoch=max_epoch,
            time_per_epoch=format_duration(dt),
            eta=format_duration(dt * (max_epoch - epoch - 1)),
        )
        self.ctx.info["kpis"] = kpi
        self.ctx.info.update(kpi)
        for logger in getattr(trainer, "loggers", None) or []:
            if kpi and trainer.is_global_zero:
                logger.log_metrics({f"kpi/{k}": v for k, v in kpi.items()}, step=epoch)
        shown = " ".join(f"{k}={v:.4f}" for k, v in kpi.items())
        log.info("epoch %d/%d %s (%.1fs)", epoch + 1, max_epoch, shown, dt)  # one-indexed, as the CLI shows it
        if self.unit == "epoch" and ((epoch + 1) % self.interval == 0 or epoch + 1 == max_epoch):
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the KPI curves as ``results_dir/kpi_curves.png`` (rank 0; skipped without matplotlib)."""
        if not trainer.is_global_zero:
            return
        from taoskills.jobs.plots import plot_status_file

        try:
            path = plot_status_file(self.ctx.status.path, self.out / "kpi_curves.png")
        except ImportError:
            log.warning("matplotlib is not installed: no kpi_curves.png (pip install 'tao-skills[engine]')")
            return
        if path is not None:
            log.info("KPI curves: %s", path)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._progress(trainer)
        if self.unit == "step" and trainer.global_step % self.interval == 0:
            self.save(trainer, pl_module)

    def save(self, trainer: Any, pl_module: Any) -> None:
        """Write ``model_<tag>.pth`` (full Lightning checkpoint), extra files, the latest link."""
        tag = checkpoint_tag(trainer.current_epoch, trainer.global_step)
        model_path = self.out / f"model_{tag}.pth"
        if model_path.exists():
            return
        trainer.save_checkpoint(str(model_path))
        if not trainer.is_global_zero:
            return
        files = [model_path]
        if self.extra_files is not None:
            files.extend(self.extra_files(tag, trainer, pl_module, self.out))
        latest = self.out / self.latest_name
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(model_path.name)
        self.saved.append(files)
        keep = 1 if self.replace else self.keep
        while keep and len(self.saved) > keep:
            for old in self.saved.pop(0):
                old.unlink(missing_ok=True)
        log.info("saved %s", ", ".join(p.name for p in files))


def load_checkpoint_file(path: str, *, field: str) -> Any:
    """``torch.load`` of a checkpoint on the CPU; SpecError naming ``field`` when missing/unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpecError(f"{field}={path} does not exist.", field=field, fix="pass the path of an existing checkpoint file.")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise SpecError(
            f"{field}={path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}).",
            field=field,
            fix="pass a .pth file written by this network's train action.",
        ) from exc


def check_resume(path: str, cfg: dict[str, Any], structural_keys: Iterable[str], *, hint: str = "") -> None:
    """Refuse a resume checkpoint that is not a full Lightning checkpoint or was trained with
    different structural keys (dotted, e.g. ``model.backbone.type``) than ``cfg``.

    The checkpoint's own config is read from ``hyper_parameters["cfg"]`` (what our modules save
    with ``save_hyperparameters({"cfg": ...})``). Errors: SpecError naming the key and the fix.
    """
    field = "train.resume_training_checkpoint_path"
    obj = load_checkpoint_file(path, field=field)
    if not (isinstance(obj, dict) and "state_dict" in obj and "optimizer_states" in obj):
        raise SpecError(
            f"{field}={path} is not a full training checkpoint.",
            field=field,
            fix="resume from a model_epoch_*.pth file (or the *_model_latest.pth link)" + (f"; {hint}" if hint else "."),
        )
    own = (obj.get("hyper_parameters") or {}).get("cfg") or {}
    for key in structural_keys:
        theirs, mine = own, cfg
        for part in key.split("."):
            theirs = theirs.get(part) if isinstance(theirs, dict) else None
            mine = mine.get(part) if isinstance(mine, dict) else None
        if theirs is not None and theirs != mine:
            raise SpecError(
                f"{field} was trained with {key}={theirs}; the spec has {mine}.",
                field=key,
                fix=f"set {key}={theirs} to resume that run.",
            )
