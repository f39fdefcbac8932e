"""Answers on the wire: ``chat.completion`` objects and ``chat.completion.chunk`` SSE streams.

Shapes follow the OpenAI API reference ("The chat completion object", "The chat completion chunk
object", and the streaming guide): ``data: {json}\\n\\n`` events ending in ``data: [DONE]``; a
first chunk with ``role``; tool calls streamed as fragments keyed by ``index``; with
``stream_options.include_usage`` every chunk carries ``"usage": null`` and a last chunk has
``choices: []`` and the usage.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._answers import Answer, Call
from ._request import ChatRequest, content_text

CHARS_PER_TOKEN = 4
"""Rough token size in characters (OpenAI's rule of thumb for English text)."""
_ALPHANUMERIC = string.ascii_letters + string.digits


class Ids:
    """Realistic identifiers from a seeded generator: ``chatcmpl-…``, ``call_…``, ``fp_…``."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.fingerprint = "fp_" + "".join(rng.choices("0123456789abcdef", k=10))

    def _token(self, length: int) -> str:
        return "".join(self._rng.choices(_ALPHANUMERIC, k=length))

    def completion(self) -> str:
        return "chatcmpl-" + self._token(29)

    def call(self) -> str:
        return "call_" + self._token(24)

    def request(self) -> str:
        return "req_" + "".join(self._rng.choices("0123456789abcdef", k=32))


@dataclass(frozen=True)
class Turn:
    """An answer made concrete for one request: call ids given, text cut, finish reason set."""

    text: str
    calls: tuple[Call, ...]
    reasoning: str | None
    finish_reason: str
    id: str
    created: int


def resolve(answer: Answer, request: ChatRequest, ids: Ids) -> Turn:
    """Give tool calls ids and derive the finish reason (``tool_calls`` / ``length`` / ``stop``)."""
    calls = tuple(call if call.id else Call(call.name, call.arguments, ids.call())
                  for call in answer.calls)
    text, finish = answer.text, answer.finish_reason
    if finish is None:
        limit = request.max_tokens
        if calls:
            finish = "tool_calls"
        elif limit is not None and tokens(text) > limit:
            text, finish = text[: limit * CHARS_PER_TOKEN], "length"
        else:
            finish = "stop"
    return Turn(text, calls, answer.reasoning_content, finish, ids.completion(),
                int(time.time()))


def tokens(text: str) -> int:
    """Rough token count of ``text`` (0 for empty text)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def usage(request: ChatRequest, turn: Turn) -> dict[str, Any]:
    """Rough ``usage``: prompt from messages and tools, completion from text, calls, reasoning."""
    prompt = sum(4 + tokens(content_text(m)) for m in request.messages) + 3
    if request.tools:
        prompt += tokens(json.dumps(request.tools))
    reasoning = tokens(turn.reasoning or "")
    completion = tokens(turn.text) + reasoning + sum(
        tokens(call.name) + tokens(call.arguments_json) + 3 for call in turn.calls)
    completion *= request.n
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _wire_calls(calls: tuple[Call, ...]) -> list[dict[str, Any]]:
    return [{"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments_json}}
            for call in calls]


def completion(request: ChatRequest, turn: Turn, fingerprint: str) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object, ``n`` identical choices."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None,
                               "refusal": None, "annotations": []}
    if turn.calls:
        message["tool_calls"] = _wire_calls(turn.calls)
    if turn.reasoning:
        message["reasoning_content"] = turn.reasoning
    choices = [{"index": index, "message": message, "logprobs": None,
                "finish_reason": turn.finish_reason} for index in range(request.n)]
    return {"id": turn.id, "object": "chat.completion", "created": turn.created,
            "model": request.model, "choices": choices, "usage": usage(request, turn),
            "service_tier": "default", "system_fingerprint": fingerprint}


@dataclass(frozen=True)
class StreamStyle:
    """How a stream is cut: piece sizes in characters (inclusive range), a ``: keep-alive``
    comment every ``keepalive_every`` chunks (0: never)."""

    chunk_chars: tuple[int, int] = (4, 8)
    keepalive_every: int = 8


def pieces(text: str, rng: random.Random, sizes: tuple[int, int]) -> list[str]:
    """``text`` cut into pieces of ``sizes[0]``..``sizes[1]`` characters (none for "")."""
    out: list[str] = []
    while text:
        size = rng.randint(*sizes)
        out.append(text[:size])
        text = text[size:]
    return out


def _call_fragments(calls: tuple[Call, ...], rng: random.Random,
                    sizes: tuple[int, int]) -> list[dict[str, Any]]:
    """Tool-call deltas: each call's first fragment carries id, type, name and a first piece of
    the arguments, later ones only ``index`` and more arguments; calls interleaved in turn."""
    queues: list[list[dict[str, Any]]] = []
    for index, call in enumerate(calls):
        parts = pieces(call.arguments_json, rng, sizes) or [""]
        first = {"index": index, "id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": parts[0]}}
        queues.append([first] + [{"index": index, "function": {"arguments": part}}
                                 for part in parts[1:]])
    out: list[dict[str, Any]] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def deltas(turn: Turn, rng: random.Random, sizes: tuple[int, int]) -> list[dict[str, Any]]:
    """The ``delta`` objects of one choice, before the finish chunk."""
    out: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
    out += [{"reasoning_content": part} for part in pieces(turn.reasoning or "", rng, sizes)]
    out += [{"content": part} for part in pieces(turn.text, rng, sizes)]
    out += [{"tool_calls": [fragment]} for fragment in _call_fragments(turn.calls, rng, sizes)]
    return out


def sse(payload: Mapping[str, Any] | str) -> bytes:
    """One SSE event: ``data: <json>`` (or the literal, e.g. ``[DONE]``) and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class Stream:
    """The SSE events answering a streaming request, in order.

    Args:
        request: the request (model, ``n``, ``include_usage``).
        turn: the resolved answer.
        fingerprint: ``system_fingerprint`` of every chunk.
        rng: piece sizes.
        style: piece sizes and keep-alive frequency.
        error: an ``error`` object sent after ``error_after`` content chunks, ending the
            stream (no finish chunk, no ``[DONE]``), or None.
        error_after: content chunks before ``error``.
    """

    def __init__(self, request: ChatRequest, turn: Turn, fingerprint: str, rng: random.Random,
                 style: StreamStyle, error: Mapping[str, Any] | None = None,
                 error_after: int = 3) -> None:
        self.request, self.turn, self.style = request, turn, style
        self.fingerprint, self.rng = fingerprint, rng
        self.error, self.error_after = error, error_after

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = {"id": self.turn.id, "object": "chat.completion.chunk",
                 "created": self.turn.created, "model": self.request.model,
                 "service_tier": "default", "system_fingerprint": self.fingerprint,
                 "choices": choices}
        if self.request.include_usage:
            chunk["usage"] = None
        return chunk

    def _choice(self, index: int, delta: dict[str, Any],
                finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def events(self) -> Iterator[bytes]:
        """``data:`` events and ``: keep-alive`` comments, as bytes ready to write."""
        sent = 0
        for index in range(self.request.n):
            for delta in deltas(self.turn, self.rng, self.style.chunk_chars):
                if self.error is not None and sent > self.error_after:
                    yield sse({"error": dict(self.error)})
                    return
                yield sse(self._chunk([self._choice(index, delta)]))
                sent += 1
                every = self.style.keepalive_every
                if every and (sent - 1) % every == 0:
                    yield b": keep-alive\n\n"
        if self.error is not None:
            yield sse({"error": dict(self.error)})
            return
        for index in range(self.request.n):
            yield sse(self._chunk([self._choice(index, {}, self.turn.finish_reason)]))
        if self.request.include_usage:
            yield sse({**self._chunk([]), "usage": usage(self.request, self.turn)})
        yield sse("[DONE]")
