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
from mcp.server.mcpserver import MCPServer

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
