"""The offline model (``offline_model``) as a litellm custom provider, for
``transport: litellm`` and litellm's own callers; imported only when litellm is.

Streaming carries tool calls in ``GenericStreamingChunk["tool_use"]`` (an OpenAI tool-call
delta with ``index``); litellm's ``CustomStreamWrapper`` turns each into a
``delta.tool_calls`` entry, so callers accumulate them exactly as for OpenAI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.types.utils import GenericStreamingChunk

from offline_model._script import TEXT_CHUNKS, ScriptedReply, script_reply, split, usage_counts

_ARGUMENT_PIECES = 3


def _label(model: str, litellm_params: dict[str, Any] | None) -> str:
    provider = (litellm_params or {}).get("custom_llm_provider") or "offline"
    return model if model.startswith(f"{provider}/") else f"{provider}/{model}"


def _reply(model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any],
           litellm_params: dict[str, Any] | None) -> ScriptedReply:
    if error := optional_params.get("error"):
        raise CustomLLMError(status_code=500, message=str(error))
    return script_reply(_label(model, litellm_params), messages,
                        has_tools=bool(optional_params.get("tools")))


def _chunks(messages: list[dict[str, Any]],
            reply: ScriptedReply) -> Iterator[GenericStreamingChunk]:
    for piece in split(reply.text, TEXT_CHUNKS):
        yield GenericStreamingChunk(text=piece, tool_use=None, is_finished=False,
                                    finish_reason="", usage=None, index=0)
    for index, call in enumerate(reply.tool_calls):
        size = max(1, -(-len(call.arguments) // _ARGUMENT_PIECES))
        for offset in range(0, len(call.arguments), size):
            first = offset == 0
            tool_use: Any = {
                "id": call.call_id if first else None,
                "type": "function",
                "function": {"name": call.name if first else None,
                             "arguments": call.arguments[offset : offset + size]},
                "index": index,
            }
            yield GenericStreamingChunk(text="", tool_use=tool_use, is_finished=False,
                                        finish_reason="", usage=None, index=0)
    finish = "tool_calls" if reply.tool_calls else "stop"
    yield GenericStreamingChunk(text="", tool_use=None, is_finished=True, finish_reason=finish,
                                usage=usage_counts(messages, reply), index=0)


def _response(model: str, messages: list[dict[str, Any]], reply: ScriptedReply,
              model_response: litellm.ModelResponse) -> litellm.ModelResponse:
    tool_calls = [
        {"id": c.call_id, "type": "function",
         "function": {"name": c.name, "arguments": c.arguments}}
        for c in reply.tool_calls
    ] or None
    model_response.choices = [litellm.Choices(
        index=0, finish_reason="tool_calls" if tool_calls else "stop",
        message=litellm.Message(role="assistant", content=reply.text, tool_calls=tool_calls),
    )]
    model_response.model = model
    model_response.created = int(time.time())
    model_response.usage = litellm.Usage(**usage_counts(messages, reply))  # type: ignore[attr-defined]
    return model_response


class OfflineCustomLLM(CustomLLM):
    """The offline model through litellm's custom-provider wrapper (options as
    ``offline_model``, from litellm's ``optional_params``)."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        optional_params = kwargs.get("optional_params") or {}
        time.sleep(float(optional_params.get("delay_s") or 0))
        reply = _reply(model, messages, optional_params, kwargs.get("litellm_params"))
        return _response(model, messages, reply, kwargs["model_response"])

    def streaming(self, model: str, messages: list, *args: Any,
                  **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        optional_params = kwargs.get("optional_params") or {}
        time.sleep(float(optional_params.get("delay_s") or 0))
        reply = _reply(model, messages, optional_params, kwargs.get("litellm_params"))
        yield from _chunks(messages, reply)

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        reply = _reply(model, messages, optional_params, kwargs.get("litellm_params"))
        return _response(model, messages, reply, kwargs["model_response"])

    async def astreaming(  # type: ignore[override]  # litellm passes keywords only
        self, model: str, messages: list, *args: Any, **kwargs: Any,
    ) -> AsyncIterator[GenericStreamingChunk]:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        reply = _reply(model, messages, optional_params, kwargs.get("litellm_params"))
        chunk_delay = float(optional_params.get("chunk_delay_s") or 0)
        for chunk in _chunks(messages, reply):
            yield chunk
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
