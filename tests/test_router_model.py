"""The router's model call through the real HTTP path (``openai/`` models: the direct path,
litellm resolving the call and Switchboard reading the stream), against the local
OpenAI-compatible server: structured output (``response_format`` with the route's JSON
schema) and the prompt-only form, both parsed into a route."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai_standin import DEFAULT_KEY, Answer, ChatRequest, OpenAIStandin

from actors.router import SCHEMA, response_format_for, route_message
from core.config import ModelSpec, load_topology
from modelcall import complete, register_providers
from protocol import ChatMessage, Flow

pytestmark = pytest.mark.usefixtures("close_model_sessions")

KEY_VAR = "SB_TEST_ROUTER_KEY"
TOPOLOGY = load_topology()
ROUTE = {"respond": True, "flow": "sequential", "task_type": "docs",
         "role": "documentation_writer", "complexity": "simple", "reason": "edit the README"}


def _brain(request: ChatRequest) -> Answer:
    if request.json_schema is not None:
        assert request.json_schema == SCHEMA  # what the router sent, unchanged
        return Answer(text=json.dumps(ROUTE))  # structured output: bare JSON
    return Answer.json_in_fence(ROUTE, prose_before="Sure, here is the routing:")


async def _route(server: OpenAIStandin, mode: str) -> tuple[Any, dict[str, Any]]:
    spec = ModelSpec(name="openai/gpt-4o-mini", api_base=server.base_url, api_key_env=KEY_VAR)
    fmt = response_format_for(mode, spec.name)

    async def ask(messages: list[dict[str, Any]], tier: int) -> str:
        return (await complete(spec, messages, response_format=fmt)).text

    chat = ChatMessage(message_id="m1", session="s1", origin="o", user_id="u",
                       text="make the table of contents in my README nicer")
    route = await route_message(chat, TOPOLOGY, ask=ask)
    body = server.requests[-1].body or {}
    return route, body


@pytest.mark.parametrize("mode", ["json_schema", "prompt"])
async def test_the_routers_call_through_litellm(mode: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, DEFAULT_KEY)
    async with OpenAIStandin(brain=_brain) as server:
        route, body = await _route(server, mode)
    assert route.source == "model", route.reason
    assert (route.flow, route.role) == (Flow.SEQUENTIAL, "documentation_writer")
    if mode == "json_schema":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
    else:
        assert "response_format" not in body
    assert body["messages"][0]["content"].startswith("You are Switchboard's router.")


def test_auto_asks_litellm_which_models_support_schemas() -> None:
    register_providers({"offline": "offline_model:OfflineLLM"})
    assert response_format_for("auto", "offline/tier-1") is None
    assert response_format_for("auto", "openai/no-such-model-here") is None
    known = response_format_for("auto", "openai/gpt-4o-mini")
    assert known is not None and known["type"] == "json_schema"
    assert response_format_for("json_object", "x/y") == {"type": "json_object"}
