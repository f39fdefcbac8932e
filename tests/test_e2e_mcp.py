"""MCP tools through the genuine agent loop: ``switchboard up`` whose python_coder uses a
streamable-HTTP MCP server (built with the SDK, on 127.0.0.1) and mcp-server-git over stdio in
the sandbox; the OpenAI stand-in calls ``demo__add`` and ``git__git_status`` and answers with
what came back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from mcp_servers import TOKEN, demo_server, http_server
from openai_standin import Answer, Call, ChatRequest, OpenAIStandin
from session_events import read_session_events
from system import RunningSystem, running_system

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
KEY = "sk-test-mcp-0123456789"
SEEN: dict[str, list[str]] = {}
"""The tool names each model request with tools offered (filled in by the brain)."""


def brain(request: ChatRequest) -> Answer:
    system = request.system_text
    if system.startswith("You are Switchboard's router."):
        return Answer.json_in_fence({"respond": True, "complexity": "simple", "flow": "sequential",
                                     "task_type": "coding", "role": "python_coder",
                                     "reason": "use the tools"})
    if system.startswith("You are Switchboard's planner."):
        return Answer(text="1. Add the numbers with the tool.\n2. Report.")
    if system.startswith("You are Switchboard's reflector."):
        return Answer.json_in_fence({
            "what_worked": "the tool", "what_failed": "nothing", "root_cause": "none",
            "strategy_change": "none", "key_insight": "use tools"})
    if request.tools:
        SEEN.setdefault("tools", []).extend(request.tool_names)
        results = request.tool_results
        if not results:
            return Answer.tool_calls(Call("demo__add", {"a": 20, "b": 22}),
                                     Call("git__git_status", {"repo_path": "."}),
                                     text="I'll use the MCP tools.")
        output = " | ".join(str(r.get("content") or "").replace("\n", " ") for r in results)
        return Answer(text=f"The tools said: {output}")
    return Answer(text="Hello!")


@pytest.fixture(scope="module")
def system(module_nats: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with OpenAIStandin(models=("alpha",), api_keys=(KEY,)).in_thread() as model, \
            http_server(demo_server()) as url:
        model.brain = brain
        env = {"SB_MODEL": "openai/alpha", "OPENAI_API_KEY": KEY,
               "OPENAI_BASE_URL": model.base_url, "OPENAI_API_BASE": model.base_url,
               "SB_TEST_MCP_TOKEN": TOKEN}
        servers = {"demo": {"url": url, "headers": {"Authorization": {
                       "env": "SB_TEST_MCP_TOKEN", "prefix": "Bearer "}}},
                   "git": {"command": "mcp-server-git", "args": ["--repository", "{workspace}"]}}
        with running_system(module_nats, tmp_path_factory.mktemp("mcp"), extra_env=env,
                            router={"timeout_s": 10}, mcp_servers=servers,
                            actors={"python_coder": {"mcp": ["demo", "git"]}}) as running:
            yield running


def test_the_model_calls_mcp_tools_and_reads_their_results(system: RunningSystem) -> None:
    session = "terminal-mcp"
    done = system.chat("add 20 and 22 with the tool", session=session, timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The tools said: 42" in done.stdout, done.stdout
    assert "On branch" in done.stdout, done.stdout
    assert {"demo__add", "git__git_status", "run_command"} <= set(SEEN["tools"])
    events = asyncio.run(read_session_events(system.nats_url, session))
    calls = [e.detail for e in events if e.kind == "tool_call"]
    assert any(d.startswith("demo__add ok") and d.endswith("→ 42") for d in calls), calls
    assert any(d.startswith("git__git_status ok") for d in calls), calls
    traced = subprocess.run([sys.executable, "-m", "switchboard.cli", "trace", session],
                            env=system.env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    assert "tool_call demo__add ok" in traced.stdout and "→ 42" in traced.stdout, traced.stdout
    servers = [e.detail for e in events if e.kind == "mcp_server"]
    assert any(d.startswith("demo (http)") for d in servers), servers
    assert any(d.startswith("git (stdio)") for d in servers), servers
