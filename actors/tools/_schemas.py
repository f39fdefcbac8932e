"""OpenAI function-calling schemas of the workspace tools (docs/design.md#the-agentic-loop)."""

from __future__ import annotations

from typing import Any


def _tool(name: str, description: str, properties: dict[str, Any],
          required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_PATH = {"type": "string", "description": "Path relative to the workspace, e.g. 'src/app.py'."}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    _tool("read_file", "Read a text file from the workspace.", {"path": _PATH}, ["path"]),
    _tool(
        "write_file",
        "Create or overwrite a text file in the workspace (parent directories are created).",
        {"path": _PATH, "content": {"type": "string", "description": "The whole new content."}},
        ["path", "content"],
    ),
    _tool(
        "list_files",
        "List the files and directories under a workspace directory, recursively.",
        {"path": {**_PATH, "description": "Directory relative to the workspace; '.' is the "
                  "workspace itself.", "default": "."}},
        [],
    ),
    _tool(
        "run_command",
        "Run one command in the workspace, without a shell (no pipes, redirections, && or "
        "globbing), with a time and output limit. Only allowlisted programs run, e.g. python, "
        "pytest, ls, cat, grep, git. Returns the exit code and the output.",
        {"command": {"type": "string", "description": "The command line, e.g. "
                     "'python -m pytest -q'."}},
        ["command"],
    ),
]
"""The four tools, for ``litellm.acompletion(tools=...)``."""

TOOL_NAMES: tuple[str, ...] = tuple(t["function"]["name"] for t in TOOL_SCHEMAS)
