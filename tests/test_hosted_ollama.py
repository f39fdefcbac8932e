"""Ollama through litellm's native provider (``ollama_chat/<model>``): the genuine
``modelcall.complete`` → ``litellm.acompletion`` path against a local server speaking
Ollama's ``/api/chat`` (NDJSON streaming, tool-call arguments as objects, Ollama's errors).

Shown here: text streams and its token counts come from Ollama's counters; tool calls are
read and sent back in Ollama's shape (the stand-in refuses OpenAI's string arguments, as
Ollama does); a bot's token cap and structured output reach Ollama's ``options`` and
``format``; a model that is not pulled is permanent (not a connection error, as litellm words
it), a server error and an unreachable server are transient.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hosted_standins import OllamaAnswer, OllamaCall, OllamaStandin, OllamaToolCall

from actors.tools import TOOL_SCHEMAS
from core.config import ModelSpec
from core.errors import ModelRejectedError, ModelUnavailableError
from modelcall import complete

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("close_model_sessions")]


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaStandin]:
    """The stand-in in its own thread, as Ollama is its own process: litellm asks it for model
    information (``/api/show`` at ``OLLAMA_API_BASE``) with a blocking call, once for each
    model its map does not know."""
    with OllamaStandin(models=("llama3.1", "qwen2.5-coder:7b")).in_thread() as server:
        monkeypatch.setenv("OLLAMA_API_BASE", server.url)
        yield server


def _spec(server: OllamaStandin, model: str = "llama3.1") -> ModelSpec:
    return ModelSpec(name=f"ollama_chat/{model}", api_base=server.url, timeout_s=20)


async def test_text_streams_with_ollamas_token_counts(ollama: OllamaStandin) -> None:
    ollama.brain = lambda call: OllamaAnswer(text="Queues decouple producers from consumers.",
                                             piece_chars=8)
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    reply = await complete(_spec(ollama), [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "why queues?"}],
                           on_text=on_text, max_tokens=64)
    assert reply.text == "Queues decouple producers from consumers."
    assert len(seen) >= 5 and seen[-1] == reply.text
    assert all(a != b and b.startswith(a) for a, b in zip(seen, seen[1:], strict=False))
    usage = reply.usage
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens) == (
        "ollama_chat/llama3.1", 42, len(reply.text) // 4)
    [call] = ollama.calls
    assert call.body["model"] == "llama3.1" and call.body["stream"] is True
    assert call.body["options"]["num_predict"] == 64
    assert [m["role"] for m in call.messages] == ["system", "user"]


async def test_a_models_details_are_asked_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """litellm 1.97 asks ``/api/show`` about a model its map does not know 5 times on the
    model's first call and twice on each later one; Switchboard puts the model in litellm's
    map before its first call, so it is asked once per process. A model in the map
    (``llama3.1``) is never asked about. The name is made up, so no other test has mapped it
    in this process."""
    unmapped = "switchboard-show-count:7b"
    with OllamaStandin(models=("llama3.1", unmapped)).in_thread() as server:
        monkeypatch.setenv("OLLAMA_API_BASE", server.url)
        asked: list[int] = []
        for model in (unmapped, unmapped, unmapped, "llama3.1", "llama3.1"):
            before = len(server.shown)
            reply = await complete(_spec(server, model), [{"role": "user", "content": "hi"}])
            assert reply.text == f"Ollama {model} heard: hi" and reply.usage.cost_usd == 0.0
            asked.append(len(server.shown) - before)
        assert asked == [1, 0, 0, 0, 0]
        assert server.shown == [unmapped]
        assert [c.status for c in server.calls] == [200] * 5


async def test_tool_calls_round_trip_in_ollamas_shape(ollama: OllamaStandin) -> None:
    def brain(call: OllamaCall) -> OllamaAnswer:
        if call.messages[-1]["role"] == "tool":
            return OllamaAnswer(text="Wrote a.py and listed the workspace.")
        return OllamaAnswer(text="I'll write it.", tool_calls=(
            OllamaToolCall("write_file", {"path": "a.py", "content": "print(1)\n"}),
            OllamaToolCall("list_files", {"path": "."})))

    ollama.brain = brain
    spec = _spec(ollama, "qwen2.5-coder:7b")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "write a.py"}]
    first = await complete(spec, messages, tools=TOOL_SCHEMAS)
    assert first.text == "I'll write it."
    assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
        ("write_file", {"path": "a.py", "content": "print(1)\n"}), ("list_files", {"path": "."})]
    assert all(c.call_id for c in first.tool_calls)
    assert {t["function"]["name"] for t in ollama.calls[0].tools} >= {"write_file", "list_files"}
    messages += [
        {"role": "assistant", "content": first.text, "tool_calls": [
            {"id": c.call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in first.tool_calls]},
        *({"role": "tool", "tool_call_id": c.call_id, "content": "ok"}
          for c in first.tool_calls)]
    second = await complete(spec, messages, tools=TOOL_SCHEMAS)
    assert second.text == "Wrote a.py and listed the workspace." and not second.tool_calls
    sent = ollama.calls[1].messages[1]["tool_calls"]
    assert sent[0]["function"]["arguments"] == {"path": "a.py", "content": "print(1)\n"}
    assert [c.status for c in ollama.calls] == [200, 200]


async def test_structured_output_becomes_ollamas_format(ollama: OllamaStandin) -> None:
    schema = {"type": "object", "properties": {"flow": {"type": "string"}},
              "required": ["flow"]}
    ollama.brain = lambda call: OllamaAnswer(text='{"flow": "simple"}')
    reply = await complete(_spec(ollama), [{"role": "user", "content": "route this"}],
                           response_format={"type": "json_schema", "json_schema": {
                               "name": "route", "schema": schema}})
    assert json.loads(reply.text) == {"flow": "simple"}
    assert ollama.calls[0].body["format"] == schema


async def test_a_model_that_is_not_pulled_is_permanent(ollama: OllamaStandin) -> None:
    with pytest.raises(ModelRejectedError, match="does not know this model") as caught:
        await complete(_spec(ollama, "mistral"), [{"role": "user", "content": "hi"}])
    assert "try pulling it first" in str(caught.value)
    assert [c.status for c in ollama.calls] == [404], "asked once, never retried"


async def test_a_server_error_is_transient(ollama: OllamaStandin) -> None:
    ollama.brain = lambda call: OllamaAnswer(status=500, error="llama runner process has "
                                                               "terminated: signal: killed")
    with pytest.raises(ModelUnavailableError, match="llama runner process has terminated"):
        await complete(_spec(ollama), [{"role": "user", "content": "hi"}])
    assert [c.status for c in ollama.calls] == [500]


async def test_an_unreachable_ollama_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = ModelSpec(name="ollama_chat/llama3.1", api_base=f"http://127.0.0.1:{port}",
                     timeout_s=10)
    with pytest.raises(ModelUnavailableError, match="cannot reach"):
        await complete(spec, [{"role": "user", "content": "hi"}])
