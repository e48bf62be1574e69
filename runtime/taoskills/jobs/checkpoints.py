"""Find TAO checkpoints in a results folder and pick the one an action needs.

TAO names checkpoints ``model_epoch_<EEE>_step_<SSSSS>.pth`` (zero-indexed epoch, global
step) and keeps a ``<model>_latest.pth`` symlink (docs/tao-contract.md §3.5). NVDINOv2 also
writes ``student_epoch_*.pth`` / ``teacher_epoch_*.pth`` weight files: export and inference
need ``student_epoch_*``; ``model_epoch_*`` (full Lightning state) is for resume only, and
``nvdinov2_model_latest.pth`` is a training checkpoint that inference rejects.

Which files an action may consume is data, not code: a skill's ``skill_info.yaml`` gives each
action a :class:`~taoskills.bank.skill_info.CheckpointRule` (``from_action``, ``prefer`` globs,
``avoid`` globs, ``allow_latest``) and the skill's ``latest_checkpoint_alias``.
:func:`select_checkpoint` applies a rule; :func:`select_for_action` and :func:`resume_rule`
read the rule from a :class:`~taoskills.bank.skill_info.SkillInfo`.

Parsing follows TAO's SDK checkpoint discovery (docs/tao-contract.md §1.11): extensions
``.pth .tlt .pt .ckpt .hdf5 .onnx .engine .trt``; epoch from ``epoch[_-=]N``, step from
``step|iter|iteration[_-=]N``; ``inputs/``, ``ptm/``, ``lightning_logs/`` are skipped.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from taoskills.bank.skill_info import CheckpointRule
from taoskills.errors import NotFound

if TYPE_CHECKING:
    from taoskills.bank.skill_info import SkillInfo

#: File extensions counted as checkpoints or deployable models (docs/tao-contract.md §1.11).
CHECKPOINT_EXTENSIONS: tuple[str, ...] = (".pth", ".tlt", ".pt", ".ckpt", ".hdf5", ".onnx", ".engine", ".trt")

#: Folders never searched: staged inputs, pretrained models, TensorBoard logs.
SKIP_DIRS: frozenset[str] = frozenset({"inputs", "ptm", "lightning_logs", "__pycache__"})

CheckpointKind = Literal["model", "student", "teacher", "latest", "onnx", "engine", "other"]

_EPOCH = re.compile(r"(?:^|[^a-z])epoch[_\-=]?(\d+)", re.IGNORECASE)
_STEP = re.compile(r"(?:^|[^a-z])(?:step|iter|iteration)[_\-=]?(\d+)", re.IGNORECASE)

#: The default resume rule: TAO's full training checkpoints (docs/tao-contract.md §3.5).
DEFAULT_RESUME_RULE = CheckpointRule(
    from_action="train",
    prefer=["model_epoch_*.pth", "*model_epoch_*.pth", "*.ckpt"],
    avoid=["student_epoch_*", "teacher_epoch_*"],
)


class CheckpointFile(BaseModel):
    """One checkpoint file found by :func:`list_checkpoints`.

    ``epoch``/``step``: parsed from the name (``None`` when absent). ``kind``: ``student`` /
    ``teacher`` (NVDINOv2 weight files), ``model`` (epoch-numbered training checkpoint),
    ``latest`` (name contains "latest"), ``onnx``, ``engine`` (``.engine``/``.trt``),
    ``other``. ``is_link``: the file is a symlink. ``mtime``: seconds since the epoch.
    """

    path: Path
    name: str
    epoch: int | None
    step: int | None
    kind: CheckpointKind
    is_latest: bool
    is_link: bool
    mtime: float


class CheckpointChoice(BaseModel):
    """The result of :func:`select_checkpoint`.

    ``path``: the file to use (a latest alias resolved to its target). ``reason``: why it
    won, in words. ``candidates``: the files that matched the rule and filters (before the
    newest was taken). ``considered``: every checkpoint found in ``searched``. ``rule``:
    the rule applied (``allow_latest`` as effectively used). ``glob``: the prefer glob
    that matched.
    """

    path: Path
    reason: str
    candidates: list[CheckpointFile]
    considered: list[CheckpointFile]
    rule: CheckpointRule
    searched: Path
    glob: str | None = None
    epoch: int | None = None
    step: int | None = None


def parse_checkpoint_name(name: str) -> tuple[int | None, int | None, CheckpointKind]:
    """``model_epoch_004_step_00120.pth`` -> ``(4, 120, "model")``.

    Pure-numeric stems (``12.pth``) count as epoch 12 (TAO SDK rule, anchor §1.11).
    """
    stem, ext = os.path.splitext(name)
    ext = ext.lower()
    low = stem.lower()
    m = _EPOCH.search(stem)
    epoch = int(m.group(1)) if m else (int(stem) if stem.isdigit() else None)
    s = _STEP.search(stem)
    step = int(s.group(1)) if s else None
    kind: CheckpointKind
    if ext == ".onnx":
        kind = "onnx"
    elif ext in (".engine", ".trt"):
        kind = "engine"
    elif "latest" in low:
        kind = "latest"
    elif low.startswith("student"):
        kind = "student"
    elif low.startswith("teacher"):
        kind = "teacher"
    elif epoch is not None or step is not None or "model" in low:
        kind = "model"
    else:
        kind = "other"
    return epoch, step, kind


def _file(path: Path) -> CheckpointFile:
    epoch, step, kind = parse_checkpoint_name(path.name)
    try:
        mtime = path.stat().st_mtime
    except OSError:  # dangling link
        mtime = path.lstat().st_mtime
    return CheckpointFile(
        path=path,
        name=path.name,
        epoch=epoch,
        step=step,
        kind=kind,
        is_latest="latest" in path.name.lower(),
        is_link=path.is_symlink(),
        mtime=mtime,
    )


def _sort_key(c: CheckpointFile) -> tuple:
    return (-1 if c.epoch is None else c.epoch, -1 if c.step is None else c.step, c.mtime, c.name)


def list_checkpoints(folder: str | Path) -> list[CheckpointFile]:
    """Every checkpoint file under ``folder`` (recursive, not following folder links).

    Skips :data:`SKIP_DIRS`; keeps files whose extension is in
    :data:`CHECKPOINT_EXTENSIONS`. Sorted oldest first by (epoch, step, mtime, name);
    files without an epoch sort first. Raises NotFound when ``folder`` is not a folder.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NotFound(
            f"Checkpoint folder {root} does not exist.",
            field="results_dir",
            fix="Pass the results_dir of a finished train job (it holds train/ with *_epoch_*.pth files).",
        )
    found: list[CheckpointFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            if os.path.splitext(name)[1].lower() in CHECKPOINT_EXTENSIONS:
                found.append(_file(Path(dirpath) / name))
    return sorted(found, key=_sort_key)


def _matches(c: CheckpointFile, pattern: str, base: Path) -> bool:
    if "/" in pattern:
        try:
            rel = c.path.relative_to(base).as_posix()
        except ValueError:
            rel = c.name
        return fnmatch.fnmatch(rel, pattern)
    return fnmatch.fnmatch(c.name, pattern)


def select_checkpoint(
    results_dir: str | Path,
    rule: CheckpointRule,
    *,
    latest_alias: str | None = None,
    epoch: int | None = None,
    step: int | None = None,
    allow_latest: bool = False,
    action: str | None = None,
) -> CheckpointChoice:
    """Pick the checkpoint ``rule`` asks for from a job's ``results_dir``.

    Steps (docs/tao-contract.md §1.11, §3.5):

    1. Search ``results_dir/<rule.from_action>/`` (TAO writes ``results_dir/<action>/``), or
       ``results_dir`` itself when that sub-folder does not exist.
    2. Drop files matching ``rule.avoid`` (an explicit ``allow_latest=True`` exempts the latest
       aliases themselves, so asking for ``*_latest`` works even where the rule avoids the
       alias name; the file it stands for must still pass ``avoid``). Drop ``*latest*`` files
       and ``latest_alias`` unless ``allow_latest`` or ``rule.allow_latest``; when allowed, a
       latest symlink is replaced by its target.
    3. Take the ``rule.prefer`` globs in order; the first glob with a match (after the
       epoch/step filter) gives the candidates. With ``epoch=N``: files of epoch N, else of
       epoch N-1, because TAO names checkpoints by zero-indexed epoch (the file written after
       the N-th epoch is ``*_epoch_{N-1:03}``; TAO SDK ``select_checkpoint_path`` ranks an
       N-1 match just below an exact one). With ``step``: exact step only.
    4. The newest candidate wins: highest (epoch, step), ties broken by mtime.
    5. When no glob matches and latest files are allowed, a latest alias is the fallback.

    ``action`` (optional) only names the consuming action in messages.

    Raises:
        NotFound: ``results_dir`` missing, or no candidate; the message lists what is there
            and what the rule needs (e.g. "inference needs student_epoch_*.pth;
            nvdinov2_model_latest.pth is a latest alias (a training checkpoint)").
    """
    base = Path(results_dir).expanduser()
    if not base.is_dir():
        raise NotFound(
            f"results_dir {base} does not exist.",
            field="results_dir",
            fix="Pass the results_dir of the parent job (the folder that holds train/).",
        )
    sub = base / rule.from_action
    searched = sub if sub.is_dir() else base
    considered = list_checkpoints(searched)
    latest_ok = allow_latest or rule.allow_latest
    effective_rule = rule.model_copy(update={"allow_latest": latest_ok})
    who = action or "this action"

    def is_alias(c: CheckpointFile) -> bool:
        return c.is_latest or (latest_alias is not None and fnmatch.fnmatch(c.name, latest_alias))

    # An explicit request (allow_latest=True) lifts the avoid globs from the alias files
    # themselves (rules list "<net>_model_latest.pth" there so it never wins by default); the
    # file an alias stands for must still pass them.
    avoided = [c for c in considered if any(_matches(c, g, searched) for g in rule.avoid) and not (allow_latest and is_alias(c))]
    pool = [c for c in considered if c not in avoided]
    aliases = [c for c in pool if is_alias(c)]
    pool = [c for c in pool if not is_alias(c)]
    alias_targets: list[tuple[CheckpointFile, CheckpointFile]] = []  # (alias, file it stands for)
    if latest_ok:
        for a in aliases:
            t = a
            if a.is_link:
                target = a.path.resolve()
                if not target.is_file():
                    continue  # dangling latest link
                t = _file(target)
            if (t is a and allow_latest) or not any(_matches(t, g, searched) for g in rule.avoid):
                alias_targets.append((a, t))  # (a plain-file alias asked for explicitly is its own target)

    def pick(cands: list[CheckpointFile], glob: str | None, why: str) -> CheckpointChoice:
        best = max(cands, key=_sort_key)
        path = best.path.resolve() if best.is_link else best.path
        return CheckpointChoice(
            path=path,
            reason=why.format(name=best.name, n=len(cands)),
            candidates=sorted(cands, key=_sort_key),
            considered=considered,
            rule=effective_rule,
            searched=searched,
            glob=glob,
            epoch=best.epoch,
            step=best.step,
        )

    for glob in rule.prefer:
        matched = [c for c in pool if _matches(c, glob, searched)]
        for a, t in alias_targets:
            if (_matches(a, glob, searched) or _matches(t, glob, searched)) and all(
                m.path.resolve() != t.path.resolve() for m in matched
            ):
                matched.append(t)
        if not matched:
            continue
        if step is not None:
            matched = [c for c in matched if c.step == step]
        if epoch is None:
            if matched:
                what = f"step {step}" if step is not None else "the newest (highest epoch/step, then mtime)"
                return pick(matched, glob, f"{{name}} matches {glob!r} and is {what} of {{n}} match(es).")
            continue
        exact = [c for c in matched if c.epoch == epoch]
        if exact:
            return pick(exact, glob, f"{{name}} matches {glob!r} and has the requested epoch {epoch}.")
        previous = [c for c in matched if c.epoch == epoch - 1]
        if previous:
            return pick(
                previous,
                glob,
                (
                    f"{{name}} matches {glob!r}: no file of epoch {epoch}; TAO names checkpoints by zero-indexed "
                    f"epoch, so epoch {epoch - 1} is the file written after epoch {epoch} "
                    "(docs/tao-contract.md §1.11)."
                ),
            )

    if latest_ok and alias_targets and epoch is None and step is None:
        return pick(
            [t for _, t in alias_targets],
            None,
            "{name}: no prefer glob matched; the latest alias was allowed and stands for this file.",
        )

    raise _nothing_found(who, searched, considered, rule, aliases, avoided, latest_ok, epoch, step)


def _nothing_found(
    who: str,
    searched: Path,
    considered: list[CheckpointFile],
    rule: CheckpointRule,
    aliases: list[CheckpointFile],
    avoided: list[CheckpointFile],
    latest_ok: bool,
    epoch: int | None,
    step: int | None,
) -> NotFound:
    names = [c.path.relative_to(searched).as_posix() for c in considered]
    there = ", ".join(names[:20]) + (f" ... ({len(names)} in all)" if len(names) > 20 else "") if names else "no checkpoint files"
    want = " or ".join(rule.prefer)
    filt = ""
    if epoch is not None or step is not None:
        filt = " with " + " and ".join(
            x
            for x in (f"epoch {epoch} (or {epoch - 1})" if epoch is not None else "", f"step {step}" if step is not None else "")
            if x
        )
    notes = []
    if aliases and not latest_ok:
        notes.append(
            f"{', '.join(a.name for a in aliases)} is a latest alias (a training checkpoint), "
            "used only when latest is explicitly allowed"
        )
    if avoided:
        notes.append(f"{', '.join(a.name for a in avoided[:5])} match avoided pattern(s) {', '.join(rule.avoid)}")
    note = ("; " + "; ".join(notes)) if notes else ""
    fix = f"{who} needs {want}{filt}{note}."
    if epoch is not None:
        have = sorted({c.epoch for c in considered if c.epoch is not None and any(_matches(c, g, searched) for g in rule.prefer)})
        if have:
            fix += f" Epochs available: {', '.join(map(str, have))}."
    if not any(any(_matches(c, g, searched) for g in rule.prefer) for c in considered):
        fix += f" Check that the parent job finished its {rule.from_action} action and wrote checkpoints into {searched}."
    return NotFound(
        f"No checkpoint for {who} in {searched}: found {there}.",
        field="parent_model",
        fix=fix,
        details={"searched": str(searched), "found": names, "prefer": rule.prefer, "avoid": rule.avoid},
    )


def resume_rule(info: SkillInfo) -> CheckpointRule:
    """The rule for ``resume_model`` (restarting a train job from its own results).

    A skill declares it as ``actions.train.resume`` (skill_info.yaml); otherwise
    :data:`DEFAULT_RESUME_RULE` (full ``model_epoch_*.pth`` training checkpoints, never
    NVDINOv2 ``student``/``teacher`` weight files: docs/tao-contract.md §3.5, §4.5 C10).
    """
    train = info.actions.get("train")
    if train is not None and train.resume is not None:
        return train.resume
    return DEFAULT_RESUME_RULE


def select_for_action(
    info: SkillInfo,
    action: str,
    results_dir: str | Path,
    *,
    epoch: int | None = None,
    step: int | None = None,
    allow_latest: bool = False,
) -> CheckpointChoice:
    """Pick ``parent_model`` for ``action`` of a skill from its parent job's ``results_dir``.

    The rule is ``info.actions[action].checkpoint`` (skill_info.yaml); ``action="resume"``
    (or ``"train"``) gives :func:`resume_rule` (picking from the job's own results). The latest alias is ``info.latest_checkpoint_alias``.
    Raises NotFound for an unknown action or an action without a checkpoint rule.
    """
    if action in ("resume", "train"):
        return select_checkpoint(
            results_dir,
            resume_rule(info),
            latest_alias=info.latest_checkpoint_alias,
            epoch=epoch,
            step=step,
            allow_latest=allow_latest,
            action="resume",
        )
    act = info.actions.get(action)
    if act is None:
        raise NotFound(
            f"{info.name} has no action {action!r}.",
            field="action",
            fix=f"Use one of: {', '.join(info.actions)} or 'resume'.",
        )
    rule = act.checkpoint
    if rule is None:
        raise NotFound(
            f"{info.name} action {action!r} consumes no checkpoint (no checkpoint rule in skill_info.yaml).",
            field="action",
            fix="Pick an action that takes parent_model (export, inference, evaluate), or pass the checkpoint path yourself.",
        )
    return select_checkpoint(
        results_dir,
        rule,
        latest_alias=info.latest_checkpoint_alias,
        epoch=epoch,
        step=step,
        allow_latest=allow_latest,
        action=action,
    )
