"""Error types shared by every layer.

Every error carries what an agent or a person needs to act on it: the ``field`` at fault
(a dotted spec key, a tool argument or a path), the ``reason``, and the ``fix`` (what to
do next). The CLI prints them; the MCP server returns them as tool errors; nothing is
launched when one is raised before launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Issue:
    """One problem found in an input: ``field`` (dotted key or argument), ``reason``, ``fix``."""

    field: str
    reason: str
    fix: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason, "fix": self.fix, "code": self.code}

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} Fix: {self.fix}"


class TaoSkillsError(Exception):
    """Base error. ``code`` is a stable machine name; ``issues`` lists field-level problems.

    ``fix`` is written in tool-argument syntax (what an MCP client passes); ``fix_cli``, when
    given, is the same fix as ``tao-skills`` flags (the CLI shows it; without one the CLI
    rewrites ``fix``, taoskills.surfaces.cli_render.to_cli).
    """

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        issues: list[Issue] | None = None,
        details: dict[str, Any] | None = None,
        fix_cli: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.fix = fix
        #: the fix in ``tao-skills`` CLI syntax when it differs from ``fix`` (tool-argument
        #: syntax); the CLI shows it, MCP replies never carry it
        self.fix_cli = fix_cli
        self.issues = list(issues or [])
        self.details = dict(details or {})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        if self.fix:
            out["fix"] = self.fix
        if self.issues:
            out["issues"] = [i.as_dict() for i in self.issues]
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        parts = [self.message]
        if self.field and self.field not in self.message:
            parts.append(f"(field: {self.field})")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        for issue in self.issues:
            parts.append(f"\n  - {issue}")
        return " ".join(parts[:3]) + "".join(parts[3:])


class SkillError(TaoSkillsError):
    """A skill folder is malformed (bad frontmatter, bad skill_info.yaml, missing schema)."""

    code = "skill_invalid"


class NotFound(TaoSkillsError):
    """A named thing (skill, action, job, checkpoint, file) does not exist."""

    code = "not_found"


class SpecError(TaoSkillsError):
    """A spec or override is invalid: unknown key, wrong type, out of bounds, constraint broken."""

    code = "spec_invalid"


class PreflightError(TaoSkillsError):
    """Data or host checks failed; nothing was launched."""

    code = "preflight_failed"


class StagingError(TaoSkillsError):
    """A dataset archive or folder could not be staged safely (traversal, links, corrupt)."""

    code = "staging_failed"


class NotSupported(TaoSkillsError):
    """The capability exists in TAO but not (yet) in this runtime or engine."""

    code = "not_supported"


class PolicyRefusal(TaoSkillsError):
    """The request resolved to a path this runtime refuses to take silently (e.g. AutoML on)."""

    code = "policy_refused"


class JobError(TaoSkillsError):
    """A job operation failed (launch, cancel, state change)."""

    code = "job_error"
