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

A simulated model with seconds of latency holds thousands of streams open at once, on the
same two cores as the system it serves (a real provider runs elsewhere), so it is written to
cost as little as it can: a bare ``asyncio.Protocol`` speaking HTTP/1.1 (keep-alive, chunked
bodies), every chunk written to the socket from a timer callback (an aiohttp server and a
task per stream cost it 2.2 ms of CPU per 50-chunk answer at 2,000 streams). The listen
backlog is 4,096 so a burst of connections is not dropped, uvloop runs the loop when it is
installed, and ``GET /stats`` answers the requests open now, the most open at once and the
requests served (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import typing
from dataclasses import dataclass

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


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 requests in turn (keep-alive), each answered from
    timer callbacks that write to the transport (no task, no framework per chunk)."""

    def __init__(self, options: Options, stats: Stats) -> None:
        self._options, self._stats = options, stats
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = b""
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._close_after = False
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast(asyncio.WriteTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy:
            self._end()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next_request()

    def _next_request(self) -> None:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0 or self._transport is None:
            return
        head = self._buffer[:head_end].decode("latin-1").split("\r\n")
        method, path, _version = (head[0].split(" ") + ["", "", ""])[:3]
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in head[1:])}
        length = int(headers.get("content-length", "0") or 0)
        if len(self._buffer) < head_end + 4 + length:
            return  # the body is still coming
        body = self._buffer[head_end + 4:head_end + 4 + length]
        self._buffer = self._buffer[head_end + 4 + length:]
        self._close_after = headers.get("connection", "").lower() == "close"
        self._busy = True
        if method == "GET" and path == "/stats":
            stats = self._stats
            self._send_whole(200, json.dumps({"open": stats.open, "peak": stats.peak,
                                              "served": stats.served}).encode())
        elif method == "POST" and path == "/v1/chat/completions":
            self._counted = True
            self._stats.open += 1
            self._stats.peak = max(self._stats.peak, self._stats.open)
            self._chat(json.loads(body))
        else:
            self._send_whole(404, b'{"error": {"message": "not found"}}')

    def _chat(self, body: dict[str, object]) -> None:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        chunks = _chunk_count(body, self._options.chunks)
        delay = float(body.get("sim_delay_s", self._options.delay_s))  # type: ignore[arg-type]
        if not body.get("stream"):
            answer = json.dumps(_completion(body, chunks)).encode()
            self._timer = loop.call_at(arrived + delay, self._send_whole, 200, answer)
            return
        first = _chunk({"role": "assistant", "content": ""})
        assert self._transport is not None
        self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
        if body.get("tools"):
            self._write_chunk(first + b"".join(_tool_chunks(chunks)) + _tail(chunks))
            self._finish_stream()
        elif delay <= 0:
            pieces = [_chunk({"content": text}) for text in _pieces(body, chunks)]
            self._write_chunk(first + b"".join(pieces) + _chunk({}, "stop") + _tail(chunks))
            self._finish_stream()
        else:
            self._write_chunk(first)
            self._send_piece(_pieces(body, chunks), 0, arrived, delay / chunks)

    def _send_piece(self, pieces: list[str], i: int, arrived: float, step: float) -> None:
        """Schedule content chunk ``i`` at ``arrived + (i + 1) * step`` (absolute deadlines,
        so timer slack does not add up)."""
        def send() -> None:
            piece = _chunk({"content": pieces[i]})
            if i == len(pieces) - 1:
                self._write_chunk(piece + _chunk({}, "stop") + _tail(len(pieces)))
                self._finish_stream()
            else:
                self._write_chunk(piece)
                self._send_piece(pieces, i + 1, arrived, step)

        self._timer = asyncio.get_running_loop().call_at(arrived + (i + 1) * step, send)

    def _write_chunk(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _finish_stream(self) -> None:
        if self._transport is not None:
            self._transport.write(b"0\r\n\r\n")
        self._end()

    def _send_whole(self, status: int, data: bytes) -> None:
        if self._transport is not None:
            reason = "OK" if status == 200 else "Not Found"
            self._transport.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        self._end()

    def _end(self) -> None:
        self._timer = None
        self._busy = False
        if self._counted:
            self._counted = False
            self._stats.open -= 1
            self._stats.served += 1
        if self._close_after and self._transport is not None:
            self._transport.close()
        elif self._buffer:
            self._next_request()


@dataclass(frozen=True)
class Options:
    """Defaults for requests that do not say: seconds per answer, content chunks."""

    delay_s: float = 0.0
    chunks: int = 1


async def serve(port: int, options: Options) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(lambda: _Connection(options, stats), "127.0.0.1", port,
                                      backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._sse_server")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay-s", type=float, default=0.0,
                        help="seconds per answer, spread over its chunks (default 0)")
    parser.add_argument("--chunks", type=int, default=1,
                        help="content chunks when the request does not say (default 1)")
    args = parser.parse_args()
    options = Options(args.delay_s, max(1, args.chunks))
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, options))
    else:
        uvloop.run(serve(args.port, options))


if __name__ == "__main__":
    main()
