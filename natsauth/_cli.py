"""``switchboard nats-config OUTDIR``: write a NATS server configuration with one nkey identity
per actor role, the gateway, the API and the CLI, and each identity's seed file.

Imports are light at module level: the ``switchboard`` parser is built on every call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.console import say
from natsauth._files import write_nats_config

if TYPE_CHECKING:
    from core.config import Settings, Topology


def add_parser(commands: Any) -> None:
    """Add ``nats-config`` to the ``switchboard`` parser's subparsers (``switchboard.cli``'s, which
    give every command the global options)."""
    parser = commands.add_parser(
        "nats-config",
        help="write a NATS server config with one nkey identity per role, gateway, api, cli",
        description="Write OUTDIR/nats-server.conf (an account with JetStream and one nkey "
        "user per actor role, the gateway, the API and the CLI, each allowed only its own "
        "subjects and JetStream API calls) and OUTDIR/<identity>.nk, each identity's seed "
        "(mode 0600). Seeds already in OUTDIR are kept: delete one to rotate its key. Run "
        "Switchboard with SB_NATS_CREDS_DIR=OUTDIR (every process its own identity), or give "
        "one process its seed with --creds / NATS_CREDS.")
    parser.add_argument("outdir", type=Path, help="directory to write into (created, 0700)")
    parser.add_argument("--account", default="SWITCHBOARD",
                        help="name of the account (default SWITCHBOARD)")
    parser.set_defaults(func=cmd_nats_config)


def cmd_nats_config(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """Write the configuration; exit 0 (a ``ConfigError`` is reported by ``main``)."""
    written = write_nats_config(topology, args.outdir, account=args.account)
    outdir = args.outdir
    say(f"✅ {len(written.seeds)} identities in {outdir} ({len(written.created)} new seeds, "
         f"mode 0600) and {written.server_config}:")
    for name, key in written.keys.items():
        say(f"   {name:<22} {key}")
    say(f"   Server:      nats-server -c {written.server_config} -js -sd STORE_DIR "
         f"(or include it in your configuration)")
    say(f"   Switchboard: SB_NATS_CREDS_DIR={outdir} switchboard up  (each process its own "
         f"identity)")
    say(f"   One role:    switchboard actor python_coder --creds {outdir}/python_coder.nk")
    return 0
