"""MCP tool servers (``topology.yaml`` ``mcp_servers``, ``actors.<role>.mcp``): their tools
offered to the model beside the workspace tools, as ``<server>__<tool>``.

One ``McpTools`` per run (``async with``): every server the role uses is connected when the
run starts, through the official SDK's ``mcp.Client`` (the 2026-07-28 protocol revision
when the server offers it, else the initialize handshake), and its tools listed, and again
when they change: a ``subscriptions/listen`` stream of ``tools_list_changed`` events
(2026-07-28), or ``notifications/tools/list_changed`` (before). A stdio server is started
with ``_command.spawn``, so it runs in the tool sandbox like any command: the session's
workspace read-write (its working directory), the system read-only (and its ``read_only``
paths), the network only with ``network: true``. A streamable-HTTP server is reached at its
``url`` with its ``headers`` (secrets from environment variables).

A call is bounded by the server's ``timeout_s``; whatever goes wrong comes back as an error
result the model reads (never an exception out of the loop): a timeout (``timeout``), a
server that cannot be reached or died again after one restart (``server_unavailable``),
arguments that are no JSON object (``invalid_arguments``), the server's own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from actors.tools._command import command_env, spawn
from actors.tools._run import tool_arguments
from artifacts import Workspace
from core.config import (
    McpHttpSpec,
    McpServerSpec,
    McpStdioSpec,
    ToolPolicy,
    mcp_asks,
    resolve_values,
)
from core.errors import ConfigError, ServerUnavailableError, ToolError, ToolRefusedError
from protocol import Refusal, ToolCall, ToolResult, refusal_tag

_log = logging.getLogger(__name__)

SEPARATOR = "__"
"""Between the server's and the tool's name in the name the model sees."""
_NAME_OK = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_READ_CHUNK = 65_536
_STOP_WAIT_S = 5.0
MAX_RESULT_CHARS = 16_000
"""A tool result longer than this is cut (the model is told)."""

OnEvent = Callable[[str, str], Awaitable[None]]
"""``(kind, detail)``: an execution event about a server (``mcp_server``)."""


def tool_name(server: str, tool: str) -> str:
    """The name the model sees for ``tool`` of ``server``: ``<server>__<tool>``, within OpenAI's
    function-name rule (``^[a-zA-Z0-9_-]{1,64}$``): other characters become ``_``, and a name
    too long is cut and ends with a short hash of the whole."""
    name = f"{server}{SEPARATOR}{re.sub(r'[^a-zA-Z0-9_-]', '_', tool)}"
    if len(name) > 64:
        digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    assert _NAME_OK.match(name), name
    return name


def _schema(name: str, tool: mcp_types.Tool, server: str) -> dict[str, Any]:
    parameters = dict(tool.input_schema or {})
    parameters.setdefault("type", "object")
    if parameters.get("type") == "object":
        parameters.setdefault("properties", {})
    description = (tool.description or tool.title or tool.name).strip()
    return {"type": "function", "function": {
        "name": name, "description": f"[MCP server {server}] {description}"[:1024],
        "parameters": parameters}}


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model reads of ``result``: its text blocks, its structured content as JSON
    (when no text block carries it already), a short note for each image, audio or resource."""
    parts: list[str] = []
    for block in result.content:
        match block:
            case mcp_types.TextContent():
                parts.append(block.text)
            case mcp_types.ImageContent():
                parts.append(f"[image {block.mime_type}, {len(block.data) * 3 // 4} bytes: not "
                             "shown]")
            case mcp_types.AudioContent():
                parts.append(f"[audio {block.mime_type}: not played]")
            case mcp_types.ResourceLink():
                parts.append(f"[resource link {block.uri}]")
            case mcp_types.EmbeddedResource():
                resource = block.resource
                text = getattr(resource, "text", None)
                parts.append(text if isinstance(text, str) else f"[resource {resource.uri}]")
            case _:
                parts.append(f"[{getattr(block, 'type', 'content')}]")
    structured = result.structured_content
    if structured is not None:
        # A tool returning a plain value has it wrapped as {"result": value} beside its text.
        inner = structured.get("result") if isinstance(structured, dict) and \
            len(structured) == 1 else None
        shown = {json.dumps(structured, ensure_ascii=False),
                 *((str(inner), json.dumps(inner, ensure_ascii=False)) if inner is not None
                   else ())}
        if not shown & set(parts):
            parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts) or "(no content)"
    if len(text) > MAX_RESULT_CHARS:
        text = (text[:MAX_RESULT_CHARS] + f"\n[... cut: {len(text)} characters in all, over "
                f"the limit of {MAX_RESULT_CHARS} ...]")
    return text


class _Server:
    """One MCP server of a run: its connection (in a task of its own, as the SDK's cancel
    scopes want) and its tools."""

    def __init__(self, name: str, spec: McpServerSpec, workspace: Workspace, policy: ToolPolicy,
                 on_event: OnEvent) -> None:
        self.name, self.spec, self.workspace, self.policy = name, spec, workspace, policy
        self.on_event = on_event
        self.tools: dict[str, mcp_types.Tool] = {}
        self.client: Client | None = None
        self.restarts_left = 1
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._died = asyncio.Event()
        self._stderr = bytearray()
        self._relisting: set[asyncio.Task[None]] = set()

    @property
    def kind(self) -> str:
        return "stdio" if isinstance(self.spec, McpStdioSpec) else "http"

    async def start(self) -> None:
        """Connect and list the tools.

        Raises:
            ServerUnavailableError: it could not be started, reached or listed in time.
        """
        self._stop, self._died = asyncio.Event(), asyncio.Event()
        self._stderr.clear()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(ready), name=f"mcp-{self.name}")
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                await asyncio.shield(ready)
        except TimeoutError:
            await self.stop()
            msg = (f"the MCP server {self.name} did not start within "
                   f"{self.spec.timeout_s:g} s{self._stderr_note()}")
            raise ServerUnavailableError(msg) from None
        except (ServerUnavailableError, ToolError):
            await self.stop()
            raise
        except Exception as exc:
            await self.stop()
            msg = f"the MCP server {self.name} could not be started: {exc}{self._stderr_note()}"
            raise ServerUnavailableError(msg) from exc

    async def stop(self) -> None:
        self._stop.set()
        task, self._task, self.client = self._task, None, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), _STOP_WAIT_S)
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _stderr_note(self) -> str:
        text = bytes(self._stderr[-600:]).decode("utf-8", errors="replace").strip()
        return f" (its stderr: {text})" if text else ""

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        try:
            async with AsyncExitStack() as stack:
                transport = (self._stdio() if isinstance(self.spec, McpStdioSpec)
                             else self._http(self.spec))
                client = Client(transport, mode="auto", cache=None,
                                message_handler=self._on_message)
                await stack.enter_async_context(client)
                self.client = client
                await self.refresh()
                ready.set_result(None)
                stop = asyncio.ensure_future(self._stop.wait())
                died = asyncio.ensure_future(self._died.wait())
                listening = asyncio.ensure_future(self._listen(client))
                try:
                    await asyncio.wait([stop, died], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    died.cancel()
                    listening.cancel()
                    with contextlib.suppress(BaseException):
                        await listening
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception)
                                    else ServerUnavailableError(f"{self.name} was stopped"))
            if not isinstance(exc, Exception):
                raise
            _log.info("MCP server %s ended: %r", self.name, exc)
        finally:
            self._died.set()
            self.client = None

    async def refresh(self) -> None:
        """List the server's tools again (all pages)."""
        client = self.client
        if client is None:
            return
        tools: dict[str, mcp_types.Tool] = {}
        cursor: str | None = None
        for _ in range(100):
            listing = await client.list_tools(cursor=cursor)
            tools.update((t.name, t) for t in listing.tools)
            cursor = listing.next_cursor
            if not cursor:
                break
        self.tools = tools

    async def _listen(self, client: Client) -> None:
        """List the tools again on each ``tools_list_changed`` event of a 2026-07-28 server's
        ``subscriptions/listen`` stream, until the run ends; an older server sends
        ``notifications/tools/list_changed`` instead (``_on_message``)."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    await self._relist()
        except ListenNotSupportedError:
            return
        except Exception as exc:  # the server's stream went: calls find out what is left
            _log.info("MCP server %s: no more change events: %r", self.name, exc)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._relisting.add(relist := asyncio.get_running_loop().create_task(self._relist()))
            relist.add_done_callback(self._relisting.discard)

    async def _relist(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the next call finds out whether the server is still there
            _log.info("MCP server %s: the tools could not be listed again: %r", self.name, exc)
            return
        await self.on_event("mcp_server", f"{self.name}: tools changed: "
                            f"{', '.join(sorted(self.tools)) or '(none)'}")

    def _http(self, spec: McpHttpSpec) -> contextlib.AbstractAsyncContextManager[Any]:
        headers = resolve_values(spec.headers)
        http = httpx2.AsyncClient(headers=headers, timeout=spec.timeout_s)
        return _closing_http(http, streamable_http_client(spec.url, http_client=http))

    @contextlib.asynccontextmanager
    async def _stdio(self) -> AsyncIterator[Any]:
        spec = self.spec
        assert isinstance(spec, McpStdioSpec)
        env = {**command_env(self.workspace), **resolve_values(spec.env)}
        program = shutil.which(spec.command, path=env["PATH"])
        if program is None:
            msg = f"the MCP server {self.name}'s program {spec.command!r} is not installed here"
            raise ServerUnavailableError(msg)
        args = [a.replace("{workspace}", str(self.workspace.root)) for a in spec.args]
        missing = [path for path in spec.read_only
                   if not await asyncio.to_thread(os.path.exists, path)]
        if missing:
            msg = f"the MCP server {self.name}'s read_only paths {missing} do not exist here"
            raise ServerUnavailableError(msg)
        started = await spawn(self.workspace, [program, *args], self.policy,
                              network=spec.network, env=env, merge_stderr=False, stdin=True,
                              read_only=spec.read_only)
        process = started.process
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
        read_w, read_r = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_w, write_r = anyio.create_memory_object_stream[SessionMessage](0)

        async def reader() -> None:
            buffer = b""
            async with read_w:
                while data := await stdout.read(_READ_CHUNK):
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            await read_w.send(_parse(line))
            self._died.set()

        async def writer() -> None:
            async with write_r:
                async for message in write_r:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    stdin.write(data.encode() + b"\n")
                    await stdin.drain()

        async def errors() -> None:
            while data := await stderr.read(_READ_CHUNK):
                self._stderr += data
                del self._stderr[:-4096]

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(reader)
                group.start_soon(writer)
                group.start_soon(errors)
                try:
                    yield read_r, write_w
                finally:
                    group.cancel_scope.cancel()
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    process.kill()
                with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _STOP_WAIT_S)
            await started.finish()

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """``tool`` called with ``arguments``; a server found dead is restarted once per run.

        Raises:
            ServerUnavailableError: it is down and its one restart is used, or it failed.
            MCPError: the server answered the call with a protocol error.
        """
        while True:
            if self.client is None or self._died.is_set():
                await self._restart()
            client = self.client
            assert client is not None
            try:
                return await client.call_tool(tool, arguments)
            except MCPError as exc:
                if exc.error.code != mcp_types.CONNECTION_CLOSED and not self._died.is_set():
                    raise
                cause: BaseException = exc
            except (httpx2.HTTPError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError) as exc:
                cause = exc
            _log.info("MCP server %s failed during %s: %r", self.name, tool, cause)
            self._died.set()

    async def _restart(self) -> None:
        if self.restarts_left <= 0:
            msg = (f"the MCP server {self.name} stopped and was already restarted once in this "
                   f"run{self._stderr_note()}")
            raise ServerUnavailableError(msg)
        self.restarts_left -= 1
        await self.on_event("mcp_server", f"{self.name}: stopped; restarting it (once)")
        await self.stop()
        await self.start()
        await self.on_event("mcp_server", f"{self.name}: restarted, tools "
                            f"{', '.join(sorted(self.tools)) or '(none)'}")


@contextlib.asynccontextmanager
async def _closing_http(http: httpx2.AsyncClient,
                        transport: contextlib.AbstractAsyncContextManager[Any]
                        ) -> AsyncIterator[Any]:
    async with http, transport as streams:
        yield streams


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except Exception as exc:
        return exc


async def _no_events(kind: str, detail: str) -> None:
    return None


class McpTools:
    """The MCP tools of one run (``async with``: the servers connected, then stopped).

    Args:
        servers: the role's servers by name (``Topology.mcp_servers``, ``ActorSpec.mcp``).
        workspace: the session's workspace (a stdio server's working directory and only
            writable place).
        policy: the sandbox and its bounds (``Topology.tools``).
        on_event: ``(kind, detail)`` for an execution event about a server.
    """

    def __init__(self, servers: dict[str, McpServerSpec], workspace: Workspace,
                 policy: ToolPolicy, on_event: OnEvent = _no_events) -> None:
        self._servers = {name: _Server(name, spec, workspace, policy, on_event)
                         for name, spec in servers.items()}
        self._on_event = on_event
        self.unavailable: dict[str, str] = {}
        """Servers that did not start: name → why (their tools are not offered)."""

    async def __aenter__(self) -> McpTools:
        async def start(server: _Server) -> None:
            try:
                await server.start()
            except ToolError as exc:
                self.unavailable[server.name] = str(exc)
                await self._on_event("mcp_server", f"{server.name}: unavailable: {exc}")
                return
            await self._on_event("mcp_server", f"{server.name} ({server.kind}): tools "
                                 f"{', '.join(sorted(server.tools)) or '(none)'}")

        await asyncio.gather(*(start(s) for s in self._servers.values()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(s.stop() for s in self._servers.values()))

    def _names(self) -> dict[str, tuple[_Server, str]]:
        return {tool_name(server.name, tool): (server, tool)
                for server in self._servers.values() for tool in server.tools}

    @property
    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of every server's tools, as listed last."""
        return [_schema(tool_name(server.name, name), tool, server.name)
                for server in self._servers.values() for name, tool in server.tools.items()]

    def owns(self, name: str) -> bool:
        """Whether ``name`` is an MCP tool's (``<server>__<tool>`` of a server of this run)."""
        server, sep, _ = name.partition(SEPARATOR)
        return bool(sep) and server in self._servers

    def asks(self, name: str) -> bool:
        """Whether a call of ``name`` (``owns``) waits for a person's approval: its server's
        ``approval`` for that tool; a name the server does not list asks when the server asks
        for every tool (docs/design.md#approvals)."""
        found = self._names().get(name)
        if found is not None:
            return mcp_asks(found[0].spec.approval, found[1])
        server = self._servers.get(name.partition(SEPARATOR)[0])
        return server is not None and server.spec.approval == "ask"

    async def call(self, call: ToolCall) -> ToolResult:
        """Run ``call`` (an MCP tool's, ``owns``); failures become an error result."""
        try:
            content, is_error = await self._call(call)
        except ToolRefusedError as exc:
            return ToolResult(call_id=call.call_id, name=call.name,
                              content=refusal_tag(f"error: {exc}", exc.kind), is_error=True)
        except ToolError as exc:
            return ToolResult(call_id=call.call_id, name=call.name, content=f"error: {exc}",
                              is_error=True)
        return ToolResult(call_id=call.call_id, name=call.name, content=content,
                          is_error=is_error)

    async def _call(self, call: ToolCall) -> tuple[str, bool]:
        server_name = call.name.partition(SEPARATOR)[0]
        server = self._servers[server_name]
        if server_name in self.unavailable and server.restarts_left <= 0:
            msg = f"the MCP server {server_name} is unavailable: {self.unavailable[server_name]}"
            raise ToolRefusedError(msg, kind=Refusal.SERVER_UNAVAILABLE)
        found = self._names().get(call.name)
        if found is None and server.client is not None:
            known = ", ".join(sorted(n for n in self._names() if n.startswith(server_name))) or \
                "(none)"
            msg = f"the MCP server {server_name} has no tool {call.name!r}; its tools: {known}"
            raise ToolRefusedError(msg, kind=Refusal.UNKNOWN_TOOL)
        tool = found[1] if found is not None else call.name.partition(SEPARATOR)[2]
        arguments = tool_arguments(call)
        try:
            async with asyncio.timeout(server.spec.timeout_s):
                result = await server.call(tool, arguments)
        except TimeoutError:
            msg = (f"{call.name} (MCP server {server_name}) did not answer within "
                   f"{server.spec.timeout_s:g} s")
            raise ToolRefusedError(msg, kind=Refusal.TIMEOUT) from None
        except ServerUnavailableError as exc:
            self.unavailable[server_name] = str(exc)
            raise ToolRefusedError(str(exc), kind=Refusal.SERVER_UNAVAILABLE) from exc
        except ConfigError as exc:
            raise ToolRefusedError(f"the MCP server {server_name} is misconfigured: {exc}",
                                   kind=Refusal.SERVER_UNAVAILABLE) from exc
        except MCPError as exc:
            msg = f"the MCP server {server_name} refused {tool}: {exc.error.message}"
            raise ToolError(msg) from exc
        text = result_text(result)
        return (f"error: {text}" if result.is_error else text), bool(result.is_error)
