"""Service methods for a job's pictures and its disk use: KPI curve PNG, ``rm`` and checkpoint ``gc``.

Mixed into :class:`taoskills.service.Service` (needs ``self.store`` and ``self.home``). Checkpoint
files are TAO-named (``<prefix>_epoch_EEE_step_SSSSS.pth``: ``model_``, ``student_``,
``teacher_``...; TAO results contract) and grouped by tag: a tag is kept or deleted whole.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from taoskills.errors import JobError, NotFound
from taoskills.jobs import monitor
from taoskills.jobs.store import JobRecord
from taoskills.service_jobs import TERMINAL as TERMINAL_STATES

_TAG = re.compile(r"epoch_(\d{3,})_step_(\d{5,})")


class GcReport(BaseModel):
    """What :meth:`StorageMixin.gc_checkpoints` deleted (or would delete with ``dry_run``)."""

    dry_run: bool
    keep_last: int
    deleted: list[str] = Field(default_factory=list, description="checkpoint files removed (or to remove)")
    kept_used: list[str] = Field(default_factory=list, description="older checkpoints kept: a downstream job used them")
    freed_bytes: int = 0


def keep_last_default() -> int:
    """Env ``TAO_SKILLS_KEEP_CHECKPOINTS`` (default 1): newest checkpoint tags kept per job by ``gc``."""
    try:
        return max(1, int(os.environ.get("TAO_SKILLS_KEEP_CHECKPOINTS", "1")))
    except ValueError:
        return 1


def _strings(obj: Any):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


class StorageMixin:
    def plot_job(self, job_id: str, out: Path | None = None) -> Path:
        """Draw a job's KPI curves (from its status.json) to a PNG; returns the path.

        Default ``out``: ``kpi_curves.png`` beside the status.json (``<results_dir>/<action>/``, where
        the built-in engine also draws it at the end of training). Errors: NotFound (unknown job, or no
        KPI values yet). Needs matplotlib (engine extra): NotFound's fix says so when missing.
        """
        from taoskills.jobs.plots import plot_status_file

        rec = self.store.get(job_id)
        status_file = monitor.status_path(rec.results_dir, rec.action)
        out = Path(out) if out else Path(status_file).parent / "kpi_curves.png"  # where the engine draws it
        try:
            path = plot_status_file(status_file, out, title=f"{rec.job_id} {rec.skill} {rec.action}")
        except ImportError as exc:
            raise NotFound(
                "matplotlib is not installed", field="job_id", fix="pip install 'tao-skills[engine]' (or matplotlib)"
            ) from exc
        if path is None:
            raise NotFound(
                f"job {job_id} has no KPI values in {status_file} yet",
                field="job_id",
                fix="wait until the job has finished an epoch (jobs status JOB), then plot again",
            )
        return path

    def _used_paths(self, exclude: str | None = None) -> set[str]:
        """Every string in every other job's spec and labels (the checkpoints downstream jobs used)."""
        used: set[str] = set()
        for rec in self.store.list(limit=None):
            if rec.job_id != exclude:
                used.update(_strings(rec.spec))
                used.update(_strings(rec.labels))
        return used

    def gc_checkpoints(self, job_id: str | None = None, *, keep_last: int | None = None, dry_run: bool = False) -> GcReport:
        """Delete all but the newest ``keep_last`` checkpoint tags of finished jobs (one job or all).

        A checkpoint named (by path, or its folder) in any other job's spec or labels is never
        deleted, nor the target of a ``*_latest.pth`` link. Running jobs are skipped.
        ``keep_last`` default: :func:`keep_last_default`. Errors: NotFound (unknown job_id).
        """
        keep = keep_last if keep_last is not None else keep_last_default()
        keep = max(1, keep)
        report = GcReport(dry_run=dry_run, keep_last=keep)
        recs = [self.store.get(job_id)] if job_id else list(self.store.list(limit=None))
        used = self._used_paths()
        for rec in recs:
            if rec.status not in TERMINAL_STATES or not rec.results_dir or not Path(rec.results_dir).is_dir():
                continue
            self._gc_one(rec, keep, used, report)
        return report

    def _gc_one(self, rec: JobRecord, keep: int, used: set[str], report: GcReport) -> None:
        root = Path(rec.results_dir)
        groups: dict[tuple[int, int], list[Path]] = {}
        protected: set[Path] = set()
        for p in root.rglob("*.pth"):
            if p.is_symlink():
                protected.add(p.resolve())
                continue
            m = _TAG.search(p.name)
            if m:
                groups.setdefault((int(m.group(1)), int(m.group(2))), []).append(p)
        for tag in sorted(groups)[:-keep]:
            files = groups[tag]
            if any(str(f) in used or str(f.resolve()) in used or f.resolve() in protected for f in files):
                report.kept_used.extend(str(f) for f in files)
                continue
            for f in files:
                report.freed_bytes += f.stat().st_size
                report.deleted.append(str(f))
                if not report.dry_run:
                    f.unlink(missing_ok=True)

    def remove_job(self, job_id: str, *, force: bool = False) -> list[str]:
        """Delete a finished job's record and its workspace (``<home>/jobs/<job_id>/``, else its results_dir).

        Returns the removed paths. Errors: NotFound; JobError when the job is still running, or
        when other jobs name it as parent (their inputs would vanish) unless ``force``.
        """
        rec = self.store.get(job_id)
        if rec.status not in TERMINAL_STATES:
            raise JobError(
                f"job {job_id} is {rec.status}", field="job_id", fix=f"cancel it first (jobs cancel {job_id}), then remove it"
            )
        children = [c.job_id for c in self.store.children(job_id)]
        if children and not force:
            raise JobError(
                f"job {job_id} is the parent of {', '.join(children)}: their checkpoints/inputs come from it",
                field="job_id",
                fix="remove the child jobs first, or pass force to remove it anyway",
            )
        removed: list[str] = []
        workspace = self.home / "jobs" / rec.job_id
        targets = [workspace] if workspace.is_dir() else [Path(rec.results_dir)] if rec.results_dir else []
        for t in targets:
            if t.exists():
                shutil.rmtree(t)
                removed.append(str(t))
        self.store.delete(job_id)
        return removed
