"""The consolidator: merges brainstorm proposals into 2-3 distinct options with pros and cons.

Two approaches are the same when their titles share at least half of their words (Jaccard
similarity >= 0.5 over lower-cased words of 3+ letters); the same approach from several models
is merged (pros and cons united) and ranked first, as the models agree on it.
"""

from __future__ import annotations

import re

from actors.memory import append_exchange, recover_confidence
from protocol import (
    Approach,
    BrainstormProposal,
    BrainstormResult,
    ConsolidatedOptions,
    SessionState,
    Usage,
)
from runtime import Actor, MessageContext, handler

SAME_APPROACH = 0.5
MIN_OPTIONS, MAX_OPTIONS = 2, 3


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 3}


def _similar(a: Approach, b: Approach) -> bool:
    wa, wb = _words(a.title), _words(b.title)
    if not wa or not wb:
        return a.title.strip().lower() == b.title.strip().lower()
    return len(wa & wb) / len(wa | wb) >= SAME_APPROACH


def _merge(a: Approach, b: Approach) -> Approach:
    def union(x: tuple[str, ...], y: tuple[str, ...]) -> tuple[str, ...]:
        seen = {s.lower() for s in x}
        return x + tuple(s for s in y if s.lower() not in seen)

    summary = a.summary if len(a.summary) >= len(b.summary) else b.summary
    return Approach(title=a.title, summary=summary, pros=union(a.pros, b.pros),
                    cons=union(a.cons, b.cons))


def consolidate(proposals: tuple[BrainstormProposal, ...]) -> tuple[Approach, ...]:
    """Merge the proposals' approaches (see the module docstring); at most 3, at least 2 when
    the proposals hold 2 distinct approaches."""
    groups: list[tuple[Approach, int]] = []
    for proposal in proposals:
        for approach in proposal.approaches:
            for i, (kept, votes) in enumerate(groups):
                if _similar(kept, approach):
                    groups[i] = (_merge(kept, approach), votes + 1)
                    break
            else:
                groups.append((approach, 1))
    ranked = sorted(enumerate(groups), key=lambda item: (-item[1][1], item[0]))
    return tuple(approach for _, (approach, _votes) in ranked[:MAX_OPTIONS])


class Consolidator(Actor):
    """Publishes the BRANCH flow's answer: ConsolidatedOptions to the gateway."""

    role = "consolidator"

    @handler
    async def on_result(self, result: BrainstormResult, ctx: MessageContext) -> None:
        reply_to = result.reply_to
        options = consolidate(result.proposals)
        usage = sum((p.usage for p in result.proposals), Usage())
        await ctx.reply(reply_to.origin, reply_to.build(
            ConsolidatedOptions, question=result.request.text, options=options, usage=usage))
        summary = "; ".join(o.title for o in options)
        await ctx.emit("consolidated", detail=f"{len(options)} options from "
                       f"{len(result.proposals)} proposals: {summary}"[:500])
        def _answered(state: SessionState) -> None:
            append_exchange(state, result.request.text, f"Options: {summary}",
                            user_id=result.request.user_id,
                            window=self.topology.history_window, session=reply_to.session,
                            request_id=reply_to.in_reply_to)
            recover_confidence(state, self.topology.feedback.low_confidence)

        await self.services.sessions.update(reply_to.session, _answered)
