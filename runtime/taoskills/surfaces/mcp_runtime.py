"""How the MCP server's tools run: bounded worker threads, a time limit per call, one
redaction layer, the JSON error shape; plus the argument types the tool modules share.

:class:`ToolRunner` runs a blocking :class:`taoskills.service.Service` call off the event
loop (at most ``max_concurrent`` at once, each limited to ``timeout_s`` seconds), so one slow
request never freezes the server; every reply passes
:func:`taoskills.security.redact.redact`. A :class:`~taoskills.errors.TaoSkillsError` becomes
a tool error whose text is ``json.dumps(error.as_dict())``; a timeout becomes
``{"error": "timeout", ...}``; any other exception ``{"error": "internal", ...}`` with no
traceback (:mod:`taoskills.security.guard`).
"""

import logging
import sys
from collections.abc import Callable
from typing import Any, Literal

import anyio
import orjson
import pydantic_core
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from taoskills.errors import TaoSkillsError
from taoskills.platforms import engines as engine_registry
from taoskills.platforms import registry as platform_registry
from taoskills.security.guard import error_result, internal_error
from taoskills.security.redact import json_needs_redaction, redact

log = logging.getLogger("taoskills.mcp")

#: Tool calls running at once (threads) and the wall-clock limit of one call (seconds).
MAX_CONCURRENT_CALLS = 8
TOOL_TIMEOUT_S = 300.0
GIL_SWITCH_S = 0.001

ENGINE_HELP = (
    "runtime engine: 'auto' (the first that can run the action here; see get_skill runs_here), "
    "'builtin' (this runtime's PyTorch engine) or 'tao' (TAO container entrypoint)"
)
JOB_STATES = Literal["PENDING", "RUNNING", "COMPLETE", "ERROR", "CANCELED", "UNKNOWN"]
#: automl_policy values (taoskills.bank.automl_policy) and build profiles (taoskills.specs.builder).
AUTOML_POLICY = Literal["on", "off", "auto"]
PROFILE = Literal["smoke"]


class ToolRunner:
    """``await runner(tool, fn)``: run ``fn()`` on a worker thread and return its redacted
    result (:func:`reply`), or a tool-error reply (``CallToolResult`` with ``isError``) in the JSON error shape.

    ``max_concurrent``: worker threads at once (an ``anyio.CapacityLimiter``). ``timeout_s``:
    seconds one call may take; the thread is then abandoned and the reply is a ``timeout``
    error. ``gil_switch_s``: the interpreter's switch interval is lowered to at most this
    (CPython's default is 5 ms) so the event-loop thread gets the GIL back while tool threads
    compute (security: no request freezes the server).
    """

    def __init__(
        self,
        max_concurrent: int = MAX_CONCURRENT_CALLS,
        timeout_s: float = TOOL_TIMEOUT_S,
        gil_switch_s: float = GIL_SWITCH_S,
    ) -> None:
        self.limiter = anyio.CapacityLimiter(max_concurrent)
        self.timeout_s = timeout_s
        sys.setswitchinterval(min(sys.getswitchinterval(), gil_switch_s))

    async def __call__(self, tool: str, fn: Callable[[], Any]) -> Any:
        """The tool's reply as it goes on the wire (:func:`reply`), or a tool error."""
        result = await self.value(tool, fn)
        return result if isinstance(result, CallToolResult) else reply(result)

    async def value(self, tool: str, fn: Callable[[], Any]) -> Any:
        """``fn()``'s result itself (not redacted: pass it through :func:`reply` before it leaves),
        or a tool-error ``CallToolResult``; for tools that read the result before replying."""
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.to_thread.run_sync(fn, limiter=self.limiter, abandon_on_cancel=True)
        except TimeoutError:
            log.warning("tool %s: no answer within %.0f s", tool, self.timeout_s)
            return error_result(
                {
                    "error": "timeout",
                    "message": f"tool {tool} did not finish within {self.timeout_s:g} s",
                    "fix": "retry with smaller inputs (a shorter log slice, a simpler grep); long work runs as a job",
                }
            )
        except TaoSkillsError as exc:
            log.info("tool %s: %s", tool, exc.code)
            return error_result(redact(exc.as_dict()))
        except Exception:  # never leak a traceback (paths, env) to the client
            log.exception("tool %s raised an unexpected exception", tool)
            return error_result(internal_error(tool))


def reply(result: Any) -> Any:
    """A tool's redacted reply. A pydantic model becomes the ``CallToolResult`` the SDK would
    make of it (``structuredContent`` = the model's JSON by alias; one text content = the same
    JSON, compact), written once: the redaction check reads that JSON text
    (:func:`taoskills.security.redact.json_needs_redaction`) and only a reply it flags is
    redacted field by field and written again. Anything else passes :func:`redact`."""
    if not isinstance(result, BaseModel) or isinstance(result, CallToolResult):
        return redact(result)
    text = pydantic_core.to_json(result, by_alias=True)
    if json_needs_redaction(text):
        text = pydantic_core.to_json(redact(result), by_alias=True)
    return CallToolResult(content=[TextContent(type="text", text=text.decode())], structured_content=orjson.loads(text))


def hints(
    *, read_only: bool, idempotent: bool, destructive: bool = False, open_world: bool = False, title: str | None = None
) -> ToolAnnotations:
    """MCP ``ToolAnnotations`` (hints only, not security: MCP spec)."""
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


#: Read-only, idempotent tool hints.
RO = dict(read_only=True, idempotent=True)


def registry_enums() -> tuple[Any, Any]:
    """(EngineName, PlatformName): ``Literal`` types of the engine names (with ``auto``) and
    the platform names registered now (plug-ins registered by then are listed), for the
    JSON-schema enums of the tools' ``engine`` and ``platform`` arguments."""
    engine_name = Literal[tuple(dict.fromkeys(["auto", *engine_registry.engines()]))]  # type: ignore[valid-type]
    platform_name = Literal[tuple(platform_registry.names())]  # type: ignore[valid-type]
    return engine_name, platform_name


__all__ = [
    "AUTOML_POLICY",
    "ENGINE_HELP",
    "GIL_SWITCH_S",
    "JOB_STATES",
    "MAX_CONCURRENT_CALLS",
    "PROFILE",
    "RO",
    "TOOL_TIMEOUT_S",
    "ToolRunner",
    "hints",
    "registry_enums",
    "reply",
]
