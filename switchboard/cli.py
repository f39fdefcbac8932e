"""The ``switchboard`` command: up, chat, actor, gateway, events tail.

Each command imports what only it runs inside its own function (the supervisor and its fork
server, the gateway and discord.py, the HTTP API, DuckDB, the sandbox): ``switchboard
--help`` and every command load only their own dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Settings, Topology, actor_kind, load_settings, load_topology
from core.console import say
from core.errors import SwitchboardError
from core.logs import setup_logging
from natsauth import CLI, GATEWAY, settings_for
from protocol import check_token
from runtime.bus import connect, provision, resolve_nats_url
from switchboard import process_state

if TYPE_CHECKING:
    from switchboard.supervisor import Supervisor

_log = logging.getLogger(__name__)

EXIT_CONFIG = 2

DESCRIPTION = """\
Switchboard: a Discord AI bot built as actors over NATS JetStream.

  switchboard up                       start NATS (embedded), every actor, and Discord if
                                       DISCORD_TOKEN is set
  switchboard chat --message "hello"   ask from the terminal (same actors as Discord)
  switchboard events tail              follow every step as it happens
  switchboard trace SESSION            the span tree of a session's last request
  switchboard events export && switchboard report   analytics of every event, in DuckDB
  switchboard api                      the HTTP API (needs SB_API_TOKEN)
  switchboard nats-config DIR          per-actor NATS identities and permissions
  switchboard actor python_coder --replicas 3   add replicas of one role (any host)
  switchboard bots add NAME --token-env VAR     add a Discord bot to the running pool
  switchboard status                   processes, replicas, restarts, consumer lag per role
  switchboard dlq list                 dead letters: list, show, replay, discard
"""

ENVIRONMENT = """\
environment:
  NATS_URL             use this NATS server instead of the embedded one (tls:// for TLS)
  NATS_CREDS           NATS credentials: nkey seed (.nk) or JWT .creds file (also --creds)
  SB_NATS_CREDS_DIR    output of `switchboard nats-config`: each process its own identity
  NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY   TLS: the server's CA; a client cert and key
  DISCORD_TOKEN        run the Discord bot with this token
  DISCORD_API_BASE     Discord REST base URL (for proxies / a local stand-in)
  DISCORD_GATEWAY_URL  Discord gateway URL (for proxies / a local stand-in)
  DISCORD_PUBLIC_KEY   application public key (switchboard gateway --interactions)
  SB_API_TOKEN         bearer token of the HTTP API (switchboard up starts it when set)
  SB_GATEWAY_*         gateway settings: MAX_BOTS, DEBOUNCE_S, USER_RATE, DAILY_TOKENS, ...
  SB_MODEL             one litellm model for every tier (e.g. openrouter/openai/gpt-4o-mini);
                       put its key in the provider's variable (OPENROUTER_API_KEY, ...)
  SB_TOPOLOGY          topology file (default: ./topology.yaml, else the one shipped)
  SB_DATA_DIR          data directory: NATS store, workspaces (default: ./.switchboard)
  SB_NATS_PORT         embedded NATS port (default 4222)
  SB_LOG_LEVEL         DEBUG, INFO, WARNING (default INFO); SB_LOG_JSON=1 for JSON lines
  OTEL_EXPORTER_OTLP_ENDPOINT  export spans over OTLP http/protobuf (e.g.
                       http://127.0.0.1:4318); the other OTEL_* variables apply
"""


def _settings(args: argparse.Namespace) -> Settings:
    updates: dict[str, Any] = {}
    if args.nats_url:
        updates["nats_url"] = args.nats_url
    if args.topology:
        updates["topology"] = Path(args.topology)
    if args.data_dir:
        updates["data_dir"] = Path(args.data_dir)
    if args.log_level:
        updates["log_level"] = args.log_level
    if args.creds:  # this file, not SB_NATS_CREDS_DIR's seeds
        updates.update(nats_creds=args.creds, nats_creds_dir=None)
    return load_settings().model_copy(update=updates)


# ---------------------------------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from switchboard.embedded import EmbeddedNats, port_is_free
    from switchboard.supervisor import Supervisor, plan_processes, preload_modules

    setup_logging("supervisor", level=settings.log_level, as_json=settings.log_json)
    started = time.monotonic()
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(data_dir)
    if isinstance(lock, str):
        say(f"❌ {data_dir} is in use by another `switchboard up` ({lock}): one deployment per "
            "data directory (its JetStream store, nats.url, processes.json).\n"
            "   Use that one, stop it first, or give this one another --data-dir / SB_DATA_DIR.")
        return EXIT_CONFIG
    settings = settings.model_copy(update={"data_dir": data_dir})
    url_file = data_dir / "nats.url"
    server: EmbeddedNats | None = None
    if settings.nats_url:
        url = resolve_nats_url(settings)
    else:
        port = args.port or settings.nats_port
        if not port_is_free(port):
            say(f"❌ Port {port} on 127.0.0.1 is in use (another Switchboard or NATS server?).\n"
                 f"   Use that server with NATS_URL=nats://127.0.0.1:{port}, or pick another "
                 f"port with --port / SB_NATS_PORT.")
            return EXIT_CONFIG
        server = EmbeddedNats(data_dir / "nats", port=port,
                              batch_scheduling=settings.nats_sched_batch,
                              memory_limit=settings.nats_memory_limit,
                              config=_server_config(settings)).start()
        url = server.url
        url_file.write_text(url + "\n", encoding="utf-8")
    try:
        stored_bots = asyncio.run(_provision(settings, topology, url))
        _announce_sandbox(topology.tools.sandbox)
        discord = (bool(settings.discord_token) or stored_bots > 0) and not args.no_discord
        api = bool(settings.api_token and settings.api_token.get_secret_value().strip()
                   or settings.api_keys_file)
        specs = plan_processes(settings, topology, url, gateway=discord, api=api)
        supervisor = Supervisor(specs, preload=preload_modules(topology),
                                on_change=lambda s: _write_pids(data_dir, s))
        roles = sorted({s.name.split("/")[0] for s in specs if "/" in s.name})
        watcher = threading.Thread(
            target=_announce_ready, args=(settings, topology, url, roles, started, discord),
            daemon=True, name="ready-watch",
        )
        watcher.start()
        return supervisor.run()
    finally:
        if server is not None:
            server.stop()
            url_file.unlink(missing_ok=True)
        (data_dir / "processes.json").unlink(missing_ok=True)
        (data_dir / process_state.FILE).unlink(missing_ok=True)
        os.close(lock)


def _lock_data_dir(data_dir: Path) -> int | str:
    """Take ``<data_dir>/up.lock`` (``flock``; the kernel releases it when the process ends,
    however it ends). Returns the descriptor that holds it (close it to release), or who holds
    it already ("pid N").

    Raises:
        OSError: the lock file cannot be opened.
    """
    fd = os.open(data_dir / "up.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        return f"pid {holder}" if holder else "another process"
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _announce_sandbox(choice: str) -> None:
    """Say which sandbox tool programs run in (docs/sandbox.md); loudly when none."""
    from actors.tools import SANDBOX, SandboxUnavailableError

    try:
        mechanism = asyncio.run(SANDBOX.mechanism(choice))
    except SandboxUnavailableError as exc:
        say(f"⚠️  {exc}: the agents' commands and git will be refused. Install bubblewrap, or "
            "set `tools: {sandbox: none}` in topology.yaml to run them unconfined "
            "(docs/sandbox.md).")
        return
    if mechanism == "none":
        say("⚠️  tools.sandbox is none: programs the agents write run UNCONFINED, with this "
            "user's reach (its files, its credentials, the JetStream store). Only for a "
            "machine no stranger can talk to (docs/sandbox.md).")
    else:
        say(f"🔒 Tool programs run in the {mechanism} sandbox: their session's workspace, "
            "read-only system files, no network unless tools.network.")


def _server_config(settings: Settings) -> Path | None:
    """The embedded server's configuration: ``nats-server.conf`` of ``SB_NATS_CREDS_DIR``
    (every identity and its permissions), if there is one."""
    from natsauth import SERVER_CONFIG

    if settings.nats_creds_dir is None:
        return None
    path = Path(settings.nats_creds_dir) / SERVER_CONFIG
    return path if path.is_file() else None


async def _provision(settings: Settings, topology: Topology, url: str) -> int:
    """Create the streams and buckets; returns how many bots the bots bucket holds (the
    gateway starts for them even without ``DISCORD_TOKEN``)."""
    import nats.js.errors


    nc = await connect(url, name="switchboard-up", settings=settings, reconnect=False)
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, topology, topology.roles)
        if not settings.s3_bucket:  # the artifacts bucket, which actors may only open
            from artifacts import open_artifact_store

            await (await open_artifact_store(js, settings, topology)).close()
        try:
            kv = await js.key_value(topology.subjects.bots_bucket)
            return sum(1 for key in await kv.keys() if key.startswith("bot."))
        except (nats.js.errors.NotFoundError, nats.js.errors.NoKeysError):
            return 0  # no bots bucket yet, or no bots in it
    finally:
        await nc.close()


def _write_pids(data_dir: Path, supervisor: Supervisor) -> None:
    """``processes.json`` (name → pid of the live processes) and ``supervisor.json``
    (``switchboard.process_state``: restarts, start times, for ``switchboard status``)."""
    target = data_dir / "processes.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(supervisor.pids(), indent=1), encoding="utf-8")
    tmp.replace(target)
    process_state.write(data_dir, supervisor)


def _announce_ready(settings: Settings, topology: Topology, url: str, roles: list[str],
                    started: float, discord: bool) -> None:
    """Print one line when every role has a replica pulling from its consumer (or after 60 s)."""
    ready = asyncio.run(_wait_ready(settings, topology, url, roles, timeout_s=60.0))
    took = time.monotonic() - started
    if ready:
        say(f"✅ Switchboard is up in {took:.1f} s: {len(roles)} actor roles on {url}"
             f"{', Discord bot connecting' if discord else ' (no DISCORD_TOKEN: terminal only)'}.")
        say('   Try: switchboard chat --message "hello"   ·   switchboard events tail   ·   '
             "Ctrl-C to stop")
    else:
        say(f"⚠️ Not every actor is consuming after {took:.0f} s; see the log above.")


async def _wait_ready(settings: Settings, topology: Topology, url: str, roles: list[str], *,
                      timeout_s: float) -> bool:

    subjects = topology.subjects
    nc = await connect(url, name="switchboard-ready", settings=settings, reconnect=False)
    js = nc.jetstream(timeout=5)
    deadline = time.monotonic() + timeout_s
    try:
        waiting = set(roles)
        while waiting and time.monotonic() < deadline:
            for role in list(waiting):
                try:
                    info = await js.consumer_info(subjects.task_stream(role),
                                                  subjects.durable(role))
                except Exception:  # not created yet
                    continue
                if (info.num_waiting or 0) > 0:
                    waiting.discard(role)
            await asyncio.sleep(0.2)
        return not waiting
    finally:
        await nc.close()


# ------------------------------------------------------------------------------------- chat


def cmd_chat(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from gateway.chat import run_chat

    # The chat prints its own progress; logs only when asked (--log-level) or for warnings.
    setup_logging("chat", level=args.log_level or "WARNING", as_json=settings.log_json)
    save_dir = Path(args.save_dir).expanduser() if args.save_dir else None
    if save_dir is not None:
        try:  # before asking: an answer's files must have somewhere to go
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            say(f"❌ --save-dir {save_dir}: cannot create it ({exc.strerror or exc}).")
            return EXIT_CONFIG
        if not os.access(save_dir, os.W_OK):
            say(f"❌ --save-dir {save_dir}: this user cannot write there.")
            return EXIT_CONFIG
    return asyncio.run(run_chat(
        settings, topology, nats_url=resolve_nats_url(settings), message=args.message,
        session=args.session, timeout_s=args.timeout, save_dir=save_dir, user=args.user,
    ))


# ------------------------------------------------------------------------------------ actor


async def _check_reachable(settings: Settings, url: str) -> None:
    """Connect once and close.

    Raises:
        BrokerError: the server cannot be reached (the message says where and why).
    """

    nc = await connect(url, name="switchboard-check", settings=settings, reconnect=False)
    await nc.close()


def cmd_actor(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from switchboard.supervisor import Supervisor, plan_processes, preload_modules

    setup_logging("supervisor", level=settings.log_level, as_json=settings.log_json)
    actor_kind(args.role)  # raises ConfigError with the known roles
    replicas = args.replicas if args.replicas is not None else topology.actor(args.role).replicas
    url = resolve_nats_url(settings)
    asyncio.run(_check_reachable(settings, url))  # one line now, not a replica restarting
    specs = plan_processes(settings, topology, url, roles={args.role: max(1, replicas)})
    say(f"Running {len(specs)} replica(s) of {args.role} against {url}; Ctrl-C to stop.")
    return Supervisor(specs, preload=preload_modules(topology)).run()


# ---------------------------------------------------------------------------------- gateway


def cmd_gateway(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    from switchboard.worker import run_gateway_process

    settings = settings_for(settings, GATEWAY)
    if args.interactions:
        from gateway.errors import GatewayError, NotRunningError
        from gateway.interactions import run_interactions

        setup_logging("gateway", level=settings.log_level, as_json=settings.log_json)
        try:
            asyncio.run(run_interactions(settings, topology, nats_url=resolve_nats_url(settings),
                                         listen=args.interactions))
        except (GatewayError, NotRunningError) as exc:
            say(f"❌ {exc}")
            return EXIT_CONFIG
        return 0
    if not settings.discord_token:
        say("❌ DISCORD_TOKEN is not set: the gateway needs a bot token "
             "(see README, 'Discord setup'). For a terminal chat use `switchboard chat`.")
        return EXIT_CONFIG
    run_gateway_process(settings, topology, resolve_nats_url(settings))
    return 0


# ------------------------------------------------------------------------------------ parser


class _CommonOptions:
    """Subparsers whose every parser also takes the global options (``parents``)."""

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self._subparsers, self._common = subparsers, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, parents=[self._common, *kwargs.pop("parents", [])], **kwargs)
        return parser


def _global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """``--nats-url``, ``--topology``, ``--data-dir``, ``--log-level``: before the command
    (``default`` None) and after it (``default`` ``argparse.SUPPRESS``, so a command that does
    not repeat an option keeps what was given before it)."""
    parser.add_argument("--nats-url", default=default, help="NATS server URL (default: "
                        "NATS_URL, else the embedded server's, else nats://127.0.0.1:4222)")
    parser.add_argument("--topology", default=default, help="topology YAML file (default: "
                        "SB_TOPOLOGY, else ./topology.yaml, else the one shipped)")
    parser.add_argument("--data-dir", default=default, help="data directory (default: "
                        "SB_DATA_DIR or ./.switchboard)")
    parser.add_argument("--log-level", default=default,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default: SB_LOG_LEVEL or INFO)")
    parser.add_argument("--creds", default=default, metavar="FILE",
                        help="NATS credentials: an nkey seed (.nk, from `switchboard "
                        "nats-config`) or a JWT .creds file (default: NATS_CREDS, or this "
                        "process's own seed in SB_NATS_CREDS_DIR)")


def build_parser() -> argparse.ArgumentParser:
    """The ``switchboard`` parser; the global options are accepted before the command and
    after it (``switchboard up --nats-url ...``, ``switchboard events tail --topology ...``)."""
    parser = argparse.ArgumentParser(
        prog="switchboard", description=DESCRIPTION, epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"switchboard {_version()}",
                        help="print the installed version and exit")
    _global_options(parser, default=None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, default=argparse.SUPPRESS)
    commands = _CommonOptions(
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True), common)

    up = commands.add_parser(
        "up", help="start everything: embedded NATS, every actor, Discord if DISCORD_TOKEN",
        description="Start the embedded NATS server (unless NATS_URL / --nats-url is given), "
        "every actor of the topology as its own process with its replica count, and the "
        "Discord gateway when DISCORD_TOKEN is set or bots were added with `switchboard bots "
        "add`. Ctrl-C stops all cleanly.")
    up.add_argument("--port", type=_port,
                    help="embedded NATS port, 1-65535 (default: SB_NATS_PORT, 4222)")
    up.add_argument("--no-discord", action="store_true", help="do not start the Discord bot")
    up.set_defaults(func=cmd_up)

    chat = commands.add_parser(
        "chat", help="talk to Switchboard from the terminal",
        description="Talk to the running Switchboard through the same actors as Discord. "
        "Exit codes: 0 answered, 1 the request failed, 2 Switchboard is not running, "
        "3 no answer in time.")
    chat.add_argument("--message", "-m", help="send one message, print progress and the "
                      "answer, and exit")
    chat.add_argument("--session", type=_session,
                      help="session id, 1-128 of A-Z a-z 0-9 _ - (it is a NATS subject token: "
                           "sb.event.*.*.<session>; default: terminal-<your user name>)")
    chat.add_argument("--user", help="who you are, for your memory across sessions (default: "
                      "your login name)")
    chat.add_argument("--timeout", type=float, default=300.0,
                      help="seconds to wait for an answer (default 300)")
    chat.add_argument("--save-dir", help="save files sent with answers into this directory "
                      "(created if missing)")
    chat.set_defaults(func=cmd_chat)

    actor = commands.add_parser(
        "actor", help="run one actor role alone (to scale it, on any host)",
        description="Run REPLICAS processes of one actor role against NATS_URL; they share "
        "the role's durable consumer with any other replicas, anywhere.")
    actor.add_argument("role", help="classifier, planner, python_coder, ..., evaluator, "
                       "reflector, brainstorm, consolidator")
    actor.add_argument("--replicas", type=int, help="processes to run (default: topology)")
    actor.set_defaults(func=cmd_actor)

    gateway = commands.add_parser("gateway", help="run the Discord gateway alone",
                                  description="Run the Discord bot (DISCORD_TOKEN) against "
                                  "NATS_URL.")
    gateway.add_argument("--interactions", metavar="HOST:PORT",
                         help="serve the Discord Interactions HTTP endpoint (POST /interactions) "
                         "instead of the websocket bots; needs DISCORD_PUBLIC_KEY")
    gateway.set_defaults(func=cmd_gateway)

    from gateway.bots_cli import add_parser as add_bots_parser

    add_bots_parser(commands, parents=(common,))
    from api.cli import add_parser as add_api_parser

    add_api_parser(commands, parents=(common,))

    from natsauth._cli import add_parser as add_nats_config_parser

    add_nats_config_parser(commands)

    from switchboard.observe_cli import add_parsers as add_observe_parsers

    event_commands = add_observe_parsers(commands, lambda sub: _CommonOptions(sub, common))

    from analytics.cli import add_parsers as add_analytics_parsers

    add_analytics_parsers(commands, event_commands)  # report, events export, events query

    from switchboard.dlq_cli import add_parser as add_dlq_parser
    from switchboard.status_cli import add_parser as add_status_parser
    from switchboard.tools_cli import add_parser as add_tools_parser

    add_status_parser(commands)
    add_tools_parser(commands)
    add_dlq_parser(commands, lambda sub: _CommonOptions(sub, common))
    return parser


def _version() -> str:
    """The installed distribution's version (``pyproject.toml``), or "unknown" when run from
    a checkout that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:
        return "unknown"


def _session(text: str) -> str:
    """An argparse type: a session id, which is one subject token as it is (``protocol``)."""
    try:
        return check_token(text, "session id")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        msg = f"{text!r} is not a TCP port (1-65535)"
        raise argparse.ArgumentTypeError(msg)
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        # Commands that read only the DuckDB file need no topology (a broken one included).
        needs = getattr(args, "needs_topology", True)
        topology = load_topology(settings=settings) if needs else None
        if args.command != "nats-config":  # actors and the gateway: their own identity
            settings = settings_for(settings, CLI)
        return int(args.func(args, settings, topology))
    except SwitchboardError as exc:
        say(f"❌ {exc}")
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
