"""Switchboard session ids as Bedrock agent session ids."""

from __future__ import annotations

import hashlib

MIN_SESSION_CHARS, MAX_SESSION_CHARS = 2, 100
"""Shortest and longest ``sessionId`` InvokeAgent accepts (``SessionId``: 2-100 of
``[0-9a-zA-Z._:-]``,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_InvokeAgent.html)."""


def bedrock_session_id(session: str) -> str:
    """The ``sessionId`` under which a Bedrock agent keeps ``session``'s conversation.

    Switchboard's session ids are 1-128 of ``A-Z a-z 0-9 _ -`` (``protocol.check_token``),
    all characters Bedrock accepts; only the length differs. A one-character id is padded
    with ``.`` (which no Switchboard id contains), an id longer than 100 characters keeps its
    first 83 and gains ``:`` and 16 hex digits of its SHA-256 (``:`` occurs in no Switchboard
    id either), so distinct sessions keep distinct ids. The same session always gets the same
    id: the agent remembers the conversation across requests.

    Args:
        session: a Switchboard session id.

    Returns:
        A valid Bedrock ``sessionId``.
    """
    if len(session) < MIN_SESSION_CHARS:
        return session.ljust(MIN_SESSION_CHARS, ".")
    if len(session) > MAX_SESSION_CHARS:
        digest = hashlib.sha256(session.encode()).hexdigest()[:16]
        return f"{session[:MAX_SESSION_CHARS - 17]}:{digest}"
    return session
