"""JSON-RPC hygiene at the MCP transport edge.

stdio (:func:`guarded_stdio_server`): the ``mcp`` SDK's stdio transport (mcp 2.3.0
``mcp.server.stdio.stdio_server``) drops a line it cannot parse without answering, so a
client that sends malformed JSON, a batch (JSON-RPC arrays; MCP 2025-06-18 removed
batching), a message nested thousands deep or one over :data:`MAX_LINE_BYTES` waits
forever. This transport screens every line first (:func:`screen_line`) and answers each
bad one with a JSON-RPC error (``-32700`` parse error, ``-32600`` invalid request, with the
request's ``id`` when it has one), then hands good messages to the SDK unchanged. Like
the SDK's transport it points fd 0 at the null device and fd 1 at stderr while serving,
so stray output of handlers and children cannot corrupt the wire.

HTTP (:class:`HttpGuard`, an ASGI wrapper around the SDK's streamable-HTTP app):
optional bearer-token auth (the token is read from the environment variable *named* by
the operator, compared in constant time with :func:`hmac.compare_digest`), and a cap on
open sessions per client address with idle expiry, refused with HTTP 429 and a JSON-RPC
error that says what to do (the SDK alone caps sessions only globally, 10,000 for up to
30 minutes by default, so one client could lock every other out).
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

MAX_LINE_BYTES = 4 << 20  # one JSON-RPC message on stdio
MAX_JSON_DEPTH = 64
PARSE_ERROR, INVALID_REQUEST = -32700, -32600


def _error(code: int, message: str, msg_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _depth(obj: Any) -> int:
    deepest, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def screen_line(line: bytes | str) -> tuple[Any | None, dict[str, Any] | None]:
    """(message to pass on, error reply) for one stdio line; exactly one is not None, or both
    are None for a blank line or a bad notification (JSON-RPC: notifications get no reply)."""
    import mcp_types as types

    raw = line.encode("utf-8", "replace") if isinstance(line, str) else line
    if not raw.strip():
        return None, None
    if len(raw) > MAX_LINE_BYTES:
        return None, _error(INVALID_REQUEST, f"message is {len(raw)} bytes; the limit is {MAX_LINE_BYTES}")
    try:
        obj = json.loads(raw)
    except RecursionError:
        return None, _error(INVALID_REQUEST, f"message is nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError as exc:
        return None, _error(PARSE_ERROR, f"Parse error: {exc}")
    if isinstance(obj, list):
        return None, _error(INVALID_REQUEST, "JSON-RPC batches are not supported (MCP 2025-06-18); send one message per line")
    if not isinstance(obj, dict):
        return None, _error(INVALID_REQUEST, "a JSON-RPC message must be a JSON object")
    msg_id = obj.get("id") if isinstance(obj.get("id"), (str, int)) and not isinstance(obj.get("id"), bool) else None
    if _depth(obj) > MAX_JSON_DEPTH:
        return None, _error(INVALID_REQUEST, f"message is nested deeper than {MAX_JSON_DEPTH} levels", msg_id)
    try:
        return types.jsonrpc_message_adapter.validate_python(obj, by_name=False), None
    except Exception as exc:  # pydantic ValidationError
        if "method" in obj and "id" not in obj:
            return None, None  # a bad notification gets no reply (JSON-RPC 2.0 section 4.1)
        first = str(exc).splitlines()[0][:200]
        return None, _error(INVALID_REQUEST, f"Invalid Request: {first}", msg_id)


@asynccontextmanager
async def guarded_stdio_server():
    """Like ``mcp.server.stdio.stdio_server()`` (yields ``(read_stream, write_stream)``), with
    every incoming line screened by :func:`screen_line` and bad ones answered at once."""
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    wire_in, wire_out = os.dup(0), os.dup(1)
    saved_in, saved_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    fin = anyio.wrap_file(os.fdopen(wire_in, "rb", buffering=0))
    fout = anyio.wrap_file(os.fdopen(wire_out, "wb", buffering=0))
    lock = anyio.Lock()
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)

    async def emit(text: str) -> None:
        async with lock:
            await fout.write(text.encode("utf-8") + b"\n")

    async def reader() -> None:
        buf = b""
        skipping = False
        try:
            async with read_writer:
                while True:
                    chunk = await fin.read(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl == -1:
                            if len(buf) > MAX_LINE_BYTES and not skipping:
                                skipping, buf = True, b""
                                await emit(json.dumps(_error(INVALID_REQUEST, f"message over {MAX_LINE_BYTES} bytes")))
                            elif skipping:
                                buf = b""
                            break
                        line, buf = buf[:nl], buf[nl + 1 :]
                        if skipping:
                            skipping = False
                            continue
                        message, err = screen_line(line)
                        if err is not None:
                            await emit(json.dumps(err))
                        elif message is not None:
                            await read_writer.send(SessionMessage(message))
        except anyio.ClosedResourceError:  # pragma: no cover
            await anyio.lowlevel.checkpoint()

    async def writer() -> None:
        try:
            async with write_reader:
                async for session_message in write_reader:
                    await emit(session_message.message.model_dump_json(by_alias=True, exclude_unset=True))
        except anyio.ClosedResourceError:  # pragma: no cover
            await anyio.lowlevel.checkpoint()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            yield read_stream, write_stream
    finally:
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)


def run_stdio(server) -> None:
    """Serve ``server`` (an ``MCPServer``) over :func:`guarded_stdio_server` until stdin closes."""
    low = server._lowlevel_server  # the SDK's own run_stdio_async does the same

    async def main() -> None:
        async with guarded_stdio_server() as (read_stream, write_stream):
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(main)


# ----------------------------------------------------------------------------- HTTP

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class HttpGuard:
    """ASGI wrapper: bearer-token auth (optional) and per-client session caps with idle expiry.

    ``token``: the expected bearer token (None: no auth). ``max_sessions_per_client``: open
    sessions one client address may hold; ``idle_s``: seconds after which a session with no
    request no longer counts (the SDK is told the same idle timeout, so it closes them too).
    """

    def __init__(self, app: ASGIApp, *, token: str | None = None, max_sessions_per_client: int = 16, idle_s: float = 600) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.cap = int(max_sessions_per_client)
        self.idle_s = float(idle_s)
        self.sessions: dict[str, dict[str, float]] = {}

    async def _reply(self, send, status: int, message: str, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        body = json.dumps(_error(-32001 if status == 401 else -32000, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _live(self, client: str) -> dict[str, float]:
        now = time.monotonic()
        sessions = self.sessions.setdefault(client, {})
        for sid in [s for s, t in sessions.items() if now - t > self.idle_s]:
            del sessions[sid]
        return sessions

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.token is not None:
            auth = headers.get("authorization", b"")
            given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.token):
                await self._reply(
                    send,
                    401,
                    "unauthorized: send 'Authorization: Bearer <token>' with the token the server operator configured",
                    [(b"www-authenticate", b'Bearer realm="tao-skills"')],
                )
                return
        client = (scope.get("client") or ("?", 0))[0]
        sessions = self._live(client)
        sid = headers.get("mcp-session-id", b"").decode("latin-1")
        if sid:
            if scope.get("method") == "DELETE":
                sessions.pop(sid, None)
            elif sid in sessions:
                sessions[sid] = time.monotonic()
        elif scope.get("method") == "POST" and len(sessions) >= self.cap:
            await self._reply(
                send,
                429,
                f"too many open MCP sessions for client {client} (limit {self.cap}); close unused sessions "
                f"(HTTP DELETE with their mcp-session-id) or wait {self.idle_s:g} s for idle ones to expire",
                [(b"retry-after", str(int(self.idle_s)).encode())],
            )
            return

        async def send_wrapper(message) -> None:
            if message.get("type") == "http.response.start" and not sid:
                for k, v in message.get("headers", []):
                    if k.lower() == b"mcp-session-id":
                        self._live(client)[v.decode("latin-1")] = time.monotonic()
            await send(message)

        await self.app(scope, receive, send_wrapper)


def token_from_env(name: str | None) -> str | None:
    """The bearer token held by environment variable ``name`` (None when no name given).

    Raises ValueError when the variable is named but unset or empty (refuse to start open).
    """
    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"--auth-token-env {name}: environment variable {name} is not set; export it or drop the option")
    return value


def run_http(server, host: str, port: int, *, token: str | None, max_sessions_per_client: int, idle_s: float) -> None:
    """Serve ``server`` over streamable HTTP behind :class:`HttpGuard` (uvicorn)."""
    import uvicorn

    app = server.streamable_http_app(host=host, session_idle_timeout=idle_s)
    guarded = HttpGuard(app, token=token, max_sessions_per_client=max_sessions_per_client, idle_s=idle_s)
    uvicorn.run(guarded, host=host, port=port, log_level="warning")


__all__ = ["guarded_stdio_server", "run_stdio", "screen_line", "HttpGuard", "run_http", "token_from_env"]
