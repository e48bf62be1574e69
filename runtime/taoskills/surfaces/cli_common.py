"""What the ``tao-skills`` command modules share: the service, output, consoles, ``--json``.

:mod:`taoskills.surfaces.cli` and :mod:`taoskills.surfaces.cli_jobs` print through
:func:`emit` / :func:`emit_status`, so every output passes one redaction layer
(:func:`taoskills.security.redact.redact`).
"""

from __future__ import annotations

import json
from typing import Any

import typer
import yaml
from rich.console import Console

from taoskills.security.redact import redact
from taoskills.surfaces import cli_render

out = Console()
err = Console(stderr=True)
JSON = typer.Option(False, "--json", help="print JSON")


def service():
    """A :class:`taoskills.service.Service` over the default skill bank and ``$TAO_SKILLS_HOME``."""
    from taoskills.service import Service

    return Service()


def emit(obj: Any, as_json: bool) -> None:
    """Print a result (a pydantic model, a list of them, or plain data) redacted: JSON with
    ``--json``, else YAML."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump()
    elif isinstance(obj, list):
        obj = [o.model_dump() if hasattr(o, "model_dump") else o for o in obj]
    obj = redact(obj)  # security: one redaction layer over every output
    if as_json:
        typer.echo(json.dumps(obj, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip())


def emit_status(status: Any, as_json: bool) -> None:
    """Print a :class:`taoskills.service.JobStatus`: JSON with ``--json``, else the readable
    status block (:func:`taoskills.surfaces.cli_render.print_status`)."""
    if as_json:
        return emit(status, True)
    cli_render.print_status(redact(status))
