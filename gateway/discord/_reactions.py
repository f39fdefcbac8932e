"""Reactions as controls (docs/design.md#the-agentic-loop): 🛑 on a run's status message aborts it,
👍 / 👎 on
an answer is feedback (+15 / −20 confidence; 👎 asks for a reflection), 👍 / 👎 on a commit
message merges / deletes its branch. Only the person who asked and the bot's admins (or a
member with Manage Messages in the channel) control a run (``may_control``); a person's vote
on an answer counts once. Pure: the bot publishes what this returns."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.discord._tracker import Kind, Tracked
from protocol import FEEDBACK_DOWN, FEEDBACK_UP, Control, ControlAction

STOP, THUMBS_UP, THUMBS_DOWN = "🛑", "👍", "👎"

NOT_YOURS_TEXT = ("🔒 <@{user}>, only the person who asked or an admin can {what}; "
                  "nothing was changed.")
"""Told to someone whose reaction asked for a control they may not use (``may_control``)."""
ALREADY_VOTED_TEXT = ("☑️ <@{user}>, your {emoji} on this answer is already counted "
                      "(one vote per person).")
"""Told to someone whose 👍 / 👎 repeats the vote they already gave that answer."""
_WHAT = {ControlAction.ABORT: "stop this run", ControlAction.MERGE: "merge this branch",
         ControlAction.DISCARD: "delete this branch", ControlAction.FEEDBACK: "rate this answer"}


@dataclass(frozen=True, slots=True)
class Reaction:
    """A person's reaction on a bot message: the emoji, who, which message."""

    emoji: str
    user_id: int
    message_id: int


def control_for(reaction: Reaction, tracked: Tracked, origin: str
                ) -> tuple[Control, str | None] | None:
    """The control a reaction asks for, and the acknowledgement to post (None: post nothing).

    Emoji with a skin-tone modifier count as the plain emoji. Returns None when the reaction
    means nothing on this kind of message.
    """
    emoji = reaction.emoji
    up, down = emoji.startswith(THUMBS_UP), emoji.startswith(THUMBS_DOWN)

    def control(action: ControlAction, *, value: int = 0, branch: str = "") -> Control:
        return Control(session=tracked.session, action=action, value=value,
                       user_id=str(reaction.user_id), message_id=str(reaction.message_id),
                       role=tracked.role, branch=branch, origin=origin,
                       request_id=tracked.request_id)

    match tracked.kind:
        case Kind.STATUS if emoji == STOP:
            return (control(ControlAction.ABORT),
                    f"⏹️ Stop requested by <@{reaction.user_id}>, halting at the next turn.")
        case Kind.COMMIT if up or down:
            if up:
                return (control(ControlAction.MERGE, branch=tracked.branch),
                        f"🔀 Merging `{tracked.branch}`…")
            return (control(ControlAction.DISCARD, branch=tracked.branch),
                    f"🗑️ Deleting branch `{tracked.branch}`…")
        case Kind.ANSWER | Kind.STATUS if up or down:
            if up:
                return control(ControlAction.FEEDBACK, value=FEEDBACK_UP), None
            return (control(ControlAction.FEEDBACK, value=FEEDBACK_DOWN),
                    "📝 Thanks, noted: I'll reflect on what went wrong.")
    return None


def may_control(user_id: int, tracked: Tracked, admins: tuple[str, ...], *,
                manages_messages: bool) -> bool:
    """Whether person ``user_id`` may control the run ``tracked`` belongs to: the person who
    asked, one of the bot's ``admins`` (``BotConfig.admins``), or a member with Discord's
    Manage Messages permission in the channel (``manages_messages``)."""
    person = str(user_id)
    return manages_messages or person in admins or (bool(tracked.user_id)
                                                    and person == tracked.user_id)


def refusal_text(control: Control) -> str:
    """What a person is told when ``may_control`` refused their ``control``."""
    return NOT_YOURS_TEXT.format(user=control.user_id,
                                 what=_WHAT.get(control.action, "do that"))
