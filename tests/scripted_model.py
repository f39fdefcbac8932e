"""A scripted model for end-to-end tests of the agentic loop, through the genuine litellm path.

Registered as a litellm custom provider by a test topology (``providers: {scripted:
scripted_model:ScriptedLLM}``; the actor processes get ``tests/`` on ``PYTHONPATH``). The task
text (the first user message) picks the script:

- ``[stuck]``: every turn says it is stuck (``Status: stuck``), so the loop escalates through
  the whole tier path and then asks the person; once the conversation holds a user message
  with ``hint``, it writes ``answer.txt`` and finishes.
- ``[long N]``: N turns, each writing ``step_<i>.txt``, then done.
- ``[commit]``: writes ``hello.py`` and finishes.
- ``[flaky N FILE]``: as ``[long N]``, and each call appends how many tool results its
  conversation holds to ``FILE.calls``; the call that holds 6 (after the agent's checkpoint
  of turn 5, ``actors.runs.CHECKPOINT_EVERY``) is refused as a bad request
  (litellm's ``BadRequestError``: no retry fixes it) unless ``FILE`` exists, which the refusal
  creates: the run fails once, and a retry finds ``FILE``.
- ``[ask]``: runs ``echo approved-output`` with ``run_command`` (a topology that marks it
  ``approval: ask`` makes the run wait for a decision), then finishes.
- ``[badpath]``: writes ``ok.txt``, then answers with ``<<path>>`` markers for it, a missing
  file, a path out of the workspace and an absolute path.
Options (``ModelSpec.params``): ``delay_s`` before each answer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM

from offline_model._litellm import _chunks, _response
from offline_model._script import ScriptedCall, ScriptedReply, content_text


def _task(messages: list[dict[str, Any]]) -> str:
    return next((content_text(m) for m in messages if m.get("role") == "user"), "")


def _tool_results(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "tool")


def _write(index: int, path: str, content: str) -> ScriptedCall:
    return ScriptedCall(call_id=f"call_{index}", name="write_file",
                        arguments=json.dumps({"path": path, "content": content}))


def script(model: str, messages: list[dict[str, Any]]) -> ScriptedReply:
    task = _task(messages)
    done = _tool_results(messages)
    users = [content_text(m) for m in messages if m.get("role") == "user"]
    if "[stuck]" in task:
        if any("hint" in text for text in users[1:]):
            if done and messages[-1].get("role") == "tool":
                return ScriptedReply(f"[{model}] Done with the hint.\nConfidence: 90\nStatus: done")
            return ScriptedReply(f"[{model}] Thanks, using the hint.\nConfidence: 80\n"
                                 "Status: continue", (_write(done, "answer.txt", "42\n"),))
        return ScriptedReply(f"[{model}] I cannot tell what the frobnicator should do. "
                             "Which frobnicator do you mean?\nConfidence: 10\nStatus: stuck")
    if match := re.search(r"\[flaky (\d+) (\S+)\]", task):
        _flaky(int(match.group(1)), Path(match.group(2)), done)
        task = f"[long {match.group(1)}]"
    if match := re.search(r"\[long (\d+)\]", task):
        total = int(match.group(1))
        if done < total:
            return ScriptedReply(f"[{model}] step {done + 1}\nConfidence: 80\nStatus: continue",
                                 (_write(done, f"step_{done + 1}.txt", f"{done + 1}\n"),))
        return ScriptedReply(f"[{model}] All {total} steps written.\nConfidence: 90\n"
                             "Status: done")
    if "[badpath]" in task:
        if not done:
            return ScriptedReply(f"[{model}] Writing it.\nConfidence: 80\nStatus: continue",
                                 (_write(0, "ok.txt", "fine\n"),))
        return ScriptedReply(f"[{model}] Files: <<ok.txt>> <<missing.txt>> "
                             "<<../../outside.txt>> <</etc/passwd>>\nConfidence: 90\n"
                             "Status: done")
    if "[ask]" in task:
        if not done:
            return ScriptedReply(f"[{model}] Running the check.\nConfidence: 80\n"
                                 "Status: continue", (ScriptedCall(
                                     call_id="call_0", name="run_command",
                                     arguments=json.dumps({"command": "echo approved-output"})),))
        return ScriptedReply(f"[{model}] The check ran.\nConfidence: 90\nStatus: done")
    if "[commit]" in task and not done:
        return ScriptedReply(f"[{model}] Writing it.\nConfidence: 80\nStatus: continue",
                             (_write(0, "hello.py", "print('hello')\n"),))
    return ScriptedReply(f"[{model}] Done: <<hello.py>>\nConfidence: 90\nStatus: done")


def _flaky(total: int, marker: Path, done: int) -> None:
    """``[flaky N FILE]``'s record of the call, and its one refusal (see the module doc)."""
    with (marker.parent / f"{marker.name}.calls").open("a", encoding="utf-8") as calls:
        calls.write(f"{done}\n")
    if done == min(6, total) and not marker.exists():
        marker.write_text("refused once\n", encoding="utf-8")
        raise litellm.BadRequestError(message="scripted: this request is refused once",
                                      model="scripted", llm_provider="scripted")


class ScriptedLLM(CustomLLM):
    """Streams the scripted replies (tool calls included) like the offline model."""

    async def astreaming(  # type: ignore[override]
        self, model: str, messages: list, *args: Any, **kwargs: Any,
    ) -> AsyncIterator[Any]:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        for chunk in _chunks(messages, script(f"scripted/{model}", messages)):
            yield chunk

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
        optional_params = kwargs.get("optional_params") or {}
        await asyncio.sleep(float(optional_params.get("delay_s") or 0))
        return _response(model, messages, script(f"scripted/{model}", messages),
                         kwargs["model_response"])
