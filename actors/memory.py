"""Session memory rules (docs/design.md#reflexion-memory): pure functions over ``SessionState``.

Windows: the last 5 reflections (sliding window), the top 20 key insights (ranked by score,
deduplicated), the conversation history capped by ``topology.history_window`` entries.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from protocol import HistoryEntry, Insight, Reflection, ReplyTo, SessionState

REFLECTION_WINDOW = 5
INSIGHT_LIMIT = 20
SEEN_BONUS = 5
"""Score points an insight gains each time a later reflection repeats it."""


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


REMEMBERED_HEADING = "What you remember of this person from other conversations:"
"""First line of the per-user memory a model is shown (``user_memory_text``)."""
USER_MEMORY_LINES = 6
"""Entries from a person's other conversations shown to a model."""
_KEY_UNSAFE = re.compile(r"[^-_=a-zA-Z0-9]")


def append_exchange(
    state: SessionState, user_text: str, answer: str, *, user_id: str, window: int,
    session: str = "", request_id: str = "",
) -> None:
    """Add the person's message and the answer to the history, keeping the last ``window``;
    both entries name the request (``request_id``: the id the answer replied to)."""
    now = time.time()
    state.history.append(HistoryEntry(role="user", text=user_text, user_id=user_id, at=now,
                                      session=session, request_id=request_id))
    state.history.append(HistoryEntry(role="assistant", text=answer, at=now, session=session,
                                      request_id=request_id))
    if window >= 0:
        del state.history[: max(0, len(state.history) - window)]


def recover_confidence(state: SessionState, floor: int) -> None:
    """After a run answered: a session whose confidence a 👎 left under ``floor``
    (``feedback.low_confidence``) is back at ``floor``, so one 👎 starts one run a tier
    higher (docs/design.md#feedback-and-confidence), not every later run until a 👍."""
    state.confidence = max(state.confidence, floor)


def history_messages(state: SessionState, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` history entries as chat messages for a model."""
    entries = state.history[-limit:] if limit > 0 else []
    return [{"role": e.role, "content": e.text} for e in entries]


def user_key(bot: str, user_id: str) -> str:
    """The per-user memory key: one per bot and person, so two people — or two bots — never
    share memory (docs/design.md#reflexion-memory). ``bot`` is ``ChatMessage.bot`` or, when empty,
    its ``origin``
    (``memory_owner``)."""
    return f"user.{_KEY_UNSAFE.sub('_', bot)}.{_KEY_UNSAFE.sub('_', user_id)}"


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who is speaking, for the session history and the per-user memory: the ``session``, the
    person (``user_id``) and the bot whose memory of them is used (``owner``)."""

    session: str
    user_id: str
    owner: str

    @classmethod
    def of(cls, reply_to: ReplyTo, user_id: str, bot: str) -> Speaker:
        """The speaker of a request addressed by ``reply_to``; ``bot`` as ``ChatMessage.bot``
        ("" means the gateway instance, ``reply_to.origin``: ``memory_owner``)."""
        return cls(session=reply_to.session, user_id=user_id,
                   owner=memory_owner(bot, reply_to.origin))

    @property
    def memory_key(self) -> str:
        """The person's per-user memory key (``user_key``)."""
        return user_key(self.owner, self.user_id)


def memory_owner(bot: str, origin: str) -> str:
    """Whose per-user memory a message uses: the answering bot (``ChatMessage.bot``), else the
    gateway instance (``ChatMessage.origin``)."""
    return bot or origin


def user_memory_text(memory: SessionState, current_session: str) -> str:
    """What this person said and was told in their other conversations (newest last)."""
    entries = [e for e in memory.history if e.session != current_session]
    lines = [f"- {e.role}: {' '.join(e.text.split())[:200]}"
             for e in entries[-USER_MEMORY_LINES:]]
    if not lines:
        return ""
    return REMEMBERED_HEADING + "\n" + "\n".join(lines)


def add_reflection(state: SessionState, reflection: Reflection, summary: str) -> None:
    """Keep ``reflection`` in the window of 5 and rank its key insight among the top 20."""
    state.reflections.append(reflection)
    del state.reflections[: max(0, len(state.reflections) - REFLECTION_WINDOW)]
    state.scores = reflection.scores
    state.trajectory_summary = summary
    state.runs += 1
    text = reflection.key_insight.strip()
    if text:
        key = _norm(text)
        score = reflection.scores.overall
        for i, insight in enumerate(state.insights):
            if _norm(insight.text) == key:
                state.insights[i] = Insight(text=insight.text, seen=insight.seen + 1,
                                            score=max(insight.score, score) + SEEN_BONUS)
                break
        else:
            state.insights.append(Insight(text=text, score=score))
    state.insights.sort(key=lambda i: (i.score, i.seen), reverse=True)
    del state.insights[INSIGHT_LIMIT:]


def memory_text(state: SessionState) -> str:
    """What the planner is shown of earlier runs: strategy changes of the recent reflections,
    the ranked insights, the last trajectory summary and scores. Empty for a new session."""
    lines: list[str] = []
    for reflection in reversed(state.reflections):
        if reflection.strategy_change:
            lines.append(f"- Strategy change: {reflection.strategy_change}")
    for insight in state.insights:
        lines.append(f"- Insight (score {insight.score}): {insight.text}")
    if state.trajectory_summary:
        lines.append(f"- Previous run: {state.trajectory_summary}")
    if state.scores is not None:
        s = state.scores
        lines.append(
            f"- Previous scores: completion {s.task_completion}, quality {s.code_quality}, "
            f"efficiency {s.efficiency}"
        )
    return "\n".join(lines)
