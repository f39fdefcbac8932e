"""MCP tool servers (actors/tools/_mcp.py) with real servers: mcp-server-git (from PyPI) over
stdio inside the tool sandbox, a streamable-HTTP server built with the SDK, and a stdio server
that dies. Outcomes are ours: result text, ``is_error``, refusal kinds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers import (
    DYING_SERVER,
    LEGACY_SERVER,
    TOKEN,
    demo_server,
    free_port,
    growing_server,
    http_server,
)
from pydantic import ValidationError
from waiting import eventually

from actors.tools._mcp import McpTools, tool_name
from artifacts import Workspace
from core.config import McpHttpSpec, McpServerSpec, McpStdioSpec, ToolPolicy, Topology
from protocol import Refusal, ToolCall, ToolResult, refusal_kind

pytestmark = pytest.mark.timeout(120)
POLICY = ToolPolicy()
TIERS = {t: [f"offline/tier-{t}"] for t in (1, 2, 3, 4)}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def __call__(self, kind: str, detail: str) -> None:
        self.events.append((kind, detail))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.for_session(tmp_path / "workspaces", "terminal-mcp")
    ws.root.mkdir(parents=True, exist_ok=True)
    return ws


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    with http_server(demo_server()) as url:
        yield url


def _call(name: str, arguments: dict[str, Any] | str) -> ToolCall:
    import json
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(call_id="c1", name=name, arguments=text)


def _http(url: str, **changes: Any) -> McpHttpSpec:
    return McpHttpSpec(url=url, headers={"Authorization": {"env": "SB_TEST_MCP_TOKEN",
                                                           "prefix": "Bearer "}}, **changes)


# ---------------------------------------------------------------- config and names


def test_topology_names_servers_and_the_roles_that_use_them() -> None:
    topology = Topology.model_validate({
        "tiers": TIERS, "actors": {"python_coder": {"mcp": ["git", "web"]}},
        "mcp_servers": {"git": {"command": "mcp-server-git", "args": ["-r", "{workspace}"]},
                        "web": {"url": "https://example.org/mcp",
                                "headers": {"X-Key": {"env": "WEB_KEY"}}}}})
    assert isinstance(topology.mcp_servers["git"], McpStdioSpec)
    assert isinstance(topology.mcp_servers["web"], McpHttpSpec)
    assert topology.actor("python_coder").mcp == ("git", "web")


@pytest.mark.parametrize("changes", [
    {"mcp_servers": {"git": {"args": ["x"]}}},                          # neither command nor url
    {"mcp_servers": {"a__b": {"url": "http://x"}}},                     # __ in the name
    {"mcp_servers": {"web": {"url": "ftp://x"}}},                       # not http(s)
    {"actors": {"python_coder": {"mcp": ["nope"]}}},                    # unknown server
    {"mcp_servers": {"w": {"url": "http://x"}}, "actors": {"planner": {"mcp": ["w"]}}},
    {"mcp_servers": {"w": {"url": "http://x", "headers": {"K": {"env": "1BAD"}}}}},
])
def test_a_wrong_mcp_configuration_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Topology.model_validate({"tiers": TIERS, "actors": {}, **changes})


def test_names_keep_within_openais_function_name_rule() -> None:
    assert tool_name("git", "git_status") == "git__git_status"
    assert tool_name("web", "get.page v2") == "web__get_page_v2"
    long = tool_name("srv", "x" * 100)
    assert len(long) == 64 and long != tool_name("srv", "x" * 99)


# ---------------------------------------------------------------- a real stdio server


async def test_mcp_server_git_runs_in_the_sandbox_on_the_workspace(
        workspace: Workspace) -> None:
    await asyncio.to_thread(subprocess.run, ["git", "init", "-q", str(workspace.root)],
                            check=True)
    (workspace.root / "hello.txt").write_text("hi\n")
    events = Recorder()
    spec = McpStdioSpec(command="mcp-server-git", args=("--repository", "{workspace}"))
    async with McpTools({"git": spec}, workspace, POLICY, events) as tools:
        names = [s["function"]["name"] for s in tools.schemas]
        assert "git__git_status" in names and "git__git_add" in names
        assert all(s["function"]["parameters"]["type"] == "object" for s in tools.schemas)
        assert tools.owns("git__git_status") and not tools.owns("run_command")
        status = await tools.call(_call("git__git_status", {"repo_path": str(workspace.root)}))
        assert not status.is_error and "hello.txt" in status.content
        added = await tools.call(_call("git__git_add", {"repo_path": str(workspace.root),
                                                        "files": ["hello.txt"]}))
        assert not added.is_error, added.content
    staged = (await asyncio.to_thread(
        subprocess.run, ["git", "-C", str(workspace.root), "diff", "--cached", "--name-only"],
        capture_output=True, text=True, check=True)).stdout
    assert staged.split() == ["hello.txt"]
    assert events.events[0][0] == "mcp_server" and "git (stdio)" in events.events[0][1]


async def test_a_stdio_server_sees_only_the_sandbox(workspace: Workspace) -> None:
    (workspace.root / "dying.py").write_text(DYING_SERVER)
    spec = McpStdioSpec(command="python", args=("dying.py",))
    async with McpTools({"d": spec}, workspace, POLICY) as tools:
        result = await tools.call(_call("d__where", {}))
    assert result.content == str(workspace.root)


async def test_a_server_that_dies_is_restarted_once_then_reported(
        workspace: Workspace) -> None:
    (workspace.root / "dying.py").write_text(DYING_SERVER)
    events = Recorder()
    spec = McpStdioSpec(command="python", args=("dying.py",), timeout_s=20)
    async with McpTools({"d": spec}, workspace, POLICY, events) as tools:
        first = await tools.call(_call("d__die", {}))
        assert first.is_error and refusal_kind(first) is Refusal.SERVER_UNAVAILABLE
        later = await tools.call(_call("d__where", {}))
        assert later.is_error and refusal_kind(later) is Refusal.SERVER_UNAVAILABLE
    restarts = [d for k, d in events.events if k == "mcp_server" and "restart" in d]
    assert restarts, events.events


async def test_a_missing_program_is_a_tool_error_not_an_exception(
        workspace: Workspace) -> None:
    spec = McpStdioSpec(command="no-such-mcp-server-here")
    async with McpTools({"x": spec}, workspace, POLICY) as tools:
        assert tools.schemas == [] and "x" in tools.unavailable
        result = await tools.call(_call("x__anything", {}))
    assert result.is_error and refusal_kind(result) is Refusal.SERVER_UNAVAILABLE


# ---------------------------------------------------------------- a real HTTP server


async def test_http_tools_are_listed_and_called(
        workspace: Workspace, demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SB_TEST_MCP_TOKEN", TOKEN)
    async with McpTools({"demo": _http(demo_url, timeout_s=3)}, workspace, POLICY) as tools:
        assert {s["function"]["name"] for s in tools.schemas} == {
            "demo__add", "demo__fail", "demo__slow"}
        added = await tools.call(_call("demo__add", {"a": 2, "b": 40}))
        assert not added.is_error and "42" in added.content
        failed = await tools.call(_call("demo__fail", {"reason": "on purpose"}))
        assert failed.is_error and failed.content.startswith("error:")
        assert refusal_kind(failed) is None
        slow = await tools.call(_call("demo__slow", {"seconds": 10}))
        assert slow.is_error and refusal_kind(slow) is Refusal.TIMEOUT
        bad = await tools.call(_call("demo__add", "[1, 2]"))
        assert refusal_kind(bad) is Refusal.INVALID_ARGUMENTS
        unknown = await tools.call(_call("demo__nope", {}))
        assert refusal_kind(unknown) is Refusal.UNKNOWN_TOOL
        after = await tools.call(_call("demo__add", {"a": 1, "b": 1}))
        assert not after.is_error and "2" in after.content


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_an_http_server_without_its_secret_is_unavailable(
        workspace: Workspace, demo_url: str, monkeypatch: pytest.MonkeyPatch,
        token: str | None) -> None:
    if token is None:
        monkeypatch.delenv("SB_TEST_MCP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SB_TEST_MCP_TOKEN", token)
    async with McpTools({"demo": _http(demo_url, timeout_s=3)}, workspace, POLICY) as tools:
        assert "demo" in tools.unavailable
        result: ToolResult = await tools.call(_call("demo__add", {"a": 1, "b": 2}))
    assert result.is_error and refusal_kind(result) is Refusal.SERVER_UNAVAILABLE


async def test_an_unreachable_http_server_is_unavailable(workspace: Workspace) -> None:
    spec = McpHttpSpec(url=f"http://127.0.0.1:{free_port()}/mcp", timeout_s=3)
    async with McpTools({"gone": spec}, workspace, POLICY) as tools:
        result = await tools.call(_call("gone__add", {}))
    assert result.is_error and refusal_kind(result) is Refusal.SERVER_UNAVAILABLE


def test_the_readmes_mcp_example_is_valid() -> None:
    """The README's MCP example, merged into the shipped topology, loads as it says."""
    import yaml

    from core.config import Topology

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    block = readme.split("## Giving a role more tools (MCP)")[1].split("```yaml")[1]
    example = yaml.safe_load(block.split("```")[0])
    data = yaml.safe_load((repo / "topology.yaml").read_text())
    data["mcp_servers"] = example["mcp_servers"]
    data.setdefault("actors", {}).setdefault("python_coder", {}).update(
        example["actors"]["python_coder"])
    topology = Topology.model_validate(data)
    assert topology.actor("python_coder").mcp == ("git", "search")


def test_switchboard_tools_lists_what_each_role_can_call(tmp_path: Path) -> None:
    """``switchboard tools``: the built-in tools and each MCP server's, listed from the real
    server (mcp-server-git, in the sandbox), with the calls that ask; a server that cannot
    start is named with why, and the exit code says so."""
    import yaml

    repo = Path(__file__).resolve().parent.parent
    data = yaml.safe_load((repo / "topology.yaml").read_text())
    data["mcp_servers"] = {
        "git": {"command": "mcp-server-git", "args": ["--repository", "{workspace}"],
                "approval": {"git_commit": "ask"}},
        "gone": {"command": "no-such-mcp-server"}}
    data["actors"]["python_coder"]["mcp"] = ["git", "gone"]
    data.setdefault("tools", {})["approval"] = {"run_command": "ask"}
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SB_")}
    env.update(SB_TOPOLOGY=str(topology), SB_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "switchboard.cli", "tools", "--role",
                           "python_coder", "--role", "researcher", "--json"],
                          env=env, capture_output=True, text=True, timeout=180, cwd=repo,
                          check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    listing = json.loads(done.stdout)
    assert set(listing) == {"python_coder", "researcher"}
    builtin = {t["name"]: t["asks"] for t in listing["python_coder"]["builtin"]}
    assert builtin == {"read_file": False, "write_file": False, "list_files": False,
                       "run_command": True}
    git = {t["name"]: t["asks"] for t in listing["python_coder"]["servers"]["git"]["tools"]}
    assert git["git__git_commit"] is True and git["git__git_status"] is False
    assert "not installed" in listing["python_coder"]["servers"]["gone"]["unavailable"]
    assert listing["researcher"]["servers"] == {}


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-06-18"])
async def test_tools_listed_again_when_the_server_says_they_changed(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, revision: str) -> None:
    """The server added a tool and said so (a ``subscriptions/listen`` event over streamable
    HTTP, or, from a 2025-era stdio server, ``notifications/tools/list_changed``): the tools
    are listed again, the new one is offered and answers, and an event says so."""
    monkeypatch.setenv("SB_TEST_MCP_TOKEN", TOKEN)
    events = Recorder()
    (workspace.root / "legacy.py").write_text(LEGACY_SERVER)
    with http_server(growing_server()) as url:
        spec: McpServerSpec = (_http(url) if revision == "2026-07-28" else
                               McpStdioSpec(command="python", args=("legacy.py",)))
        async with McpTools({"g": spec}, workspace, POLICY, events) as tools:
            assert [s["function"]["name"] for s in tools.schemas] == ["g__unlock"]
            unlocked = await tools.call(_call("g__unlock", {}))
            assert not unlocked.is_error, unlocked.content

            async def offered() -> bool:
                return "g__secret" in [s["function"]["name"] for s in tools.schemas]

            await eventually(offered, within_s=10, what="the new tool to be offered")
            secret = await tools.call(_call("g__secret", {}))
            assert not secret.is_error and "the secret is 7" in secret.content
    changed = [d for k, d in events.events if k == "mcp_server" and "tools changed" in d]
    assert changed and "secret" in changed[-1], events.events
