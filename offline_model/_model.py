"""The offline model: a model provider that answers deterministically, with no key and no
network, so the whole system runs on a fresh machine. Every reply says it is offline.

Registered by ``topology.yaml`` ``providers: {offline: offline_model:OfflineLLM}``; model
names are ``offline/<anything>`` (``offline/tier-2``). Options come through ``ModelSpec.params``
(through litellm, in its ``optional_params``):

- ``delay_s``: seconds to wait before answering (benchmarks, crash tests);
- ``chunk_delay_s``: seconds between streamed chunks;
- ``error``: fail every call with this message (to exercise error paths).

Switchboard calls it in-process through ``OfflineLLM.direct`` (``modelcall.complete``: no
litellm wrapper, well under 0.5 ms a call), and this module does not import litellm: a
deployment whose every model is offline never loads it (about 160 MB and 1.6 s a process,
docs/measurements.md). ``OfflineLLM.litellm_handler`` gives litellm's custom-provider version
(``offline_model._litellm``) for ``transport: litellm`` and litellm's own callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import ModelUnavailableError
from modelcall import ModelReply
from offline_model._script import TEXT_CHUNKS, script_reply, split, usage_counts
from protocol import ToolCall, Usage

_log = logging.getLogger(__name__)

class OfflineLLM:
    """A deterministic offline model (see the module docstring for its options)."""

    async def direct(self, model: str, messages: list[dict[str, Any]], *,
                     tools: list[dict[str, Any]] | None, params: dict[str, Any],
                     on_text: Callable[[str], Awaitable[None]] | None) -> ModelReply:
        """Answer in-process (``modelcall.complete``): the text grows in the same pieces as
        the streamed answer, ``on_text`` awaited with the whole text so far after each.

        Args:
            model: the full model name (``offline/tier-2``).
            params: ``delay_s``, ``chunk_delay_s``, ``error`` (module docstring).

        Raises:
            ModelUnavailableError: ``params`` has ``error`` (a simulated provider failure).
        """
        await asyncio.sleep(float(params.get("delay_s") or 0))
        if error := params.get("error"):
            msg = f"model {model!r} failed: the provider failed or is unavailable ({error})"
            raise ModelUnavailableError(msg, model=model)
        reply = script_reply(model, messages, has_tools=bool(tools))
        chunk_delay = float(params.get("chunk_delay_s") or 0)
        text = ""
        for piece in split(reply.text, TEXT_CHUNKS):
            text += piece
            if on_text is not None:
                await on_text(text)
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        counts = usage_counts(messages, reply)
        calls = tuple(ToolCall(call_id=c.call_id, name=c.name, arguments=c.arguments)
                      for c in reply.tool_calls)
        return ModelReply(
            text=reply.text, tool_calls=calls, finish_reason="tool_calls" if calls else "stop",
            usage=Usage(model=model, prompt_tokens=counts["prompt_tokens"],
                        completion_tokens=counts["completion_tokens"], calls=1))

    def litellm_handler(self) -> Any:
        """The same model as a ``litellm.CustomLLM`` (imports litellm)."""
        from offline_model._litellm import OfflineCustomLLM

        return OfflineCustomLLM()
