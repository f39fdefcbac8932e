"""A minimal OpenAI-compatible streaming server for the bench, run as its own process
(``python -m bench._sse_server PORT [--delay-s S] [--chunks N]``) so its CPU is not the
client's.

``POST /v1/chat/completions`` streams the Chat Completions format. The number of content chunks
is the request's ``sim_chunks`` field, else the first integer of the last user message
(``"20"``: the ``modelcall`` scenario), else ``--chunks`` (default 1). The answer takes
``sim_delay_s`` seconds (request field; default ``--delay-s``, 0): the role chunk goes out at
once, content chunk ``i`` (0-based) at ``(i + 1) × delay / chunks`` after the request arrived
(absolute deadlines, so timer slack does not add up), then the finish chunk, a usage-only chunk
and ``data: [DONE]`` (https://platform.openai.com/docs/api-reference/chat). With ``tools`` in
the request, two parallel tool calls in as many argument fragments instead, all at once. A
router's request (its system message asks for the ``"respond"`` field) is answered with a
route (``ROUTE``: SIMPLE, researcher) cut in as many content chunks. A request without
``"stream": true`` waits the whole delay and gets the same answer as one chat completion
object (https://platform.openai.com/docs/api-reference/chat/object).

A simulated model with seconds of latency holds thousands of streams open at once: the
listen backlog is raised to 4,096 so a burst of connections is not dropped (aiohttp's default
is 128), uvloop runs the loop when it is installed, and ``/stats`` answers the streams open
now, the most open at once and the streams served (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from dataclasses import dataclass

from aiohttp import web

_NUMBER = re.compile(r"\d+")
ROUTE = json.dumps({"respond": True, "flow": "simple", "task_type": "social",
                    "role": "researcher", "complexity": "simple", "reason": "a greeting"})
"""The answer to a router's request (``actors.router._model.SCHEMA``)."""
BACKLOG = 4096


@dataclass
class Stats:
    """Streams open now, the most open at once, and streams finished."""

    open: int = 0
    peak: int = 0
    served: int = 0


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
            "model": "bench-model", "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _tool_chunks(chunks: int) -> list[bytes]:
    out = []
    for i in range(chunks):
        for index in (0, 1):
            call: dict[str, object] = {"index": index,
                                       "function": {"arguments": '"x' if i else '{"a": '}}
            if i == 0:
                call.update(id=f"call_{index}", type="function")
                call["function"] = {"name": "write_file", "arguments": '{"a": '}
            out.append(_chunk({"tool_calls": [call]}))
    out += [_chunk({"tool_calls": [{"index": i, "function": {"arguments": '"}'}}]})
            for i in (0, 1)]
    out.append(_chunk({}, "tool_calls"))
    return out


def _tail(chunks: int) -> bytes:
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    return (b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                    "created": 1, "model": "bench-model", "choices": [],
                                    "usage": usage}).encode()
            + b"\n\ndata: [DONE]\n\n")


def _pieces(body: dict[str, object], chunks: int) -> list[str]:
    """The content chunks' texts: the route cut in ``chunks`` for a router's request (the
    last piece holds the rest), else ``w0 ``, ``w1 ``, ... (distinct: litellm aborts a stream
    of identical chunks as looping)."""
    messages = body.get("messages")
    system = next((str(m.get("content")) for m in messages if isinstance(m, dict)
                   and m.get("role") == "system"), "") if isinstance(messages, list) else ""
    if '"respond"' not in system:
        return [f"w{i} " for i in range(chunks)]
    size = max(1, len(ROUTE) // chunks)
    pieces = [ROUTE[i * size:(i + 1) * size] for i in range(chunks - 1)]
    return [*pieces, ROUTE[(chunks - 1) * size:]]


def _chunk_count(body: dict[str, object], default: int) -> int:
    if "sim_chunks" in body:
        return max(1, int(body["sim_chunks"]))  # type: ignore[call-overload]
    messages = body.get("messages") or []
    last = next((m["content"] for m in reversed(messages)  # type: ignore[call-overload]
                 if m.get("role") == "user"), None)
    match = _NUMBER.search(str(last)) if last is not None else None
    return int(match.group(0)) if match else default


def _completion(body: dict[str, object], chunks: int) -> dict[str, object]:
    """The whole answer of a request without ``stream``: what the chunks would have held."""
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    if body.get("tools"):
        calls = [{"id": f"call_{index}", "type": "function",
                  "function": {"name": "write_file",
                               "arguments": '{"a": ' + '"x' * (chunks - 1) + '"}'}}
                 for index in (0, 1)]
        message: dict[str, object] = {"role": "assistant", "content": None,
                                      "tool_calls": calls}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": "".join(_pieces(body, chunks))}
        finish = "stop"
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
            "model": "bench-model", "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}


async def chat(request: web.Request) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    options = request.app[_OPTIONS]
    stats = request.app[_STATS]
    body = await request.json()
    chunks = _chunk_count(body, options.chunks)
    delay = float(body.get("sim_delay_s", options.delay_s))
    if not body.get("stream"):
        stats.open += 1
        stats.peak = max(stats.peak, stats.open)
        try:
            await asyncio.sleep(max(0.0, arrived + delay - loop.time()))
        finally:
            stats.open -= 1
            stats.served += 1
        return web.json_response(_completion(body, chunks))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    stats.open += 1
    stats.peak = max(stats.peak, stats.open)
    try:
        await response.prepare(request)
        first = _chunk({"role": "assistant", "content": ""})
        if body.get("tools"):
            await response.write(first + b"".join(_tool_chunks(chunks)) + _tail(chunks))
        elif delay <= 0:
            pieces = [_chunk({"content": text}) for text in _pieces(body, chunks)]
            await response.write(first + b"".join(pieces) + _chunk({}, "stop")
                                 + _tail(chunks))
        else:
            await response.write(first)
            step = delay / chunks
            for i, text in enumerate(_pieces(body, chunks)):
                await asyncio.sleep(max(0.0, arrived + (i + 1) * step - loop.time()))
                piece = _chunk({"content": text})
                if i == chunks - 1:
                    piece += _chunk({}, "stop") + _tail(chunks)
                await response.write(piece)
    finally:
        stats.open -= 1
        stats.served += 1
    return response


async def stats_view(request: web.Request) -> web.Response:
    stats = request.app[_STATS]
    return web.json_response({"open": stats.open, "peak": stats.peak, "served": stats.served})


@dataclass(frozen=True)
class Options:
    """Defaults for requests that do not say: seconds per answer, content chunks."""

    delay_s: float = 0.0
    chunks: int = 1


_OPTIONS = web.AppKey("options", Options)
_STATS = web.AppKey("stats", Stats)


def make_app(options: Options) -> web.Application:
    """The server's application (routes ``/v1/chat/completions`` and ``/stats``)."""
    app = web.Application()
    app[_OPTIONS] = options
    app[_STATS] = Stats()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats_view)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._sse_server")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay-s", type=float, default=0.0,
                        help="seconds per answer, spread over its chunks (default 0)")
    parser.add_argument("--chunks", type=int, default=1,
                        help="content chunks when the request does not say (default 1)")
    args = parser.parse_args()
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(make_app(Options(args.delay_s, max(1, args.chunks))), host="127.0.0.1",
                port=args.port, print=None, access_log=None, backlog=BACKLOG, loop=loop)


if __name__ == "__main__":
    main()
