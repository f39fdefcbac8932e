"""Should-respond and classification by a model: the request and the parsing of its answer.

One call to a cheap tier (``topology.yaml`` ``router.tier``, 1 by default) returns one JSON
object: ``respond``, ``flow``, ``task_type``, ``role``, ``complexity``, ``reason``. Structured
output uses litellm's ``response_format`` with a JSON schema
(https://platform.openai.com/docs/guides/structured-outputs) where the provider supports it;
otherwise the prompt asks for JSON and the answer is parsed wherever the model put it (a
```json fence inside prose, or bare). BREAKGLASS is not in the schema: it is a permission.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors.prompts import render
from actors.router._types import Route
from core.errors import UnparsableAnswerError
from modelcall import parse_json_object, supports_json_schema
from protocol import AGENT_ROLES, Complexity, Flow, TaskType

MODEL_FLOWS: tuple[str, ...] = (Flow.SIMPLE, Flow.BRANCH, Flow.SEQUENTIAL)
"""Flows a model may choose (never BREAKGLASS)."""

_ROLE_LINES = {
    "command_executor": "runs shell commands and reports their output",
    "python_coder": "writes, runs and tests Python code",
    "js_ts_coder": "writes, runs and tests JavaScript / TypeScript code",
    "devops_engineer": "containers, CI/CD, deployment, infrastructure",
    "architect": "system design and architecture decisions",
    "code_reviewer": "reviews code and points out problems",
    "documentation_writer": "READMEs, docs, tutorials, docstrings",
    "dba": "databases, SQL, schemas, queries, migrations",
    "researcher": "finds out, compares and explains; general questions and chat",
}

ADDRESSED_RULE = ("the person addressed the bot directly, so answer true unless the message "
                  "has no content at all.")
AMBIENT_RULE = ("this message was posted in a thread or channel the bot follows without "
                "mentioning the bot; people also talk to each other there. Answer true only "
                "if the message asks the bot (or everyone) for something or continues the "
                "conversation with the bot; false if it is addressed to someone else or "
                "needs no answer.")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "respond": {"type": "boolean"},
        "flow": {"type": "string", "enum": list(MODEL_FLOWS)},
        "task_type": {"type": "string", "enum": [t.value for t in TaskType]},
        "role": {"type": "string", "enum": list(AGENT_ROLES)},
        "complexity": {"type": "string", "enum": [c.value for c in Complexity]},
        "reason": {"type": "string"},
    },
    "required": ["respond", "flow", "task_type", "role", "complexity", "reason"],
    "additionalProperties": False,
}
"""The JSON schema of the answer (strict mode: every property required, no others)."""


def system_prompt(*, addressed: bool, history: str) -> str:
    """The router's system prompt (``actors/prompts/router.txt``)."""
    roles = "\n".join(f"- {role}: {_ROLE_LINES[role]}" for role in AGENT_ROLES)
    return render("router", respond_rule=ADDRESSED_RULE if addressed else AMBIENT_RULE,
                  task_types=", ".join(t.value for t in TaskType), roles=roles,
                  history=history or "(none)")


def response_format(mode: str) -> dict[str, Any] | None:
    """litellm's ``response_format`` for ``mode`` (``json_schema``, ``json_object``), or None
    (``prompt``)."""
    if mode == "json_schema":
        return {"type": "json_schema",
                "json_schema": {"name": "route", "schema": SCHEMA, "strict": True}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


class _Answer(msgspec.Struct, forbid_unknown_fields=False):
    respond: bool = True
    flow: Flow = Flow.SIMPLE
    task_type: TaskType = TaskType.QUESTION
    role: str = "researcher"
    complexity: Complexity = Complexity.SIMPLE
    reason: str = ""


def _normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """Lower-case enum strings and accept "yes"/"no" for ``respond``, as models write them."""
    out = dict(obj)
    for key in ("flow", "task_type", "role", "complexity"):
        if isinstance(out.get(key), str):
            out[key] = out[key].strip().lower().replace(" ", "_").replace("-", "_")
    if isinstance(out.get("respond"), str):
        out["respond"] = out["respond"].strip().lower() in {"yes", "true", "y", "1"}
    return out


def parse_answer(text: str) -> Route:
    """The route in a model's answer.

    Args:
        text: the whole answer: JSON, or JSON in a code fence inside prose.

    Returns:
        A Route with ``source="model"``.

    Raises:
        UnparsableAnswerError: no JSON object, a field of the wrong type, an unknown flow,
            task type or role, or the BREAKGLASS flow.
    """
    obj = parse_json_object(text)
    if obj is None:
        msg = f"no JSON object in the answer ({len(text)} characters)"
        raise UnparsableAnswerError(msg)
    if "respond" not in obj and "flow" not in obj:
        msg = "the JSON object has neither 'respond' nor 'flow'"
        raise UnparsableAnswerError(msg)
    try:
        answer = msgspec.convert(_normalized(obj), _Answer)
    except msgspec.ValidationError as exc:
        msg = f"the JSON object does not fit: {exc}"
        raise UnparsableAnswerError(msg) from exc
    if answer.flow not in MODEL_FLOWS:
        msg = f"flow {answer.flow!s} is not the model's to choose"
        raise UnparsableAnswerError(msg)
    if answer.role not in AGENT_ROLES:
        msg = f"unknown role {answer.role!r}"
        raise UnparsableAnswerError(msg)
    reason = " ".join(answer.reason.split())[:200]
    return Route(respond=answer.respond, flow=answer.flow, task_type=answer.task_type,
                 role=answer.role, complexity=answer.complexity, reason=reason,
                 source="model")


def response_format_for(mode: str, model: str) -> dict[str, Any] | None:
    """The ``response_format`` for ``model`` under ``router.structured_output`` ``mode``.

    ``auto`` sends the JSON schema to models that support it
    (``modelcall.supports_json_schema``: litellm's model map; never a custom provider such as
    the offline model) and asks for JSON in the prompt otherwise.
    """
    if mode == "auto":
        mode = "json_schema" if supports_json_schema(model) else "prompt"
    return response_format(mode)
