"""Following a job from a terminal: a rich progress bar over :meth:`Service.wait_job`.

Shared by the CLI (:mod:`taoskills.surfaces.cli`) and the demo (:mod:`taoskills.surfaces.demo`),
so neither imports the other.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def follow_job(svc, job_id: str, timeout_s: float = 24 * 3600):
    """Poll a job with a rich progress bar (epochs) until it ends; returns the final JobStatus."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(job_id, total=None, detail="starting")

        def update(st) -> None:
            kpis = " ".join(f"{k}={v:.4g}" for k, v in st.kpis.items())
            epoch = f"epoch {st.epoch + 1}/{st.max_epoch}" if st.epoch is not None and st.max_epoch else ""
            total = st.max_epoch or None
            done = (st.epoch + 1) if st.epoch is not None else 0
            if st.status == "COMPLETE" and total:
                done = total
            progress.update(task, total=total, completed=done, detail=f"{st.status} {epoch} {kpis}".strip())

        status = svc.wait_job(job_id, timeout_s=timeout_s, poll_s=1.0, on_update=update)
    if status.status == "ERROR" and status.failure:
        console.print(f"[bold red]job failed[/]: {status.failure.get('summary')}")
        if status.failure.get("fix"):
            console.print(f"  fix: {status.failure['fix']}")
    return status
