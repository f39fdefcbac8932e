"""The OpenAI stand-in, exercised through the project's genuine model path (``modelcall.complete``
→ litellm → the openai SDK → HTTP) and, for what litellm never sends, through raw aiohttp."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from openai_standin import (
    DEFAULT_KEY,
    KNOWN_PARAMETERS,
    Answer,
    ApiError,
    Call,
    ChatRequest,
    OpenAIStandin,
    chat_brain,
    sequence,
    validate,
)
from pydantic import BaseModel

from actors.tools import TOOL_SCHEMAS
from core.config import ModelSpec
from core.errors import ModelError, ModelTimeoutError, ModelUnavailableError
from modelcall import close_sessions, complete, parse_json_object

pytestmark = pytest.mark.usefixtures("close_model_sessions")

KEY_ENV = "SB_STANDIN_KEY"
WRONG_KEY = "sk-wrong-secret-0123456789"
MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "How do I reverse a string in Python?"}]
PROSE = ("You can reverse a string with **slicing**: `text[::-1]` walks the string backwards.\n\n"
         "- It works for any sequence.\n- It returns a new string; strings are immutable.")


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIStandin]:
    monkeypatch.setenv(KEY_ENV, DEFAULT_KEY)
    async with OpenAIStandin() as standin:
        yield standin


def _spec(server: OpenAIStandin, *, model: str = MODEL, key_env: str = KEY_ENV,
          **params: Any) -> ModelSpec:
    return ModelSpec(name=f"openai/{model}", api_base=server.base_url, api_key_env=key_env,
                     params={"max_retries": 0, **params})


async def _post(server: OpenAIStandin, body: Any, *, key: str = DEFAULT_KEY,
                path: str = "/v1/chat/completions") -> tuple[int, Any]:
    url = server.base_url.removesuffix("/v1") + path
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session, \
            session.post(url, json=body, headers=headers) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def _sse_events(server: OpenAIStandin, body: dict[str, Any]) -> list[str]:
    """The raw lines of a streamed answer (``data: ...`` and ``: keep-alive``), blank ones out."""
    url = server.base_url + "/chat/completions"
    async with aiohttp.ClientSession() as session, \
            session.post(url, json=body,
                         headers={"Authorization": f"Bearer {DEFAULT_KEY}"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()
    return [line for line in text.split("\n") if line]


# --------------------------------------------------------------------------- answers


async def test_streamed_text_arrives_whole(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer(PROSE)
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    async with asyncio.timeout(20):
        reply = await complete(_spec(server), HELLO, on_text=on_text, timeout_s=15)
    assert reply.text == PROSE
    assert len(seen) >= len(PROSE) // 8 and seen[-1] == PROSE
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert reply.finish_reason == "stop" and reply.tool_calls == ()
    assert reply.usage.completion_tokens == -(-len(PROSE) // 4)  # the server's count, not litellm's
    assert reply.usage.prompt_tokens > 0 and reply.usage.calls == 1
    [record] = server.requests
    assert record.status == 200 and record.auth_ok and record.stream
    assert record.body["stream_options"] == {"include_usage": True}
    assert record.headers["Authorization"] == "<redacted>"


async def test_parallel_tool_calls_come_back_whole(server: OpenAIStandin) -> None:
    write = {"path": "reverse.py", "content": "def reverse(text):\n    return text[::-1]\n"}
    server.brain = lambda request: Answer.tool_calls(
        Call("write_file", write, id="call_write"),
        Call("run_command", {"command": "python -m pytest -q"}, id="call_run"),
        text="I'll write the function and run the tests.")
    async with asyncio.timeout(20):
        reply = await complete(_spec(server), HELLO, tools=TOOL_SCHEMAS, timeout_s=15)
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("call_write", "write_file", write),
        ("call_run", "run_command", {"command": "python -m pytest -q"})]
    assert reply.text == "I'll write the function and run the tests."
    assert reply.finish_reason == "tool_calls"
    assert [t["function"]["name"] for t in server.requests[0].body["tools"]] == [
        t["function"]["name"] for t in TOOL_SCHEMAS]


async def test_stream_on_the_wire_is_shaped_like_openai(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer.tool_calls(
        ("read_file", {"path": "README.md"}), ("list_files", {"path": "src"}),
        reasoning_content="The user wants two things; read both.")
    body = {"model": MODEL, "messages": HELLO, "stream": True, "tools": TOOL_SCHEMAS,
            "stream_options": {"include_usage": True}}
    async with asyncio.timeout(20):
        lines = await _sse_events(server, body)
    assert ": keep-alive" in lines and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines
              if line.startswith("data: {")]
    assert all(c["id"].startswith("chatcmpl-") and c["system_fingerprint"].startswith("fp_")
               and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == (
        "The user wants two things; read both.")
    fragments = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    order = [f["index"] for f in fragments]
    assert order[:4] == [0, 1, 0, 1]  # interleaved
    for index, name in ((0, "read_file"), (1, "list_files")):
        mine = [f for f in fragments if f["index"] == index]
        assert mine[0]["id"].startswith("call_") and mine[0]["type"] == "function"
        assert mine[0]["function"]["name"] == name and mine[0]["function"]["arguments"]
        assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"}
                   for f in mine[1:])
    arguments = ["".join(f["function"]["arguments"] for f in fragments if f["index"] == i)
                 for i in (0, 1)]
    assert [json.loads(a) for a in arguments] == [{"path": "README.md"}, {"path": "src"}]


async def test_non_streaming_completion(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer.tool_calls(("list_files", {"path": "."}))
    body = {"model": MODEL, "messages": HELLO, "tools": TOOL_SCHEMAS}
    async with asyncio.timeout(20):
        status, data = await _post(server, body)
    assert status == 200 and data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-") and data["model"] == MODEL
    [choice] = data["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "list_files",
                                                              "arguments": '{"path": "."}'}
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_max_tokens_cuts_the_text_with_finish_length(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer(PROSE)
    async with asyncio.timeout(20):
        reply = await complete(_spec(server).model_copy(update={"max_tokens": 5}), HELLO,
                               timeout_s=15)
    assert reply.finish_reason == "length" and reply.text == PROSE[:20]


async def test_default_brain_chats_like_a_model(server: OpenAIStandin) -> None:
    async with asyncio.timeout(20):
        reply = await complete(_spec(server), HELLO, tools=TOOL_SCHEMAS, timeout_s=15)
    assert reply.tool_calls == () and "reverse a string" in reply.text
    assert "Confidence:" not in reply.text and "Status:" not in reply.text


async def test_json_in_fence_is_parsed_by_the_project(server: OpenAIStandin) -> None:
    verdict = {"what_worked": "Slicing.", "what_failed": "Nothing.", "confidence": 80}
    server.brain = lambda request: Answer.json_in_fence(
        verdict, prose_before="Sure! Here's my reflection:", prose_after="Hope that helps.")
    async with asyncio.timeout(20):
        reply = await complete(_spec(server), HELLO, timeout_s=15)
    assert reply.text.startswith("Sure! Here's my reflection:\n\n```json\n")
    assert parse_json_object(reply.text) == verdict


class Verdict(BaseModel):
    what_worked: str
    what_failed: str
    confidence: int


async def test_litellm_json_schema_response_format_passes(server: OpenAIStandin) -> None:
    async with asyncio.timeout(20):
        reply = await complete(_spec(server, response_format=Verdict), HELLO, timeout_s=15)
    sent = server.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Verdict"
    assert server.requests[-1].status == 200
    assert Verdict.model_validate_json(reply.text).confidence == 1  # bare JSON, as the API does


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("case", "expected"), [
    ("bad_key", "Incorrect API key provided"),
    ("unknown_model", "The model `gpt-9-turbo` does not exist"),
    ("rate_limited", "Rate limit reached for gpt-4o-mini"),
    ("server_error", "The server had an error while processing your request"),
])
async def test_http_faults_become_readable_model_errors(
    server: OpenAIStandin, monkeypatch: pytest.MonkeyPatch, case: str, expected: str,
) -> None:
    spec = _spec(server)
    if case == "bad_key":
        monkeypatch.setenv("SB_WRONG_KEY", WRONG_KEY)
        spec = _spec(server, key_env="SB_WRONG_KEY")
    elif case == "unknown_model":
        spec = _spec(server, model="gpt-9-turbo")
    else:
        server.brain = lambda request: getattr(Answer, case)()
    with pytest.raises(ModelError) as caught:
        async with asyncio.timeout(20):
            await complete(spec, HELLO, timeout_s=15)
    message = str(caught.value)
    assert expected in message and "openai/" in message
    assert WRONG_KEY not in message and DEFAULT_KEY not in message
    assert server.requests[-1].status == {"bad_key": 401, "unknown_model": 404,
                                          "rate_limited": 429, "server_error": 500}[case]


async def test_rate_limit_carries_retry_after(server: OpenAIStandin) -> None:
    server.brain = sequence(Answer.rate_limited(retry_after_s=7))
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        url = server.base_url + "/chat/completions"
        async with session.post(url, json={"model": MODEL, "messages": HELLO},
                                headers={"Authorization": f"Bearer {DEFAULT_KEY}"}) as response:
            assert response.status == 429 and response.headers["retry-after"] == "7"
            error = (await response.json())["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "tokens"
    status, data = await _post(server, {"model": MODEL, "messages": HELLO})
    assert status == 200 and data["choices"][0]["message"]["content"]  # the sequence ran out


async def test_mid_stream_error_is_a_model_error(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer.broken_stream(PROSE, after_chunks=2)
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    with pytest.raises(ModelUnavailableError, match="broke off mid-stream") as caught:
        async with asyncio.timeout(20):
            await complete(_spec(server), HELLO, on_text=on_text, timeout_s=15)
    assert "The server had an error" in str(caught.value)
    assert "cannot reach" not in str(caught.value)
    assert len(seen) == 2 and PROSE.startswith(seen[-1])
    assert server.requests[-1].status == 200 and server.requests[-1].error is not None


async def test_delay_beyond_timeout_is_a_model_timeout(server: OpenAIStandin) -> None:
    server.brain = lambda request: Answer("Too late.").after(30)
    with pytest.raises(ModelTimeoutError):
        async with asyncio.timeout(20):
            await complete(_spec(server), HELLO, timeout_s=0.5)
    [record] = await server.wait_for(lambda rs: [r for r in rs if r.client_left], timeout=5)
    assert record.status is None


# --------------------------------------------------------------------------- validation


async def test_unanswered_tool_call_is_rejected(server: OpenAIStandin) -> None:
    messages = [
        {"role": "user", "content": "look around"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "list_files", "arguments": "{}"}},
            {"id": "call_b", "type": "function",
             "function": {"name": "read_file", "arguments": '{"path": "x"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "x"},
        {"role": "user", "content": "and?"},
    ]
    async with asyncio.timeout(20):
        status, data = await _post(server, {"model": MODEL, "messages": messages})
    assert status == 400
    assert data == {"error": {
        "message": "An assistant message with 'tool_calls' must be followed by tool messages "
                   "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                   "response messages: call_b",
        "type": "invalid_request_error", "param": "messages.[1].role", "code": None}}
    assert server.requests[-1].answer is None  # the brain never saw it


async def test_unknown_parameter_is_rejected(server: OpenAIStandin) -> None:
    async with asyncio.timeout(20):
        status, data = await _post(server, {"model": MODEL, "messages": HELLO,
                                            "confidence_threshold": 0.8})
    assert status == 400
    assert data["error"] == {"message": "Unrecognized request argument supplied: "
                                        "confidence_threshold",
                             "type": "invalid_request_error", "param": None, "code": None}


async def test_auth_routes_and_models(server: OpenAIStandin) -> None:
    async with asyncio.timeout(20):
        status, data = await _post(server, {"model": MODEL, "messages": HELLO}, key=WRONG_KEY)
        assert status == 401 and data["error"]["code"] == "invalid_api_key"
        assert WRONG_KEY not in data["error"]["message"]
        assert not server.requests[-1].auth_ok
        status, data = await _post(server, {"model": MODEL, "messages": HELLO},
                                   path="/v1/completions")
        assert status == 404 and data["error"]["message"] == "Invalid URL (POST /v1/completions)"
        async with aiohttp.ClientSession() as session, session.get(
                server.base_url + "/models",
                headers={"Authorization": f"Bearer {DEFAULT_KEY}"}) as response:
            listed = await response.json()
    assert [m["id"] for m in listed["data"]] == ["gpt-4o-mini", "gpt-4o"]


def _tool_call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"messages": []}, "Invalid 'messages': empty array."),
    ({"messages": [{"role": "robot", "content": "hi"}]},
     "Invalid value: 'robot'. Supported values are: 'system', 'developer', 'user', "
     "'assistant', and 'tool'."),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "tool", "tool_call_id": "call_x", "content": "r"}]},
     "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
     "with 'tool_calls'."),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [_tool_call("a")]},
                   {"role": "tool", "tool_call_id": "b", "content": "r"}]},
     "Invalid parameter: 'tool_call_id' of 'b' not found in 'tool_calls' of previous message."),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "", "tool_calls": [_tool_call("a")]}]},
     "The following tool_call_ids did not have response messages: a"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}]},
     "Invalid type for 'messages[0].tool_calls[0].function.arguments': expected a string, but "
     "got an object instead."),
    ({"stream_options": {"include_usage": True}},
     "The 'stream_options' parameter is only allowed when 'stream' is enabled."),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     "Missing required parameter: 'tools[0].function.name'."),
    ({"tools": [{"type": "retrieval"}]}, "Invalid value: 'retrieval'."),
    ({"response_format": {"type": "xml"}}, "Invalid value: 'xml'."),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "Missing required parameter: 'response_format.json_schema.schema'."),
    ({"response_format": {"type": "json_object"}}, "must contain the word 'json'"),
    ({"temperature": 3}, "Invalid 'temperature': decimal above maximum value."),
    ({"max_tokens": "many"}, "Invalid type for 'max_tokens': expected an integer"),
    ({"tool_choice": "auto"}, "'tool_choice' is only allowed when 'tools' are specified."),
])
def test_validation_matches_the_real_api(change: dict[str, Any], message: str) -> None:
    body = {"model": MODEL, "messages": HELLO, **change}
    with pytest.raises(ApiError) as caught:
        validate(body, [MODEL])
    assert caught.value.status == 400 and message in caught.value.message


def test_valid_bodies_pass() -> None:
    answered = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [_tool_call("a"), _tool_call("b")]},
                {"role": "tool", "tool_call_id": "b", "content": "2"},
                {"role": "tool", "tool_call_id": "a", "content": "1"},
                {"role": "assistant", "content": "Done."}]
    validate({"model": MODEL, "messages": answered, "stream": True,
              "stream_options": {"include_usage": True}, "tools": TOOL_SCHEMAS,
              "tool_choice": "auto", "temperature": 0.2, "max_tokens": 100,
              "response_format": {"type": "text"}}, [MODEL])
    assert {"model", "messages", "reasoning_effort", "web_search_options"} <= KNOWN_PARAMETERS
    request = ChatRequest.from_body({"model": MODEL, "messages": answered})
    assert request.last_user_text == "hi" and request.system_text == "Be brief."
    assert [m["tool_call_id"] for m in request.tool_results] == ["b", "a"]
    assert "Here's what the tools returned" in chat_brain(request).text


# --------------------------------------------------------------------------- thread mode


def test_thread_mode_serves_a_synchronous_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, DEFAULT_KEY)
    async def ask(spec: Any) -> Any:
        try:
            return await asyncio.wait_for(complete(spec, HELLO, timeout_s=15), 20)
        finally:
            await close_sessions()

    with OpenAIStandin().in_thread() as server:
        spec = _spec(server)
        first = asyncio.run(ask(spec))
        server.brain = lambda request: Answer("Swapped at runtime.")
        second = asyncio.run(ask(spec))
        records = server.wait_for_requests(2, timeout=5)
    assert "reverse a string" in first.text and second.text == "Swapped at runtime."
    assert [r.status for r in records] == [200, 200]
    with pytest.raises(OSError):  # stopped on exit
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
