"""Approvals, the pure parts (docs/design.md#approvals): how a delivery goes on from a run that
waits on an approval, what asks, the buttons' ids, the README's example; the whole flow is
``tests/test_e2e_approvals.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from actors.run_control import Resume, resume_from
from actors.run_task import Decision
from core.config import McpStdioSpec, ToolPolicy, Topology, mcp_asks
from gateway.approvals import custom_id, parse_custom_id
from protocol import (
    Checkpoint,
    CheckpointStatus,
    Control,
    ControlAction,
    PendingApproval,
    ReplyTo,
    RequestFacts,
    ToolCall,
)

REPO = Path(__file__).resolve().parent.parent


def _waiting(approval_id: str = "a" * 16) -> Checkpoint:
    return Checkpoint(
        session="s", request_id="r1", role="python_coder", turn=1,
        request=RequestFacts(text="t"), status=CheckpointStatus.AWAITING_APPROVAL,
        approval=PendingApproval(
            approval_id=approval_id, calls=(ToolCall(call_id="c", name="run_command"),),
            asked=("c",), reply_to=ReplyTo(session="s", origin="o", in_reply_to="r1"),
            expires_at=1.0))


def test_only_the_decision_on_the_awaited_approval_resumes_the_run() -> None:
    checkpoint = _waiting()
    assert resume_from(checkpoint, "r1", answering=False, deciding="a" * 16) is Resume.CONTINUE
    assert resume_from(checkpoint, "r1", answering=False, deciding="b" * 16) is Resume.SKIP
    # A redelivery of the message that stopped the run asks again; an answer does nothing.
    assert resume_from(checkpoint, "r1", answering=False) is Resume.REASK
    assert resume_from(checkpoint, "r1", answering=True) is Resume.SKIP
    # A decision on a run no longer waiting (done, another request) changes nothing.
    checkpoint.status = CheckpointStatus.DONE
    assert resume_from(checkpoint, "r1", answering=False, deciding="a" * 16) is Resume.SKIP
    assert resume_from(None, "r1", answering=False, deciding="a" * 16) is Resume.SKIP
    assert resume_from(checkpoint, "r2", answering=False, deciding="a" * 16) is Resume.SKIP


def test_a_decision_says_why_the_model_was_refused() -> None:
    control = Control(session="s", action=ControlAction.DENY, approval_id="a" * 16,
                      user_id="42")
    assert Decision.of(control, 600) == Decision("a" * 16, approved=False,
                                                 reason="the person denied it by 42")
    timeout = Control(session="s", action=ControlAction.APPROVAL_TIMEOUT, approval_id="x")
    assert not Decision.of(timeout, 30).approved
    assert "30 s" in Decision.of(timeout, 30).reason
    assert Decision.of(Control(session="s", action=ControlAction.APPROVE), 1).approved


def test_what_asks_is_configured_per_tool_and_checked() -> None:
    assert ToolPolicy(approval={"run_command": "ask"}).approval == {"run_command": "ask"}
    with pytest.raises(ValidationError):
        ToolPolicy(approval={"rm": "ask"})
    with pytest.raises(ValidationError):
        ToolPolicy.model_validate({"approval": {"run_command": "sometimes"}})
    server = McpStdioSpec(command="x", approval={"git_commit": "ask"})
    assert mcp_asks(server.approval, "git_commit")
    assert not mcp_asks(server.approval, "git_status")
    assert mcp_asks(McpStdioSpec(command="x", approval="ask").approval, "anything")
    assert not mcp_asks(McpStdioSpec(command="x").approval, "anything")


def test_roles_whose_tools_ask_keep_room_for_the_deadline() -> None:
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data.setdefault("tools", {})["approval"] = {"run_command": "ask"}
    data["actors"]["python_coder"]["max_deliveries"] = 2
    with pytest.raises(ValidationError, match="max_deliveries"):
        Topology.model_validate(data)
    data["tools"]["approval"] = {}  # nothing asks: any bound is fine
    assert Topology.model_validate(data).actor("python_coder").max_deliveries == 2


def test_built_in_tool_names_match_the_tools() -> None:
    from actors.tools import TOOL_NAMES
    from core.config import BUILTIN_TOOLS

    assert set(BUILTIN_TOOLS) == set(TOOL_NAMES)


def test_button_ids_fit_discord_and_refuse_forgeries() -> None:
    value = custom_id(ControlAction.APPROVE, "code_reviewer", "0123456789abcdef")
    assert len(value) <= 100
    assert parse_custom_id(value) == (ControlAction.APPROVE, "code_reviewer",
                                      "0123456789abcdef")
    for forged in ("sbap:approve:python_coder:XYZ", "sbap:merge:python_coder:0123456789abcdef",
                   "sbap:approve:Python:0123456789abcdef", value + "0", ""):
        assert parse_custom_id(forged) is None, forged


def test_the_readme_example_loads() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Asking before risky tools (approvals)")[1].split("```yaml")[1]
    example = yaml.safe_load(block.split("```")[0])
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data.setdefault("tools", {}).update(example["tools"])
    topology = Topology.model_validate(data)
    assert topology.tools.approval == {"run_command": "ask"}
    assert topology.tools.approval_timeout_s == 600
