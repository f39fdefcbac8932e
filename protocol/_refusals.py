"""Why a tool result was refused or cut short, readable by the agent loop for its events (and
by anyone reading a ``ToolResult``: this is part of its content's contract).

A refused or limited result names its reason at the end of its first line, in brackets:
``error: 'rm' is not an allowed program; ... [command_not_allowed]``, or
``$ python big.py [output_truncated]``. The first line is always written by the tools (command
output starts on the third line), so what a program prints cannot pose as a refusal.
"""

from __future__ import annotations

import re
from enum import StrEnum

from protocol._outcomes import ToolResult


class Refusal(StrEnum):
    """The safety rules and bounds that refuse or cut short a tool call."""

    PATH_OUTSIDE_WORKSPACE = "path_outside_workspace"
    COMMAND_NOT_ALLOWED = "command_not_allowed"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    LIMIT_EXCEEDED = "limit_exceeded"
    WORKSPACE_FULL = "workspace_full"
    TIMEOUT = "timeout"
    OUTPUT_TRUNCATED = "output_truncated"
    FILE_TOO_LARGE = "file_too_large"
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    SERVER_UNAVAILABLE = "server_unavailable"
    """An MCP tool server could not be started or reached, or died again after a restart."""
    DENIED = "denied"
    """The call needed an approval (``approval: ask``) and the person denied it, or did not
    answer in time."""


REFUSAL_KINDS = frozenset(Refusal)
"""Every reason ``refusal_kind`` can return."""

_TAG = re.compile(r" \[([a-z_]+)\]$")


def refusal_tag(first_line: str, kind: str) -> str:
    """``first_line`` with ``kind`` appended in brackets (``kind`` must be a refusal kind)."""
    assert kind in REFUSAL_KINDS, kind
    return f"{first_line} [{kind}]"


def refusal_kind(result: ToolResult) -> Refusal | None:
    """The safety rule that refused or limited ``result``, or None for an ordinary result.

    Returns:
        One of ``REFUSAL_KINDS``: ``path_outside_workspace``, ``command_not_allowed``,
        ``sandbox_unavailable``, ``limit_exceeded``, ``workspace_full``, ``timeout``,
        ``output_truncated``, ``file_too_large``, ``invalid_arguments``, ``unknown_tool``,
        ``server_unavailable``, ``denied``.
    """
    first_line = result.content.split("\n", 1)[0]
    match = _TAG.search(first_line)
    if match is None or match.group(1) not in REFUSAL_KINDS:
        return None
    return Refusal(match.group(1))
