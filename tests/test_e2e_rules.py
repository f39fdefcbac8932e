"""Rules hold for the whole request: ``switchboard up`` (every actor
its own process, a real nats-server) whose tiers are four models of a local OpenAI-compatible
server, so the server's log says which tier every call went to.

Shown here: with a ``tier_max: 2`` rule no call of the request — router, planner, agent,
reflector (after the run and after a 👎), BRANCH's brainstormers — goes above tier 2; a run
paused on a question is answered only by a message of the person it asked that the router
would answer and no rule refuses.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
import pytest_asyncio
from openai_standin import Answer, Call, ChatRequest, OpenAIStandin, RecordedRequest
from session_events import read_session_events
from system import RunningSystem, running_system

from actors.router import AMBIENT_RULE
from gateway.bridge import Bridge
from protocol import (
    FEEDBACK_DOWN,
    ChatMessage,
    ConsolidatedOptions,
    Control,
    ControlAction,
    ErrorCode,
    ExecutionEvent,
    Outbound,
    Reply,
    Subjects,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "sk-test-rules-0123456789"
KEY_VAR = "SB_TEST_RULES_KEY"
TIER_OF = {f"t{t}": t for t in (1, 2, 3, 4)}
ORIGIN = "rules-test"


def _route(request: ChatRequest) -> Answer:
    text = request.last_user_text
    fields: dict[str, Any] = {"respond": True, "flow": "simple", "task_type": "social",
                              "role": "researcher", "complexity": "simple", "reason": "chat"}
    if AMBIENT_RULE in request.system_text and text.startswith("<@"):
        fields.update(respond=False, reason="talking to someone else")
    elif ".py" in text:
        fields.update(flow="sequential", task_type="coding", role="python_coder")
    elif "pros and cons" in text:
        fields.update(flow="branch", task_type="brainstorm", role="architect")
    return Answer.json_in_fence(fields)


def _work(request: ChatRequest) -> Answer:
    users = [m.get("content") or "" for m in request.messages if m["role"] == "user"]
    if "[bob]" in request.last_user_text:
        return Answer(text=f"Answer from {request.model}.")
    if any("[stuck]" in str(u) for u in users):
        if any("hint" in str(u) for u in users):
            return Answer(text="Done with the hint.\nConfidence: 90\nStatus: done")
        return Answer(text="Which frobnicator do you mean?\nConfidence: 10\nStatus: stuck")
    if any(".py" in str(u) for u in users) and not request.tool_results:
        return Answer.tool_calls(Call("write_file", {"path": "greet.py",
                                                     "content": "print('hi')\n"}))
    return Answer(text=f"Done, answered by {request.model}.")


def brain(request: ChatRequest) -> Answer:
    """Answers each purpose (the system prompt's first line) like a chat model would."""
    system = request.system_text
    if system.startswith("You are Switchboard's router."):
        return _route(request)
    if system.startswith("You are Switchboard's planner."):
        return Answer(text="1. Write the file.\n2. Run it.")
    if system.startswith("You are Switchboard's reflector."):
        return Answer.json_in_fence({
            "what_worked": "one file", "what_failed": "nothing", "root_cause": "none",
            "strategy_change": "none", "key_insight": "small steps"})
    if system.startswith("You are Switchboard's brainstormer."):
        return Answer(text=f"Cache in process ({request.model})\nKeep hot keys in memory.")
    return _work(request)


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(models=tuple(TIER_OF), api_keys=(KEY,)).in_thread() as server:
        server.brain = brain
        yield server


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
           model_server: OpenAIStandin) -> Iterator[RunningSystem]:
    tiers = {t: [{"name": f"openai/t{t}", "api_base": model_server.base_url,
                  "api_key_env": KEY_VAR, "timeout_s": 30}] for t in (1, 2, 3, 4)}
    rules = [{"name": "cheap", "when": {"text": r"\[cheap\]"}, "then": {"tier_max": 2}},
             {"name": "no-crypto", "when": {"text": "(?i)bitcoin"},
              "then": {"refuse": "I don't help with cryptocurrency here."}}]
    with running_system(module_nats, tmp_path_factory.mktemp("rules"),
                        extra_env={KEY_VAR: KEY}, tiers=tiers, escalation=[],
                        brainstorm_models=[], rules=rules) as running:
        yield running


class Person:
    """Sends ChatMessages as a gateway would and collects the answers to them (a Reply, or
    BRANCH's ConsolidatedOptions)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.replies: dict[str, asyncio.Future[Reply | ConsolidatedOptions]] = {}

    async def on_outbound(self, message: Outbound) -> None:
        if isinstance(message, Reply | ConsolidatedOptions):
            waiting = self.replies.get(message.in_reply_to)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)

    async def say(self, session: str, user_id: str, text: str, *, addressed: bool = True
                  ) -> tuple[str, Reply]:
        """Send ``text``; return its message id and the Reply to it."""
        message_id, answer = await self.ask(session, user_id, text, addressed=addressed)
        assert isinstance(answer, Reply), answer
        return message_id, answer

    async def ask(self, session: str, user_id: str, text: str, *, addressed: bool = True
                  ) -> tuple[str, Reply | ConsolidatedOptions]:
        """Send ``text``; return its message id and the answer to it."""
        message_id = uuid.uuid4().hex
        self.replies[message_id] = asyncio.get_running_loop().create_future()
        await self.bridge.send(ChatMessage(message_id=message_id, session=session,
                                           origin=ORIGIN, user_id=user_id, text=text,
                                           addressed=addressed))
        async with asyncio.timeout(120):
            return message_id, await self.replies[message_id]


@pytest_asyncio.fixture
async def person(system: RunningSystem) -> AsyncIterator[Person]:
    nc = await nats.connect(system.nats_url)
    bridge = Bridge(nc, Subjects(), ORIGIN)
    someone = Person(bridge)
    await bridge.start(someone.on_outbound)
    try:
        yield someone
    finally:
        await bridge.stop()
        await nc.close()


def _purpose(request: RecordedRequest) -> str:
    messages = (request.body or {}).get("messages") or [{}]
    first = str(messages[0].get("content") or "")
    return first.split(".")[0].removeprefix("You are Switchboard's ")


def _of(model_server: OpenAIStandin, marker: str) -> list[RecordedRequest]:
    return [r for r in model_server.requests if marker in json.dumps(r.body)]


async def test_a_tier_cap_holds_for_every_model_call_of_the_request(
        system: RunningSystem, model_server: OpenAIStandin, person: Person) -> None:
    _, done = await person.say("rules-seq", "ann", "[cheap] write greet.py that says hi")
    assert done.error is None, done
    await model_server.wait_for(lambda rs: [r for r in _of(model_server, "[cheap]")
                                            if _purpose(r) == "reflector"], timeout=60)
    await person.bridge.control(Control(session="rules-seq", action=ControlAction.FEEDBACK,
                                        value=FEEDBACK_DOWN, user_id="ann", origin=ORIGIN,
                                        role="python_coder"))
    await model_server.wait_for(lambda rs: len([r for r in _of(model_server, "[cheap]")
                                                if _purpose(r) == "reflector"]) >= 2,
                                timeout=60)  # the 👎's reflection
    _, options = await person.ask("rules-branch", "ann",
                                  "[cheap] pros and cons of caching approaches?")
    assert isinstance(options, ConsolidatedOptions) and options.options, options
    calls = [(_purpose(r), TIER_OF[str(r.model)]) for r in _of(model_server, "[cheap]")]
    assert {"router", "planner", "python_coder", "reflector", "brainstormer"} <= {
        purpose for purpose, _ in calls}, calls
    assert [call for call in calls if call[1] > 2] == [], calls


async def _classified(system: RunningSystem, session: str, message_id: str) -> ExecutionEvent:
    events = await read_session_events(system.nats_url, session)
    [event] = [e for e in events if e.kind == "classified" and e.request_id == message_id]
    return event


async def test_only_the_askers_message_the_router_answers_resumes_a_paused_run(
        system: RunningSystem, model_server: OpenAIStandin, person: Person) -> None:
    session = "rules-paused"
    _, question = await person.say(session, "alice", "[stuck] write frob.py")
    assert "Which frobnicator do you mean?" in question.text, question

    chatter, silence = await person.say(session, "alice", "<@99> lunch at noon?",
                                        addressed=False)  # meant for someone else
    crypto, refusal = await person.say(session, "alice", "pay the frobnicator in bitcoin")
    bob, to_bob = await person.say(session, "bob", "[bob] what time is it?")  # not asked
    sources = [(await _classified(system, session, mid)).source
               for mid in (chatter, crypto, bob)]
    assert sources == ["model", "rule", "model"]
    assert silence.text == ""
    assert refusal.error is ErrorCode.REFUSED
    assert to_bob.error is None and to_bob.text == "Answer from t1."
    # Bob's own task would start a run that replaces alice's paused one: it is held.
    _, held = await person.say(session, "bob", "[bob] write bar.py")
    assert "waiting for <@alice>'s answer" in held.text, held

    hint, done = await person.say(session, "alice", "here is a hint: the blue one")
    assert (await _classified(system, session, hint)).source == "resume"
    assert "Done with the hint." in done.text, done
    resumed = [r for r in model_server.requests if "hint" in json.dumps(r.body)
               and _purpose(r) == "python_coder"]
    said = json.dumps([r.body for r in resumed])
    assert resumed and not any(word in said for word in ("[bob]", "lunch", "bitcoin"))
