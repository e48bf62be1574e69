"""``tao-skills jobs list|status|logs|cancel|wait|plot|rm|gc``: the job sub-commands.

A thin skin over :class:`taoskills.service.Service`'s job methods (state, logs, cancel, wait,
KPI plots, removal, checkpoint garbage collection); no logic lives here. Registered in
:mod:`taoskills.surfaces.cli` as ``app.add_typer(jobs_app, name="jobs")``. A ``JOB_ID`` is an
id or a unique prefix of one.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from taoskills.security.redact import redact_text
from taoskills.surfaces import cli_render
from taoskills.surfaces.cli_common import JSON, out
from taoskills.surfaces.cli_common import emit as _emit
from taoskills.surfaces.cli_common import emit_status as _emit_status
from taoskills.surfaces.cli_common import service as _service
from taoskills.surfaces.follow import follow_job

jobs_app = typer.Typer(no_args_is_help=True, help="Track jobs: list, status, logs, cancel, wait, plot, rm, gc.")


@jobs_app.command("list")
def jobs_list(
    status: str | None = None, skill: str | None = None, action: str | None = None, limit: int = 50, as_json: bool = JSON
) -> None:
    """List jobs, newest first."""
    jobs = _service().list_jobs(status=status, skill=skill, action=action, limit=limit)
    if as_json:
        return _emit(jobs, True)
    table = Table("job", "skill", "action", "status", "epoch", "kpis", "parent")
    for col in (table.columns[0], table.columns[6]):  # full job ids, never cut (prefixes are accepted)
        col.no_wrap, col.min_width = True, 16
    for j in jobs:
        table.add_row(
            j.job_id,
            j.skill,
            j.action,
            j.status,
            f"{j.epoch}/{j.max_epoch}" if j.max_epoch else "-",
            " ".join(f"{k}={v:.4g}" for k, v in j.kpis.items()) or "-",
            j.parent_job_id or "-",
        )
    out.print(table)


@jobs_app.command("status")
def jobs_status(job_id: str, as_json: bool = JSON) -> None:
    """Show a job's state, progress, KPIs and failure analysis (JOB_ID: an id or a unique prefix)."""
    _emit_status(_service().job_status(job_id), as_json)


@jobs_app.command("logs")
def jobs_logs(
    job_id: str,
    tail: int = 200,
    grep: str | None = None,
    max_bytes: int = 65536,
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines until the job ends"),
    as_json: bool = JSON,
) -> None:
    """Print the end of a job's log (optionally only lines matching a regex); -f follows it."""
    svc = _service()
    if as_json:
        return _emit(svc.job_logs(job_id, tail=tail, grep=grep, max_bytes=max_bytes), True)
    if not follow:
        return typer.echo(redact_text(svc.job_logs(job_id, tail=tail, grep=grep, max_bytes=max_bytes).text))
    full_id = svc.resolve_job_id(job_id)
    cli_render.follow_logs(
        read=lambda: svc.job_logs(full_id, tail=tail, grep=grep, max_bytes=max_bytes).text,
        is_done=lambda: svc.job_status(full_id).status in ("COMPLETE", "ERROR", "CANCELED"),
        echo=lambda text: typer.echo(redact_text(text)),
    )


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, as_json: bool = JSON) -> None:
    """Cancel a running job."""
    _emit(_service().cancel_job(job_id), as_json)


@jobs_app.command("wait")
def jobs_wait(job_id: str, as_json: bool = JSON) -> None:
    """Follow a job until it ends (progress bar), then print its status; exit 1 unless COMPLETE."""
    svc = _service()
    status = follow_job(svc, svc.resolve_job_id(job_id))
    _emit_status(status, as_json)
    if status.status != "COMPLETE":
        raise typer.Exit(1)


@jobs_app.command("plot")
def jobs_plot(
    job_id: str,
    out: Path | None = typer.Option(None, help="PNG path (default: kpi_curves.png beside the job's status.json)"),
    open_it: bool = typer.Option(False, "--open", help="open the PNG with the desktop's viewer"),
) -> None:
    """Draw a job's KPI curves (loss per epoch) from its status.json to a PNG and print its path."""
    path = _service().plot_job(job_id, out=out)
    typer.echo(str(path))
    if open_it:
        typer.launch(str(path))


@jobs_app.command("rm")
def jobs_rm(
    job_id: str,
    force: bool = typer.Option(False, help="remove it even when child jobs used its outputs"),
    as_json: bool = JSON,
) -> None:
    """Remove a finished job: its record and its workspace folder (checkpoints included)."""
    removed = _service().remove_job(job_id, force=force)
    if as_json:
        return _emit({"job_id": job_id, "removed": removed}, True)
    typer.echo(f"removed {job_id}" + (f": {', '.join(removed)}" if removed else ""))


@jobs_app.command("gc")
def jobs_gc(
    job_id: str | None = typer.Argument(None, help="one job (default: every finished job)"),
    keep_last: int | None = typer.Option(None, help="checkpoints kept per job (default: env TAO_SKILLS_KEEP_CHECKPOINTS or 1)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be deleted; delete nothing"),
    as_json: bool = JSON,
) -> None:
    """Delete old checkpoints of finished jobs, keeping the newest N and any a downstream job used."""
    report = _service().gc_checkpoints(job_id, keep_last=keep_last, dry_run=dry_run)
    if as_json:
        return _emit(report, True)
    verb = "would delete" if dry_run else "deleted"
    for f in report.deleted:
        typer.echo(f"{verb} {f}")
    for f in report.kept_used:
        typer.echo(f"kept {f} (used by a downstream job)")
    typer.echo(f"{verb} {len(report.deleted)} file(s), {report.freed_bytes / 1e6:.1f} MB")
