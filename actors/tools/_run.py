"""``run_tool``: one model tool call against a workspace, always answered with a ToolResult."""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

from actors.tools._command import run_command
from actors.tools._schemas import TOOL_NAMES
from artifacts import Workspace
from core.config import ToolPolicy
from core.errors import ToolError, ToolRefusedError
from protocol import Refusal, ToolCall, ToolResult, refusal_tag

_log = logging.getLogger(__name__)


class FilesTouched(NamedTuple):
    """Workspace paths a tool call reads and writes (as the model gave them)."""

    read: tuple[str, ...] = ()
    written: tuple[str, ...] = ()


def tool_arguments(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as a JSON object.

    Raises:
        ToolRefusedError: not JSON, or not an object (kind ``invalid_arguments``).
    """
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError as exc:
        msg = f"the arguments of {call.name} are not valid JSON ({exc}); send a JSON object"
        raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS) from exc
    if not isinstance(arguments, dict):
        msg = f"the arguments of {call.name} must be a JSON object"
        raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS)
    return arguments


def _string(arguments: dict[str, Any], name: str, tool: str, default: str | None = None) -> str:
    value = arguments.get(name, default)
    if not isinstance(value, str):
        msg = f"{tool} needs the argument {name!r} as a string"
        raise ToolRefusedError(msg, kind=Refusal.INVALID_ARGUMENTS)
    return value


def files_touched(call: ToolCall) -> FilesTouched:
    """The files ``call`` reads or writes, for progress reports; empty when unknown."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return FilesTouched()
    path = arguments.get("path") if isinstance(arguments, dict) else None
    if not isinstance(path, str) or not path:
        return FilesTouched()
    if call.name == "read_file":
        return FilesTouched(read=(path,))
    if call.name == "write_file":
        return FilesTouched(written=(path,))
    return FilesTouched()


def _read(workspace: Workspace, path: str, policy: ToolPolicy) -> str:
    target = workspace.resolve(path)
    if not target.exists():
        msg = f"no such file: {path!r} (use list_files to see the workspace)"
        raise ToolError(msg)
    if not target.is_file():
        msg = f"{path!r} is not a file"
        raise ToolError(msg)
    size = target.stat().st_size
    if size > policy.max_file_bytes:
        msg = (f"{path!r} is {size} bytes, over the limit of {policy.max_file_bytes}; "
               "read part of it with run_command (head, tail, grep)")
        raise ToolRefusedError(msg, kind=Refusal.FILE_TOO_LARGE)
    return target.read_bytes().decode("utf-8", errors="replace")


def _write(workspace: Workspace, path: str, content: str, policy: ToolPolicy) -> str:
    target = workspace.resolve(path)
    data = content.encode("utf-8")
    if len(data) > policy.max_file_bytes:
        msg = (f"the content is {len(data)} bytes, over the limit of {policy.max_file_bytes}; "
               "split it into smaller files")
        raise ToolRefusedError(msg, kind=Refusal.FILE_TOO_LARGE)
    if target.is_dir():
        msg = f"{path!r} is a directory"
        raise ToolError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return f"wrote {len(data)} bytes to {workspace.relative(target)}"


def _list(workspace: Workspace, path: str) -> str:
    return "\n".join(workspace.list(path)) or "(the directory is empty)"


async def run_tool(workspace: Workspace, call: ToolCall, policy: ToolPolicy) -> ToolResult:
    """Run one tool call; failures become an error result, never an exception.

    Args:
        workspace: the session's workspace.
        call: the model's call (``read_file``, ``write_file``, ``list_files``, ``run_command``).
        policy: the limits (allowlist, seconds, bytes, memory, network) from
            ``topology.yaml`` ``tools:``.

    Returns:
        The result; ``is_error`` for a refusal (bad arguments, unknown tool, path outside the
        workspace, file over ``max_file_bytes``, program not allowed, no network isolation),
        a timeout or a command that exits non-zero. Error contents start with ``error:`` and
        say what to do instead; ``refusal_kind(result)`` names the rule that refused it.
    """
    try:
        arguments = tool_arguments(call)
        is_error = False
        match call.name:
            case "read_file":
                content = _read(workspace, _string(arguments, "path", call.name), policy)
            case "write_file":
                content = _write(workspace, _string(arguments, "path", call.name),
                                 _string(arguments, "content", call.name), policy)
            case "list_files":
                content = _list(workspace, _string(arguments, "path", call.name, "."))
            case "run_command":
                content, is_error = await run_command(
                    workspace, _string(arguments, "command", call.name), policy)
            case _:
                msg = f"unknown tool {call.name!r}; the tools are {', '.join(TOOL_NAMES)}"
                raise ToolRefusedError(msg, kind=Refusal.UNKNOWN_TOOL)
    except ToolRefusedError as exc:
        _log.debug("tool %s refused (%s): %s", call.name, exc.kind, exc)
        return ToolResult(call_id=call.call_id, name=call.name,
                          content=refusal_tag(f"error: {exc}", exc.kind), is_error=True)
    except ToolError as exc:
        _log.debug("tool %s refused: %s", call.name, exc)
        return ToolResult(call_id=call.call_id, name=call.name, content=f"error: {exc}",
                          is_error=True)
    except OSError as exc:
        _log.info("tool %s failed: %s", call.name, exc)
        reason = exc.strerror or str(exc)
        return ToolResult(call_id=call.call_id, name=call.name,
                          content=f"error: {call.name} failed: {reason}", is_error=True)
    return ToolResult(call_id=call.call_id, name=call.name, content=content, is_error=is_error)
