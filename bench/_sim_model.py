"""The simulated model of the ``learning`` scenario: a litellm custom provider whose tiers
differ in what they can do.

Registered by the bench topology (``providers: {sim: bench._sim_model:SimLLM}``) with models
``sim/tier-1`` .. ``sim/tier-4``; it streams its replies (tool calls included) through litellm's
``CustomLLM.astreaming`` exactly as the offline model does
(``offline_model._litellm._chunks``).
What it answers depends on the purpose (the first system line, ``You are Switchboard's
<purpose>.``: ``offline_model._script.purpose_of``):

- ``router``: JSON with flow ``sequential``, role ``python_coder``, task type ``coding``,
  complexity ``medium`` (the fields of ``actors.router._model.SCHEMA``); ``simple`` for a
  greeting;
- ``planner``: a three-step plan; ``reflector``: the reflection JSON;
- an agent turn (tools offered): the task's kind (``bench._learning_kinds.kind_of``, from the
  first user message) has a least tier. Below it, how the model fails is the ``failure``
  option: ``tries`` (the default, as models fail in practice) writes a wrong ``solution.py``
  and reports ``Confidence: 20`` / ``Status: continue``, so the loop escalates after the 2
  low-confidence turns of ``actors.escalation``; ``stuck`` answers ``Confidence: 10`` /
  ``Status: stuck`` and the loop escalates at once (the cheapest failure there is). At or
  above the least tier, the model's first turn writes ``solution.py`` (``write_file``) and
  the next answers ``Status: done``. Tasks of no kind need tier 1.
- anything else (SIMPLE chat): a one-line answer, done.

Options (``ModelSpec.params``): ``delay_s``, seconds before each answer; ``failure``,
``tries`` or ``stuck``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from litellm import CustomLLM

from bench._learning_kinds import kind_of
from offline_model._litellm import _chunks, _response
from offline_model._script import (
    ScriptedCall,
    ScriptedReply,
    content_text,
    last_user,
    purpose_of,
)

ROLE = "python_coder"
"""The role every workload task is routed to."""
_TIER = re.compile(r"tier-(\d)")
_GREETING = re.compile(r"^\W*(hi|hello|hey)\b", re.IGNORECASE)


def tier_of_model(model: str) -> int:
    """The tier in a model name (``sim/tier-3`` → 3; 1 when it names none)."""
    match = _TIER.search(model)
    return int(match.group(1)) if match else 1


def _task(messages: list[dict[str, Any]]) -> str:
    return next((content_text(m) for m in messages if m.get("role") == "user"), "")


def _route(model: str, messages: list[dict[str, Any]]) -> str:
    greeting = bool(_GREETING.match(last_user(messages)))
    answer = {"respond": True, "flow": "simple" if greeting else "sequential",
              "task_type": "social" if greeting else "coding",
              "role": "researcher" if greeting else ROLE,
              "complexity": "simple" if greeting else "medium",
              "reason": f"{model}: bench workload"}
    return f"```json\n{json.dumps(answer)}\n```"


def _reflection(model: str) -> str:
    return json.dumps({
        "what_worked": "Writing the solution in one file, then answering.",
        "what_failed": "Nothing significant.",
        "root_cause": "No failure.",
        "strategy_change": "Start at a model that can do this kind of task.",
        "key_insight": f"{model}: match the model tier to the task.",
    })


def _wrote_capably(messages: list[dict[str, Any]], needed: int) -> bool:
    """Whether a model of tier ``needed`` or above already wrote the solution in this run
    (its assistant messages start with ``[sim/tier-N]`` and call a tool)."""
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            match = _TIER.search(content_text(message)[:24])
            if match and int(match.group(1)) >= needed:
                return True
    return False


def _agent_turn(model: str, messages: list[dict[str, Any]], failure: str) -> ScriptedReply:
    task = _task(messages)
    kind = kind_of(task)
    needed = kind.min_tier if kind is not None else 1
    if tier_of_model(model) < needed:
        if failure == "stuck":
            return ScriptedReply(f"[{model}] This is beyond what I can do reliably: I do not "
                                 "know how to approach it.\nConfidence: 10\nStatus: stuck")
        call = ScriptedCall(f"call_try_{len(messages)}", "write_file", json.dumps(
            {"path": "solution.py", "content": f"# {task}\nraise NotImplementedError\n"}))
        return ScriptedReply(f"[{model}] Trying something; I am not sure it is right.\n"
                             "Confidence: 20\nStatus: continue", (call,))
    if not _wrote_capably(messages, needed):
        call = ScriptedCall("call_1", "write_file", json.dumps(
            {"path": "solution.py", "content": f"# {task}\nprint('solved by {model}')\n"}))
        return ScriptedReply(f"[{model}] Writing solution.py.\nConfidence: 80\n"
                             "Status: continue", (call,))
    return ScriptedReply(f"[{model}] Done: <<solution.py>>\nConfidence: 90\nStatus: done")


def reply_to(model: str, messages: list[dict[str, Any]], *, has_tools: bool,
             failure: str = "tries") -> ScriptedReply:
    """The simulated model's answer (module docstring)."""
    match purpose_of(messages):
        case "router":
            return ScriptedReply(_route(model, messages))
        case "planner":
            return ScriptedReply(f"[{model}] Plan:\n1. Read the request: "
                                 f"{last_user(messages)[:80]}\n2. Write solution.py.\n"
                                 "3. Report the file written.")
        case "reflector":
            return ScriptedReply(_reflection(model))
    if has_tools:
        return _agent_turn(model, messages, failure)
    return ScriptedReply(f"[{model}] Hello from the bench.\nConfidence: 90\nStatus: done")


class SimLLM(CustomLLM):
    """Streams ``reply_to``'s answers after ``delay_s`` seconds (module docstring)."""

    async def astreaming(  # type: ignore[override]  # litellm passes keywords only
        self, model: str, messages: list, *args: Any, **kwargs: Any,
    ) -> AsyncIterator[Any]:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        reply = reply_to(f"sim/{model}" if "/" not in model else model, messages,
                         has_tools=bool(optional_params.get("tools")),
                         failure=str(optional_params.get("failure") or "tries"))
        for chunk in _chunks(messages, reply):
            yield chunk

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        reply = reply_to(f"sim/{model}" if "/" not in model else model, messages,
                         has_tools=bool(optional_params.get("tools")),
                         failure=str(optional_params.get("failure") or "tries"))
        return _response(model, messages, reply, kwargs["model_response"])
