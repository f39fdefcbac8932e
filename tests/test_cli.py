"""The `switchboard` command as a user meets it: --help, errors, and `up` with the embedded
NATS server (the README's first command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from system import REPO

from switchboard.embedded import free_port, port_is_free

pytestmark = pytest.mark.timeout(180)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60, env=env or _clean_env(), check=False)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SB_", "DISCORD_", "NATS_"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.mark.parametrize("command", [[], ["up"], ["chat"], ["actor"], ["gateway"],
                                     ["events"], ["events", "tail"], ["trace"], ["status"],
                                     ["dlq"], ["dlq", "list"], ["dlq", "show"],
                                     ["dlq", "replay"], ["dlq", "discard"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = _run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert " ".join(["switchboard", *command]) in result.stdout  # this command's help
    assert len(result.stdout.splitlines()) > 3


def test_top_level_help_lists_commands_and_environment() -> None:
    out = _run("--help").stdout
    for word in ("up", "chat", "actor", "gateway", "events", "status", "dlq", "NATS_URL",
                 "DISCORD_TOKEN", "SB_MODEL"):
        assert word in out


def test_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"switchboard {version('switchboard')}"


def test_unknown_role_and_missing_token_are_clear_errors() -> None:
    result = _run("actor", "wizard")
    assert result.returncode == 2 and "unknown actor role 'wizard'" in result.stdout
    assert "python_coder" in result.stdout  # lists the known roles
    result = _run("gateway")
    assert result.returncode == 2 and "DISCORD_TOKEN is not set" in result.stdout


def test_a_save_dir_that_cannot_be_made_is_refused_before_asking(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run("chat", "--message", "hello", "--save-dir", str(blocker / "answers"),
                  "--nats-url", "nats://127.0.0.1:1")  # nothing listens: never reached
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--save-dir {blocker / 'answers'}: cannot create it" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_bad_topology_is_reported_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text("tiers: {1: [offline/x]}\nactors: {wizard: {}}\n")
    result = _run("--topology", str(bad), "chat", "-m", "hi")
    assert result.returncode == 2
    assert "topology" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_up_with_the_embedded_server_answers_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = _clean_env(SB_DATA_DIR=str(tmp_path / "data"))
    up = subprocess.Popen([sys.executable, "-m", "switchboard.cli", "up", "--port", str(port)],
                          cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("Switchboard is up" in line for line in lines):
            assert up.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines[-30:])
            time.sleep(0.1)
        assert (tmp_path / "data" / "nats.url").read_text().strip() == f"nats://127.0.0.1:{port}"
        chat = _run("chat", "--message", "hello", env=env)  # finds the server by itself
        assert chat.returncode == 0, chat.stdout + chat.stderr
        assert "offline model" in chat.stdout
        # A second `up` on the same data directory is refused before it touches anything.
        second = _run("up", "--port", str(free_port()), env=env)
        assert second.returncode == 2 and f"pid {up.pid}" in second.stdout, second.stdout
        assert (tmp_path / "data" / "nats.url").read_text().strip() == f"nats://127.0.0.1:{port}"
        assert (tmp_path / "data" / "processes.json").exists()
        status = _run("status", env=env)  # every role has its replica
        assert status.returncode == 0, status.stdout + status.stderr
        assert "every role ready" in status.stdout and "api" not in status.stdout
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        reader.join(timeout=5)
    assert code == 0, "".join(lines[-30:])
    assert not (tmp_path / "data" / "nats.url").exists()
    assert not (tmp_path / "data" / "supervisor.json").exists()
    assert port_is_free(port), "the embedded nats-server was stopped"
    assert any("stopping" in line for line in lines)


def test_events_tail_shows_what_decided() -> None:
    from analytics.events_tail import format_event
    from protocol import ExecutionEvent

    line = format_event(ExecutionEvent(
        event_id="e1", session="s1", actor="classifier", kind="classified", at=0.0,
        source="rule", detail="sequential dba simple database by rule:ops: forced"))
    assert "by=rule" in line and "classifier" in line and "rule:ops" in line


def test_the_supervisor_raises_the_open_files_limit_its_processes_inherit() -> None:
    """About a thousand model calls in flight need more sockets than the common default of
    1,024 open files; the supervisor raises its soft limit (within the hard one)."""
    code = (
        "import resource\n"
        "from switchboard.supervisor import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "got = raise_open_file_limit(4096)\n"
        "now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "print(got, now, hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    got, now, hard = (int(v) for v in out.stdout.split())
    expected = 4096 if hard == -1 else min(4096, hard)
    assert got == now == expected


def test_global_options_are_accepted_after_the_command_too(tmp_path: Path) -> None:
    """``switchboard up --nats-url ...`` uses that server (here one that does not answer, so
    `up` says so at once) instead of refusing the option."""
    from switchboard.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["--nats-url", "nats://a:1", "events", "tail",
                              "--topology", "t.yaml", "--data-dir", "d"])
    assert (args.nats_url, args.topology, args.data_dir) == ("nats://a:1", "t.yaml", "d")
    args = parser.parse_args(["--nats-url", "nats://a:1", "bots", "list",
                              "--nats-url", "nats://b:2", "--log-level", "DEBUG"])
    assert (args.nats_url, args.log_level) == ("nats://b:2", "DEBUG")
    url = f"nats://127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-m", "switchboard.cli", "up", "--nats-url", url,
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"cannot reach NATS at {url}" in out.stdout + out.stderr


def test_a_chosen_port_is_free_and_outside_the_ephemeral_range() -> None:
    """Outgoing connections take their local port from the ephemeral range; a port chosen
    there can be taken before the server binds it (a cluster route port was, in CI)."""
    from switchboard.embedded import _ephemeral_low

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports), "chosen before any is bound: never the same twice"
    assert all(port_is_free(port) for port in ports)
    if _ephemeral_low() > 11_000:
        assert all(port < _ephemeral_low() for port in ports)


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_one_line_not_a_traceback(port: str, tmp_path: Path) -> None:
    result = _run("up", "--port", port, env=_clean_env(SB_DATA_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "1-65535" in result.stderr
    assert not (tmp_path / "nats").exists()  # refused before anything started
    env = _clean_env(SB_DATA_DIR=str(tmp_path), SB_NATS_PORT="70000")
    from_env = _run("up", env=env)
    assert from_env.returncode == 2 and "Traceback" not in from_env.stdout + from_env.stderr
    assert "SB_NATS_PORT='70000'" in from_env.stdout


def test_an_actor_with_nats_down_says_so_once_and_exits() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = _run("actor", "classifier", "--nats-url", url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach NATS at {url}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_session_id_that_is_no_subject_token_is_refused() -> None:
    """A session id is one NATS subject token as it is (`sb.event.*.*.<session>`): one with a
    dot or a space would be published under another name, so it is refused at once."""
    for bad in ("ops.team", "a b", ""):
        result = _run("chat", "--session", bad, "--message", "hi")
        assert result.returncode == 2 and "A-Z a-z 0-9 _ -" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
