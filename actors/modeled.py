"""The base of actors that call models: provider registration and metered model calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.config import ModelSpec
from actors.memory import append_exchange, history_messages, user_key, user_memory_text
from actors.runtime import Actor, MessageContext
from protocol import ChatMessage, Usage

ModelMessages = list[dict[str, Any]]


class ModelActor(Actor):
    """An actor that calls models through litellm.

    ``on_start`` registers the topology's custom providers (the offline model among them);
    ``call_model`` times each call and publishes a ``model_call`` event with its tokens and cost.
    """

    async def on_start(self) -> None:
        from actors.llm import register_providers

        register_providers(self.topology.providers)

    async def context_messages(self, chat: ChatMessage, *, limit: int = 10
                               ) -> list[dict[str, Any]]:
        """The conversation so far for a model: what this person said elsewhere (per-user
        memory, as a system message) and this session's recent history."""
        session = await self.services.sessions.get(chat.session)
        person = await self.services.users.get(user_key(chat.origin, chat.user_id))
        remembered = user_memory_text(person, chat.session)
        extra = [{"role": "system", "content": remembered}] if remembered else []
        return [*extra, *history_messages(session, limit)]

    async def remember(self, chat: ChatMessage, answer: str) -> None:
        """Keep the exchange in the session's history and in the person's memory."""
        window = self.topology.history_window

        def _add(state: Any) -> None:
            append_exchange(state, chat.text, answer, user_id=chat.user_id, window=window,
                            session=chat.session)

        await self.services.sessions.update(chat.session, _add)
        await self.services.users.update(user_key(chat.origin, chat.user_id), _add)

    async def call_model(
        self,
        ctx: MessageContext,
        spec: ModelSpec,
        messages: ModelMessages,
        *,
        tools: list[dict[str, Any]] | None = None,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        purpose: str = "",
    ) -> Any:
        """One model call (see ``actors.llm.complete``), recorded as an execution event.

        Returns:
            ``actors.llm.ModelReply``.

        Raises:
            ModelError: the call failed; ModelTimeoutError: it exceeded ``spec.timeout_s``.
        """
        from actors.llm import complete

        started = time.perf_counter()
        try:
            reply = await complete(spec, messages, tools=tools, on_text=on_text)
        except Exception as exc:
            await ctx.emit("model_error", model=spec.name, detail=f"{purpose}: {exc}"[:500],
                           duration_ms=(time.perf_counter() - started) * 1000)
            raise
        usage: Usage = reply.usage
        await ctx.emit(
            "model_call", model=spec.name, detail=purpose,
            duration_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        )
        return reply
