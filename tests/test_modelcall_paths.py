"""The two model-call paths give the same result: every answer below goes
through the direct path (``modelcall._direct``, the default for OpenAI-compatible providers)
and through ``litellm.acompletion`` (``transport: litellm``) against the same local
OpenAI-compatible server, streamed (a caller listens with ``on_text``) and as one answer (no
one listens: ``stream: false``), and the replies — text, tool calls, reasoning, usage, cost,
finish reason — or the errors — class and cause — are compared."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai_standin import DEFAULT_KEY, Answer, Call, ChatRequest, OpenAIStandin

from actors.tools import TOOL_SCHEMAS
from core.config import ModelSpec
from core.errors import (
    ContextWindowError,
    ModelError,
    ModelRejectedError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from modelcall import complete

pytestmark = pytest.mark.usefixtures("close_model_sessions")

KEY_VAR = "SB_TEST_PATHS_KEY"
HELLO = [{"role": "user", "content": "hello"}]
PROSE = ("**Sure!** Here is how it works:\n\n- first, the gateway publishes the message;\n"
         "- then the router decides.\n\n```python\nprint('hi')\n```\nAnything else?")


def _answers() -> dict[str, Answer]:
    return {
        "content": Answer(PROSE),
        "long": Answer("word " * 400),
        "tool_calls": Answer.tool_calls(
            Call("write_file", {"path": "a.py", "content": "print(1)\n" * 20}, id="call_w1"),
            Call("list_files", {"path": "."}, id="call_l2"), text="Writing two things at once."),
        "reasoning": Answer("The answer is 42.", reasoning_content="Six times seven is 42."),
        "json": Answer.json_in_fence({"respond": True, "flow": "simple"},
                                     prose_before="Here you go:"),
    }


def _spec(server: OpenAIStandin, transport: str, **changes: Any) -> ModelSpec:
    return ModelSpec(name="openai/gpt-4o-mini", api_base=server.base_url, api_key_env=KEY_VAR,
                     transport=transport, **changes)


def _shape(reply: Any) -> tuple[Any, ...]:
    calls = [(c.call_id, c.name, json.loads(c.arguments)) for c in reply.tool_calls]
    usage = reply.usage
    return (reply.text, calls, reply.reasoning, reply.finish_reason, usage.model,
            usage.prompt_tokens, usage.completion_tokens, round(usage.cost_usd, 12), usage.calls)


async def _both(server: OpenAIStandin, answer: Answer, *, streamed: bool = True,
                **call: Any) -> list[Any]:
    server.brain = lambda request: answer
    results = []
    for transport in ("auto", "litellm"):
        texts: list[str] = []

        async def on_text(text: str, texts: list[str] = texts) -> None:
            texts.append(text)

        results.append((await complete(_spec(server, transport, **call.pop("spec", {})),
                                       HELLO, on_text=on_text if streamed else None, **call),
                        texts))
    return results


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(KEY_VAR, DEFAULT_KEY)
    async with OpenAIStandin() as running:
        yield running


@pytest.mark.parametrize("case", sorted(_answers()))
async def test_the_same_stream_gives_the_same_reply(server: OpenAIStandin, case: str) -> None:
    answer = _answers()[case]
    tools = TOOL_SCHEMAS if case == "tool_calls" else None
    (direct, direct_texts), (via_litellm, litellm_texts) = await _both(server, answer,
                                                                       tools=tools)
    assert _shape(direct) == _shape(via_litellm)
    assert direct.usage.cost_usd > 0  # gpt-4o-mini has a price in litellm's map
    # Both report the growing text; the direct path at every content chunk.
    assert direct_texts[-1] == via_litellm.text == litellm_texts[-1] or not direct.text
    agents = [r.headers.get("User-Agent", "") for r in server.requests[-2:]]
    assert "OpenAI" not in agents[0] and "OpenAI" in agents[1], agents  # two different paths
    assert all(r.body["stream"] is True for r in server.requests[-2:])


@pytest.mark.parametrize("case", sorted(_answers()))
async def test_one_answer_unstreamed_is_the_streamed_reply(server: OpenAIStandin,
                                                          case: str) -> None:
    """A call no one listens to asks for one answer (``stream: false``) on both paths, and
    gets the reply the streamed call gets."""
    answer = _answers()[case]
    tools = TOOL_SCHEMAS if case == "tool_calls" else None
    (streamed, _), _ = await _both(server, answer, tools=tools)
    (direct, direct_texts), (via_litellm, litellm_texts) = await _both(
        server, answer, streamed=False, tools=tools)
    assert [r.body.get("stream") for r in server.requests[-2:]] == [None, None]
    assert [r.status for r in server.requests[-2:]] == [200, 200]  # both validated
    assert _shape(direct) == _shape(via_litellm) == _shape(streamed)
    assert direct_texts == litellm_texts == []


async def test_a_token_limit_stops_both_the_same_way(server: OpenAIStandin) -> None:
    (direct, _), (via_litellm, _) = await _both(server, Answer("word " * 200), max_tokens=16)
    assert _shape(direct) == _shape(via_litellm)
    assert direct.finish_reason == "length"
    assert [r.body["max_tokens"] for r in server.requests[-2:]] == [16, 16]


def _faults() -> dict[str, tuple[Answer, type[ModelError], str]]:
    return {
        "401": (Answer.invalid_api_key(), ModelRejectedError, "authentication failed"),
        "404": (Answer.api_error(404, "The model `gpt-4o-mini` does not exist or you do not "
                                 "have access to it.", code="model_not_found"),
                ModelRejectedError, "does not know this model"),
        "400": (Answer.api_error(400, "Invalid value for 'temperature'."), ModelRejectedError,
                "rejected the request"),
        "context": (Answer.context_length_exceeded(), ContextWindowError, "context window"),
        "429": (Answer.rate_limited(retry_after_s=1), ModelUnavailableError, "rate limited"),
        "500": (Answer.server_error(), ModelUnavailableError, "failed or is unavailable"),
        "503": (Answer.overloaded(), ModelUnavailableError, "failed or is unavailable"),
        "mid-stream": (Answer.broken_stream(PROSE, after_chunks=2), ModelUnavailableError,
                       "broke off mid-stream"),
    }


async def _listen(text: str) -> None:
    del text


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "one-answer"])
@pytest.mark.parametrize("case", sorted(_faults()))
async def test_the_same_failure_gives_the_same_error(server: OpenAIStandin, case: str,
                                                     streamed: bool) -> None:
    answer, expected, cause = _faults()[case]
    if case == "mid-stream" and not streamed:  # an answer in one piece breaks as a 500
        cause = "failed or is unavailable"
    server.brain = lambda request: answer
    for transport in ("auto", "litellm"):
        with pytest.raises(expected) as caught:
            await complete(_spec(server, transport), HELLO, timeout_s=15,
                           on_text=_listen if streamed else None)
        message = str(caught.value)
        assert cause in message and "openai/gpt-4o-mini" in message, (transport, message)
        assert DEFAULT_KEY not in message
        assert caught.value.fallback_helps is (expected is not ModelRejectedError)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "one-answer"])
async def test_a_slow_answer_times_out_on_both(server: OpenAIStandin, streamed: bool) -> None:
    server.brain = lambda request: Answer("late").after(10)
    for transport in ("auto", "litellm"):
        with pytest.raises(ModelTimeoutError, match="0.4 s"):
            await complete(_spec(server, transport), HELLO, timeout_s=0.4,
                           on_text=_listen if streamed else None)


async def test_the_direct_path_sends_what_litellm_sends(server: OpenAIStandin) -> None:
    seen: list[dict[str, Any]] = []

    def brain(request: ChatRequest) -> Answer:
        seen.append(dict(request.body))
        return Answer("ok")

    server.brain = brain
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    for on_text in (_listen, None):
        for transport in ("auto", "litellm"):
            await complete(_spec(server, transport, temperature=0.3, params={"seed": 7}),
                           HELLO, tools=TOOL_SCHEMAS, response_format=fmt, max_tokens=50,
                           on_text=on_text)
        assert [r.status for r in server.requests[-2:]] == [200, 200]  # both validated
    for direct, via_litellm in (seen[0:2], seen[2:4]):
        for key in ("model", "messages", "stream", "stream_options", "tools", "temperature",
                    "seed", "response_format", "max_tokens"):
            assert direct.get(key) == via_litellm.get(key), key
    assert [body.get("stream") for body in seen] == [True, True, None, None]


async def test_a_model_without_a_compatible_endpoint_goes_through_litellm(
        server: OpenAIStandin) -> None:
    from modelcall import _direct

    assert _direct.resolve(ModelSpec(name="anthropic/claude-3-5-sonnet-20241022")) is None
    assert _direct.resolve(ModelSpec(name="openai/gpt-4o-mini", transport="litellm")) is None
    route = _direct.resolve(_spec(server, "auto"))
    assert route is not None and route.url == f"{server.base_url}/chat/completions"
    assert route.headers["Authorization"] == f"Bearer {DEFAULT_KEY}"


async def test_the_direct_path_keeps_its_connection_for_the_next_call(
        server: OpenAIStandin) -> None:
    """A stream read to its end leaves the connection open for the next call: three calls,
    one client port (a stream left at ``[DONE]`` closed its connection, so each call opened
    a new one)."""
    server.brain = lambda request: Answer(PROSE)
    server.chunk_delay_s = 0.01  # the body's end comes after [DONE], as from a real server
    for on_text in (_listen, _listen, None, _listen):
        reply = await complete(_spec(server, "auto"), HELLO, on_text=on_text)
        assert reply.text == PROSE
    peers = {r.peer for r in server.requests[-4:]}
    assert len(peers) == 1 and "" not in peers, peers
