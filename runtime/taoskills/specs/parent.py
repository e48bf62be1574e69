"""What a spec takes from its parent job: structural keys, the parent's checkpoint, and the
check that the parent is the kind of job the action consumes.

Rules are data (the action's entry in ``skill_info.yaml``):

- ``carry_from_parent`` / ``carry_from_parent_as``: keys copied from the parent job's spec
  (MAE evaluate/inference/export: ``train.stage``, ``model.arch``, ``model.num_classes``,
  ``dataset.augmentation.input_size``; MAE finetune from a pretrain job: ``model.arch`` and the
  input size).
- ``parent_when``: values the parent job's spec must hold (MAE train: ``train.stage: pretrain``).
- ``checkpoint`` on an action whose ``spec_params`` name ``ptm_if_no_resume_model``: the rule that
  picks the parent's checkpoint for that key when the caller gives no pretrained model (TAO Core
  infer_params lineage, docs/tao-contract.md §1.9: ``ptm_if_no_resume_model`` is the parent's
  model, ``base_checkpoint`` when there is no parent).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from taoskills.errors import SpecError
from taoskills.jobs import checkpoints
from taoskills.specs.dotted import get_dotted, set_dotted

_ABSENT = object()


@dataclass
class ParentJob:
    """What the builder needs from a parent job: its id, spec and results_dir."""

    job_id: str
    spec: dict
    results_dir: Path
    action: str


def carry_from_parent(act, parent: ParentJob, spec: dict, notes: list[str]) -> set[str]:
    """Copy ``act.carry_from_parent`` and ``act.carry_from_parent_as`` keys from ``parent.spec`` into ``spec``.

    Keys absent from the parent's spec are left as they are. Appends one note per key carried to
    ``notes``; returns the dotted keys set.
    """
    carried: set[str] = set()
    pairs = [(k, k) for k in act.carry_from_parent] + list(act.carry_from_parent_as.items())
    for key, source in pairs:
        value = get_dotted(parent.spec, source, default=_ABSENT)
        if value is not _ABSENT:
            set_dotted(spec, key, copy.deepcopy(value))
            carried.add(key)
            came = "" if source == key else f" (its {source})"
            notes.append(f"carried {key}={value!r} from parent job {parent.job_id}{came}")
    return carried


def check_parent_when(act, parent: ParentJob, skill_name: str, action: str) -> None:
    """The parent job's spec must hold every ``act.parent_when`` value (MAE train: a pretrain job).

    Raises SpecError (``field="parent_job_id"``) naming the key, the parent's value and the value
    needed, with the fix.
    """
    for key, want in act.parent_when.items():
        have = get_dotted(parent.spec, key, default=None)
        if have != want:
            raise SpecError(
                f"parent job {parent.job_id} has {key}={have!r}; {skill_name} {action} takes a parent job with {key}={want!r}",
                field="parent_job_id",
                fix=(
                    f"pass the id of a {act.parent_action} job run with {key}={want} as parent_job_id, "
                    "or drop parent_job_id and give the checkpoint file yourself (pretrained model)"
                ),
            )


def pretrained_model(info, act, resume_path: str, given: str | None, parent: ParentJob | None) -> tuple[str, str]:
    """``(value, reason)`` for a full-model ``ptm_if_no_resume_model`` key.

    Precedence: a resume checkpoint (the key is emptied: TAO uses the PTM only when not
    resuming), the caller's pretrained model ``given``, the parent job's checkpoint when the
    action has a ``checkpoint`` rule (MAE finetune from a pretrain job: the newest exact
    ``model_epoch_*_step_*.pth``, never the ``*_latest.pth`` alias, which the caller passes as
    ``given`` when they want it), else empty.

    Raises NotFound when the parent holds no checkpoint the rule accepts (the message lists
    what is there).
    """
    if resume_path:
        return "", "resume checkpoint present: pretrained model not used"
    if given:
        return given, "pretrained model given by caller"
    if parent is not None and act.checkpoint is not None:
        choice = checkpoints.select_checkpoint(
            parent.results_dir, act.checkpoint, latest_alias=info.latest_checkpoint_alias, action=f"{info.name} train"
        )
        return str(choice.path), f"{choice.reason} (checkpoint of parent job {parent.job_id})"
    return "", "no pretrained model"


__all__ = ["ParentJob", "carry_from_parent", "check_parent_when", "pretrained_model"]
