"""Following a job from a terminal: a rich progress bar over :meth:`Service.wait_job`.

Shared by the CLI (:mod:`taoskills.surfaces.cli`) and the demo (:mod:`taoskills.surfaces.demo`),
so neither imports the other.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def progress_text(st) -> str:
    """``step 12/60 1.53 steps/s ETA 0:00:31`` from a JobStatus's engine progress fields ('' when none)."""
    if not st.step:
        return ""
    parts = [f"step {st.step}" + (f"/{st.max_step}" if st.max_step else "")]
    if st.steps_per_s is not None:
        parts.append(f"{st.steps_per_s:.3g} steps/s")
    if st.eta:
        parts.append(f"ETA {st.eta}")
    return " ".join(parts)


def follow_job(svc, job_id: str, timeout_s: float = 24 * 3600):
    """Poll a job with a rich progress bar (epochs) until it ends; returns the final JobStatus.

    Epochs are shown one-indexed (``epoch 1/3`` is the first of three; status.json keeps TAO's
    zero-indexed ``epoch``); while RUNNING the engine's step lines add steps/s and ETA.
    """
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
            if st.status == "RUNNING":
                epoch = f"{epoch} {progress_text(st)}".strip()
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
