"""A minimal OpenAI-compatible streaming server for the ``modelcall`` scenario, run as its own
process (``python -m bench._sse_server PORT``) so its CPU is not the client's.

``POST /v1/chat/completions`` streams the Chat Completions format: the number of content
chunks is the first integer of the last user message (``"20"``); with ``tools`` in the
request, two parallel tool calls in as many argument fragments instead. A usage-only chunk
and ``data: [DONE]`` end every stream (https://platform.openai.com/docs/api-reference/chat).
"""

from __future__ import annotations

import json
import re
import sys

from aiohttp import web

_NUMBER = re.compile(r"\d+")


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
            "model": "bench-model", "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "1")
    match = _NUMBER.search(str(last))
    chunks = int(match.group(0)) if match else 1
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    out = [_chunk({"role": "assistant", "content": ""})]
    if body.get("tools"):
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
    else:
        # Distinct pieces: litellm aborts a stream of 100 identical chunks as a looping model.
        out += [_chunk({"content": f"w{i} "}) for i in range(chunks)]
        out.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    out.append(b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                                       "created": 1, "model": "bench-model", "choices": [],
                                       "usage": usage}).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    await response.write(b"".join(out))
    return response


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
