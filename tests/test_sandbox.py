"""The tool sandbox: a program a tool starts reaches its session's workspace and nothing else,
under both mechanisms (bubblewrap, and Landlock with namespaces), and its bounds hold.

Each probe is a real program run through ``run_tool`` as the agent loop runs it; what it could
reach it prints, and the test reads that back. The same probes go through the genuine agent
loop in ``tests/test_sandbox_agent.py``.
"""

from __future__ import annotations

import json
import socket
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.config import ToolPolicy
from actors.errors import SandboxUnavailableError
from actors.tools import GitRepo, Workspace, refusal_kind, run_tool
from actors.tools import _sandbox as sandbox_module
from protocol import ToolCall

REPO = Path(__file__).resolve().parent.parent
MECHANISMS = ("bubblewrap", "landlock")
PROBE = textwrap.dedent("""
    import ctypes, glob, json, os, socket, sys
    results = {}
    def attempt(name, action):
        try:
            results[name] = ["reached", repr(action())[:200]]
        except BaseException as exc:  # refused: that is the point
            results[name] = ["refused", type(exc).__name__]
    args = json.loads(sys.argv[1])
    attempt("secret", lambda: open(args["secret"]).read())
    attempt("other_workspace", lambda: open(args["other"]).read())
    attempt("source", lambda: open(args["source"]).read())
    attempt("host_tmp", lambda: open(args["host_tmp"], "w").write("x"))
    attempt("own_file", lambda: open("own.txt", "w").write("mine"))
    attempt("private_tmp", lambda: open("/tmp/scratch", "w").write("x"))
    attempt("environ", lambda: b"".join(open(p, "rb").read()
                                        for p in glob.glob("/proc/[0-9]*/environ")))
    attempt("nats", lambda: socket.create_connection(("127.0.0.1", args["port"]), timeout=2))
    libc = ctypes.CDLL(None, use_errno=True)
    def trace():
        if libc.ptrace(16, 1, 0, 0) != 0:  # PTRACE_ATTACH to pid 1
            raise PermissionError(ctypes.get_errno())
    attempt("ptrace", trace)
    results["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit()) \\
        if os.access("/proc", os.R_OK) else []
    print("PROBE " + json.dumps(results))
""")


def _call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(call_id=f"c-{name}", name=name, arguments=json.dumps(arguments))



def _exists(path: Path) -> bool:
    return path.exists()


def _size(path: Path) -> int:
    return path.stat().st_size


@pytest.fixture(params=MECHANISMS)
def mechanism(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "workspaces" / "other").mkdir(parents=True)
    (data / "operator.creds").write_text("SECRET-CREDS")
    (data / "workspaces" / "other" / "notes.txt").write_text("SOMEONE-ELSES")
    return data


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


async def test_a_program_reaches_its_workspace_and_nothing_else(
        mechanism: str, data_dir: Path, listening_port: int) -> None:
    workspace = Workspace.for_session(data_dir / "workspaces", "mine")
    (workspace.root / "probe.py").write_text(PROBE)
    host_tmp = Path("/tmp") / f"sb-sandbox-test-{uuid.uuid4().hex}"
    args = {"secret": str(data_dir / "operator.creds"),
            "other": str(data_dir / "workspaces" / "other" / "notes.txt"),
            "source": str(REPO / "pyproject.toml"), "host_tmp": str(host_tmp),
            "port": listening_port}
    command = f"python probe.py '{json.dumps(args)}'"
    result = await run_tool(workspace, _call("run_command", command=command),
                            ToolPolicy(sandbox=mechanism, timeout_s=30))
    assert not result.is_error, result.content
    line = next(x for x in result.content.splitlines() if x.startswith("PROBE "))
    seen = json.loads(line.removeprefix("PROBE "))
    for refused in ("secret", "other_workspace", "source", "nats", "ptrace"):
        assert seen[refused][0] == "refused", (refused, seen[refused])
    assert "SECRET-CREDS" not in result.content and "SOMEONE-ELSES" not in result.content
    assert not _exists(host_tmp)  # its /tmp is its own (writing there is fine)
    assert seen["own_file"][0] == "reached"
    assert (workspace.root / "own.txt").read_text() == "mine"
    assert not _exists(workspace.root / "scratch") and not _exists(Path("/tmp/scratch"))
    # Only its own processes: no actor's environment to read.
    assert all(pid < 10 for pid in seen["pids"]), seen["pids"]
    assert "SB_" not in seen["environ"][1] and "NATS" not in seen["environ"][1]


async def test_a_fork_bomb_hits_the_process_bound(mechanism: str, tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "bomb")
    (workspace.root / "bomb.py").write_text(textwrap.dedent("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """))
    policy = ToolPolicy(sandbox=mechanism, timeout_s=3, processes=32)
    result = await run_tool(workspace, _call("run_command", command="python bomb.py"), policy)
    assert result.is_error
    assert refusal_kind(result) == "limit_exceeded", result.content
    after = await run_tool(workspace, _call("run_command", command="echo still here"), policy)
    assert not after.is_error and "still here" in after.content


async def test_cpu_time_is_bounded(tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "cpu")
    (workspace.root / "spin.py").write_text("while True:\n    pass\n")
    policy = ToolPolicy(sandbox="bubblewrap", timeout_s=30, cpu_s=1)
    result = await run_tool(workspace, _call("run_command", command="python spin.py"), policy)
    assert result.is_error and refusal_kind(result) == "limit_exceeded", result.content


async def test_filling_the_disk_is_bounded(mechanism: str, tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "fill")
    (workspace.root / "fill.py").write_text(textwrap.dedent("""
        import os
        for i in range(8):
            with open(f"chunk-{i}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
    """))
    policy = ToolPolicy(sandbox=mechanism, timeout_s=30, file_bytes=1 << 21,
                        workspace_bytes=4 << 20)
    first = await run_tool(workspace, _call("run_command", command="python fill.py"), policy)
    # A 1 MiB chunk per file passes the file bound; the whole workspace does not.
    assert first.is_error and refusal_kind(first) == "workspace_full", first.content
    second = await run_tool(workspace, _call("run_command", command="echo ran-it"), policy)
    assert second.is_error and refusal_kind(second) == "workspace_full"
    assert "ran-it" not in second.content  # never ran
    big = await run_tool(workspace, _call("run_command", command="python -c \"open('x', 'wb')"
                                          ".write(b'0' * (5 << 20))\""),
                         ToolPolicy(sandbox=mechanism, file_bytes=1 << 20))
    assert big.is_error
    assert _size(workspace.root / "x") <= 1 << 20


async def test_git_config_planted_by_the_model_runs_inside_the_sandbox(
        mechanism: str, data_dir: Path) -> None:
    """A clean filter in ``.git/config`` (as a model's command could write) runs when we
    commit: inside the sandbox, it cannot reach the data directory."""
    workspace = Workspace.for_session(data_dir / "workspaces", "git")
    git = GitRepo(workspace, policy=ToolPolicy(sandbox=mechanism))
    await git.ensure("switchboard/git-run")
    secret = data_dir / "operator.creds"
    with (workspace.root / ".git" / "config").open("a") as config:
        config.write(f'[filter "leak"]\n\tclean = "cat {secret} > leaked.txt; cat"\n')
    (workspace.root / ".gitattributes").write_text("*.txt filter=leak\n")
    (workspace.root / "a.txt").write_text("hello\n")
    await git.commit_all("a file")
    leaked = workspace.root / "leaked.txt"
    assert not leaked.exists() or "SECRET-CREDS" not in leaked.read_text()


async def test_the_sandbox_in_force_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    box = sandbox_module.Sandbox()
    assert await box.mechanism("auto") in MECHANISMS
    assert await box.mechanism("none") == "none"
    missing = sandbox_module.Sandbox(bwrap="no-such-bwrap", unshare="no-such-unshare")
    with pytest.raises(SandboxUnavailableError):
        await missing.mechanism("auto")
    only_landlock = sandbox_module.Sandbox(bwrap="no-such-bwrap")
    assert await only_landlock.mechanism("auto") == "landlock"
