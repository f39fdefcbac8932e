"""Real MCP servers for the MCP tests: a streamable-HTTP server built with the SDK's
``MCPServer`` (FastMCP in mcp 1.x) served by uvicorn on 127.0.0.1 in a thread, and the source of
a stdio server that can be made to die."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

TOKEN = "test-mcp-token-5e1f"
"""The bearer token the HTTP server wants (``Authorization: Bearer <TOKEN>``)."""

DYING_SERVER = '''
import os
from mcp.server.mcpserver import MCPServer

server = MCPServer("dying")


@server.tool()
def die() -> str:
    """Ends the server's process at once."""
    os._exit(3)


@server.tool()
def where() -> str:
    """The server's working directory."""
    return os.getcwd()


server.run()
'''
"""A stdio server (run as ``python dying.py`` in the workspace) whose ``die`` tool exits."""


def demo_server() -> MCPServer:
    """``add`` (structured result), ``fail`` (a tool error), ``slow`` (sleeps)."""
    server = MCPServer("demo")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await asyncio.sleep(seconds)
        return "slept"

    return server


LEGACY_SERVER = '''
import json, sys

TOOLS = [{"name": "unlock", "description": "Adds the secret tool.",
          "inputSchema": {"type": "object", "properties": {}}}]
SECRET = {"name": "secret", "description": "Only there once unlocked.",
          "inputSchema": {"type": "object", "properties": {}}}


def send(message):
    sys.stdout.write(json.dumps(message) + "\\n")
    sys.stdout.flush()


for line in sys.stdin:
    request = json.loads(line)
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        continue  # a notification (initialized, cancelled)
    if method == "initialize":
        result = {"protocolVersion": "2025-06-18", "serverInfo": {"name": "legacy",
                  "version": "1"}, "capabilities": {"tools": {"listChanged": True}}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call" and request["params"]["name"] == "unlock":
        TOOLS.append(SECRET)
        send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        result = {"content": [{"type": "text", "text": "unlocked"}]}
    elif method == "tools/call" and request["params"]["name"] == "secret":
        result = {"content": [{"type": "text", "text": "the secret is 7"}]}
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": rid,
              "error": {"code": -32601, "message": f"no method {method}"}})
        continue
    send({"jsonrpc": "2.0", "id": rid, "result": result})
'''
"""A stdio server of the 2025-06-18 revision, by hand (newline-delimited JSON-RPC, as the
spec's stdio transport says): initialize handshake only, and ``unlock`` adds ``secret`` and
sends ``notifications/tools/list_changed``. Every 2.x SDK server speaks 2026-07-28 too, so
this is how a client meets the servers written before it."""


def growing_server() -> MCPServer:
    """``unlock`` adds a tool ``secret`` and tells ``subscriptions/listen`` streams that the
    tools changed (the 2026-07-28 revision)."""
    server = MCPServer("growing")

    def secret() -> str:
        """Only there once unlocked."""
        return "the secret is 7"

    @server.tool()
    async def unlock(ctx: Context) -> str:
        """Adds the ``secret`` tool."""
        server.add_tool(secret)
        await ctx.notify_tools_changed()
        return "unlocked"

    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(server: MCPServer, token: str | None = TOKEN) -> Iterator[str]:
    """Serve ``server`` over streamable HTTP on 127.0.0.1; yields its URL. With ``token``,
    requests without ``Authorization: Bearer <token>`` are refused (401)."""
    app = server.streamable_http_app()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and token is not None:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"no"})
                return
        await app(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the MCP HTTP server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


__all__ = ["DYING_SERVER", "TOKEN", "demo_server", "free_port", "http_server"]
