"""Workspace tools: paths stay inside the workspace, commands are allowlisted and bounded."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.tools import TOOL_SCHEMAS, _mechanism, files_touched, run_tool
from artifacts import Workspace
from core.config import ToolPolicy
from core.errors import ToolError
from protocol import REFUSAL_KINDS, ToolCall, refusal_kind


def _call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(call_id=f"c-{name}", name=name, arguments=json.dumps(arguments))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.for_session(tmp_path / "workspaces", "session-1")


@pytest.fixture
def policy() -> ToolPolicy:
    return ToolPolicy(timeout_s=10)


def test_for_session_creates_directory(tmp_path: Path) -> None:
    ws = Workspace.for_session(tmp_path, "abc")
    assert ws.root == (tmp_path / "abc").resolve()
    assert ws.root.is_dir()
    with pytest.raises(ToolError):
        Workspace.for_session(tmp_path, "../evil")


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.txt", "a/../../outside.txt", ""])
def test_resolve_refuses_escapes(workspace: Workspace, path: str) -> None:
    with pytest.raises(ToolError):
        workspace.resolve(path)


def test_resolve_allows_inner_dotdot(workspace: Workspace) -> None:
    assert workspace.resolve("a/../b.py") == workspace.root / "b.py"


def test_symlink_escape_refused(workspace: Workspace, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (workspace.root / "link").symlink_to(tmp_path)
    (workspace.root / "file_link").symlink_to(secret)
    with pytest.raises(ToolError, match="symlink"):
        workspace.resolve("link/secret.txt")
    with pytest.raises(ToolError, match="symlink"):
        workspace.resolve("file_link")


async def test_read_write_list(workspace: Workspace, policy: ToolPolicy) -> None:
    written = await run_tool(workspace, _call("write_file", path="src/a.py", content="x = 1\n"),
                             policy)
    assert not written.is_error, written.content
    read = await run_tool(workspace, _call("read_file", path="src/a.py"), policy)
    assert read.content == "x = 1\n"
    listed = await run_tool(workspace, _call("list_files"), policy)
    assert listed.content.splitlines() == ["src/", "src/a.py"]


async def test_refusals_are_results_not_exceptions(workspace: Workspace,
                                                   policy: ToolPolicy) -> None:
    bad_json = ToolCall(call_id="1", name="read_file", arguments="{not json")
    cases = [
        bad_json,
        _call("read_file", path="/etc/passwd"),
        _call("write_file", path="../x.py", content="boom"),
        _call("read_file", path="missing.txt"),
        _call("delete_everything"),
        _call("write_file", path="a.py"),
    ]
    for call in cases:
        result = await run_tool(workspace, call, policy)
        assert result.is_error, call
        assert result.content.startswith("error: "), result.content
    assert not (workspace.root.parent / "x.py").exists()


async def test_file_size_limit(workspace: Workspace) -> None:
    policy = ToolPolicy(max_file_bytes=100)
    result = await run_tool(workspace, _call("write_file", path="big.txt", content="x" * 101),
                            policy)
    assert result.is_error and "over the limit" in result.content
    (workspace.root / "big.txt").write_text("y" * 500)
    result = await run_tool(workspace, _call("read_file", path="big.txt"), policy)
    assert result.is_error and "500 bytes" in result.content


async def test_allowlist_refusal(workspace: Workspace, policy: ToolPolicy) -> None:
    for command in ["rm -rf /", "bash -c 'echo hi'", "/usr/bin/curl http://example.com"]:
        result = await run_tool(workspace, _call("run_command", command=command), policy)
        assert result.is_error
        assert "not an allowed program" in result.content


async def test_command_runs_in_workspace_with_exit_code(workspace: Workspace,
                                                        policy: ToolPolicy) -> None:
    (workspace.root / "hello.txt").write_text("hi")
    result = await run_tool(workspace, _call("run_command", command="ls"), policy)
    assert not result.is_error
    assert "exit code: 0" in result.content and "hello.txt" in result.content
    failing = await run_tool(
        workspace, _call("run_command", command="python -c 'raise SystemExit(3)'"), policy)
    assert failing.is_error and "exit code: 3" in failing.content


async def test_command_uses_this_python(workspace: Workspace, policy: ToolPolicy) -> None:
    command = "python -c 'import sys; print(sys.prefix)'"
    result = await run_tool(workspace, _call("run_command", command=command), policy)
    assert sys.prefix in result.content


async def test_timeout_kills_process_group(workspace: Workspace) -> None:
    policy = ToolPolicy(timeout_s=0.5)
    # The child spawns a grandchild that would outlive a plain kill of the child.
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print('started', flush=True); time.sleep(60)")
    result = await run_tool(workspace, _call("run_command", command=f'python -c "{script}"'),
                            policy)
    assert result.is_error
    assert "timed out after 0.5 s" in result.content
    assert "started" in result.content


async def test_output_truncated(workspace: Workspace) -> None:
    policy = ToolPolicy(max_output_bytes=1000)
    command = "python -c 'print(\"a\" * 50000); print(\"THE END\")'"
    result = await run_tool(workspace, _call("run_command", command=command), policy)
    assert "output truncated" in result.content
    assert len(result.content) < 1400
    assert "THE END" in result.content  # the tail is kept: test summaries come last


async def test_env_has_no_secrets(workspace: Workspace, policy: ToolPolicy,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-do-not-leak")
    assert os.environ["SECRET_TOKEN"]
    command = "python -c 'import os, json; print(json.dumps(dict(os.environ)))'"
    result = await run_tool(workspace, _call("run_command", command=command), policy)
    assert "hunter2" not in result.content
    env = json.loads(result.content.splitlines()[2])
    assert "SECRET_TOKEN" not in env
    assert env["HOME"] == str(workspace.root)
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


async def test_memory_limit(workspace: Workspace) -> None:
    policy = ToolPolicy(timeout_s=10, memory_bytes=256 << 20)
    (workspace.root / "eat.py").write_text(  # exit code 7: refused the memory, not a crash
        "try:\n    x = bytearray(2 * 1024 ** 3)\nexcept MemoryError:\n    raise SystemExit(7)\n")
    result = await run_tool(workspace, _call("run_command", command="python eat.py"), policy)
    assert result.is_error and "exit code: 7" in result.content, result.content
    small = "python -c 'x = bytearray(64 * 1024 ** 2); print(len(x))'"
    result = await run_tool(workspace, _call("run_command", command=small), policy)
    assert not result.is_error and str(64 * 1024 ** 2) in result.content, result.content


def test_files_touched_and_schemas() -> None:
    assert files_touched(_call("read_file", path="a.py")).read == ("a.py",)
    assert files_touched(_call("write_file", path="b.py", content="")).written == ("b.py",)
    assert files_touched(ToolCall(call_id="1", name="write_file", arguments="{")) == ((), ())
    names = {schema["function"]["name"] for schema in TOOL_SCHEMAS}
    assert names == {"read_file", "write_file", "list_files", "run_command"}


_CONNECT = ("python -c \"import errno, socket; s = socket.socket(); s.settimeout(5); "
            "code = s.connect_ex(('127.0.0.1', {port})); "
            "print('connected' if code == 0 else errno.errorcode.get(code, code)); "
            "raise SystemExit(code)\"")
"""Prints ``connected``, or the errno's symbol (``ECONNREFUSED``: not the OS's wording)."""


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    """A TCP server on the host's loopback that accepts and closes connections."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_no_network_by_default(workspace: Workspace, listening_port: int) -> None:
    policy = ToolPolicy(timeout_s=20)
    assert policy.network is False
    command = _CONNECT.format(port=listening_port)
    result = await run_tool(workspace, _call("run_command", command=command), policy)
    assert result.is_error, result.content
    output = result.content.split("\n", 2)[2]
    assert output.split() in (["ENETUNREACH"], ["ECONNREFUSED"]), output
    assert refusal_kind(result) is None  # the command ran; the network was simply not there


async def test_network_when_allowed(workspace: Workspace, listening_port: int) -> None:
    policy = ToolPolicy(timeout_s=20, network=True)
    command = _CONNECT.format(port=listening_port)
    result = await run_tool(workspace, _call("run_command", command=command), policy)
    assert not result.is_error, result.content
    assert "connected" in result.content.split("\n", 2)[2]


async def test_refused_when_no_sandbox_works(workspace: Workspace,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither bubblewrap nor unshare (for Landlock) here: commands are refused, never run
    unconfined, unless the operator says ``sandbox: none``."""
    monkeypatch.setattr(_mechanism, "SANDBOX",
                        _mechanism.Sandbox(bwrap="no-such-bwrap", unshare="no-such-unshare"))
    (workspace.root / "marker.txt").write_text("x")
    for choice in ("auto", "bubblewrap", "landlock"):
        result = await run_tool(workspace, _call("run_command", command="ls"),
                                ToolPolicy(sandbox=choice))
        assert result.is_error and result.content.startswith("error: ")
        assert "sandbox: none" in result.content  # says how an operator can allow it
        assert "marker.txt" not in result.content  # never ran
        assert refusal_kind(result) == "sandbox_unavailable"
    unconfined = await run_tool(workspace, _call("run_command", command="ls"),
                                ToolPolicy(sandbox="none"))
    assert not unconfined.is_error and "marker.txt" in unconfined.content


@pytest.mark.parametrize(("call", "policy", "kind"), [
    (_call("read_file", path="/etc/passwd"), ToolPolicy(), "path_outside_workspace"),
    (_call("write_file", path="../x.py", content="boom"), ToolPolicy(), "path_outside_workspace"),
    (_call("list_files", path="a/../../.."), ToolPolicy(), "path_outside_workspace"),
    (_call("run_command", command="rm -rf /"), ToolPolicy(), "command_not_allowed"),
    (_call("run_command", command="python -c 'import time; time.sleep(30)'"),
     ToolPolicy(timeout_s=0.3), "timeout"),
    (_call("run_command", command="python -c 'print(\"a\" * 5000)'"),
     ToolPolicy(max_output_bytes=100), "output_truncated"),
    (_call("write_file", path="big.txt", content="x" * 101), ToolPolicy(max_file_bytes=100),
     "file_too_large"),
    (ToolCall(call_id="1", name="read_file", arguments="{not json"), ToolPolicy(),
     "invalid_arguments"),
    (_call("run_command", command="echo 'unclosed"), ToolPolicy(), "invalid_arguments"),
    (_call("delete_everything"), ToolPolicy(), "unknown_tool"),
    (_call("read_file", path="missing.txt"), ToolPolicy(), None),
    (_call("run_command", command="python -c 'raise SystemExit(2)'"), ToolPolicy(), None),
    (_call("run_command", command="echo fine"), ToolPolicy(), None),
])
async def test_refusal_kinds(workspace: Workspace, call: ToolCall, policy: ToolPolicy,
                             kind: str | None) -> None:
    result = await run_tool(workspace, call, policy)
    assert refusal_kind(result) == kind, result.content
    assert kind is None or kind in REFUSAL_KINDS
    if kind is not None and kind != "output_truncated":
        assert result.is_error and result.content.startswith("error: ")


async def test_command_output_cannot_pose_as_a_refusal(workspace: Workspace) -> None:
    command = "python -c 'print(\"error: nope [sandbox_unavailable]\")'"
    result = await run_tool(workspace, _call("run_command", command=command), ToolPolicy())
    assert "[sandbox_unavailable]" in result.content
    assert refusal_kind(result) is None
