"""KPI curves from a TAO ``status.json``: one PNG, one panel per KPI (matplotlib, Agg backend).

Works for every engine (built-in, TAO's containers, the fake test engine) because it reads only
the status lines' ``kpi`` dicts (:func:`taoskills.jobs.monitor.parse_status_lines`); x is the
zero-indexed epoch (or iteration) of each line, as TAO writes it.
"""

from __future__ import annotations

import os
from pathlib import Path

from taoskills.jobs import monitor


def plot_history(history: dict[str, list[tuple[float | None, float]]], out: Path, *, title: str = "") -> Path | None:
    """Draw ``history`` (KPI name -> [(epoch, value), ...]) to ``out`` (PNG); None when it holds no points.

    Raises ImportError when matplotlib is missing (it ships in the ``engine`` extra).
    """
    series = {k: [(x, y) for i, (x, y) in enumerate(v)] for k, v in history.items() if v}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = sorted(series)
    fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        pts = series[name]
        xs = [x if x is not None else i for i, (x, _) in enumerate(pts)]
        ax.plot(xs, [y for _, y in pts], marker="o")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("epoch (zero-indexed)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_status_file(status_file: str | os.PathLike, out: Path, *, title: str = "") -> Path | None:
    """Read ``status_file`` and draw its KPI history to ``out``; None when it has no KPI points."""
    summary = monitor.read_status(status_file)
    return plot_history(summary.kpi_history, out, title=title)
