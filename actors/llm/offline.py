"""The offline model: a litellm custom provider that answers deterministically, with no key and
no network, so the whole system runs on a fresh machine. Every reply says it is offline.

Registered by ``topology.yaml`` ``providers: {offline: actors.llm.offline:OfflineLLM}``; model
names are ``offline/<anything>`` (``offline/tier-2``). Options come through ``ModelSpec.params``
and arrive in litellm's ``optional_params``:

- ``delay_s``: seconds to wait before answering (benchmarks, crash tests);
- ``chunk_delay_s``: seconds between streamed chunks;
- ``error``: fail every call with this message (to exercise error paths).

Switchboard calls it in-process through ``OfflineLLM.direct`` (``actors.llm.complete``: no
litellm wrapper, well under 0.5 ms a call); litellm's custom-provider path (``astreaming``)
is kept for ``transport: litellm`` and litellm's own callers.

Streaming carries tool calls in ``GenericStreamingChunk["tool_use"]`` (an OpenAI tool-call
delta with ``index``); litellm's ``CustomStreamWrapper`` turns each into a
``delta.tool_calls`` entry, so callers accumulate them exactly as for OpenAI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.types.utils import GenericStreamingChunk

from actors.errors import ModelUnavailableError
from actors.llm._offline_script import ScriptedReply, content_text, script_reply
from actors.llm._reply import ModelReply
from protocol import ToolCall, Usage

_log = logging.getLogger(__name__)

_TEXT_CHUNKS = 6
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


def _usage(messages: list[dict[str, Any]], reply: ScriptedReply) -> Any:
    """Rough token counts: about four characters per token, four tokens per message."""
    prompt = sum(len(content_text(m)) // 4 + 4 for m in messages)
    produced = len(reply.text) + sum(len(c.arguments) + len(c.name) for c in reply.tool_calls)
    completion = max(1, produced // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _split(text: str, parts: int) -> list[str]:
    """``text`` in about ``parts`` pieces cut at spaces; concatenating them gives ``text``."""
    if not text:
        return []
    size = max(1, len(text) // parts)
    pieces, start = [], 0
    while start < len(text):
        end = text.find(" ", start + size)
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def _chunks(messages: list[dict[str, Any]],
            reply: ScriptedReply) -> Iterator[GenericStreamingChunk]:
    for piece in _split(reply.text, _TEXT_CHUNKS):
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
                                usage=_usage(messages, reply), index=0)


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
    model_response.usage = litellm.Usage(**_usage(messages, reply))  # type: ignore[attr-defined]
    return model_response


class OfflineLLM(CustomLLM):
    """A deterministic offline model (see the module docstring for its options)."""

    async def direct(self, model: str, messages: list[dict[str, Any]], *,
                     tools: list[dict[str, Any]] | None, params: dict[str, Any],
                     on_text: Callable[[str], Awaitable[None]] | None) -> ModelReply:
        """Answer in-process (``actors.llm.complete``): the text grows in the same pieces as
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
        for piece in _split(reply.text, _TEXT_CHUNKS):
            text += piece
            if on_text is not None:
                await on_text(text)
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        counts = _usage(messages, reply)
        calls = tuple(ToolCall(call_id=c.call_id, name=c.name, arguments=c.arguments)
                      for c in reply.tool_calls)
        return ModelReply(
            text=reply.text, tool_calls=calls, finish_reason="tool_calls" if calls else "stop",
            usage=Usage(model=model, prompt_tokens=counts["prompt_tokens"],
                        completion_tokens=counts["completion_tokens"], calls=1))

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
