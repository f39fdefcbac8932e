"""The tool sandbox: a program a tool starts reaches its session's workspace and nothing else,
under both mechanisms (bubblewrap, and Landlock with namespaces), and its bounds hold.

Each probe is a real program run through ``run_tool`` as the agent loop runs it; what it could
reach it prints, and the test reads that back. The same probes go through the genuine agent
loop in ``tests/test_sandbox_agent.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.tools import GitRepo, _mechanism, _spare, run_tool
from actors.tools import _sandbox as sandbox_module
from artifacts import Workspace
from core.config import ToolPolicy
from core.errors import SandboxUnavailableError
from protocol import ToolCall, refusal_kind

REPO = Path(__file__).resolve().parent.parent
MECHANISMS = ("bubblewrap", "landlock")
REFUSED = ("secret", "other_workspace", "source", "store", "aws", "home_write", "nats", "ptrace")
"""What a probe must not reach: the data directory's credentials, another session's workspace,
the source tree, the JetStream store, ~/.aws, the home directory, the NATS port, another process
(ptrace). Writes to the host's /tmp and the source tree are judged on the host (``check_probe``):
inside, a path under /tmp is the private tmpfs, where a write may succeed and vanish, as it does
for a checkout that lives under the host's /tmp."""


def probe_args(data: Path, home: Path, store: Path, port: int) -> dict[str, Any]:
    """The paths a probe tries, made (with their secrets) under ``data`` and ``home``."""
    (data / "workspaces" / "other").mkdir(parents=True, exist_ok=True)
    (data / "operator.creds").write_text("SECRET-CREDS")
    (data / "workspaces" / "other" / "notes.txt").write_text("SOMEONE-ELSES")
    (home / ".aws").mkdir(parents=True, exist_ok=True)
    (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = SECRET-AWS\n")
    token = uuid.uuid4().hex
    return {"secret": str(data / "operator.creds"),
            "other": str(data / "workspaces" / "other" / "notes.txt"),
            "source": str(REPO / "pyproject.toml"), "store": str(store),
            "aws": str(home / ".aws" / "credentials"), "home_write": str(home / f"w-{token}"),
            "source_write": str(REPO / f"sb-sandbox-probe-{token}"),
            "host_tmp": f"/tmp/sb-sandbox-probe-{token}", "port": port}


def check_probe(output: str, args: dict[str, Any]) -> dict[str, Any]:
    """The probe's findings in ``output``, after asserting it reached nothing it must not."""
    line = next(x for x in output.splitlines() if "PROBE {" in x)
    seen: dict[str, Any] = json.loads(line[line.index("PROBE ") + len("PROBE "):])
    for name in REFUSED:
        assert seen[name][0] == "refused", (name, seen[name])
    for secret in ("SECRET-CREDS", "SOMEONE-ELSES", "SECRET-AWS"):
        assert secret not in output
    for written in ("host_tmp", "home_write", "source_write"):
        assert not _exists(Path(args[written])), written
    assert all(pid < 10 for pid in seen["pids"]), seen["pids"]  # only its own processes
    return seen
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
    attempt("store", lambda: os.listdir(args["store"]))
    attempt("aws", lambda: open(args["aws"]).read())
    attempt("home_write", lambda: open(args["home_write"], "w").write("x"))
    attempt("source_write", lambda: open(args["source_write"], "w").write("x"))
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


def _read(path: Path) -> str:
    return path.read_text()


def _size(path: Path) -> int:
    return path.stat().st_size


@pytest.fixture(params=MECHANISMS)
def mechanism(request: pytest.FixtureRequest) -> str:
    """Each mechanism; bubblewrap is skipped where it is not installed, except in CI
    (``SB_TEST_REQUIRE_BWRAP=1``, set by ``.ci/run``, which installs it)."""
    if request.param == "bubblewrap" and shutil.which("bwrap") is None \
            and os.environ.get("SB_TEST_REQUIRE_BWRAP") != "1":
        pytest.skip("bubblewrap is not installed (apt install bubblewrap)")
    return str(request.param)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "workspaces" / "other").mkdir(parents=True)
    (data / "operator.creds").write_text("SECRET-CREDS")
    return data


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


async def test_a_program_reaches_its_workspace_and_nothing_else(
        mechanism: str, tmp_path: Path, listening_port: int) -> None:
    data = tmp_path / "data"
    store = tmp_path / "jetstream"
    (store / "jetstream" / "SB_BOTS").mkdir(parents=True)
    args = probe_args(data, tmp_path / "home", store, listening_port)
    workspace = Workspace.for_session(data / "workspaces", "mine")
    (workspace.root / "probe.py").write_text(PROBE)
    command = f"python probe.py '{json.dumps(args)}'"
    result = await run_tool(workspace, _call("run_command", command=command),
                            ToolPolicy(sandbox=mechanism, timeout_s=30))
    assert not result.is_error, result.content
    seen = check_probe(result.content, args)
    assert seen["own_file"][0] == "reached" and seen["private_tmp"][0] == "reached"
    assert _read(workspace.root / "own.txt") == "mine"
    assert not _exists(workspace.root / "scratch") and not _exists(Path("/tmp/scratch"))
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


async def test_cpu_time_is_bounded(mechanism: str, tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "cpu")
    (workspace.root / "spin.py").write_text("while True:\n    pass\n")
    policy = ToolPolicy(sandbox=mechanism, timeout_s=30, cpu_s=1)
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


async def test_a_program_filling_the_disk_is_stopped_while_it_runs(
        mechanism: str, tmp_path: Path) -> None:
    """It writes 1 MiB files without end; the quota stops it long before its time runs out."""
    workspace = Workspace.for_session(tmp_path, "filler")
    (workspace.root / "fill.py").write_text(textwrap.dedent("""
        import os, time
        i = 0
        while True:
            with open(f"chunk-{i}.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
            i += 1
            time.sleep(0.02)
    """))
    policy = ToolPolicy(sandbox=mechanism, timeout_s=60, workspace_bytes=16 << 20)
    result = await run_tool(workspace, _call("run_command", command="python fill.py"), policy)
    assert result.is_error and refusal_kind(result) == "workspace_full", result.content
    assert "while it ran" in result.content
    chunks = len(list(workspace.root.glob("chunk-*.bin")))
    assert 16 < chunks < 16 + 120  # stopped within about a second (50 files a second at most)


async def test_a_runs_git_commands_walk_the_workspace_once_a_second_not_each(
        mechanism: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a program starts, a measurement of the workspace at most a second old is
    reused (a run's git commands start several a second); the end of a command measures
    again, so a command that filled the workspace is seen by the next check."""
    walks: list[Path] = []
    real = sandbox_module.workspace_bytes

    def counted(root: Path) -> int:
        walks.append(root)
        return real(root)

    monkeypatch.setattr(sandbox_module, "workspace_bytes", counted)
    workspace = Workspace.for_session(tmp_path, "walks")
    git = GitRepo(workspace, policy=ToolPolicy(sandbox=mechanism))
    await git.ensure("switchboard/walks")
    (workspace.root / "a.txt").write_text("hello\n")
    await git.commit_all("a file")
    assert len(walks) <= 2, walks  # 4 git commands within about a second
    policy = ToolPolicy(sandbox=mechanism, workspace_bytes=1 << 20)
    filled = await run_tool(workspace, _call(
        "run_command", command="python -c \"open('big', 'wb').write(b'1' * (2 << 20))\""),
        policy)
    assert filled.is_error and refusal_kind(filled) == "workspace_full"
    refused = await run_tool(workspace, _call("run_command", command="echo ran-it"), policy)
    assert refused.is_error and refusal_kind(refused) == "workspace_full"
    assert "ran-it" not in refused.content


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
    box = _mechanism.Sandbox()
    assert await box.mechanism("auto") in MECHANISMS
    if shutil.which("bwrap") or os.environ.get("SB_TEST_REQUIRE_BWRAP") == "1":
        assert await box.mechanism("auto") == "bubblewrap"
    assert await box.mechanism("none") == "none"
    missing = _mechanism.Sandbox(bwrap="no-such-bwrap", unshare="no-such-unshare")
    with pytest.raises(SandboxUnavailableError):
        await missing.mechanism("auto")
    only_landlock = _mechanism.Sandbox(bwrap="no-such-bwrap")
    assert await only_landlock.mechanism("auto") == "landlock"


def test_cgroups_of_processes_that_are_gone_are_swept(tmp_path: Path) -> None:
    from actors.tools import _pids

    gone = tmp_path / "switchboard-999999999-3"
    mine = tmp_path / f"switchboard-{os.getpid()}-1"
    busy = tmp_path / "switchboard-999999998-1"
    for path in (gone, mine, busy):
        path.mkdir()
    (busy / "cgroup.procs").write_text("")  # not empty: rmdir refuses, as for a busy cgroup
    _pids._sweep(tmp_path)
    assert not gone.exists() and mine.exists() and busy.exists()


def test_a_python_under_the_hosts_tmp_stays_visible_above_the_private_tmp(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CI may check the project out under /tmp, its venv with it: bubblewrap binds that Python
    after mounting the private /tmp, or the sandbox would hide it (found on a clean clone)."""
    monkeypatch.setattr(sandbox_module, "python_paths", lambda: ["/tmp/ci-checkout/.venv"])
    argv = sandbox_module.bwrap_options(Path("/tmp/ws"), network=False, tmp_bytes=1 << 20,
                                        seccomp_fd=3, env={})
    tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
    assert argv.index("/tmp/ci-checkout/.venv") > tmpfs
    assert argv.index("/tmp/ws") > tmpfs


async def test_a_spare_left_without_its_command_runs_nothing(mechanism: str,
                                                             tmp_path: Path) -> None:
    """An actor that dies leaves its spares' pipes closed with nothing written: they must end
    without running anything (bubblewrap has only its fixed options, an empty root)."""
    marker = tmp_path / "ran.txt"
    spare = await _spare.make(mechanism, _mechanism.SANDBOX.program(mechanism),  # type: ignore[arg-type]
                              merge_stderr=True)
    spare._close()  # the actor's end of the pipe, as its death closes it
    output, _ = await asyncio.wait_for(spare.process.communicate(), 30)
    await spare.finish()
    assert spare.process.returncode != 0, output
    assert not marker.exists()


def test_spares_are_refilled_and_end_with_their_event_loop(tmp_path: Path) -> None:
    """After a command, a spare waits for the next; when the loop ends (an actor stopping,
    a test's loop closing), the spare ends too and its cgroup goes."""
    workspace = Workspace.for_session(tmp_path, "s")
    policy = ToolPolicy(sandbox="bubblewrap" if shutil.which("bwrap") else "landlock")
    spares: list[_spare.Spare] = []

    async def run() -> None:
        for _ in range(2):
            result = await run_tool(workspace, _call("run_command", command="echo hi"), policy)
            assert not result.is_error, result.content
        slot = next(iter(_spare.SPARES._slots[asyncio.get_running_loop()].values()))
        for _ in range(600):  # the keeper makes the next spare in the background: 30 s
            if slot._ready.full():
                break
            await asyncio.sleep(0.05)
        spares.append(slot._ready._queue[0])  # type: ignore[attr-defined]
        assert spares[0].process.returncode is None  # waiting for its command

    asyncio.run(run())
    assert spares[0].process.returncode is not None  # ended with the loop
    assert spares[0].cgroup is None or not spares[0].cgroup.path.exists()


def test_the_macos_profile_allows_the_workspace_and_denies_the_rest(tmp_path: Path) -> None:
    """macOS's Seatbelt profile (run there only: sandbox-exec is not on Linux): closed by
    default, the workspace and the private TMPDIR writable, the system and this Python
    readable, the network only when allowed, and a path cannot break out of its string."""
    from actors.tools import _seatbelt

    workspace = tmp_path / 'ws") (allow file-read* (subpath "/'
    text = _seatbelt.profile(workspace, tmp_path / "tmp", ["/opt/python"], network=False)
    assert text.startswith("(version 1)\n(deny default)\n")
    outside_strings = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    assert outside_strings.count("(") == outside_strings.count(")")  # the path stayed a string
    escaped = str(workspace).replace('"', '\\"')
    assert f'(allow file-read* file-write* (subpath "{escaped}")' in text
    assert '(subpath "/opt/python")' in text and "network" not in text
    assert "(allow network*)" in _seatbelt.profile(workspace, tmp_path, [], network=True)
    argv = _seatbelt.argv(workspace, tmp_path, [], ["echo", "hi"], network=False)
    assert argv[:2] == [_seatbelt.SANDBOX_EXEC, "-p"] and argv[-2:] == ["echo", "hi"]


async def test_seatbelt_is_refused_off_macos() -> None:
    box = _mechanism.Sandbox()
    if sys.platform != "darwin":
        with pytest.raises(SandboxUnavailableError):
            await box.mechanism("seatbelt")
        assert "seatbelt" not in _mechanism.AUTO


async def test_extra_read_only_paths_are_readable_and_nothing_more(mechanism: str,
                                                                   tmp_path: Path) -> None:
    """An MCP server's ``read_only`` paths (``spawn(read_only=...)``): readable, not writable;
    without them the same file is out of reach."""
    from actors.tools._command import command_env, spawn

    shared = tmp_path / "models"
    shared.mkdir()
    (shared / "weights.txt").write_text("W-42")
    workspace = Workspace.for_session(tmp_path / "workspaces", "mine")
    script = ("import sys\n"
              "try: print(open(sys.argv[1]).read())\n"
              "except OSError as e: print('unreadable', e.errno)\n"
              "try: open(sys.argv[1] + '.new', 'w').write('x'); print('written')\n"
              "except OSError as e: print('unwritable', e.errno)\n")
    (workspace.root / "peek.py").write_text(script)
    policy = ToolPolicy(sandbox=mechanism, timeout_s=30)

    async def peek(read_only: tuple[str, ...]) -> str:
        started = await spawn(workspace, [sys.executable, "peek.py",
                                          str(shared / "weights.txt")], policy, network=False,
                              env=command_env(workspace), merge_stderr=True,
                              read_only=read_only)
        out, _ = await asyncio.wait_for(started.process.communicate(), 30)
        await started.finish()
        return out.decode()

    assert "W-42" not in await peek(())
    seen = await peek((str(shared),))
    assert "W-42" in seen and "unwritable" in seen and "written" not in seen, seen
    assert not (shared / "weights.txt.new").exists()
