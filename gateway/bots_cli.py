"""``switchboard bots add|list|remove|set|load``: the bot pool's configurations in JetStream KV.

The running gateway watches the bucket, so every change here takes effect at once: a new bot
starts, a removed one stops, a new token restarts that bot, anything else applies in place.
Imports are light at module level: the ``switchboard`` parser is built on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.console import say

if TYPE_CHECKING:
    from core.config import Settings, Topology
    from gateway.pool import BotStore

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _models(value: str) -> dict[str, str]:
    out = {}
    for item in _csv(value):
        tier, sep, model = item.partition("=")
        if not sep or not model:
            msg = f"expected TIER=MODEL, got {item!r}"
            raise argparse.ArgumentTypeError(msg)
        out[tier.strip()] = model.strip()
    return out


def _count(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        msg = f"expected a whole number ≥ 0 (0: no cap), got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _yes_no(value: str) -> bool:
    if value.lower() in {"yes", "y", "on", "true", "1"}:
        return True
    if value.lower() in {"no", "n", "off", "false", "0"}:
        return False
    msg = f"expected yes or no, got {value!r}"
    raise argparse.ArgumentTypeError(msg)


def _bot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="the bot token (prefer --token-env: shell history)")
    parser.add_argument("--token-env", metavar="VAR",
                        help="read the token from this environment variable")
    parser.add_argument("--profile", help="default agent role of this bot (python_coder, ...)")
    parser.add_argument("--dms", type=_yes_no, metavar="yes|no", help="answer direct messages")
    parser.add_argument("--guilds", type=_csv, metavar="ID,ID",
                        help="answer only in these guilds ('' for every guild)")
    parser.add_argument("--channels", type=_csv, metavar="ID,ID",
                        help="answer only in these channels ('' for every channel)")
    parser.add_argument("--models", type=_models, metavar="TIER=MODEL,...",
                        help="model overrides by tier, e.g. 2=openai/gpt-4o-mini")
    parser.add_argument("--command-guilds", type=_csv, metavar="ID,ID",
                        help="register slash commands in these guilds instead of globally")
    parser.add_argument("--listen-channel", dest="listen_channels", type=_csv, action="extend",
                        metavar="ID",
                        help="hear every message in this channel, not only mentions; the "
                        "router decides whether to answer (repeatable; '' for none)")
    parser.add_argument("--max-answer-chars", type=_count, metavar="N",
                        help="cut answers longer than N characters (0: no cap)")
    parser.add_argument("--max-tokens", type=_count, metavar="N",
                        help="at most N completion tokens per model call (0: the model's own)")
    parser.add_argument("--admins", type=_csv, metavar="ID,ID",
                        help="Discord user ids who may stop, rate, merge or delete anyone's "
                        "run with reactions ('' for none)")


def add_parser(commands: Any, *, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Add ``bots`` and its subcommands to the ``switchboard`` parser's subparsers; each
    subcommand also takes the options of ``parents`` (the global ones)."""
    bots = commands.add_parser(
        "bots", help="configure the Discord bot pool (JetStream KV)",
        description="Bot configurations live in the bots KV bucket; the running gateway "
        "applies every change at once. Exit codes: 0 done, 1 failed, 2 bad input or "
        "Switchboard not running.")
    sub = bots.add_subparsers(dest="bots_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", parents=parents,
                             help="list bots with their status (tokens masked)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add = sub.add_parser("add", parents=parents, help="add a bot (the gateway starts it)")
    add.add_argument("name", help="bot name: letters, digits, _ and -")
    _bot_options(add)
    change = sub.add_parser("set", parents=parents,
                            help="change a bot (a new token restarts it)")
    change.add_argument("name")
    _bot_options(change)
    remove = sub.add_parser("remove", parents=parents,
                            help="remove a bot (the gateway stops it)")
    remove.add_argument("name")
    load = sub.add_parser("load", parents=parents,
                          help="add or replace bots from a YAML file")
    load.add_argument("file", type=Path, help="a list of bots, or a 'bots:' key")
    bots.set_defaults(func=cmd_bots)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            msg = f"environment variable {args.token_env} is empty or not set"
            raise ValueError(msg)
        changes["token"] = token
    elif args.token:
        changes["token"] = args.token
    for field in ("profile", "dms", "guilds", "channels", "models", "command_guilds",
                  "listen_channels", "max_answer_chars", "max_tokens", "admins"):
        value = getattr(args, field)
        if value is not None:
            changes[field] = tuple(value) if isinstance(value, list) else value
    return changes


def cmd_bots(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Run one ``switchboard bots`` subcommand; returns the exit code."""
    from runtime.bus import resolve_nats_url

    try:
        return asyncio.run(_with_store(settings, topology, resolve_nats_url(settings),
                                       lambda store: _run(args, store)))
    except ValueError as exc:
        say(f"❌ {exc}")
        return EXIT_CONFIG


async def _with_store(settings: Settings, topology: Topology, url: str,
                      action: Callable[[BotStore], Awaitable[int]]) -> int:
    from core.errors import BrokerError
    from gateway.errors import GatewayError
    from gateway.pool import BotStore
    from runtime.bus import connect

    try:
        nc = await connect(url, name="switchboard-bots", settings=settings, reconnect=False)
    except BrokerError as exc:
        say(f"❌ {exc}. Is Switchboard up (`switchboard up`), or NATS_URL set?")
        return EXIT_CONFIG
    try:
        store = await BotStore.open(nc.jetstream(timeout=5), topology.subjects,
                                    replicas=topology.stream_replicas)
        return await action(store)
    except GatewayError as exc:
        say(f"❌ {exc}")
        return EXIT_CONFIG
    finally:
        await nc.close()


async def _run(args: argparse.Namespace, store: BotStore) -> int:
    from gateway.config import load_bots_file, parse_bot

    match args.bots_command:
        case "list":
            return await _list(store, as_json=args.json)
        case "add":
            if args.name in await store.names():
                say(f"❌ bot {args.name!r} exists; change it with `switchboard bots set`")
                return EXIT_CONFIG
            config = parse_bot({"name": args.name, **_changes(args)}, where=args.name)
            await store.put(config)
            say(f"✅ added bot {config.name}; the gateway starts it now")
        case "set":
            current = await store.get(args.name)
            config = parse_bot(current.model_dump() | _changes(args), where=args.name)
            await store.put(config)
            restart = config.token != current.token
            say(f"✅ updated bot {config.name}"
                 f"{' (new token: it restarts)' if restart else ' (applied without restart)'}")
        case "remove":
            await store.remove(args.name)
            say(f"✅ removed bot {args.name}; the gateway stops it now")
        case "load":
            configs = load_bots_file(args.file)
            for config in configs:
                await store.put(config)
            say(f"✅ loaded {len(configs)} bot(s): {', '.join(c.name for c in configs)}")
    return EXIT_OK


async def _list(store: BotStore, *, as_json: bool) -> int:
    rows = []
    for config in await store.all():
        status = await store.status(config.name)
        rows.append(config.public() | {
            "status": status.state if status else "unknown",
            "error": status.error if status else "",
            "user_id": status.user_id if status else "",
        })
    if as_json:
        say(json.dumps(rows, indent=1))
        return EXIT_OK
    if not rows:
        say("No bots configured (DISCORD_TOKEN alone runs one default bot). "
             "Add one: switchboard bots add NAME --token-env VAR")
        return EXIT_OK
    for row in rows:
        allow = ",".join(row["guilds"]) or "all guilds"
        if row["channels"]:
            allow += f"; channels {','.join(row['channels'])}"
        if row["listen_channels"]:
            allow += f"; listens in {','.join(row['listen_channels'])}"
        if row.get("admins"):
            allow += f"; admins {','.join(row['admins'])}"
        if row["max_answer_chars"] or row["max_tokens"]:
            allow += (f"; answers ≤ {row['max_answer_chars'] or '∞'} chars, "
                      f"≤ {row['max_tokens'] or '∞'} tokens per call")
        say(f"{row['name']:<20} {row['status']:<9} token {row['token']:<12} "
             f"profile {row['profile'] or '-':<14} dms {'on' if row['dms'] else 'off':<3} "
             f"{allow}")
        if row["error"]:
            say(f"{'':<20} ↳ {row['error']}")
    return EXIT_OK
