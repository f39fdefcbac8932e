"""Approve and Deny buttons on a run's approval request (docs/design.md#approvals), and what a
click does: only the person who asked, the bot's admins or a member with Manage Messages in
the channel may decide (``may_control``); the decision goes to the run's role as a Control,
and the message then says who decided, without its buttons.

The buttons are ``discord.ui.DynamicItem`` s: their ``custom_id`` (``gateway.approvals``)
names the decision, role and approval, so a click is handled after a gateway restart too
(``discord.Client.add_dynamic_items``); the session and who asked come from the tracker,
which keeps them in its bucket."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import discord

from gateway.approvals import CUSTOM_ID, custom_id, decided_text, decision_control, parse_custom_id
from gateway.discord._reactions import NOT_YOURS_TEXT, may_control
from gateway.discord._status import REST_TIMEOUT_S
from gateway.discord._tracker import Kind, MessageTracker, Tracked
from gateway.errors import NotRunningError
from protocol import Control, ControlAction

_log = logging.getLogger(__name__)

UNKNOWN_TEXT = "⌛ I no longer know this approval; nothing was changed."
NOT_SENT_TEXT = "⚠️ Switchboard is not running right now, so your decision was not taken."


class ApprovalButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                     template=CUSTOM_ID.pattern):
    """The Approve or the Deny button of one approval."""

    def __init__(self, decision: ControlAction, role: str, approval_id: str) -> None:
        approve = decision is ControlAction.APPROVE
        super().__init__(discord.ui.Button(
            label="Approve" if approve else "Deny",
            style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
            custom_id=custom_id(decision, role, approval_id)))
        self.decision, self.role, self.approval_id = decision, role, approval_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any],
                             item: discord.ui.Item[Any], match: re.Match[str], /
                             ) -> ApprovalButton:
        parsed = parse_custom_id(match.string)
        assert parsed is not None  # the template matched
        return cls(*parsed)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        clicks = getattr(interaction.client, "approvals", None)
        if isinstance(clicks, ApprovalClicks):
            await clicks.on_click(interaction, self.decision, self.approval_id)


def approval_view(role: str, approval_id: str) -> discord.ui.View:
    """Approve and Deny for approval ``approval_id`` of ``role``'s run (no timeout: the run's
    own deadline decides when no one does)."""
    view = discord.ui.View(timeout=None)
    view.add_item(ApprovalButton(ControlAction.APPROVE, role, approval_id))
    view.add_item(ApprovalButton(ControlAction.DENY, role, approval_id))
    return view


class ApprovalClicks:
    """Handles clicks on approval buttons for one bot.

    Args:
        tracker: what each bot message is (an approval's session, role and asker).
        publish: sends a Control to the actors (raises ``NotRunningError``).
        admins: the bot's admins now (``BotConfig.admins``).
        origin: the bot's outbox origin now.
    """

    def __init__(self, tracker: MessageTracker, publish: Callable[[Control], Awaitable[None]],
                 admins: Callable[[], tuple[str, ...]], origin: Callable[[], str]) -> None:
        self.tracker, self.publish, self.admins, self.origin = tracker, publish, admins, origin

    async def on_click(self, interaction: discord.Interaction[Any], decision: ControlAction,
                       approval_id: str) -> None:
        """Decide approval ``approval_id`` for the person who clicked, or tell them (only
        them: an ephemeral answer) why not."""
        message = interaction.message
        tracked = await self.tracker.lookup(message.id) if message is not None else None
        if (message is None or tracked is None or tracked.kind is not Kind.APPROVAL
                or tracked.approval_id != approval_id):
            await _tell(interaction, UNKNOWN_TEXT)
            return
        user = interaction.user.id
        if not may_control(user, tracked, self.admins(),
                           manages_messages=interaction.permissions.manage_messages):
            _log.info("session %s: %s of approval %s by user %s refused: not theirs",
                      tracked.session, decision, approval_id, user)
            await _tell(interaction, NOT_YOURS_TEXT.format(user=user,
                                                           what="decide this approval"))
            return
        try:
            await self.publish(decision_control(
                decision, session=tracked.session, role=tracked.role, approval_id=approval_id,
                user_id=str(user), message_id=str(message.id), origin=self.origin(),
                request_id=tracked.request_id))
        except NotRunningError as exc:
            _log.warning("session %s: %s of approval %s not sent: %s", tracked.session,
                         decision, approval_id, exc)
            await _tell(interaction, NOT_SENT_TEXT)
            return
        self.tracker.approval_decided(tracked.session, approval_id)
        _log.info("session %s: approval %s %s by user %s", tracked.session, approval_id,
                  "approved" if decision is ControlAction.APPROVE else "denied", user)
        try:
            async with asyncio.timeout(REST_TIMEOUT_S):
                await interaction.response.edit_message(
                    content=f"{message.content}\n{decided_text(decision, str(user))}"[:2000],
                    view=None)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("session %s: approval message not updated: %s", tracked.session, exc)


class PendingApprovals(Protocol):
    """The approval requests shown per session and not decided here
    (``_tracker.MessageTracker``)."""

    async def pending_approval(self, session: str) -> Tracked | None: ...

    def approval_decided(self, session: str, approval_id: str) -> None: ...


async def deny_waiting(tracker: PendingApprovals, publish: Callable[[Control], Awaitable[None]],
                       session: str, user_id: str) -> None:
    """After a stop of ``session``'s run (🛑, ``/stop``): deny the approval the run waits
    on, if any, so it resumes and finds the abort before it runs anything
    (docs/design.md#approvals). Publishing failures are logged: the stop itself went out."""
    pending = await tracker.pending_approval(session)
    if pending is None:
        return
    try:
        await publish(decision_control(
            ControlAction.DENY, session=session, role=pending.role,
            approval_id=pending.approval_id, user_id=user_id, request_id=pending.request_id))
    except NotRunningError as exc:
        _log.warning("session %s: approval %s not denied after the stop: %s", session,
                     pending.approval_id, exc)
        return
    tracker.approval_decided(session, pending.approval_id)
    _log.info("session %s: approval %s denied by the stop of user %s", session,
              pending.approval_id, user_id)


async def _tell(interaction: discord.Interaction[Any], text: str) -> None:
    try:
        async with asyncio.timeout(REST_TIMEOUT_S):
            await interaction.response.send_message(text, ephemeral=True)
    except (discord.HTTPException, TimeoutError) as exc:
        _log.warning("interaction %s: could not answer: %s", interaction.id, exc)
