"""Plots of a study: optimization history, parameter importances, intermediate values.

HTML from ``optuna.visualization`` (plotly) and PNG from ``optuna.visualization.matplotlib``;
both libraries are the optional ``automl`` extra. Raises ImportError when neither is
installed; a plot that does not apply yet (e.g. importances with fewer than two complete
trials) is skipped and named in the returned ``skipped`` list. The study also opens in
``optuna-dashboard <storage URL>``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

PLOTS = ("optimization_history", "param_importances", "intermediate_values")


def write_plots(study: Any, out_dir: str | Path) -> dict[str, list[str]]:
    """Write ``<name>.html`` and ``<name>.png`` for each of :data:`PLOTS` into ``out_dir``.
    Returns ``{"written": [paths], "skipped": ["name.fmt: reason"]}``."""
    have_plotly = importlib.util.find_spec("plotly") is not None
    have_mpl = importlib.util.find_spec("matplotlib") is not None
    if not (have_plotly or have_mpl):
        raise ImportError("plots need plotly or matplotlib: pip install 'tao-skills[automl]'")
    import warnings

    import optuna

    with warnings.catch_warnings():  # the matplotlib backend is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _write(study, Path(out_dir), have_plotly, have_mpl)


def _write(study: Any, out: Path, have_plotly: bool, have_mpl: bool) -> dict[str, list[str]]:
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    multi = len(study.directions) > 1
    for name in PLOTS:
        if multi and name != "param_importances":
            skipped.append(f"{name}: multi-objective study")
            continue
        kwargs = {"target": lambda t: t.values[0], "target_name": "objective 0"} if multi else {}
        if have_plotly:
            try:
                import optuna.visualization as vis

                fig = getattr(vis, f"plot_{name}")(study, **kwargs)
                fig.write_html(str(out / f"{name}.html"), include_plotlyjs="cdn")
                written.append(str(out / f"{name}.html"))
            except Exception as exc:  # a plot that does not apply yet
                skipped.append(f"{name}.html: {exc}")
        if have_mpl:
            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
                import optuna.visualization.matplotlib as vm

                ax = getattr(vm, f"plot_{name}")(study, **kwargs)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.tight_layout()
                fig.savefig(out / f"{name}.png", dpi=90)
                plt.close(fig)
                written.append(str(out / f"{name}.png"))
            except Exception as exc:
                skipped.append(f"{name}.png: {exc}")
    return {"written": written, "skipped": skipped}
