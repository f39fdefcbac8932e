"""``switchboard tools``: what each agent role's runs can call — the built-in workspace tools
and the tools of the role's MCP servers, listed from the servers themselves (each started as a
run starts it: stdio servers in the tool sandbox, on a scratch workspace that is a git
repository with one empty commit, as a run's is) — and which
calls wait for a person's approval (docs/design.md#approvals)."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from actors.tools import TOOL_NAMES, GitRepo
from artifacts import Workspace
from core.config import Settings, Topology
from core.console import say
from protocol import AGENT_ROLES

EXIT_OK, EXIT_UNAVAILABLE = 0, 1
LIST_TIMEOUT_S = 120.0
"""Longest the listing waits for every server of a role to start and list its tools."""

DESCRIPTION = """\
List what each agent role can call: its built-in tools (read_file, write_file, list_files,
run_command) and, for each MCP server it uses (`actors.<role>.mcp` in topology.yaml), the
tools that server lists now, under the names the model sees (`<server>__<tool>`). A call
marked "asks" waits for a person's approval (`tools.approval`, a server's `approval`).

exit codes: 0 every server listed its tools, 1 a server could not be started or reached
"""


def add_parser(commands: Any) -> None:
    """Add ``tools`` to the ``switchboard`` subparsers."""
    tools = commands.add_parser(
        "tools", help="what each agent role can call (built-in and MCP tools, approvals)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    tools.add_argument("--role", choices=AGENT_ROLES, action="append",
                       help="only this agent role (repeatable; default: every agent role)")
    tools.add_argument("--json", action="store_true",
                       help="print one JSON object: role -> {builtin, servers}")
    tools.set_defaults(func=cmd_tools)


def cmd_tools(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Print each role's tools; returns the exit code (see ``DESCRIPTION``)."""
    roles = tuple(args.role or AGENT_ROLES)
    listing = asyncio.run(_list(topology, roles))
    if args.json:
        say(json.dumps(listing, indent=1))
    else:
        for role, tools in listing.items():
            say(_render(role, tools))
    unavailable = any(server.get("unavailable") for tools in listing.values()
                      for server in tools["servers"].values())
    return EXIT_UNAVAILABLE if unavailable else EXIT_OK


async def _list(topology: Topology, roles: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``role -> {"builtin": [{name, asks}], "servers": {name: {kind, tools | unavailable}}}``
    with each server started once, whatever the roles using it."""
    approval = topology.tools.approval
    names = sorted({name for role in roles for name in topology.actor(role).mcp})
    servers = await _servers(topology, names) if names else {}
    return {role: {
        "builtin": [{"name": name, "asks": approval.get(name) == "ask"} for name in TOOL_NAMES],
        "servers": {name: servers[name] for name in topology.actor(role).mcp},
    } for role in roles}


async def _servers(topology: Topology, names: list[str]) -> dict[str, dict[str, Any]]:
    # Deferred: the MCP SDK takes most of a second to import (as in actors.agent_run).
    from actors.tools._mcp import McpTools

    specs = {name: topology.mcp_servers[name] for name in names}
    with tempfile.TemporaryDirectory(prefix="sb-tools-") as scratch:
        workspace = Workspace.for_session(Path(scratch), "tools-listing")
        await GitRepo(workspace, policy=topology.tools).ensure("main")
        async with asyncio.timeout(LIST_TIMEOUT_S), \
                McpTools(specs, workspace, topology.tools) as mcp:
            found: dict[str, dict[str, Any]] = {
                name: {"kind": "stdio" if hasattr(spec, "command") else "http", "tools": []}
                for name, spec in specs.items()}
            for name, reason in mcp.unavailable.items():
                found[name] = {"kind": found[name]["kind"], "unavailable": reason}
            for schema in mcp.schemas:
                tool = schema["function"]["name"]
                server = tool.partition("__")[0]
                if "tools" in found.get(server, {}):
                    found[server]["tools"].append({"name": tool, "asks": mcp.asks(tool)})
    return found


def _render(role: str, tools: dict[str, Any]) -> str:
    def named(entries: list[dict[str, Any]]) -> str:
        return ", ".join(e["name"] + (" (asks)" if e["asks"] else "") for e in entries)

    lines = [role, f"  built-in: {named(tools['builtin'])}"]
    for name, server in tools["servers"].items():
        if "unavailable" in server:
            lines.append(f"  {name} ({server['kind']}): ❌ unavailable: {server['unavailable']}")
        else:
            lines.append(f"  {name} ({server['kind']}): {named(server['tools']) or '(no tools)'}")
    return "\n".join(lines)
