"""What a model call produced, and how it is built from streamed chunks, on every path."""

from __future__ import annotations

from typing import Any

import msgspec

from protocol import ToolCall, Usage


class ModelReply(msgspec.Struct, frozen=True, kw_only=True):
    """What one model call produced.

    ``text`` is the whole answer; ``tool_calls`` are complete (arguments are the JSON text the
    model streamed); ``usage`` counts this one call (``calls=1``); ``finish_reason`` is the
    provider's (``stop``, ``tool_calls``, ``length``, ...); ``reasoning`` is the reasoning
    text of models that stream it (``delta.reasoning_content``).
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str = "stop"
    reasoning: str = ""


class Fold:
    """Builds an answer from Chat Completions chunks
    (https://platform.openai.com/docs/api-reference/chat/streaming): text, tool calls by
    index (their arguments concatenated from fragments), reasoning, usage, finish reason.

    ``add`` takes a decoded chunk (the direct path); ``add_litellm`` one of litellm's chunk
    objects, read through the same rules."""

    __slots__ = ("calls", "finish_reason", "reasoning", "text", "usage")

    def __init__(self) -> None:
        self.text = ""
        self.reasoning = ""
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: dict[str, Any] | None = None
        self.finish_reason = ""

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold one chunk in; True when the text grew."""
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices:
            return False
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        for position, call in enumerate(delta.get("tool_calls") or ()):
            self._add_call(position, call)
        if delta.get("reasoning_content"):
            self.reasoning += delta["reasoning_content"]
        content = delta.get("content")
        if content:
            self.text += content
            return True
        return False

    def add_completion(self, completion: dict[str, Any]) -> None:
        """Fold in a whole answer (a ``stream: false`` call's chat completion object,
        https://platform.openai.com/docs/api-reference/chat/object): its first choice's
        ``message`` read as one chunk's ``delta`` (a tool call without an ``index`` takes
        its position), its usage and finish reason."""
        choices = completion.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        self.add({"usage": completion.get("usage"),
                  "choices": [{"finish_reason": choice.get("finish_reason"),
                               "delta": message if isinstance(message, dict) else {}}]})

    def add_litellm(self, chunk: Any) -> bool:
        """Fold one of litellm's streamed chunk objects in (its attributes as the keys of
        ``add``; usage counts it leaves out are 0); True when the text grew."""
        plain: dict[str, Any] = {}
        usage = getattr(chunk, "usage", None)
        if usage:
            plain["usage"] = {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                              "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}
        if chunk.choices:
            choice = chunk.choices[0]
            delta = choice.delta
            plain["choices"] = [{"finish_reason": choice.finish_reason, "delta": {} if delta is None
                                 else {"content": getattr(delta, "content", None),
                                       "reasoning_content": getattr(delta, "reasoning_content",
                                                                    None),
                                       "tool_calls": [_plain_call(c) for c in
                                                      getattr(delta, "tool_calls", None) or ()]}}]
        return self.add(plain)

    def reply(self, usage: Usage) -> ModelReply:
        """The answer folded so far, with ``usage``; the finish reason, when the stream gave
        none, is ``tool_calls`` or ``stop``; a tool call without an id gets ``call_<index>``."""
        calls = tuple(
            ToolCall(call_id=entry["id"] or f"call_{index}", name=entry["name"],
                     arguments=entry["arguments"] or "{}")
            for index, entry in sorted(self.calls.items()))
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        return ModelReply(text=self.text, tool_calls=calls, usage=usage, finish_reason=finish,
                          reasoning=self.reasoning)

    def _add_call(self, position: int, call: dict[str, Any]) -> None:
        index = call.get("index")
        entry = self.calls.setdefault(position if index is None else index,
                                      {"id": "", "name": "", "arguments": ""})
        if call.get("id") and not entry["id"]:
            entry["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name") and not entry["name"]:
            entry["name"] = function["name"]
        entry["arguments"] += function.get("arguments") or ""


def _plain_call(call: Any) -> dict[str, Any]:
    function = call.function
    return {"index": call.index, "id": call.id,
            "function": None if function is None else {"name": function.name,
                                                       "arguments": function.arguments}}
