"""Job methods of :class:`taoskills.service.Service`: state, logs, cancel, list, wait, checkpoints.

Everything a job produced is read through its platform (``platform.poll``/``poll_many`` for
state, ``platform.artifacts(record)`` for status.json, the log tail and checkpoints), never
from local disk directly, so the same code serves jobs in a container, on a cluster or in
object storage. The job store keeps state monotonic.
"""

from __future__ import annotations

import time
from typing import Any

from taoskills.errors import NotFound
from taoskills.jobs import checkpoints
from taoskills.jobs import failure as failure_mod
from taoskills.jobs.store import JobRecord, JobStore
from taoskills.platforms.base import TRUNCATION_MARKER, Platform, PlatformState
from taoskills.platforms.registry import get_platform
from taoskills.service_models import CheckpointResult, JobLogs, JobStatus

TERMINAL = ("COMPLETE", "ERROR", "CANCELED")


class JobsMixin:
    """Needs ``self.store`` (:class:`JobStore`) and ``self.catalog`` (skills, for error patterns and rules)."""

    store: JobStore
    catalog: Any

    def resolve_job_id(self, job_id: str) -> str:
        """The full job id for ``job_id`` or a unique prefix of one (``job-1a2b`` -> ``job-1a2b3c4d5e6f``;
        the ``job-`` part may be left out). Errors: NotFound when nothing matches or the prefix is
        ambiguous (the fix lists the candidates)."""
        job_id = (job_id or "").strip()
        for prefix in dict.fromkeys([job_id, "job-" + job_id if job_id and not job_id.startswith("job-") else job_id]):
            if not prefix:
                continue
            found = self.store.ids_with_prefix(prefix, limit=6)
            if prefix in found:
                return prefix
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise NotFound(
                    f"job id prefix {job_id!r} matches {len(found)}{'+' if len(found) > 5 else ''} jobs",
                    field="job_id",
                    fix=f"give more characters of the id: one of {', '.join(found[:5])}",
                )
        raise NotFound(
            f"no job with id or id prefix {job_id!r}", field="job_id", fix="list the jobs (list_jobs) and use a listed id"
        )

    def job_status(self, job_id: str) -> JobStatus:
        """State (PENDING/RUNNING/COMPLETE/ERROR/CANCELED/UNKNOWN), epoch/max_epoch, ETA, KPIs,
        and a failure analysis from the skill's error patterns when the job failed. Results are
        read through the job's platform (``platform.artifacts(record)``). ``job_id``: an id or a
        unique prefix (:meth:`resolve_job_id`), as in every job method here."""
        rec = self.store.get(self.resolve_job_id(job_id))
        plat = get_platform(rec.platform)
        return self._status(rec, plat, plat.poll(rec) if rec.status not in TERMINAL else None)

    def _refresh(self, rec: JobRecord) -> JobRecord:
        plat = get_platform(rec.platform)
        return self._record_state(rec, plat.poll(rec), plat)

    def _artifacts(self, rec: JobRecord):
        return get_platform(rec.platform).artifacts(rec)

    def _status(self, rec: JobRecord, plat: Platform, state: PlatformState | None) -> JobStatus:
        arts = plat.artifacts(rec)
        summary = arts.status(rec.action)  # read once, after the poll, so a finished job's last lines are in
        if state is not None:
            rec = self._record_state(rec, state, plat, summary)
        return JobStatus(
            job_id=rec.job_id,
            skill=rec.skill,
            network_arch=rec.network_arch,
            action=rec.action,
            status=rec.status,
            parent_job_id=rec.parent_job_id,
            results_dir=rec.results_dir,
            log_path=rec.log_path or "",
            exit_code=rec.exit_code,
            epoch=summary.epoch,
            max_epoch=summary.max_epoch,
            eta=summary.eta,
            step=summary.step,
            max_step=summary.max_step,
            steps_per_s=summary.steps_per_s,
            kpis=dict(summary.kpis),
            message=summary.message,
            failure=rec.failure,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            next=_next_step(rec),
        )

    def _record_state(self, rec: JobRecord, state: PlatformState, plat: Platform, summary=None) -> JobRecord:
        """Persist what the platform saw (monotonic in the store), with a failure analysis on ERROR."""
        if state.state == rec.status and state.state not in TERMINAL:
            return rec
        arts = plat.artifacts(rec)
        summary = summary if summary is not None else arts.status(rec.action)
        status = state.state
        if status == "COMPLETE" and summary.failed:
            status = "ERROR"  # exit 0 but TAO logged FAILURE: trust status.json
        fields: dict[str, Any] = {"exit_code": state.exit_code}
        if status == "ERROR":
            sk = self.catalog.get(rec.skill)
            fields["failure"] = failure_mod.analyze_failure(
                arts.log_tail(failure_mod.SCAN_BYTES),
                list(sk.info.error_patterns),
                rec.action,
                state.exit_code,
                lost=state.lost,
                status_message=summary.failure_message,
            ).model_dump()
        return self.store.update_status(rec.job_id, status, **fields)

    def job_logs(self, job_id: str, *, tail: int = 200, grep: str | None = None, max_bytes: int = 65536) -> JobLogs:
        """The job's log: last ``tail`` lines, optionally only lines matching regex ``grep``, at most
        ``max_bytes`` bytes (a first marker line says when earlier output was cut)."""
        rec = self.store.get(self.resolve_job_id(job_id))
        text = get_platform(rec.platform).logs(rec, tail=tail, grep=grep, max_bytes=max_bytes)
        truncated = text.startswith(TRUNCATION_MARKER)
        return JobLogs(
            job_id=rec.job_id,
            tail=tail,
            grep=grep,
            max_bytes=max_bytes,
            lines=len(text.splitlines()) - int(truncated),
            truncated=truncated,
            text=text,
        )

    def cancel_job(self, job_id: str) -> JobStatus:
        """Stop a job (process group SIGTERM, then SIGKILL). A finished job is left as it is."""
        rec = self.store.get(self.resolve_job_id(job_id))
        if rec.status in TERMINAL:
            return self.job_status(rec.job_id)
        self.store.update_status(rec.job_id, "CANCELED")
        get_platform(rec.platform).cancel(rec)
        return self.job_status(rec.job_id)

    def list_jobs(
        self, *, status: str | None = None, skill: str | None = None, action: str | None = None, limit: int = 50
    ) -> list[JobStatus]:
        """Jobs newest first, refreshed with one ``poll_many`` per platform; filters by status, skill, action."""
        records = self.store.list(status=status, skill=skill, action=action, limit=limit)
        platforms: dict[str, Platform] = {}
        states: dict[str, PlatformState] = {}
        for name in dict.fromkeys(r.platform for r in records):
            platforms[name] = plat = get_platform(name)
            states.update(plat.poll_many([r for r in records if r.platform == name and r.status not in TERMINAL]))
        return [self._status(r, platforms[r.platform], states.get(r.job_id)) for r in records]

    def wait_job(self, job_id: str, *, timeout_s: float = 3600, poll_s: float = 1.0, on_update=None) -> JobStatus:
        """Poll until the job is terminal or ``timeout_s`` passes; ``on_update(JobStatus)`` per poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.job_status(job_id)
            if on_update:
                on_update(status)
            if status.status in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(poll_s)

    # -- checkpoints --------------------------------------------------------------------

    def resolve_checkpoint(
        self, job_id: str, for_action: str = "inference", *, epoch: int | None = None, allow_latest: bool = False
    ) -> CheckpointResult:
        """The model file that ``for_action`` should consume from job ``job_id``'s results.

        Uses the skill's checkpoint rule for that action (NVDINOv2: ``student_epoch_*`` for
        inference/export, ``model_epoch_*`` for resume — pass for_action='resume'). The results
        are read through the job's platform (``artifacts(record).checkpoint_root()``).
        """
        rec = self.store.get(self.resolve_job_id(job_id))
        sk = self.catalog.get(rec.skill)
        if for_action == "resume":
            rule = checkpoints.resume_rule(sk.info)
        else:
            act = sk.action(for_action)
            if act.checkpoint is None:
                raise NotFound(
                    f"{sk.name} {for_action} takes no checkpoint from a parent job",
                    field="for_action",
                    fix=f"use one of: {', '.join(a for a, x in sk.info.actions.items() if x.checkpoint)} or 'resume'",
                )
            rule = act.checkpoint
        choice = checkpoints.select_checkpoint(
            self._artifacts(rec).checkpoint_root(),
            rule,
            latest_alias=sk.info.latest_checkpoint_alias,
            epoch=epoch,
            allow_latest=allow_latest,
        )
        return CheckpointResult(
            job_id=rec.job_id,
            for_action=for_action,
            path=str(choice.path),
            reason=choice.reason,
            candidates=[str(c.path) for c in choice.candidates],
        )


def _next_step(rec: JobRecord) -> str:
    if rec.status == "COMPLETE":
        if rec.action == "train":
            return f"resolve_checkpoint('{rec.job_id}', 'inference') or launch inference/export with parent_job_id='{rec.job_id}'"
        return "done: results are in results_dir"
    if rec.status == "ERROR":
        return "read failure.fix, then job_logs for detail; fix the spec or data and launch again"
    if rec.status == "CANCELED":
        return "launch again when ready"
    return f"poll job_status('{rec.job_id}') again in a few seconds"
