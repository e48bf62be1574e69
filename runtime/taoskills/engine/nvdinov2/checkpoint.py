"""NVDINOv2 lean training checkpoints (env ``TAO_SKILLS_LEAN_CHECKPOINTS=1``; the skill's smoke profile).

A full ``model_epoch_EEE_step_SSSSS.pth`` holds the student and teacher (backbone + head) and
AdamW's two moment tensors per student parameter: 445 MB for the smoke profile's ViT-S, beside
``student_``/``teacher_`` backbone files that repeat the backbones (another 174 MB). A lean
checkpoint keeps it a Lightning checkpoint that ``train.resume_training_checkpoint_path``
accepts, but stores each tensor once:

* the student and teacher **backbones** are not repeated in ``state_dict``: they are the
  companion ``student_<tag>.pth`` / ``teacher_<tag>.pth`` files of the same save (named under
  :data:`LEAN_KEY`), read back on resume before Lightning loads the state dict;
* the **optimizer state** is dropped (``optimizer_states`` keeps the param groups only):
  epoch, global step and so every schedule (a function of the global step) resume exactly;
  AdamW restarts its moment estimates (and bias correction) at the resumed step.

Resume therefore works from the newest save of a lean run as from a full one; only the
optimizer's running averages start afresh. Long runs keep TAO's full checkpoints (unset env).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from taoskills.errors import SpecError

#: Checkpoint key naming the companion backbone files of a lean checkpoint.
LEAN_KEY = "tao_skills_lean"
#: state_dict prefixes stored in the companion files instead.
BACKBONE_PREFIXES = {"student": "student.backbone.", "teacher": "teacher.backbone."}
FIELD = "train.resume_training_checkpoint_path"


def lean_enabled() -> bool:
    """True when env ``TAO_SKILLS_LEAN_CHECKPOINTS`` is ``1``/``true``/``yes`` (set for smoke-profile jobs)."""
    return os.environ.get("TAO_SKILLS_LEAN_CHECKPOINTS", "").strip().lower() in ("1", "true", "yes")


def make_lean(checkpoint: dict[str, Any], tag: str) -> None:
    """Turn a Lightning checkpoint dict (as ``on_save_checkpoint`` sees it) into a lean one, in place.

    Drops ``student.backbone.*`` / ``teacher.backbone.*`` from ``state_dict`` (they are the
    ``student_<tag>.pth`` / ``teacher_<tag>.pth`` files written with the same save) and the
    per-parameter optimizer state (param groups kept).
    """
    sd = checkpoint["state_dict"]
    for prefix in BACKBONE_PREFIXES.values():
        for key in [k for k in sd if k.startswith(prefix)]:
            del sd[key]
    checkpoint["optimizer_states"] = [
        {"state": {}, "param_groups": opt.get("param_groups", [])} for opt in checkpoint.get("optimizer_states") or []
    ]
    checkpoint[LEAN_KEY] = {role: f"{role}_{tag}.pth" for role in BACKBONE_PREFIXES}


def companions(checkpoint: dict[str, Any], ckpt_path: str | Path) -> dict[str, Path]:
    """role -> companion file of a lean checkpoint at ``ckpt_path`` ({} for a full checkpoint).

    Links (``nvdinov2_model_latest.pth``) are resolved first: the companions lie beside the
    file they point to. Errors: SpecError naming the resume key when a companion is missing.
    """
    names = checkpoint.get(LEAN_KEY) if isinstance(checkpoint, dict) else None
    if not names:
        return {}
    folder = Path(ckpt_path).expanduser().resolve().parent
    out = {role: folder / name for role, name in names.items()}
    missing = [p.name for p in out.values() if not p.is_file()]
    if missing:
        raise SpecError(
            f"{FIELD}={ckpt_path} is a lean checkpoint (smoke profile) whose backbone weights are in "
            f"{', '.join(missing)}, which are missing from {folder}.",
            field=FIELD,
            fix="keep the student_/teacher_ files of the same save beside the model_epoch file, or resume from another save.",
        )
    return out


def restore_backbones(checkpoint: dict[str, Any], ckpt_path: str | Path) -> None:
    """Fill a lean checkpoint's ``state_dict`` back from its companion files, in place (no-op for a full one)."""
    import torch

    files = companions(checkpoint, ckpt_path)
    sd = checkpoint["state_dict"]
    for role, path in files.items():
        weights = torch.load(str(path), map_location="cpu", weights_only=True)
        prefix = BACKBONE_PREFIXES[role]
        sd.update({prefix + k: v for k, v in weights.items()})
    if files:
        checkpoint.pop(LEAN_KEY, None)
