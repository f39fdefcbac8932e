"""``switchboard dlq list|show|replay|discard``: the dead-letter queue from the command line
(``runtime.dead_letters``)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from core.config import Settings, Topology
from core.console import say
from core.errors import DeadLetterError
from protocol import Subjects, check_token
from runtime import dead_letters
from runtime.bus import check_running, connect, resolve_nats_url
from runtime.dead_letters import StoredLetter

EXIT_OK, EXIT_FAILED = 0, 1

DESCRIPTION = """\
The dead-letter queue: tasks the actors set aside after failing them `max_deliveries` times,
or at once when no retry can help (unreadable bytes, no handler, a model that refuses the
request). Each is kept 30 days in the DLQ stream, named by its sequence there (#SEQ).

  switchboard dlq list [--role R]      oldest first: #SEQ, role, session, error, deliveries
  switchboard dlq show SEQ             one letter: its reason, headers and original message
  switchboard dlq replay SEQ [SEQ...]  send each task again to its role, then remove it; a
                                       SEQUENTIAL run goes on from its checkpoint
  switchboard dlq discard SEQ [SEQ...] remove letters for good

exit codes: 0 done, 1 a letter was not found or could not be replayed, 2 NATS cannot be
reached or Switchboard is not running there
"""


def add_parser(commands: Any, with_common: Callable[[Any], Any]) -> None:
    """Add ``dlq`` and its subcommands to the ``switchboard`` subparsers; ``with_common``
    gives a subparsers object the global options."""
    dlq = commands.add_parser("dlq", help="list, show, replay or discard dead letters",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = with_common(dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND",
                                         required=True))
    listing = sub.add_parser("list", help="list dead letters, oldest first",
                             description="List dead letters, oldest first: #SEQ, when, role, "
                             "session, error class, deliveries, reason.")
    listing.add_argument("--role", type=_role, help="only this actor role's")
    listing.add_argument("--after", type=int, default=0, metavar="SEQ",
                         help="only letters after this sequence (to page on)")
    listing.add_argument("--limit", type=int, default=100,
                         help=f"at most this many (default 100, at most "
                         f"{dead_letters.MAX_LIST})")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="one dead letter in full",
                          description="Print one dead letter: its reason, the original task "
                          "subject and headers, and the original message (JSON pretty-printed "
                          "when it is JSON).")
    show.add_argument("seq", type=_seq, help="the letter's sequence (#SEQ of `dlq list`)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_show)
    replay = sub.add_parser("replay", help="send dead letters' tasks again, then remove them",
                            description="Publish each letter's original message and headers "
                            "to its original task subject as a new message, then remove the "
                            "letter. A SEQUENTIAL run goes on from its checkpoint; a task that "
                            "fails again is dead-lettered again, under a new sequence.")
    replay.add_argument("seq", type=_seq, nargs="+", help="sequences of the letters")
    replay.set_defaults(func=cmd_replay)
    discard = sub.add_parser("discard", help="remove dead letters for good",
                             description="Remove each letter from the DLQ stream.")
    discard.add_argument("seq", type=_seq, nargs="+", help="sequences of the letters")
    discard.set_defaults(func=cmd_discard)


def _role(text: str) -> str:
    """An argparse type: a role name, which is one subject token (``protocol``)."""
    try:
        return check_token(text, "role")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seq(text: str) -> int:
    """An argparse type: a DLQ sequence, 1 or more (``#12`` is taken too)."""
    text = text.removeprefix("#")
    if not text.isdigit() or int(text) < 1:
        msg = f"{text!r} is not a dead letter sequence (a whole number from 1)"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


async def _with_js(settings: Settings, topology: Topology,
                   work: Callable[[JetStreamContext, Subjects], Awaitable[int]]) -> int:
    """Connect, check Switchboard runs there, run ``work``, close.

    Raises:
        BrokerError: NATS cannot be reached; NotRunningError: no Switchboard there.
    """
    nc = await connect(resolve_nats_url(settings), name="switchboard-dlq", settings=settings,
                       reconnect=False)
    try:
        js = nc.jetstream(timeout=10)
        await check_running(js, topology.subjects)
        return await work(js, topology.subjects)
    finally:
        await nc.close()


def _when(stored: StoredLetter) -> str:
    moment = datetime.datetime.fromtimestamp(stored.stored_at)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _as_json(stored: StoredLetter, *, full: bool) -> dict[str, Any]:
    letter = stored.letter
    body: dict[str, Any] = {
        "seq": stored.seq, "role": letter.actor, "session": stored.session,
        "error": letter.error, "reason": letter.reason, "deliveries": letter.deliveries,
        "subject": letter.subject, "stored_at": stored.stored_at}
    if full:
        body["headers"] = dict(letter.headers)
        body["data_base64"] = base64.b64encode(bytes(letter.data)).decode()
    return body


def cmd_list(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``dlq list``: one line (or JSON object) per letter; returns 0."""
    async def work(js: JetStreamContext, subjects: Subjects) -> int:
        found = await dead_letters.list_letters(js, subjects, role=args.role, after=args.after,
                                                limit=args.limit)
        for stored in found:
            if args.json:
                say(json.dumps(_as_json(stored, full=False)))
                continue
            letter = stored.letter
            reason = " ".join(letter.reason.split())
            say(f"#{stored.seq:<5} {_when(stored)}  {letter.actor:<14} "
                f"{stored.session or '-':<24} {letter.error or '-':<22} "
                f"{letter.deliveries}×  {reason[:100]}")
        if not found and not args.json:
            say("No dead letters" + (f" of {args.role}." if args.role else "."))
        elif len(found) == args.limit and not args.json:
            say(f"(more may follow: --after {found[-1].seq})")
        return EXIT_OK

    return asyncio.run(_with_js(settings, topology, work))


def _message_text(data: bytes) -> str:
    """The original message for people: JSON pretty-printed, other UTF-8 as it is, else
    base64."""
    try:
        return json.dumps(msgspec.json.decode(data), indent=2, ensure_ascii=False)
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "(not UTF-8; base64) " + base64.b64encode(data).decode()


def cmd_show(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``dlq show SEQ``: the letter in full; 1 when there is none."""
    async def work(js: JetStreamContext, subjects: Subjects) -> int:
        try:
            stored = await dead_letters.get_letter(js, subjects, args.seq)
        except DeadLetterError as exc:
            say(f"❌ {exc}")
            return EXIT_FAILED
        if args.json:
            say(json.dumps(_as_json(stored, full=True), indent=1))
            return EXIT_OK
        letter = stored.letter
        say(f"dead letter #{stored.seq}, stored {_when(stored)}")
        for label, value in (("role", letter.actor), ("session", stored.session or "-"),
                             ("error", letter.error or "-"), ("deliveries", letter.deliveries),
                             ("subject", letter.subject), ("reason", letter.reason)):
            say(f"  {label + ':':<12}{value}")
        for name, value in sorted(letter.headers.items()):
            say(f"  header      {name}: {value}")
        say("message:")
        say(_message_text(bytes(letter.data)))
        return EXIT_OK

    return asyncio.run(_with_js(settings, topology, work))


def cmd_replay(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``dlq replay SEQ...``: one line per letter; 1 when one failed."""
    async def work(js: JetStreamContext, subjects: Subjects) -> int:
        code = EXIT_OK
        for seq in args.seq:
            try:
                done = await dead_letters.replay_letter(js, subjects, seq)
            except DeadLetterError as exc:
                say(f"❌ #{seq}: {exc}")
                code = EXIT_FAILED
                continue
            say(f"↻ #{seq} sent again to {done.subject} (task #{done.task_seq}); removed "
                "from the queue")
        return code

    return asyncio.run(_with_js(settings, topology, work))


def cmd_discard(args: argparse.Namespace, settings: Settings, topology: Topology) -> int:
    """``dlq discard SEQ...``: one line per letter; 1 when one was not found."""
    async def work(js: JetStreamContext, subjects: Subjects) -> int:
        code = EXIT_OK
        for seq in args.seq:
            try:
                stored = await dead_letters.discard_letter(js, subjects, seq)
            except DeadLetterError as exc:
                say(f"❌ #{seq}: {exc}")
                code = EXIT_FAILED
                continue
            say(f"🗑️ #{seq} discarded ({stored.letter.actor}, {stored.letter.error or '-'})")
        return code

    return asyncio.run(_with_js(settings, topology, work))
