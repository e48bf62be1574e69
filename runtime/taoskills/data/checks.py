"""The result type every preflight check returns (data, annotation, host and credential checks)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["error", "warning", "info"]


class CheckResult(BaseModel):
    """One check: ``name`` (stable id, e.g. ``image_folder.exists``), ``ok``, ``message``,
    ``field`` (spec key / argument at fault or ``None``), ``fix`` (what to do when not ok),
    ``severity`` (``error`` fails the report; ``warning``/``info`` do not), ``details``."""

    name: str
    ok: bool
    message: str
    field: str | None = None
    fix: str | None = None
    severity: Severity = "error"
    details: dict[str, Any] = Field(default_factory=dict)
