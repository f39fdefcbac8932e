"""The classifier's rules (pure: no server)."""

from __future__ import annotations

import pytest

from actors.classifier import BRANCH_TRIGGERS, classify
from actors.config import load_topology
from protocol import ChatMessage, Complexity, Flow, TaskType

TOPOLOGY = load_topology()


def _msg(text: str, **changes: object) -> ChatMessage:
    fields = {"message_id": "1", "session": "terminal-x", "origin": "o", "user_id": "u1",
              "text": text}
    fields.update(changes)
    return ChatMessage(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["hello", "thanks!", "how are you?"])
def test_social_messages_are_simple(text: str) -> None:
    verdict = classify(_msg(text), TOPOLOGY)
    assert verdict.respond and verdict.flow is Flow.SIMPLE


def test_a_question_about_code_is_simple_not_agentic() -> None:
    verdict = classify(_msg("what is async/await in JavaScript?"), TOPOLOGY)
    assert verdict.flow is Flow.SIMPLE and verdict.role == "js_ts_coder"


@pytest.mark.parametrize(("text", "role"), [
    ("write a python function that reverses a string and test it", "python_coder"),
    ("create a react component for a login form in typescript", "js_ts_coder"),
    ("write a Dockerfile and deploy it to kubernetes", "devops_engineer"),
    ("create a postgres schema for orders with an index", "dba"),
    ("write a README for this project", "documentation_writer"),
    ("run kubectl get pods", "command_executor"),
    ("review this code for bugs and fix them", "code_reviewer"),
])
def test_work_is_sequential_with_the_right_role(text: str, role: str) -> None:
    verdict = classify(_msg(text), TOPOLOGY)
    assert verdict.flow is Flow.SEQUENTIAL, verdict.reason
    assert verdict.role == role


@pytest.mark.parametrize("trigger", BRANCH_TRIGGERS)
def test_every_branch_trigger_routes_to_branch(trigger: str) -> None:
    verdict = classify(_msg(f"For our cache, {trigger.upper()} please"), TOPOLOGY)
    assert verdict.flow is Flow.BRANCH and verdict.task_type is TaskType.BRAINSTORM


@pytest.mark.parametrize("text", ["", "   ", "?!", "..."])
def test_messages_without_words_get_no_answer(text: str) -> None:
    assert not classify(_msg(text), TOPOLOGY).respond


def test_breakglass_only_for_allowed_users() -> None:
    allowed = TOPOLOGY.model_copy(update={"breakglass": TOPOLOGY.breakglass.model_copy(
        update={"allowed_users": ("boss",)})})
    assert classify(_msg("hi", breakglass=True, user_id="boss"), allowed).flow is Flow.BREAKGLASS
    assert classify(_msg("hi", breakglass=True, user_id="intern"), allowed).flow is Flow.SIMPLE


def test_complexity_grows_with_scope() -> None:
    short = classify(_msg("write a python function to add two numbers"), TOPOLOGY)
    big = classify(_msg("refactor the entire python backend into a production system"),
                   TOPOLOGY)
    assert short.complexity is Complexity.SIMPLE
    assert big.complexity is Complexity.COMPLEX
    assert TOPOLOGY.max_turns[big.complexity] == 35


def test_general_chat_goes_to_the_bots_profile() -> None:
    assert classify(_msg("hello", profile="architect"), TOPOLOGY).role == "architect"
    assert classify(_msg("hello", profile="wizard"), TOPOLOGY).role == "researcher"
    work = classify(_msg("write a python function to add numbers", profile="architect"),
                    TOPOLOGY)
    assert work.role == "python_coder"  # work still goes to the role that does it
