"""The brainstorm actor: two models propose approaches in parallel (BRANCH flow, SPEC.md §1)."""

from __future__ import annotations

import asyncio

import msgspec

from actors.config import ModelSpec
from actors.errors import ModelError
from actors.modeled import ModelActor
from actors.runtime import MessageContext, handler
from protocol import (
    Approach,
    BrainstormProposal,
    BrainstormResult,
    Classification,
    Flow,
    Progress,
)


class _Proposal(msgspec.Struct):
    approaches: list[Approach] = []


def parse_approaches(text: str) -> tuple[Approach, ...]:
    """The approaches in a model's JSON answer; the whole text as one approach when it is
    not the JSON asked for (so a chatty real model still contributes)."""
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        try:
            found = msgspec.json.decode(text[start:end + 1], type=_Proposal).approaches
        except (msgspec.DecodeError, msgspec.ValidationError):
            found = []
        if found:
            return tuple(found)
    text = text.strip()
    if not text:
        return ()
    title = text.splitlines()[0].strip("#* ")[:80] or "Proposal"
    return (Approach(title=title, summary=text[:1500]),)


class Brainstorm(ModelActor):
    """Asks the topology's two brainstorm models at once and forwards both proposals."""

    role = "brainstorm"

    @handler
    async def on_classification(self, verdict: Classification, ctx: MessageContext) -> None:
        request = verdict.request
        models = self.topology.brainstormers()
        await ctx.reply(request.origin, Progress(
            session=request.session, origin=request.origin, in_reply_to=request.message_id,
            stage="brainstorm", flow=Flow.BRANCH,
            text=f"Brainstorming with {' and '.join(m.name for m in models)}…",
        ))
        outcomes = await asyncio.gather(
            *(self._propose(ctx, spec, request.text) for spec in models), return_exceptions=True
        )
        proposals = [o for o in outcomes if isinstance(o, BrainstormProposal) and o.approaches]
        if not proposals:
            errors = "; ".join(str(o) for o in outcomes if isinstance(o, BaseException))
            msg = f"no brainstorm model proposed anything: {errors or 'empty answers'}"
            raise ModelError(msg)
        await ctx.send("consolidator", BrainstormResult(classification=verdict,
                                                        proposals=tuple(proposals)))

    async def _propose(self, ctx: MessageContext, spec: ModelSpec, question: str
                       ) -> BrainstormProposal:
        from actors.prompts import render

        reply = await self.call_model(ctx, spec, [
            {"role": "system", "content": render("brainstorm")},
            {"role": "user", "content": question},
        ], purpose="brainstorm")
        return BrainstormProposal(model=spec.name, approaches=parse_approaches(reply.text),
                                  usage=reply.usage)
