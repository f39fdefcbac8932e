"""Approvals as every gateway shows and answers them (docs/design.md#approvals): the text of an
``ApprovalRequest``, the ``custom_id`` of its Approve and Deny buttons, and the Control a
decision publishes. Pure: the Discord bot, the Interactions endpoint and the HTTP API each do
their own I/O and their own check of who may decide."""

from __future__ import annotations

import re
import time

from protocol import ApprovalRequest, Control, ControlAction

CUSTOM_ID = re.compile(r"^sbap:(?P<decision>approve|deny):(?P<role>[a-z_]{1,32}):"
                       r"(?P<approval_id>[0-9a-f]{16})$")
"""A button's ``custom_id``: ``sbap:<approve|deny>:<role>:<approval id>``, at most 63 of the
100 characters Discord allows (https://discord.com/developers/docs/interactions/
message-components, "Custom ID"). What the control needs besides (the session, who asked) the
gateway keeps with the message the buttons are on."""
_ACTIONS = {"approve": ControlAction.APPROVE, "deny": ControlAction.DENY}
_CALL_CHARS = 600
"""Characters of one call's arguments shown in a Discord message (2,000 in all)."""


def custom_id(decision: ControlAction, role: str, approval_id: str) -> str:
    """The ``custom_id`` of the button that makes ``decision`` (``approve`` / ``deny``)."""
    value = f"sbap:{decision}:{role}:{approval_id}"
    assert CUSTOM_ID.match(value), value
    return value


def parse_custom_id(value: str) -> tuple[ControlAction, str, str] | None:
    """``(decision, role, approval id)`` of an approval button's ``custom_id``, or None when
    ``value`` is not one (any other component, or something forged)."""
    match = CUSTOM_ID.match(value)
    if match is None:
        return None
    return _ACTIONS[match["decision"]], match["role"], match["approval_id"]


def render_approval(request: ApprovalRequest, *, discord: bool = True) -> str:
    """The request as the person reads it: which calls wait, with their arguments, and when no
    answer becomes a denial (a Discord relative timestamp, ``<t:UNIX:R>``, when ``discord``)."""
    lines = [f"🔐 **Approval needed** (turn {request.turn}): the {request.role} agent wants to "
             "run:"]
    for call in request.calls:
        arguments = call.arguments if len(call.arguments) <= _CALL_CHARS else (
            call.arguments[:_CALL_CHARS] + "…")
        lines.append(f"• `{call.name}` ```json\n{arguments.replace('```', 'ʼʼʼ')}\n```")
    expiry = (f"<t:{int(request.expires_at)}:R>" if discord
              else f"at {_clock(request.expires_at)}")
    lines.append(f"Approve or Deny. No answer {expiry} counts as Deny.")
    return "\n".join(lines)


def decided_text(decision: ControlAction, user_id: str) -> str:
    """What the approval message says once someone decided."""
    verb = "✅ Approved" if decision is ControlAction.APPROVE else "🚫 Denied"
    return f"{verb} by <@{user_id}>."


def decision_control(decision: ControlAction, *, session: str, role: str, approval_id: str,
                     user_id: str, message_id: str = "", origin: str = "",
                     request_id: str = "") -> Control:
    """The Control that tells ``role`` of ``decision`` on approval ``approval_id`` in
    ``session`` by ``user_id``; with ``origin`` and ``message_id`` the agent can answer that
    the approval was no longer waited on."""
    return Control(session=session, action=decision, role=role, approval_id=approval_id,
                   user_id=user_id, message_id=message_id, origin=origin,
                   request_id=request_id)


def _clock(unix_s: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(unix_s))
