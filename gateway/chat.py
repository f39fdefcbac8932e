"""The terminal chat: the same actors as Discord, from a shell.

``switchboard chat --message TEXT`` sends one message, prints progress as it arrives and the
answer, and exits 0; without ``--message`` it reads lines until EOF or ``/quit``. On a
terminal, an answer being streamed shows as one line rewritten in place (its latest words),
cleared before the next line of output; piped output gets only the progress lines and the
answer. A run's approval request is printed, and asked at the terminal (``y`` approves,
anything else denies) when ``confirm`` is given (stdin is a terminal); otherwise the run waits
for a decision made elsewhere, or its deadline.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from core.config import Settings, Topology
from gateway.approvals import decision_control, render_approval
from gateway.bridge import Bridge, connect_bridge
from gateway.errors import NotRunningError
from gateway.render import render_options, render_progress, render_reply
from protocol import (
    ApprovalRequest,
    ChatMessage,
    ConsolidatedOptions,
    ControlAction,
    Outbound,
    Progress,
    Reply,
    SessionId,
)

EXIT_OK, EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_TIMEOUT = 0, 1, 2, 3
MEMORY_OWNER = "terminal"
"""``ChatMessage.bot`` of every terminal chat: a person's memory is one across terminal
sessions, although each run has its own outbox origin (``term-<random>``)."""


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:64] or "user"


def terminal_user(name: str | None = None) -> str:
    """The person at this terminal, as a session-id-safe token: ``name``, else the login name
    (``getpass.getuser()``: ``LOGNAME``, ``USER``, ... then the password database), else
    ``user``. The same person gets the same name in every run, so their memory follows them."""
    if name is None:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no login name and no passwd entry (some containers)
            name = ""
    return _token(name)


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class TerminalChat:
    """One terminal conversation (session ``terminal-<name>``) over a bridge.

    Args:
        bridge: connected bridge whose origin is this terminal.
        session: the session id string.
        user: the person's name (a token, ``terminal_user``); their id is ``terminal:<user>``
            and their per-user memory the terminal's (``MEMORY_OWNER``) in every run.
        out: where progress and answers are written.
        save_dir: where files sent back with an answer are saved (None: not saved).
        confirm: asks the person a yes/no question and returns their line (blocking; run in
            a thread); None: approval requests are only shown.
    """

    def __init__(self, bridge: Bridge, session: str, user: str, out: TextIO,
                 save_dir: Path | None = None,
                 confirm: Callable[[str], str] | None = None) -> None:
        self.bridge, self.session, self.user, self.out = bridge, session, user, out
        self.save_dir, self.confirm = save_dir, confirm
        self._deciding: set[asyncio.Task[None]] = set()
        self._waiting: dict[str, asyncio.Future[Outbound]] = {}
        self._live = _is_terminal(out)
        self._preview_shown = False

    async def start(self) -> None:
        await self.bridge.start(self._on_outbound)

    async def _on_outbound(self, message: Outbound) -> None:
        match message:
            case Progress(stage="stream"):
                if self._live:
                    self._preview(message.text)
            case Progress():
                self._write(render_progress(message))
            case ApprovalRequest():
                self._write(render_approval(message, discord=False))
                if self.confirm is None:
                    self._write("(No terminal to answer at: decide in Discord or with the HTTP "
                                "API, or the run takes no answer as Deny.)")
                    return
                task = asyncio.get_running_loop().create_task(self._decide(message))
                self._deciding.add(task)
                task.add_done_callback(self._deciding.discard)
            case Reply() | ConsolidatedOptions():
                future = self._waiting.get(message.in_reply_to)
                if future is not None and not future.done():
                    future.set_result(message)

    async def _decide(self, request: ApprovalRequest) -> None:
        """Ask at the terminal, then send the decision (the person at this terminal asked)."""
        assert self.confirm is not None
        try:
            line = await asyncio.to_thread(self.confirm, "Approve? [y/N] ")
        except (EOFError, KeyboardInterrupt):
            line = ""
        decision = (ControlAction.APPROVE if line.strip().lower() in {"y", "yes"}
                    else ControlAction.DENY)
        try:
            await self.bridge.control(decision_control(
                decision, session=request.session, role=request.role,
                approval_id=request.approval_id, user_id=f"terminal:{self.user}",
                request_id=request.in_reply_to))
        except NotRunningError as exc:
            self._write(f"❌ The decision was not sent: {exc}")
            return
        self._write("✅ Approved." if decision is ControlAction.APPROVE else "🚫 Denied.")

    def _preview(self, text: str) -> None:
        """Rewrite the preview line: ``✍️`` and the streamed answer's latest words, cut to the
        terminal's width (ANSI ``CSI 2 K`` erases the line)."""
        width = max(20, shutil.get_terminal_size().columns - 4)
        words = " ".join(text.split())
        self.out.write(f"\r\x1b[2K✍️ {words[-width:]}")
        self.out.flush()
        self._preview_shown = True

    def _write(self, text: str) -> None:
        if self._preview_shown:
            self.out.write("\r\x1b[2K")
            self._preview_shown = False
        self.out.write(text.rstrip() + "\n")
        self.out.flush()

    async def ask(self, text: str, *, timeout_s: float) -> int:
        """Send ``text``, print progress, then the answer; returns an exit code."""
        message_id = uuid.uuid4().hex
        future: asyncio.Future[Outbound] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        try:
            await self.bridge.send(ChatMessage(
                message_id=message_id, session=self.session, origin=self.bridge.origin,
                user_id=f"terminal:{self.user}", user_name=self.user, text=text,
                sent_at=time.time(), bot=MEMORY_OWNER, addressed=True,
            ))
            async with asyncio.timeout(timeout_s):
                answer = await future
        except TimeoutError:
            self._write(f"⏱️ No answer within {timeout_s:.0f} s. The request is still queued; "
                        "see `switchboard events tail` for what is happening.")
            return EXIT_TIMEOUT
        finally:
            self._waiting.pop(message_id, None)
        if isinstance(answer, ConsolidatedOptions):
            self._write(render_options(answer))
            return EXIT_OK
        assert isinstance(answer, Reply)
        self._write(render_reply(answer) if answer.text or answer.error else
                    "(Switchboard decided this message needs no answer.)")
        saved = self._save_files(answer)
        return EXIT_FAILED if answer.error or not saved else EXIT_OK

    def _save_files(self, reply: Reply) -> bool:
        """List or save the answer's files; False when one could not be saved (said why)."""
        saved = True
        for blob in reply.files:
            if self.save_dir is None:
                self._write(f"📎 {blob.name} ({len(blob.data)} bytes)")
                continue
            target = self.save_dir / Path(blob.name).name
            try:
                target.write_bytes(blob.data)
            except OSError as exc:
                self._write(f"❌ {blob.name} not saved to {target}: {exc.strerror or exc}")
                saved = False
                continue
            self._write(f"📎 {blob.name} saved to {target}")
        return saved


async def run_chat(
    settings: Settings,
    topology: Topology,
    *,
    nats_url: str,
    message: str | None,
    session: str | None = None,
    timeout_s: float = 300.0,
    out: TextIO = sys.stdout,
    read_line: Callable[[], str] | None = None,
    save_dir: Path | None = None,
    user: str | None = None,
    confirm: Callable[[str], str] | None = None,
) -> int:
    """Run the terminal chat; returns the process exit code (0 answered, 1 the request failed,
    2 Switchboard is not running, 3 no answer within ``timeout_s`` seconds).

    ``user`` names the person (default: the login name, ``terminal_user``). A server that
    refuses the credentials is said at once; a connection lost later is reconnected to any
    server of ``nats_url``, and an answer stored meanwhile is still delivered
    (``gateway.bridge``). ``confirm`` answers approval requests (default: ``input`` when
    stdin is a terminal, else none)."""
    user = terminal_user(user)
    if confirm is None and sys.stdin.isatty():
        confirm = input
    session_id = session or str(SessionId("terminal", user))
    origin = f"term-{uuid.uuid4().hex[:12]}"
    try:
        bridge = await connect_bridge(settings, topology.subjects, origin, nats_url=nats_url,
                                      fail_fast=True)
    except NotRunningError as exc:
        out.write(f"❌ {exc}\n")
        return EXIT_NOT_RUNNING
    try:
        chat = TerminalChat(bridge, session_id, user, out, save_dir, confirm)
        try:
            await chat.start()
        except NotRunningError as exc:
            out.write(f"❌ {exc}. Start it with `switchboard up`.\n")
            return EXIT_NOT_RUNNING
        if message is not None:
            try:
                return await chat.ask(message, timeout_s=timeout_s)
            except NotRunningError as exc:
                out.write(f"❌ {exc}\n")
                return EXIT_NOT_RUNNING
        return await _interactive(chat, timeout_s, read_line or _read_line)
    finally:
        await bridge.stop()


def _read_line() -> str:
    return input("you> ")


async def _interactive(chat: TerminalChat, timeout_s: float, read_line: Callable[[], str]) -> int:
    chat._write(f"Switchboard terminal chat, session {chat.session}. /quit or Ctrl-D to leave.")
    while True:
        try:
            line = await asyncio.to_thread(read_line)
        except (EOFError, KeyboardInterrupt):
            return EXIT_OK
        line = line.strip()
        if line in {"/quit", "/exit"}:
            return EXIT_OK
        if line:
            try:
                await chat.ask(line, timeout_s=timeout_s)
            except NotRunningError as exc:
                chat._write(f"❌ {exc}")
