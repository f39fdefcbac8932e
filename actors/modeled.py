"""The base of actors that call models: provider registration and metered model calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from actors.router import CaseBase
from core.config import HostedAgentSpec, ModelSpec
from core.errors import ModelError
from modelcall import ModelReply, close_sessions, complete, embed, register_providers
from protocol import Usage
from runtime import Actor, MessageContext, child_span

if TYPE_CHECKING:
    from actors.router import CaseBase

ModelMessages = list[dict[str, Any]]


class ModelActor(Actor):
    """An actor that calls models through litellm.

    ``on_start`` registers the topology's custom providers (the offline model among them);
    ``call_model`` times each call and publishes a ``model_call`` event with its tokens and cost.
    """

    async def on_start(self) -> None:
        register_providers(self.topology.providers)

    async def on_stop(self) -> None:
        await close_sessions()
        if self.topology.hosted_agent(self.actor_id.role) is not None:
            from modelcall.hosted import close_clients  # aioboto3: only a backed role

            await close_clients()

    async def embed_task(self, ctx: MessageContext, text: str) -> tuple[float, ...]:
        """The embedding of a task for the case base (``cases.embedding_model``); ``()`` when
        none is configured or the call fails (an ``embedding_failed`` event says why, and the
        case base falls back to BM25)."""
        spec = self.topology.cases.embedding_model
        if spec is None:
            return ()
        started = time.perf_counter()
        try:
            vector = await embed(spec, text)
        except ModelError as exc:
            await ctx.emit("embedding_failed", model=spec.name, detail=str(exc)[:500])
            return ()
        await ctx.emit("model_call", model=spec.name, detail="embedding",
                       duration_ms=(time.perf_counter() - started) * 1000)
        return vector

    async def call_model(
        self,
        ctx: MessageContext,
        models: ModelSpec | Sequence[ModelSpec],
        messages: ModelMessages,
        *,
        tools: list[dict[str, Any]] | None = None,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        purpose: str = "",
        response_format: dict[str, Any] | None = None,
        max_tokens: int = 0,
        timeout_s: float | None = None,
    ) -> ModelReply:
        """One model call (see ``modelcall.complete``), recorded as an execution event, with
        fallbacks: when a model fails with an error another model can fix (rate limit, 5xx,
        timeout, context window: ``ModelError.fallback_helps``), the next of ``models``
        answers (a ``fallback`` event says why); errors no model fixes (bad key, unknown
        model, bad request) are raised at once.

        Args:
            models: one model, or a tier's models in fallback order (``actors.router``).
            max_tokens: a cap on completion tokens (the bot's limit; 0: none).
            timeout_s: bound on each attempt in seconds (default: the model's own).

        Returns:
            ``modelcall.ModelReply`` of the model that answered (``usage.model`` names it).

        Raises:
            ModelError: the last model's error when every model failed (the most specific
                subclass: ``ModelRejectedError`` is never retried, ``ModelUnavailableError``
                is).
        """
        candidates = [models] if isinstance(models, ModelSpec) else list(models)
        for position, spec in enumerate(candidates):
            # GenAI conventions: a CLIENT span "chat {gen_ai.request.model}" (a configured
            # model's name: bounded), https://opentelemetry.io/docs/specs/semconv/gen-ai/
            with child_span(f"chat {spec.name}", {
                "gen_ai.operation.name": "chat", "gen_ai.request.model": spec.name,
                "switchboard.purpose": purpose, "switchboard.role": self.actor_id.role,
                "switchboard.session": ctx.session,
            }, SpanKind.CLIENT) as span:
                try:
                    reply = await complete(spec, messages, tools=tools, on_text=on_text,
                                           response_format=response_format,
                                           max_tokens=max_tokens, timeout_s=timeout_s)
                except ModelError as exc:
                    await ctx.emit("model_error", model=spec.name,
                                   detail=f"{purpose}: {exc}"[:500],
                                   duration_ms=span.elapsed_ms, **span.event_ids())
                    following = candidates[position + 1:]
                    if not exc.fallback_helps or not following:
                        raise
                    span.set_attributes({"error.type": type(exc).__name__})
                    await ctx.emit("fallback", model=following[0].name, source="model",
                                   detail=f"{purpose}: {spec.name} → {following[0].name}: "
                                          f"{type(exc).__name__}"[:500])
                    continue
                usage: Usage = reply.usage
                span.set_attributes({
                    "gen_ai.response.model": usage.model or spec.name,
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "switchboard.cost_usd": usage.cost_usd,
                })
                await ctx.emit(
                    "model_call", model=spec.name, detail=purpose, duration_ms=span.elapsed_ms,
                    prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                    cost_usd=usage.cost_usd, **span.event_ids(),
                )
                return reply
        msg = "call_model needs at least one model"
        raise ValueError(msg)

    async def call_hosted_agent(
        self,
        ctx: MessageContext,
        agent: HostedAgentSpec,
        text: str,
        *,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        purpose: str = "",
    ) -> ModelReply:
        """One call of the hosted agent that backs this role (``modelcall.hosted``), recorded as
        a model call is: a ``model_call`` event with the agent's name, tokens and duration
        (and an ``agent_trace`` event summing up its trace), or ``model_error``.

        Args:
            agent: the agent (``Topology.hosted_agent``).
            text: the person's message; the agent keeps the conversation itself, by session.
            on_text: awaited with the whole answer so far as it streams.

        Returns:
            ``modelcall.ModelReply`` (``usage.model`` is the agent's name).

        Raises:
            ModelError: as ``modelcall.hosted.invoke_agent`` raises; never a fallback to another
                model (the role is the agent's).
        """
        from modelcall.hosted import invoke_agent  # imports aioboto3: only a backed role's

        with child_span(f"invoke_agent {agent.name}", {  # GenAI agent spans: a remote agent
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent.name,
            "gen_ai.request.model": agent.name, "switchboard.purpose": purpose,
            "switchboard.role": self.actor_id.role, "switchboard.session": ctx.session,
        }, SpanKind.CLIENT) as span:
            try:
                answer = await invoke_agent(agent, ctx.session, text, on_text=on_text)
            except ModelError as exc:
                self.log.warning("session %s: %s failed: %s", ctx.session, agent.name, exc)
                await ctx.emit("model_error", model=agent.name, detail=f"{purpose}: {exc}"[:500],
                               duration_ms=span.elapsed_ms, **span.event_ids())
                raise
            usage: Usage = answer.reply.usage
            span.set_attributes({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                                 "gen_ai.usage.output_tokens": usage.completion_tokens})
            counted = "" if answer.tokens_from_trace else ", tokens estimated"
            await ctx.emit(
                "model_call", model=agent.name, duration_ms=span.elapsed_ms,
                detail=f"{purpose} (hosted agent, {answer.chunks} chunks{counted})"[:500],
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                **span.event_ids())
            if answer.traces.steps:
                why = f"; rationale: {answer.traces.rationale}" if answer.traces.rationale else ""
                await ctx.emit("agent_trace", model=agent.name,
                               detail=f"{answer.traces.describe()}{why}"[:500])
            return answer.reply


class CaseModelActor(ModelActor):
    """A model actor that follows the case base (``actors.router.CaseBase``): the classifier
    (near-identical cases route), the planner (similar cases, the learned tier) and the
    reflector (stores cases, marks them with feedback)."""

    cases: CaseBase | None = None
    """The case base once started."""

    async def on_start(self) -> None:
        await super().on_start()
        self.cases = await CaseBase.open(self.services.js, self.services.subjects,
                                         limit=self.topology.cases.max_cases)

    async def on_stop(self) -> None:
        if self.cases is not None:
            await self.cases.close()
        await super().on_stop()
