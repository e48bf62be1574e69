"""The MCP argument guard: a middleware in front of every tool call of the MCP server.

Two jobs, both at the MCP edge (:func:`taoskills.surfaces.mcp.build_server` installs it):

* screen every ``tools/call``'s arguments with :func:`taoskills.security.inputs.check_arguments`
  before the SDK parses them; a refusal is a tool error (``isError``) in the server's JSON
  error shape, redacted (:func:`taoskills.security.redact.redact`), and the tool never runs;
* rewrite the SDK's own plain-text tool errors (argument-schema failures, unknown tool
  names) into the same JSON shape: ``error`` (``invalid_arguments`` / ``not_found``),
  ``message``, ``field`` and a ``fix`` that says what to do next. Errors that are already
  JSON (raised by the service, see :mod:`taoskills.surfaces.mcp_runtime`) pass unchanged.

:func:`error_result` and :func:`internal_error` build the tool-error replies every tool uses.
"""

import json
from collections.abc import Mapping
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from taoskills.errors import TaoSkillsError
from taoskills.security.inputs import check_arguments
from taoskills.security.redact import redact


def error_result(payload: dict[str, Any]) -> CallToolResult:
    """A tool error (``isError``) whose one text content is ``json.dumps(payload)``."""
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload, default=str))], is_error=True)


def internal_error(tool: str) -> dict[str, Any]:
    """The JSON error of an unexpected exception in ``tool``: no traceback, no paths, no env
    (the traceback goes to the server's stderr log only)."""
    return {
        "error": "internal",
        "message": f"tool {tool} failed with an unexpected internal error (details are in the server's stderr log)",
        "fix": "retry once; if it fails again, report this to the tao-skills maintainers with the tool name, "
        "its arguments and the server log",
    }


class ArgumentGuard:
    """MCP server middleware: refuse hostile tool arguments first, then rewrite SDK-made tool
    errors (bad arguments, unknown tool) into the JSON error shape.

    Tool errors raised by the service are already JSON; the SDK's own errors are plain text
    (``Error executing tool X: 1 validation error ...``), so this adds a ``fix`` that says
    what to do next. Other methods (``tools/list``, resources, prompts) pass untouched.
    """

    async def __call__(self, ctx, call_next):
        if getattr(ctx, "method", None) == "tools/call":  # security: hostile arguments refused first
            args = ctx.params if isinstance(ctx.params, Mapping) else {}
            try:
                check_arguments(
                    str(args.get("name", "?")), args.get("arguments") if isinstance(args.get("arguments"), Mapping) else None
                )
            except TaoSkillsError as exc:
                return error_result(redact(exc.as_dict())).model_dump(mode="json", by_alias=True, exclude_none=True)
        result = await call_next(ctx)
        if getattr(ctx, "method", None) != "tools/call":
            return result
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not isinstance(result, dict) or not result.get("isError"):
            return result
        content = result.get("content") or []
        text = content[0].get("text", "") if content and isinstance(content[0], dict) else ""
        try:
            json.loads(text)
            return result  # already our JSON shape
        except ValueError:
            pass
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        tool = params.get("name", "?")
        if text.lower().startswith("unknown tool"):
            payload = {
                "error": "not_found",
                "message": text,
                "field": "name",
                "fix": "call tools/list and use one of the listed tool names",
            }
        else:
            payload = {
                "error": "invalid_arguments",
                "message": text,
                "field": "arguments",
                "fix": f"correct the arguments of {tool} to match its inputSchema (tools/list): "
                "the message names each bad field and what was expected",
            }
        return {**result, "content": [{"type": "text", "text": json.dumps(redact(payload))}]}


__all__ = ["ArgumentGuard", "error_result", "internal_error"]
