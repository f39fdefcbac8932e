"""Model calls through the genuine ``litellm.acompletion`` path: the registered offline provider
and a local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from actors.prompts import render
from actors.tools import TOOL_SCHEMAS, run_tool
from artifacts import Workspace
from core.config import ModelSpec, ToolPolicy, load_topology
from core.errors import ConfigError, ModelError, ModelTimeoutError
from modelcall import complete, parse_json_object, parse_report, register_providers
from protocol import AGENT_ROLES
from switchboard.embedded import free_port
from switchboard.supervisor import PRELOAD, PRELOAD_LITELLM, preload_modules

pytestmark = pytest.mark.usefixtures("close_model_sessions")

OFFLINE = ModelSpec(name="offline/tier-2")
TASK = "write a python function that reverses a string and test it"


@pytest.fixture(autouse=True)
def _offline_provider() -> None:
    register_providers({"offline": "offline_model:OfflineLLM"})


def _agent_messages(task: str, role: str = "python_coder") -> list[dict[str, Any]]:
    return [{"role": "system", "content": render(role, plan="", memory="")},
            {"role": "user", "content": task}]


def test_register_is_idempotent_and_checked() -> None:
    from modelcall._providers import load_litellm

    register_providers({"offline": "offline_model:OfflineLLM"})
    litellm = load_litellm()  # litellm gets the registered providers when it is first needed
    register_providers({"offline": "offline_model:OfflineLLM"})
    assert [p["provider"] for p in litellm.custom_provider_map].count("offline") == 1
    with pytest.raises(ConfigError):
        register_providers({"broken": "modelcall.nope:Nothing"})
    with pytest.raises(ConfigError):
        register_providers({"broken": "json:JSONDecoder"})


async def test_a_topology_naming_the_offline_models_old_place_still_works(
        caplog: pytest.LogCaptureFixture) -> None:
    """topology.yaml files written before the offline model moved name
    ``actors.llm.offline:OfflineLLM``: it is still found, with a warning naming the new place."""
    from modelcall._providers import registered

    registered.pop("offline", None)
    register_providers({"offline": "actors.llm.offline:OfflineLLM"})
    assert registered["offline"] == "offline_model:OfflineLLM"
    assert "offline_model:OfflineLLM" in caplog.text
    reply = await complete(OFFLINE, [{"role": "user", "content": "hello"}])
    assert "offline" in reply.text.lower()


def test_the_offline_model_is_called_without_importing_litellm() -> None:
    """A deployment whose models are all offline never loads litellm (about 160 MB a
    process); a topology with a real model gets it preloaded by the fork server."""
    code = (
        "import asyncio, sys\n"
        "from core.config import ModelSpec\n"
        "from modelcall import complete, register_providers\n"
        "register_providers({'offline': 'offline_model:OfflineLLM'})\n"
        "reply = asyncio.run(complete(ModelSpec(name='offline/tier-1'),\n"
        "                             [{'role': 'user', 'content': 'hello'}]))\n"
        "print(bool(reply.text), 'litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["True", "False"], out.stderr
    topology = load_topology()
    assert preload_modules(topology) == PRELOAD
    tiers = {**topology.tiers, 3: [ModelSpec(name="openai/gpt-4o")]}
    assert preload_modules(topology.model_copy(update={"tiers": tiers})) == PRELOAD_LITELLM
    # A custom provider's module is imported once, by the fork server, before the rest.
    custom = topology.model_copy(update={"providers": {**topology.providers,
                                                       "sim": "bench._sim_model:SimLLM"}})
    assert preload_modules(custom) == ("bench._sim_model", *PRELOAD)


async def test_streaming_text_arrives_in_pieces() -> None:
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    messages = [{"role": "system", "content": render("researcher", plan="", memory="")},
                {"role": "user", "content": "hello"}]
    reply = await complete(OFFLINE, messages, on_text=on_text)
    assert len(seen) >= 3
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert seen[-1] == reply.text
    assert reply.text.startswith("[offline model offline/tier-2]")
    assert "SB_MODEL" in reply.text
    assert reply.tool_calls == ()
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.calls == 1 and reply.usage.model == "offline/tier-2"
    assert reply.usage.cost_usd == 0.0
    assert parse_report(reply.text).status == "done"


@pytest.mark.parametrize("role", AGENT_ROLES)
async def test_every_role_answers_simple_chat(role: str) -> None:
    messages = [{"role": "system", "content": render(role, plan="", memory="")},
                {"role": "user", "content": "hi there"}]
    reply = await complete(ModelSpec(name="offline/tier-1"), messages)
    assert "offline model offline/tier-1" in reply.text
    assert parse_report(reply.text).confidence is not None


async def test_agentic_exchange_writes_and_passes_tests(tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "thread-1")
    policy = ToolPolicy(timeout_s=60)
    messages = _agent_messages(TASK)
    names: list[list[str]] = []
    results = []
    for _ in range(6):
        reply = await complete(OFFLINE, messages, tools=TOOL_SCHEMAS)
        assert parse_report(reply.text).status in {"continue", "done"}
        if not reply.tool_calls:
            break
        assert reply.finish_reason == "tool_calls"
        names.append([call.name for call in reply.tool_calls])
        messages.append({
            "role": "assistant", "content": reply.text,
            "tool_calls": [{"id": c.call_id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}}
                           for c in reply.tool_calls],
        })
        for call in reply.tool_calls:
            json.loads(call.arguments)  # streamed in pieces, reassembled whole
            result = await run_tool(workspace, call, policy)
            results.append(result)
            messages.append({"role": "tool", "tool_call_id": call.call_id,
                             "content": result.content})
    assert names == [["write_file"], ["write_file"], ["run_command"]]
    assert not results[-1].is_error, results[-1].content
    assert "3 passed, 0 failed" in results[-1].content
    assert (workspace.root / "reverse_string.py").is_file()
    assert "<<reverse_string.py>>" in reply.text and "passed" in reply.text
    assert parse_report(reply.text).status == "done"


async def test_failed_test_run_is_reported_honestly() -> None:
    messages = _agent_messages(TASK)
    for turn, content in enumerate(["wrote 10 bytes", "wrote 20 bytes",
                                    "$ python test_reverse_string.py\nexit code: 1\n"
                                    "FAILED test_edge_cases\n2 passed, 1 failed"]):
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [{"id": f"c{turn}", "type": "function",
                                         "function": {"name": "x", "arguments": "{}"}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{turn}", "content": content})
    reply = await complete(OFFLINE, messages, tools=TOOL_SCHEMAS)
    assert not reply.tool_calls
    assert "1 failed" in reply.text
    assert parse_report(reply.text).confidence == 20


async def test_unknown_task_writes_honest_notes(tmp_path: Path) -> None:
    workspace = Workspace.for_session(tmp_path, "t")
    messages = _agent_messages("build me a distributed database in rust")
    reply = await complete(OFFLINE, messages, tools=TOOL_SCHEMAS)
    assert [c.name for c in reply.tool_calls] == ["write_file"]
    result = await run_tool(workspace, reply.tool_calls[0], ToolPolicy())
    assert "cannot write code" in (workspace.root / "PLAN.md").read_text()
    messages += [
        {"role": "assistant", "content": reply.text,
         "tool_calls": [{"id": reply.tool_calls[0].call_id, "type": "function",
                         "function": {"name": "write_file",
                                      "arguments": reply.tool_calls[0].arguments}}]},
        {"role": "tool", "tool_call_id": reply.tool_calls[0].call_id, "content": result.content},
    ]
    final = await complete(OFFLINE, messages, tools=TOOL_SCHEMAS)
    assert not final.tool_calls
    assert "cannot do" in final.text and "<<PLAN.md>>" in final.text


async def test_command_executor_runs_the_command() -> None:
    messages = _agent_messages("please run `ls -la`", role="command_executor")
    reply = await complete(OFFLINE, messages, tools=TOOL_SCHEMAS)
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("run_command", {"command": "ls -la"})]


async def test_planner_plan_and_lessons() -> None:
    plain = render("planner", memory="", history="", cases="")
    reply = await complete(ModelSpec(name="offline/tier-4"),
                           [{"role": "system", "content": plain},
                            {"role": "user", "content": TASK}])
    steps = [line for line in reply.text.splitlines() if line[:1].isdigit()]
    assert 3 <= len(steps) <= 5 and steps[0].startswith("1. ")
    assert "lesson" not in steps[0].lower()

    with_memory = render("planner", memory="- Run the tests before answering.\n- Keep it small.",
                         history="user: hi", cases="(none)")
    reply = await complete(ModelSpec(name="offline/tier-4"),
                           [{"role": "system", "content": with_memory},
                            {"role": "user", "content": TASK}])
    steps = [line for line in reply.text.splitlines() if line[:1].isdigit()]
    assert 3 <= len(steps) <= 5
    assert "lessons" in steps[0] and "Run the tests before answering." in steps[0]


async def test_reflector_json() -> None:
    prompt = render("reflector", task=TASK,
                    scores="task_completion: 40\ncode_quality: 60\nefficiency: 50",
                    trajectory="turn 3 run_command: exit code: 1\nFAILED test_edge_cases")
    reply = await complete(ModelSpec(name="offline/tier-4"),
                           [{"role": "system", "content": prompt}])
    data = parse_json_object(reply.text)
    assert data is not None
    keys = ("what_worked", "what_failed", "root_cause", "strategy_change", "key_insight")
    assert all(isinstance(data[key], str) and data[key] for key in keys)
    assert "FAILED" in data["what_failed"]

    # The reflector actor's own format: "task completion 90, code quality 80, ...".
    prompt = render("reflector", task=TASK,
                    scores="task completion 90, code quality 80, efficiency 85",
                    trajectory="turn 3 (offline/tier-2, confidence 80): run_command\n"
                               "  -> $ python test_reverse_string.py\nexit code: 0")
    reply = await complete(ModelSpec(name="offline/tier-4"),
                           [{"role": "system", "content": prompt},
                            {"role": "user", "content": "Reflect on this run."}])
    data = parse_json_object(reply.text)
    assert data is not None and data["what_failed"] == "Nothing significant."
    assert "reverses a string" in data["key_insight"]


async def test_brainstormers_overlap_partly() -> None:
    messages = [{"role": "system", "content": render("brainstorm")},
                {"role": "user", "content": "what are different approaches to caching?"}]
    titles = []
    for name in ("offline/tier-2", "offline/tier-3"):
        data = parse_json_object((await complete(ModelSpec(name=name), messages)).text)
        assert data is not None and 2 <= len(data["approaches"]) <= 3
        for approach in data["approaches"]:
            assert approach["title"] and approach["summary"]
            assert approach["pros"] and approach["cons"]
            assert "def " not in approach["summary"]
        titles.append({a["title"] for a in data["approaches"]})
    assert titles[0] & titles[1]
    assert titles[0] ^ titles[1]


async def test_on_text_errors_propagate_unchanged() -> None:
    class Boom(Exception):
        pass

    async def on_text(text: str) -> None:
        raise Boom(text)

    with pytest.raises(Boom):
        await complete(OFFLINE, [{"role": "user", "content": "hello"}], on_text=on_text)


async def test_unknown_provider_is_a_readable_model_error() -> None:
    with pytest.raises(ModelError) as caught:
        await complete(ModelSpec(name="nosuchprovider/some-model"),
                       [{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert "nosuchprovider/some-model" in message and "unknown provider" in message
    assert caught.value.model == "nosuchprovider/some-model"


async def test_provider_error_param_becomes_model_error() -> None:
    spec = ModelSpec(name="offline/tier-2", params={"error": "simulated outage"})
    with pytest.raises(ModelError, match="simulated outage"):
        await complete(spec, [{"role": "user", "content": "hi"}])


async def test_slow_model_times_out() -> None:
    spec = ModelSpec(name="offline/tier-2", params={"delay_s": 5})
    with pytest.raises(ModelTimeoutError) as caught:
        await complete(spec, [{"role": "user", "content": "hi"}], timeout_s=0.3)
    assert "0.3 s" in str(caught.value)


async def test_missing_key_variable_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_TEST_MISSING_KEY", raising=False)
    spec = ModelSpec(name="openai/gpt-4o-mini", api_key_env="SB_TEST_MISSING_KEY")
    with pytest.raises(ModelError, match="SB_TEST_MISSING_KEY"):
        await complete(spec, [{"role": "user", "content": "hi"}])


# --- a real OpenAI-compatible HTTP server ---------------------------------------------------


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
            "model": "test-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        requests.append({"auth": request.headers.get("Authorization"), "body": body})
        if request.headers.get("Authorization") != "Bearer sk-test-123":
            return web.json_response({"error": {"message": "bad key", "type": "auth"}},
                                     status=401)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_sse(_chunk({"role": "assistant", "content": ""})))
        for word in ("Hello ", "from ", "a real ", "server."):
            await response.write(_sse(_chunk({"content": word})))
        if body.get("tools"):
            call = {"index": 0, "id": "call_abc", "type": "function",
                    "function": {"name": "list_files", "arguments": '{"path":'}}
            await response.write(_sse(_chunk({"tool_calls": [call]})))
            more = {"index": 0, "function": {"arguments": ' "."}'}}
            await response.write(_sse(_chunk({"tool_calls": [more]})))
        await response.write(_sse(_chunk({}, "tool_calls" if body.get("tools") else "stop")))
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        await response.write(_sse({**_chunk({}), "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/v1", requests
    finally:
        await runner.cleanup()


async def test_real_openai_compatible_server(
    openai_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, requests = openai_server
    monkeypatch.setenv("SB_TEST_KEY", "sk-test-123")
    spec = ModelSpec(name="openai/test-model", api_base=base, api_key_env="SB_TEST_KEY",
                     temperature=0.2)
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    reply = await complete(spec, [{"role": "user", "content": "hi"}], tools=TOOL_SCHEMAS,
                           on_text=on_text)
    assert reply.text == "Hello from a real server."
    assert len(seen) >= 3
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        ("call_abc", "list_files", {"path": "."})]
    assert reply.usage.prompt_tokens == 11 and reply.usage.completion_tokens == 7
    assert reply.usage.model == "openai/test-model"
    body = requests[0]["body"]
    assert body["model"] == "test-model" and body["stream"] is True
    assert body["temperature"] == 0.2
    assert requests[0]["auth"] == "Bearer sk-test-123"


async def test_real_server_bad_key_is_model_error_without_key(
    openai_server: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, _ = openai_server
    monkeypatch.setenv("SB_TEST_KEY", "sk-wrong-secret-999")
    spec = ModelSpec(name="openai/test-model", api_base=base, api_key_env="SB_TEST_KEY",
                     params={"max_retries": 0})
    with pytest.raises(ModelError) as caught:
        await complete(spec, [{"role": "user", "content": "hi"}], timeout_s=20)
    assert "authentication failed" in str(caught.value)
    assert "sk-wrong-secret-999" not in str(caught.value)


def test_each_model_gets_one_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport is chosen per model: the offline model in-process (unless it asks for
    litellm), an OpenAI-compatible endpoint direct, a provider litellm must translate through
    litellm."""
    from modelcall._client import transport_for

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert transport_for(OFFLINE).kind == "in_process"
    assert transport_for(OFFLINE) is transport_for(OFFLINE)  # kept, not chosen again
    assert transport_for(ModelSpec(name="offline/tier-2", transport="litellm")).kind == "litellm"
    direct = ModelSpec(name="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1")
    assert transport_for(direct).kind == "direct"
    assert transport_for(ModelSpec(name="openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1",
                                   transport="litellm")).kind == "litellm"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    assert transport_for(ModelSpec(name="anthropic/claude-3-5-haiku-latest")).kind == "litellm"
