"""Limits on what an answer may be: a bot's cap on answer characters
(docs/design.md#safety-and-limits)."""

from __future__ import annotations

ANSWER_CUT_NOTE = "\n\n… (cut at {limit} characters: this bot's answer limit)"


def cap_answer(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters with a note saying so (a bot's
    ``max_answer_chars``, docs/design.md#safety-and-limits); unchanged when ``limit`` is 0 or not
    exceeded."""
    if limit <= 0 or len(text) <= limit:
        return text
    note = ANSWER_CUT_NOTE.format(limit=limit)
    keep = max(0, limit - len(note))
    return text[:keep].rstrip() + note[: limit - keep] if keep else text[:limit]
