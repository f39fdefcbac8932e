"""Approvals end to end (docs/design.md#approvals): ``switchboard up`` whose ``run_command`` is
marked ``approval: ask``, the OpenAI stand-in as the model (it asks to run ``echo`` and then
says what the tool returned), people in Discord through the genuine discord.py bot and the
Discord stand-in, and the HTTP API.

- In a thread: the approval request comes with Approve and Deny; a stranger's click is refused
  to them alone; the actor process that stopped the run and the gateway that showed the
  buttons are killed (``SIGKILL``), and the asker's Approve, taken by the restarted gateway,
  resumes the run on another replica, which runs the command and answers in the thread;
  Deny gives the model a ``denied`` tool result it reads; ``/stop`` while the run waits ends
  it.
- Through the API: ``awaiting_approval`` with the calls; someone else's decision is 403, a
  wrong approval 409; Approve finishes the run; the SSE stream has the ``approval`` event; a
  run no one answers is denied at its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_client import TOKEN, Api
from discord_standin import DiscordStandIn
from discord_standin._payloads import MEMBER_PERMISSIONS
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import containing, discord_system
from openai_standin import Answer, Call, ChatRequest, OpenAIStandin
from session_events import read_session_events
from system import RunningSystem
from waiting import eventually, until

from core.config import Settings, load_topology
from gateway.chat import run_chat
from switchboard.embedded import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
KEY, KEY_VAR = "sk-test-approvals-000000000000", "SB_TEST_APPROVAL_KEY"
EPHEMERAL = 1 << 6


def brain(request: ChatRequest) -> Answer:
    system = request.system_text
    if system.startswith("You are Switchboard's router."):
        return Answer.json_in_fence({"respond": True, "complexity": "simple",
                                     "flow": "sequential", "task_type": "coding",
                                     "role": "python_coder", "reason": "run a command"})
    if system.startswith("You are Switchboard's planner."):
        return Answer(text="1. Run the check.\n2. Report.")
    if system.startswith("You are Switchboard's reflector."):
        return Answer.json_in_fence({
            "what_worked": "asking", "what_failed": "nothing", "root_cause": "none",
            "strategy_change": "none", "key_insight": "ask first"})
    if request.tools:
        results = request.tool_results
        if not results:
            return Answer.tool_calls(Call("run_command", {"command": "echo approved-output"}),
                                     text="I will run the check.")
        output = " | ".join(str(r.get("content") or "").replace("\n", " ") for r in results)
        return Answer(text=f"The command said: {output}")
    return Answer(text="Hello!")


def _topology(base_url: str, *, timeout_s: float, replicas: int = 1) -> dict[str, Any]:
    spec = {"name": "openai/alpha", "api_base": base_url, "api_key_env": KEY_VAR,
            "timeout_s": 30}
    tools = {"approval": {"run_command": "ask"}, "approval_timeout_s": timeout_s}
    return {"tiers": {t: [spec] for t in (1, 2, 3, 4)}, "escalation": [],
            "brainstorm_models": [], "router": {"timeout_s": 10}, "tools": tools,
            "actors": {"python_coder": {"replicas": replicas}}}


@contextlib.asynccontextmanager
async def _model() -> AsyncIterator[OpenAIStandin]:
    async with OpenAIStandin(models=("alpha",), api_keys=(KEY,), brain=brain) as server:
        yield server


def _approval_message(s: DiscordStandIn, after: int = 0) -> dict[str, Any] | None:
    found = [m for m in s.bot_messages() if m.get("components") and int(m["id"]) > after]
    return found[-1] if found else None


def _button(message: dict[str, Any], label: str) -> str:
    for row in message["components"]:
        for button in row["components"]:
            if button.get("label") == label:
                return str(button["custom_id"])
    raise AssertionError(f"no {label} button in {message['components']}")


async def _tracked(system: RunningSystem, message: dict[str, Any]) -> None:
    """Wait until the gateway knows what ``message`` is (it learns the id once Discord
    answered the post: a click before that is told the approval is unknown)."""
    approval_id = _button(message, "Approve").rsplit(":", 1)[1]
    seen = await asyncio.to_thread(system.wait_for_output, f"approval {approval_id} asked", 60)
    assert seen, "".join(system.output[-40:])


async def _events_of(system: RunningSystem, sessions: list[str], kind: str) -> list[Any]:
    for session in sessions:
        events = await read_session_events(system.nats_url, session)
        if any(e.kind == kind for e in events):
            return events
    return []


async def test_approve_in_the_thread_after_the_holder_is_killed_and_deny(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    s.set_permissions(s.everyone, MEMBER_PERMISSIONS)  # no one but alice manages messages
    bob, carol = s.add_user("bob"), s.add_user("carol")
    async with _model() as model, discord_system(
            nats_url, tmp_path, s, env={KEY_VAR: KEY},
            **_topology(model.base_url, timeout_s=120, replicas=2)) as system:
        asked = await s.post_user_message(s.channel_id, bob["id"], "run the check for me")
        approval = await s.wait_for(lambda: _approval_message(s), timeout=120,
                                    what="the approval request with its buttons")
        assert "run_command" in approval["content"] and "approved-output" in approval["content"]
        thread = approval["channel_id"]
        await _tracked(system, approval)

        # Someone who did not ask (and manages nothing) is refused, and only they are told.
        click = await s.click_button(thread, approval["id"], carol["id"],
                                     _button(approval, "Approve"))
        record = s.interactions.by_token[click["token"]]
        await s.wait_for(lambda: record["callbacks"], timeout=30, what="the refusal")
        refusal = record["callbacks"][0]
        assert refusal["type"] == 4 and refusal["data"]["flags"] & EPHEMERAL, refusal
        assert s.by_id[approval["id"]]["components"], "the buttons must stay"

        # The replica that stopped the run dies; the run waits in JetStream, not in it.
        sessions = [f"discord-{thread}", f"discord-{s.channel_id}"]
        events = await _events_of(system, sessions, "approval_requested")
        holder = next(e for e in events if e.kind == "approval_requested")
        os.kill(holder.pid, signal.SIGKILL)
        # So does the gateway that showed the buttons: the click reaches its restart.
        connected = len(s._gateway_server.sessions_of(s.bot))
        os.kill(system.pids()["gateway"], signal.SIGKILL)

        async def reconnected() -> bool:
            sessions = s._gateway_server.sessions_of(s.bot)
            return len(sessions) > connected and sessions[-1].ws is not None

        await eventually(reconnected, within_s=90, what="the restarted gateway to connect")
        # A click before the restarted bot is ready is lost or told the approval is unknown:
        # click until the approval message says it was decided.
        for _ in range(8):
            await s.click_button(thread, approval["id"], bob["id"],
                                 _button(approval, "Approve"))
            with contextlib.suppress(TimeoutError):
                await s.wait_for(lambda: not s.by_id[approval["id"]]["components"],
                                 timeout=15, what="the approval decided")
                break
        await s.wait_for(lambda: containing(s, thread, "The command said:"), timeout=120,
                         what="the answer after the approval")
        answer = containing(s, thread, "The command said:")[-1]["content"]
        assert "approved-output" in answer and "[denied]" not in answer, answer
        decided = s.by_id[approval["id"]]
        assert not decided["components"] and f"<@{bob['id']}>" in decided["content"], decided

        events = await _events_of(system, sessions, "approval_decided")
        resumed = [e for e in events if e.kind == "approval_decided"]
        assert resumed and all(e.pid != holder.pid for e in resumed), resumed
        assert any(e.kind == "tool_call" and e.detail.startswith("run_command ok")
                   for e in events), [e.detail for e in events if e.kind.startswith("tool")]
        assert asked["id"]

        # Deny: the model is told the call was refused, and says so.
        last = int(approval["id"])
        await s.post_user_message(s.second_channel_id, bob["id"], "run the check again")
        second = await s.wait_for(lambda: _approval_message(s, after=last), timeout=120,
                                  what="the second approval request")
        await _tracked(system, second)
        await s.click_button(second["channel_id"], second["id"], bob["id"],
                             _button(second, "Deny"))
        await s.wait_for(lambda: containing(s, second["channel_id"], "[denied]"), timeout=120,
                         what="the answer after the denial")
        # One answer per request: the redelivered request of the killed replica (its ack was
        # lost) did not repeat the answer the approval's delivery gave.
        answers = [m for m in s.bot_messages() if "The command said:" in m["content"]]
        assert len(answers) == 2, [(m["channel_id"], m["content"][:80]) for m in answers]

        # /stop while the run waits: the approval is denied for it, so it resumes and stops
        # before running anything.
        await s.post_user_message(s.channel_id, bob["id"], "run the check a third time")
        third = await s.wait_for(lambda: _approval_message(s, after=int(second["id"])),
                                 timeout=120, what="the third approval request")
        await _tracked(system, third)
        await s.run_command(third["channel_id"], bob["id"], "stop")
        await s.wait_for(lambda: containing(s, third["channel_id"], "Stopped at turn"),
                         timeout=120, what="the stopped run's answer")
        assert not containing(s, third["channel_id"], "The command said:")
        denied = containing(s, second["channel_id"], "The command said:")[-1]["content"]
        assert "approved-output" not in denied.split("said:", 1)[1].split("[denied]")[1], denied


async def test_approvals_through_the_api_and_the_deadline(nats_url: str, tmp_path: Path
                                                          ) -> None:
    listen = f"127.0.0.1:{free_port()}"
    from system import running_system

    async with _model() as model:
        context = running_system(nats_url, tmp_path, extra_env={
            KEY_VAR: KEY, "SB_API_TOKEN": TOKEN, "SB_API_LISTEN": listen},
            **_topology(model.base_url, timeout_s=6))
        system = await asyncio.to_thread(context.__enter__)
        try:
            async with aiohttp.ClientSession() as http:
                api = Api(f"http://{listen}", http)

                async def _ready() -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        return (await api.call("GET", "/healthz"))[0] == 200
                    return False

                await eventually(_ready, within_s=60, what="the API to answer")
                await _api_approve(api)
                await _api_deadline(api)
            await _terminal_approve(system)
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)


async def _terminal_approve(system: RunningSystem) -> None:
    """``switchboard chat`` shows the request and asks; ``y`` approves."""
    settings = Settings(topology=system.topology_path, data_dir=system.data_dir,
                        nats_url=system.nats_url)
    asked: list[str] = []

    def confirm(prompt: str) -> str:
        asked.append(prompt)
        return "y"

    out = io.StringIO()
    code = await run_chat(settings, load_topology(settings=settings), nats_url=system.nats_url,
                          message="run the check here", session="terminal-approvals",
                          timeout_s=120, out=out, confirm=confirm)
    text = out.getvalue()
    assert code == 0, text
    assert asked == ["Approve? [y/N] "], asked
    assert "Approval needed" in text and "✅ Approved." in text, text
    assert "The command said:" in text and "approved-output" in text.split("said:", 1)[1], text


async def _awaiting(api: Api, run_id: str) -> dict[str, Any]:
    return await until(lambda: api.run(run_id),
                       lambda r: r["status"] in {"awaiting_approval", "done", "failed"},
                       within_s=120, what=f"run {run_id} to wait for its approval")


async def _api_approve(api: Api) -> None:
    run = await api.submit("run the check", user="dana")
    view = await _awaiting(api, run["run_id"])
    assert view["status"] == "awaiting_approval", view
    approval = view["approval"]
    assert [c["name"] for c in approval["calls"]] == ["run_command"], approval
    assert "approved-output" in approval["calls"][0]["arguments"]
    path = f"/v1/runs/{run['run_id']}/approvals/{approval['approval_id']}"

    status, body = await api.call("POST", path, body=json.dumps(
        {"decision": "approve", "user": "mallory"}).encode())
    assert status == 403 and body["error"]["code"] == "forbidden", body
    status, body = await api.call("POST", f"/v1/runs/{run['run_id']}/approvals/{'0' * 16}",
                                  body=b'{"decision": "approve"}')
    assert status == 409 and body["error"]["code"] == "conflict", body
    status, body = await api.call("POST", path, body=b'{"decision": "maybe"}')
    assert status == 400, body

    status, body = await api.call("POST", path, body=b'{"decision": "approve"}')
    assert status == 202 and body["decision"] == "approve", body
    status, body = await api.call("POST", path, body=b'{"decision": "deny"}')
    assert status == 409, body  # decided already
    done = await api.settled(run["run_id"], within_s=120)
    assert done["status"] == "done" and "approved-output" in done["answer"], done
    assert "[denied]" not in done["answer"], done
    stream = await api.events(run["run_id"])
    assert [a["approval_id"] for a in stream.of("approval")] == [approval["approval_id"]]
    assert "approval_decided" in stream.names(), stream.names()


async def _api_deadline(api: Api) -> None:
    run = await api.submit("run the check, nobody answers", user="dana")
    view = await _awaiting(api, run["run_id"])
    assert view["status"] == "awaiting_approval", view
    done = await api.settled(run["run_id"], within_s=120)
    assert done["status"] == "done" and "[denied]" in done["answer"], done
    assert "no one approved it within 6 s" in done["answer"], done
