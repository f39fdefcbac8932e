"""A real model decides: ``switchboard up`` with ``SB_MODEL=openai/...`` against a
local OpenAI-compatible server that validates requests like the real API and answers like a
chat model (JSON in code fences, markdown, parallel tool calls streamed in fragments).

Shown here: the model's answer routes the three messages the old keyword rules got wrong; a
model that times out or answers garbage falls back to the keyword rules; a rule overrides the
model; a second similar task shows the first as a case in the planner's prompt; a 401 is
answered with a clear error after one request and never redelivered; a 429 / 500 from the
first model of a tier is answered by the second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from openai_standin import Answer, Call, ChatRequest, OpenAIStandin
from session_events import read_session_events
from system import RunningSystem, running_system
from waiting import until

from gateway.bridge import Bridge
from protocol import ChatMessage, ExecutionEvent, Reply, Subjects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KEY = "sk-test-e2e-0123456789"
KEY_VAR = "SB_TEST_MODEL_KEY"

ROUTES: dict[str, dict[str, Any]] = {
    "just the idea": {"flow": "simple", "task_type": "question", "role": "devops_engineer",
                      "reason": "a conceptual question, no work to do"},
    "README": {"flow": "sequential", "task_type": "docs", "role": "documentation_writer",
               "reason": "edit a markdown document"},
    ".py": {"flow": "sequential", "task_type": "coding", "role": "python_coder",
            "reason": "write and run a Python script"},
    "haiku": {"flow": "simple", "task_type": "question", "role": "researcher",
              "reason": "a creative question"},
    "review this": {"flow": "simple", "task_type": "review", "role": "code_reviewer",
                    "reason": "a quick code review"},
}


def _first_user(body: dict[str, Any] | None) -> str:
    """The person's request in a model request: its first user message (each test has its
    own session, so no earlier history comes first; per-user memory is a system message)."""
    users = [m for m in (body or {}).get("messages", []) if m.get("role") == "user"]
    return str(users[0].get("content") or "") if users else ""


def brain(request: ChatRequest) -> Answer:
    """Answers like a chat model would, per purpose (the system prompt's first line)."""
    system = request.system_text
    task = _first_user(request.body)
    if system.startswith("You are Switchboard's router."):
        return _route(task)
    if "[denied]" in task:
        return Answer.invalid_api_key()
    if "[flaky]" in task and request.model == "alpha":
        return Answer.rate_limited(retry_after_s=1)
    if "[broken]" in task and request.model == "alpha":
        return Answer.server_error()
    if system.startswith("You are Switchboard's code reviewer peer."):
        return Answer(text=f"- I agree with most of it ({request.model}).\n- It missed the "
                           "missing return value.")
    if "[long]" in task:
        return Answer(text="A long answer. " * 200)
    if system.startswith("You are Switchboard's planner."):
        return Answer(text="Here's a plan:\n\n1. Write the file.\n2. Check it.\n3. Report back.")
    if system.startswith("You are Switchboard's reflector."):
        return Answer.json_in_fence({
            "what_worked": "wrote the file in one turn", "what_failed": "nothing",
            "root_cause": "none", "strategy_change": "keep it", "key_insight": "small steps"},
            prose_before="Here is my reflection:")
    if request.tools:
        if not request.tool_results:
            name = next((w for w in task.split() if w.endswith((".py", ".md"))), "NOTES.md")
            return Answer.tool_calls(
                Call("write_file", {"path": name, "content": "print('Hello!')\n"}),
                Call("list_files", {"path": "."}),
                text="I'll write the file and check the workspace.")
        return Answer(text="Done — the file is written and listed in the workspace.")
    return Answer(text=f"**Answer from {request.model}.** Here is a short reply.")


def _route(text: str) -> Answer:
    if "[timeout]" in text:
        return Answer(text="{}").after(30)
    if "[garbage]" in text:
        return Answer.garbage("Hmm, that's an interesting message! Let me think about it.")
    route = next((r for key, r in ROUTES.items() if key in text),
                 {"flow": "simple", "task_type": "social", "role": "researcher",
                  "reason": "small talk"})
    return Answer.json_in_fence({"respond": True, "complexity": "simple", **route},
                                prose_before="Here is the routing decision:")


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(models=("alpha", "beta"), api_keys=(KEY,)).in_thread() as server:
        server.brain = brain
        yield server


def _spec(server: OpenAIStandin, name: str) -> dict[str, Any]:
    return {"name": f"openai/{name}", "api_base": server.base_url, "api_key_env": KEY_VAR,
            "timeout_s": 30}


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
           model_server: OpenAIStandin) -> Iterator[RunningSystem]:
    """SB_MODEL=openai/alpha, its key and base URL in litellm's usual variables."""
    env = {"SB_MODEL": "openai/alpha", "OPENAI_API_KEY": KEY,
           "OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_BASE": model_server.base_url}
    rules = [{"name": "poems-to-docs", "when": {"text": "(?i)haiku"},
              "then": {"role": "documentation_writer"}},
             {"name": "no-crypto", "when": {"text": "(?i)bitcoin"},
              "then": {"refuse": "I don't help with cryptocurrency here."}}]
    with running_system(module_nats, tmp_path_factory.mktemp("real-model"), extra_env=env,
                        router={"timeout_s": 3}, rules=rules) as running:
        yield running


def _events(system: RunningSystem, session: str, prefix: str = "sb") -> list[ExecutionEvent]:
    return asyncio.run(read_session_events(system.nats_url, session, prefix))


def _classified(system: RunningSystem, session: str) -> ExecutionEvent:
    events = [e for e in _events(system, session) if e.kind == "classified"]
    assert events, f"no classified event for {session}"
    return events[-1]


@pytest.mark.parametrize(("session", "text", "flow", "role"), [
    ("rm-idea", "how do I deploy a flask app? just the idea", "simple", "devops_engineer"),
    ("rm-readme", "make the table of contents in my README nicer", "sequential",
     "documentation_writer"),
    ("rm-greet", "write a python script greet.py that prints a greeting and run it",
     "sequential", "python_coder"),
])
def test_the_models_answer_routes_the_message(system: RunningSystem, session: str, text: str,
                                              flow: str, role: str) -> None:
    result = system.chat(text, session=session, timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    event = _classified(system, session)
    assert event.source == "model", event.detail
    assert event.detail.startswith(f"{flow} {role} "), event.detail
    assert f"{flow} · {role}" in result.stdout


@pytest.mark.parametrize(("marker", "why"), [
    ("[timeout]", "did not answer within 3 s"),
    ("[garbage]", "unusable"),
])
def test_a_failing_router_model_falls_back_to_the_keyword_rules(
        system: RunningSystem, marker: str, why: str) -> None:
    session = f"rm-fallback-{marker.strip('[]')}"
    result = system.chat(f"{marker} hello there", session=session, timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    event = _classified(system, session)
    assert event.source == "keywords" and why in event.detail, event.detail
    assert "Answer from alpha" in result.stdout


def test_a_rule_overrides_the_model(system: RunningSystem,
                                    model_server: OpenAIStandin) -> None:
    result = system.chat("write me a haiku about queues", session="rm-rule", timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    event = _classified(system, "rm-rule")
    assert event.source == "rule" and "rule:poems-to-docs" in event.detail, event.detail
    assert "documentation_writer" in event.detail
    answered = [r for r in model_server.requests if "haiku" in _first_user(r.body)
                and _system_text(r.body).startswith("You are Switchboard's documentation_")]
    assert answered, "the documentation writer's prompt answered the request"


def test_a_refused_request_is_told_why_before_any_model_is_asked(
        system: RunningSystem, model_server: OpenAIStandin) -> None:
    result = system.chat("buy bitcoin with my savings", session="rm-refused", timeout_s=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "I don't help with cryptocurrency here." in result.stdout
    assert "a rule of this deployment refused the request" in result.stdout
    assert not [r for r in model_server.requests if "bitcoin" in _first_user(r.body)]
    assert "rule:no-crypto" in _classified(system, "rm-refused").detail


def test_a_similar_task_shows_the_first_as_a_case(system: RunningSystem,
                                                 model_server: OpenAIStandin) -> None:
    first = system.chat("write a python script tally.py that counts words in a file",
                        session="rm-case-1", timeout_s=120)
    assert first.returncode == 0, first.stdout + first.stderr
    stored = asyncio.run(until(lambda: _stored(system, "rm-case-1"), lambda e: e is not None,
                               within_s=60, what="the first run's case is stored"))
    assert stored is not None and "succeeded" in stored.detail, stored
    second = system.chat("write a python script tally2.py that counts the words of a file",
                         session="rm-case-2", timeout_s=120)
    assert second.returncode == 0, second.stdout + second.stderr
    plans = [r for r in model_server.requests
             if _system_text(r.body).startswith("You are Switchboard's planner.")
             and "tally2.py" in _first_user(r.body)]
    assert plans, "the planner was asked"
    prompt = _system_text(plans[-1].body)
    similar = prompt.split("Similar past runs", 1)[1]
    assert "tally.py that counts words" in similar, prompt
    planned = [e for e in _events(system, "rm-case-2") if e.kind == "planned"]
    case_id = stored.detail.split()[1].rstrip(":")
    assert planned and case_id in planned[-1].detail, planned


async def _stored(system: RunningSystem, session: str) -> ExecutionEvent | None:
    events = await read_session_events(system.nats_url, session)
    return next((e for e in events if e.kind == "case_stored"), None)


def _system_text(body: dict[str, Any] | None) -> str:
    messages = (body or {}).get("messages") or [{}]
    first = messages[0]
    return str(first.get("content") or "") if first.get("role") == "system" else ""


def test_a_bad_key_is_answered_at_once_and_never_retried(
        system: RunningSystem, model_server: OpenAIStandin) -> None:
    result = system.chat("[denied] tell me a joke", session="rm-denied", timeout_s=120)
    assert result.returncode != 0
    assert "authentication failed" in result.stdout, result.stdout
    assert KEY not in result.stdout
    worker = [r for r in model_server.requests if "[denied]" in _first_user(r.body)
              and not _system_text(r.body).startswith("You are Switchboard's router.")]
    assert [r.status for r in worker] == [401]
    kinds = [e.kind for e in _events(system, "rm-denied")]
    assert "dead_letter" in kinds and "retry" not in kinds, kinds


# --- fallbacks within a tier: a second system whose tiers list two models -------------------


@pytest.fixture(scope="module")
def tiered(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
           model_server: OpenAIStandin) -> Iterator[RunningSystem]:
    both = [_spec(model_server, "alpha"), _spec(model_server, "beta")]
    prefix_env = {KEY_VAR: KEY}
    with running_system(module_nats, tmp_path_factory.mktemp("tiered"), extra_env=prefix_env,
                        prefix="tiered", tiers={t: both for t in (1, 2, 3, 4)},
                        escalation=[], brainstorm_models=[], peer_review=True) as running:
        yield running


@pytest.mark.parametrize(("marker", "status"), [("[flaky]", 429), ("[broken]", 500)])
def test_the_second_model_of_a_tier_answers_when_the_first_fails(
        tiered: RunningSystem, model_server: OpenAIStandin, marker: str, status: int) -> None:
    session = f"tiered-{marker.strip('[]')}"
    result = tiered.chat(f"{marker} hello, how are you today?", session=session,
                         timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Answer from beta" in result.stdout
    tried = [(r.model, r.status) for r in model_server.requests
             if marker in _first_user(r.body)
             and not _system_text(r.body).startswith("You are Switchboard's router.")]
    assert tried == [("alpha", status), ("beta", 200)], tried
    fallbacks = [e for e in _events(tiered, session, prefix="tiered") if e.kind == "fallback"]
    assert fallbacks and "openai/alpha → openai/beta" in fallbacks[0].detail, fallbacks


def test_the_code_reviewer_asks_a_random_peer_of_its_tier(
        tiered: RunningSystem, model_server: OpenAIStandin) -> None:
    result = tiered.chat("review this function: def add(a, b): a + b", session="tiered-review",
                         timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Answer from alpha" in result.stdout
    assert "Second opinion (openai/beta)" in result.stdout
    assert "It missed the missing return value." in result.stdout


def test_a_bots_answer_limits_reach_the_model_and_the_answer(
        system: RunningSystem, model_server: OpenAIStandin) -> None:
    reply = asyncio.run(_ask_with_limits(system, "[long] tell me everything",
                                         max_answer_chars=120, max_tokens=64))
    assert len(reply.text) <= 120 and "this bot's answer limit" in reply.text, reply.text
    asked = [r for r in model_server.requests if "[long]" in _first_user(r.body)
             and not _system_text(r.body).startswith("You are Switchboard's router.")]
    assert asked and asked[-1].body is not None and asked[-1].body["max_tokens"] == 64


async def _ask_with_limits(system: RunningSystem, text: str, *, max_answer_chars: int,
                           max_tokens: int) -> Reply:
    """Send a ChatMessage as a bot with answer limits would (its gateway sets them)."""
    nc = await nats.connect(system.nats_url)
    try:
        bridge = Bridge(nc, Subjects(), "limits-bot")
        answered: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        async def on_outbound(message: object) -> None:
            if isinstance(message, Reply) and not answered.done():
                answered.set_result(message)

        await bridge.start(on_outbound)
        await bridge.send(ChatMessage(message_id="limits-1", session="rm-limits",
                                      origin="limits-bot", user_id="u-limits", text=text,
                                      max_answer_chars=max_answer_chars, max_tokens=max_tokens))
        async with asyncio.timeout(60):
            return await answered
    finally:
        await nc.close()
