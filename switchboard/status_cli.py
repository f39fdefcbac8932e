"""``switchboard status``: each role's replicas, restarts and consumer (lag, held, redelivered,
replicas ready, dead letters) and the other supervised processes, from JetStream and, on the
host of ``switchboard up``, its supervisor's ``supervisor.json`` (``process_state``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.config import Settings, Topology
from core.console import say
from runtime.bus import check_running, connect, resolve_nats_url
from runtime.consumers import RoleConsumer, read_consumers
from runtime.dead_letters import count_letters
from switchboard import process_state
from switchboard.process_state import ProcessState

EXIT_READY, EXIT_NOT_READY = 0, 1

DESCRIPTION = """\
Show what runs: for each actor role, its replica processes on this host (alive/planned, from
the supervisor of `switchboard up` on this data directory; "-" elsewhere), their restarts, and
its JetStream consumer: replicas ready (pull requests waiting), tasks pending (not yet
delivered: the lag), held (delivered, not yet acknowledged), redelivered, and dead letters
stored. Then the other supervised processes (gateway, api).

exit codes: 0 every role has a replica ready, 1 some role has none, 2 NATS cannot be reached
or Switchboard is not running there
"""


def add_parser(commands: Any) -> None:
    """Add ``status`` to the ``switchboard`` subparsers (which add the global options)."""
    status = commands.add_parser(
        "status", help="processes, replicas, restarts and consumer lag per role",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--json", action="store_true",
                        help="print one JSON object: nats_url, ready, roles (consumer, "
                        "processes), processes")
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Print the status; returns the exit code (see ``DESCRIPTION``).

    Raises:
        BrokerError: NATS cannot be reached (``NotRunningError``: no Switchboard there).
    """
    url = resolve_nats_url(settings)
    consumers, letters = asyncio.run(_read(settings, topology, url))
    processes = process_state.read(Path(settings.data_dir))
    ready = all(c.ready for c in consumers.values())
    if args.json:
        say(json.dumps(_as_json(url, consumers, letters, processes, ready), indent=1))
    else:
        _print(url, consumers, letters, processes, ready)
    return EXIT_READY if ready else EXIT_NOT_READY


async def _read(settings: Settings, topology: Topology, url: str
                ) -> tuple[dict[str, RoleConsumer], dict[str, int]]:
    nc = await connect(url, name="switchboard-status", settings=settings, reconnect=False)
    try:
        js = nc.jetstream(timeout=5)
        await check_running(js, topology.subjects)
        consumers = await read_consumers(js, topology.subjects, topology.roles)
        return consumers, await count_letters(js, topology.subjects)
    finally:
        await nc.close()


def _replicas(processes: list[ProcessState] | None, role: str) -> list[ProcessState]:
    return [p for p in processes or [] if p.role == role]


def _as_json(url: str, consumers: dict[str, RoleConsumer], letters: dict[str, int],
             processes: list[ProcessState] | None, ready: bool) -> dict[str, Any]:
    roles = {}
    for role, c in consumers.items():
        roles[role] = {**{k: v for k, v in asdict(c).items() if k != "role"},
                       "ready": c.ready, "dead_letters": letters.get(role, 0),
                       "processes": [asdict(p) for p in _replicas(processes, role)]
                       if processes is not None else None}
    return {"nats_url": url, "ready": ready, "roles": roles,
            "processes": [asdict(p) for p in processes] if processes is not None else None}


def _uptime(started_at: float) -> str:
    seconds = max(0, int(time.time() - started_at))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _print(url: str, consumers: dict[str, RoleConsumer], letters: dict[str, int],
           processes: list[ProcessState] | None, ready: bool) -> None:
    missing = [role for role, c in consumers.items() if not c.ready]
    head = "every role ready" if ready else f"not ready: {', '.join(missing)}"
    say(f"Switchboard on {url}: {len(consumers) - len(missing)}/{len(consumers)} roles "
        f"ready ({head})")
    if processes is None:
        say("   (no `switchboard up` on this data directory: processes are not shown)")
    width = max(len(r) for r in consumers) if consumers else 4
    say(f"{'role':<{width}}  replicas  restarts  ready  pending  held  redelivered  "
        f"dead letters")
    for role, c in consumers.items():
        mine = _replicas(processes, role)
        replicas = (f"{sum(p.alive for p in mine)}/{len(mine)}" if processes is not None
                    else "-")
        restarts = str(sum(p.restarts for p in mine)) if processes is not None else "-"
        line = (f"{role:<{width}}  {replicas:>8}  {restarts:>8}  {c.num_waiting:>5}  "
                f"{c.num_pending:>7}  {c.num_ack_pending:>4}  {c.num_redelivered:>11}  "
                f"{letters.get(role, 0):>12}")
        say(line + (f"  ⚠️ {c.error}" if c.error else ""))
    others = [p for p in processes or [] if p.role is None]
    for p in others:
        state = f"up {_uptime(p.started_at)}" if p.alive else "down"
        say(f"{p.name}: pid {p.pid}, {state}, {p.restarts} restart(s)")
