"""TAO's results contract, reusable by every built-in engine network.

Source: docs/tao-contract.md §3.3 (status.json), §3.4 (results layout), §3.6 (encryption_key).

* ``<results_dir>/<action>/`` is the action folder unless ``<action>.results_dir`` is set.
* ``status.json`` is JSON Lines, one object per line, as TAO's ``StatusLogger`` writes it:
  ``date`` (``M/D/YYYY``), ``time`` (``H:M:S``, unpadded), ``status``
  (``STARTED|RUNNING|SUCCESS|FAILURE|SKIPPED``), ``verbosity``
  (``DEBUG|INFO|WARNING|ERROR|CRITICAL``), ``message``, optional ``kpi`` (metric -> float)
  and, for training epochs, ``epoch``, ``max_epoch``, ``time_per_epoch``, ``eta``.
* Lifecycle: ``STARTED "Starting <Network> <action>."`` first; ``SUCCESS "<Action> finished
  successfully."`` last on success; ``FAILURE`` with the exception text on failure.
* ``experiment.yaml`` holds the resolved config (secrets redacted, see :func:`redact`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taoskills.errors import SpecError, TaoSkillsError
from taoskills.security.redact import redact_text

log = logging.getLogger("taoskills.engine")

STATUSES = ("STARTED", "RUNNING", "SUCCESS", "FAILURE", "SKIPPED")
VERBOSITIES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Spec keys whose values are secrets: never printed, redacted in experiment.yaml.
SECRET_KEYS = ("encryption_key",)


class StatusLogger:
    """Append TAO status lines to ``<action_dir>/status.json`` (JSON Lines).

    Only rank 0 writes (``NODE_RANK`` and ``LOCAL_RANK``/``RANK`` unset or 0), as in TAO.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.enabled = all(os.environ.get(v, "0") in ("", "0") for v in ("NODE_RANK", "LOCAL_RANK", "RANK"))

    def write(
        self,
        status: str = "RUNNING",
        message: str | None = None,
        *,
        verbosity: str = "INFO",
        kpi: dict[str, float] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Write one line and return it. ``extra`` adds fields such as ``epoch``/``eta``."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if verbosity not in VERBOSITIES:
            raise ValueError(f"verbosity must be one of {VERBOSITIES}, got {verbosity!r}")
        now = _dt.datetime.now()
        line: dict[str, Any] = {
            "date": f"{now.month}/{now.day}/{now.year}",
            "time": f"{now.hour}:{now.minute}:{now.second}",
            "status": status,
            "verbosity": verbosity,
        }
        if message is not None:
            line["message"] = message
        line.update(extra)
        if kpi is not None:
            line["kpi"] = {k: float(v) for k, v in kpi.items()}
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        return line


def format_duration(seconds: float) -> str:
    """``H:MM:SS.ffffff`` as TAO writes ``time_per_epoch`` / ``eta`` (``str(timedelta)``)."""
    return str(_dt.timedelta(seconds=max(0.0, float(seconds))))


def action_dir(cfg: dict[str, Any], action: str) -> Path:
    """``cfg[action].results_dir`` if set, else ``cfg.results_dir/<action>`` (TAO ``update_results_dir``).

    Raises SpecError when neither is set.
    """
    sub = cfg.get(action) if isinstance(cfg.get(action), dict) else {}
    own = sub.get("results_dir") if sub else None
    if own not in (None, "", "???"):
        return Path(own).expanduser().resolve()
    top = cfg.get("results_dir")
    if top in (None, "", "???"):
        raise SpecError(
            "results_dir is not set.",
            field="results_dir",
            fix="pass results_dir=/path/to/results on the command line or set it in the spec.",
        )
    return Path(top).expanduser().resolve() / action


def redact(resolved: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``resolved`` with secret values replaced.

    A secret given as ``${oc.env:NAME}`` keeps that interpolation text (the env-var name,
    never the value); a literal secret becomes ``"<redacted>"``.
    """
    out = dict(resolved)
    for key in SECRET_KEYS:
        if out.get(key) not in (None, ""):
            raw_value = raw.get(key)
            out[key] = raw_value if isinstance(raw_value, str) and "${" in raw_value else "<redacted>"
    return out


@dataclass
class ActionContext:
    """What an engine action receives: resolved config, its folder, the status logger."""

    network: str
    action: str
    cfg: dict[str, Any]
    results_dir: Path
    status: StatusLogger
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        from taoskills.engine.registry import display_name

        return display_name(self.network)


def write_experiment_yaml(path: Path, cfg: dict[str, Any]) -> None:
    """Write the resolved config as YAML (``experiment.yaml``)."""
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def run_action(
    network: str,
    action: str,
    cfg: dict[str, Any],
    fn: Callable[[ActionContext], dict[str, float] | None],
    *,
    raw_cfg: dict[str, Any] | None = None,
) -> int:
    """Run ``fn(ctx)`` under TAO's lifecycle; return 0 on success, 1 on failure.

    Creates the action folder, writes ``experiment.yaml`` and the STARTED line, then calls
    ``fn``. ``fn`` may return a KPI dict for the final SUCCESS line. Any exception becomes a
    FAILURE line whose message is the exception text (with field and fix for
    :class:`~taoskills.errors.TaoSkillsError`); the traceback of unexpected errors is logged.
    """
    out = action_dir(cfg, action)
    out.mkdir(parents=True, exist_ok=True)
    status = StatusLogger(out / "status.json")
    ctx = ActionContext(network, action, cfg, out, status)
    write_experiment_yaml(out / "experiment.yaml", redact(cfg, raw_cfg or {}))
    status.write("STARTED", f"Starting {ctx.display} {action}.")
    try:
        kpi = fn(ctx)
    except TaoSkillsError as exc:
        log.error("%s %s failed: %s", ctx.display, action, redact_text(str(exc)))  # security: no secret echoed
        status.write("FAILURE", redact_text(str(exc)), verbosity="ERROR")
        return 1
    except BaseException as exc:  # noqa: BLE001 - every failure must reach status.json
        log.error("%s %s failed:\n%s", ctx.display, action, redact_text(traceback.format_exc()))
        status.write("FAILURE", redact_text(f"{type(exc).__name__}: {exc}"), verbosity="ERROR")
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1
    status.write("SUCCESS", f"{action.capitalize()} finished successfully.", kpi=kpi or None)
    return 0
