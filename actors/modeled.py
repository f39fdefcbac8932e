"""The base of actors that call models: provider registration and metered model calls."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.config import ModelSpec
from actors.runtime import Actor, MessageContext
from protocol import Usage

ModelMessages = list[dict[str, Any]]


class ModelActor(Actor):
    """An actor that calls models through litellm.

    ``on_start`` registers the topology's custom providers (the offline model among them);
    ``call_model`` times each call and publishes a ``model_call`` event with its tokens and cost.
    """

    async def on_start(self) -> None:
        from actors.llm import register_providers

        register_providers(self.topology.providers)

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
