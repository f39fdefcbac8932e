"""The brainstorm actor: two models propose approaches in parallel (BRANCH flow,
docs/design.md#message-flow)."""

from __future__ import annotations

import asyncio

import msgspec

from actors.modeled import ModelActor
from actors.prompts import render
from actors.router import brainstorm_models
from core.config import ModelSpec
from core.errors import ModelRejectedError, ModelUnavailableError
from protocol import (
    Approach,
    BrainstormProposal,
    BrainstormResult,
    Classification,
    Flow,
    Progress,
)
from runtime import MessageContext, handler


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
        reply_to, request = verdict.reply_to, verdict.request
        models = brainstorm_models(self.topology, overrides=request.models,
                                   tier_min=request.tier_min, tier_max=request.tier_max)
        await ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="brainstorm", flow=Flow.BRANCH,
            text=f"Brainstorming with {' and '.join(m[0].name for m in models)}…"))
        outcomes = await asyncio.gather(
            *(self._propose(ctx, tier, request.text) for tier in models), return_exceptions=True
        )
        proposals = [o for o in outcomes if isinstance(o, BrainstormProposal) and o.approaches]
        if not proposals:
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            errors = "; ".join(str(o) for o in failures)
            msg = f"no brainstorm model proposed anything: {errors or 'empty answers'}"
            if failures and all(isinstance(o, ModelRejectedError) for o in failures):
                raise ModelRejectedError(msg)
            raise ModelUnavailableError(msg)
        await ctx.send("consolidator", BrainstormResult(
            reply_to=reply_to, request=request, proposals=tuple(proposals)))

    async def _propose(self, ctx: MessageContext, models: tuple[ModelSpec, ...],
                       question: str) -> BrainstormProposal:
        reply = await self.call_model(ctx, models, [
            {"role": "system", "content": render("brainstorm")},
            {"role": "user", "content": question},
        ], purpose="brainstorm")
        return BrainstormProposal(model=reply.usage.model or models[0].name,
                                  approaches=parse_approaches(reply.text),
                                  usage=reply.usage)
