"""Hosted agents and Ollama through the whole system: ``switchboard up``
against a real nats-server, every actor its own process.

First a topology where two roles are backed by a Bedrock agent (the InvokeAgent stand-in,
reached through ``endpoint_url`` by the genuine aioboto3 client with fake credentials in the
standard AWS variables): its streamed chunks reach the person as progress and then the answer;
its tokens and trace are events; a SEQUENTIAL run shows the agent in the terminal chat's turn
progress; a throttled call is redelivered and answered, a denied one is answered at once and
never retried, a ``returnControl`` is reported. Then a topology whose models are all
``ollama_chat/llama3.1`` at the Ollama stand-in: routing, planning, a turn with tool calls that
write a file, the answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from hosted_standins import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    AgentCall,
    BedrockAgentStandin,
    HttpError,
    OllamaAnswer,
    OllamaCall,
    OllamaStandin,
    OllamaToolCall,
    StreamEvent,
    chunk,
    model_output,
    rationale,
    return_control,
    stream_error,
)
from session_events import read_session_events
from system import RunningSystem, running_system
from waiting import until

from gateway.bridge import Bridge
from protocol import ChatMessage, ExecutionEvent, Progress, Reply, Subjects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

AGENT_NAME = "bedrock-agent/AGENT1/ALIAS1"
STREAMED = ("The agent ", "looked into it: ", "queues decouple ", "producers and consumers.")


def agent_brain(call: AgentCall) -> list[StreamEvent] | HttpError:
    """The agent: four chunks half a second apart (two progress updates at the role actor's
    one-a-second pace), or a fault when the text asks for one."""
    text = call.input_text
    if "[throttled]" in text and sum("[throttled]" in c.input_text for c in _calls) == 1:
        return HttpError(429, "ThrottlingException", "Rate exceeded")
    if "[denied]" in text:
        return [stream_error("accessDeniedException",
                             "User is not authorized to perform: bedrock:InvokeAgent")]
    if "[return-control]" in text:
        return [rationale("I need the deployment tool."),
                return_control("DeployGroup", "deploy", service="api")]
    return [rationale("Explain briefly."), model_output(500, 40),
            *(chunk(part, delay_s=0.0 if i == 0 else 0.5) for i, part in enumerate(STREAMED))]


_calls: list[AgentCall] = []


@pytest.fixture(scope="module")
def agent_server() -> Iterator[BedrockAgentStandin]:
    server = BedrockAgentStandin()

    def brain(call: AgentCall) -> list[StreamEvent] | HttpError:
        _calls.append(call)
        return agent_brain(call)

    server.brain = brain
    with server.in_thread() as running:
        yield running


AWS_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_CONFIG_FILE": "/nonexistent/aws-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
           "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def agent_system(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
                 agent_server: BedrockAgentStandin) -> Iterator[RunningSystem]:
    agent = {"kind": "bedrock", "agent_id": "AGENT1", "agent_alias_id": "ALIAS1",
             "region": REGION, "endpoint_url": agent_server.endpoint_url, "timeout_s": 30}
    rules = [{"name": "ask-the-agent", "when": {"text": "(?i)ask the agent"},
              "then": {"role": "researcher", "flow": "simple"}}]
    with running_system(module_nats, tmp_path_factory.mktemp("bedrock"), extra_env=AWS_ENV,
                        prefix="hosted", rules=rules,
                        actors={"researcher": {"agent": agent, "nak_delay_s": 0.5},
                                "python_coder": {"agent": agent}}) as running:
        yield running


def _events(system: RunningSystem, session: str, prefix: str) -> list[ExecutionEvent]:
    return asyncio.run(read_session_events(system.nats_url, session, prefix))


async def _ask(system: RunningSystem, prefix: str, session: str, text: str
               ) -> tuple[list[Progress], Reply]:
    """Send a message as a gateway does; every Progress until the Reply, and the Reply."""
    nc = await nats.connect(system.nats_url)
    try:
        bridge = Bridge(nc, Subjects(prefix), f"gw-{session}")
        progress: list[Progress] = []
        answered: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        async def on_outbound(message: object) -> None:
            if isinstance(message, Progress):
                progress.append(message)
            elif isinstance(message, Reply) and not answered.done():
                answered.set_result(message)

        await bridge.start(on_outbound)
        await bridge.send(ChatMessage(message_id=f"m-{session}", session=session,
                                      origin=f"gw-{session}", user_id="u-hosted", text=text,
                                      addressed=True))
        async with asyncio.timeout(90):
            return progress, await answered
    finally:
        await nc.close()


def test_the_agents_stream_reaches_the_person_as_progress_then_the_answer(
        agent_system: RunningSystem) -> None:
    progress, reply = asyncio.run(_ask(agent_system, "hosted", "bedrock-simple",
                                       "ask the agent: why use queues?"))
    answer = "".join(STREAMED)
    assert reply.text == answer and reply.error is None, reply
    streamed = [p for p in progress if p.stage == "stream"]
    assert len(streamed) >= 2, progress
    assert all(p.model == AGENT_NAME and answer.startswith(p.text) for p in streamed)
    assert streamed[0].text != streamed[-1].text, "the answer grew while it streamed"
    [call] = [c for c in _calls if c.session_id == "bedrock-simple"]
    assert call.input_text == "ask the agent: why use queues?"
    assert call.body["enableTrace"] is True
    events = _events(agent_system, "bedrock-simple", "hosted")
    [model_call] = [e for e in events if e.kind == "model_call" and e.model == AGENT_NAME]
    assert (model_call.prompt_tokens, model_call.completion_tokens) == (500, 40)
    assert model_call.duration_ms >= 1000, "timed over the whole stream"
    traced = [e for e in events if e.kind == "agent_trace"]
    assert traced and "rationale: Explain briefly." in traced[0].detail


def test_a_sequential_run_shows_the_agent_in_the_terminal_chat(
        agent_system: RunningSystem) -> None:
    result = agent_system.chat("write a python script greet.py that prints a greeting and "
                               "run it", session="bedrock-seq", timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Model: {AGENT_NAME}" in result.stdout, result.stdout
    assert "".join(STREAMED) in result.stdout
    events = asyncio.run(until(
        lambda: read_session_events(agent_system.nats_url, "bedrock-seq", "hosted"),
        lambda found: any(e.kind == "evaluated" for e in found),
        within_s=30, what="the agent's run is evaluated"))
    turns = [e for e in events if e.kind == "turn"]
    assert len(turns) == 1 and turns[0].model == AGENT_NAME, turns


def test_a_throttled_agent_is_tried_again_and_answers(agent_system: RunningSystem) -> None:
    result = agent_system.chat("ask the agent [throttled] again", session="bedrock-429",
                               timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "".join(STREAMED) in result.stdout
    tried = [c.status for c in _calls if c.session_id == "bedrock-429"]
    assert tried == [429, 200], tried
    kinds = [e.kind for e in _events(agent_system, "bedrock-429", "hosted")]
    assert "retry" in kinds and "dead_letter" not in kinds, kinds


def test_a_denied_agent_is_answered_at_once_and_never_retried(
        agent_system: RunningSystem) -> None:
    result = agent_system.chat("ask the agent [denied] something", session="bedrock-403",
                               timeout_s=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "access denied" in result.stdout and "Retrying will not help" in result.stdout
    assert SECRET_KEY not in result.stdout
    assert len([c for c in _calls if c.session_id == "bedrock-403"]) == 1
    kinds = [e.kind for e in _events(agent_system, "bedrock-403", "hosted")]
    assert "dead_letter" in kinds and "retry" not in kinds, kinds


def test_return_control_is_reported_to_the_person(agent_system: RunningSystem) -> None:
    result = agent_system.chat("ask the agent [return-control] to deploy",
                               session="bedrock-rc", timeout_s=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DeployGroup/deploy" in result.stdout and "returnControl" in result.stdout
    assert len([c for c in _calls if c.session_id == "bedrock-rc"]) == 1


# --- Ollama: every model is ollama_chat/llama3.1 at the stand-in -----------------------------


def _last_user(call: OllamaCall) -> str:
    users = [m for m in call.messages if m.get("role") == "user"]
    return str(users[0].get("content") or "") if users else ""


def ollama_brain(call: OllamaCall) -> OllamaAnswer:
    """Answers as a local chat model would, per purpose (the system prompt's first line)."""
    system, task = call.system, _last_user(call)
    if system.startswith("You are Switchboard's router."):
        sequential = ".py" in task
        route = {"respond": True, "flow": "sequential" if sequential else "simple",
                 "task_type": "coding" if sequential else "question",
                 "role": "python_coder" if sequential else "researcher",
                 "complexity": "simple", "reason": "local model's decision"}
        return OllamaAnswer(text=json.dumps(route))
    if system.startswith("You are Switchboard's planner."):
        return OllamaAnswer(text="1. Write the file.\n2. Report back.")
    if system.startswith("You are Switchboard's reflector."):
        return OllamaAnswer(text=json.dumps({
            "what_worked": "one turn", "what_failed": "nothing", "root_cause": "none",
            "strategy_change": "none", "key_insight": "small steps"}))
    if call.tools:
        if call.messages[-1].get("role") != "tool":
            return OllamaAnswer(text="Writing it now.", tool_calls=(
                OllamaToolCall("write_file", {"path": "greet.py",
                                              "content": "print('Hello from Ollama')\n"}),))
        return OllamaAnswer(text="Done: greet.py prints a greeting.")
    return OllamaAnswer(text="Ollama here: a short, local answer.", piece_chars=4)


@pytest.fixture(scope="module")
def ollama_server() -> Iterator[OllamaStandin]:
    with OllamaStandin(models=("llama3.1",), brain=ollama_brain).in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def ollama_system(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
                  ollama_server: OllamaStandin) -> Iterator[RunningSystem]:
    spec: dict[str, Any] = {"name": "ollama_chat/llama3.1", "api_base": ollama_server.url,
                            "timeout_s": 30}
    with running_system(module_nats, tmp_path_factory.mktemp("ollama"), prefix="ollama",
                        extra_env={"OLLAMA_API_BASE": ollama_server.url},
                        tiers={t: [spec] for t in (1, 2, 3, 4)}, escalation=[],
                        brainstorm_models=[], router={"timeout_s": 20}) as running:
        yield running


def test_ollama_answers_every_step_of_a_sequential_run(
        ollama_system: RunningSystem, ollama_server: OllamaStandin) -> None:
    result = ollama_system.chat("write a python script greet.py that prints a greeting",
                                session="ollama-seq", timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Model: ollama_chat/llama3.1" in result.stdout, result.stdout
    assert "Writing: greet.py" in result.stdout
    assert "Done: greet.py prints a greeting." in result.stdout
    workspace = ollama_system.data_dir / "workspaces" / "ollama-seq" / "greet.py"
    assert workspace.read_text() == "print('Hello from Ollama')\n"
    answered = [c for c in ollama_server.calls if c.tools and c.messages[-1]["role"] == "tool"]
    assert answered, "the tool's result went back to the model"
    sent = next(m for m in answered[-1].messages if m.get("tool_calls"))
    assert sent["tool_calls"][0]["function"]["arguments"]["path"] == "greet.py"
    events = _events(ollama_system, "ollama-seq", "ollama")
    classified = [e for e in events if e.kind == "classified"]
    assert classified and classified[-1].source == "model", classified
    calls = [e for e in events if e.kind == "model_call" and e.model == "ollama_chat/llama3.1"]
    assert calls and all(e.prompt_tokens == 42 for e in calls)


def test_ollamas_stream_reaches_the_person(ollama_system: RunningSystem) -> None:
    progress, reply = asyncio.run(_ask(ollama_system, "ollama", "ollama-simple",
                                       "hello, what can you do?"))
    assert reply.text == "Ollama here: a short, local answer.", reply
    streamed = [p for p in progress if p.stage == "stream"]
    assert streamed and all(p.model == "ollama_chat/llama3.1" for p in streamed)
    assert all(reply.text.startswith(p.text) for p in streamed)
