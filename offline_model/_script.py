"""What the offline model says: deterministic replies chosen by purpose and conversation.

Pure logic, no litellm: ``offline_model`` streams these replies through litellm. The
purpose is read from the first system message, whose first line is always
``You are Switchboard's <purpose>.`` (``actors/prompts``).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import zlib
from typing import Any, NamedTuple

from actors.memory import REMEMBERED_HEADING
from actors.router import AMBIENT_RULE, keyword_route
from offline_model._recipes import Recipe, find_recipe

_log = logging.getLogger(__name__)

_PURPOSE = re.compile(r"^\s*You are Switchboard's ([\w\- ]+)\.", re.IGNORECASE)
_GREETING = re.compile(
    r"^\W*(hi|hello|hey|heya|yo|hiya|howdy|greetings|good (morning|afternoon|evening))\b",
    re.IGNORECASE,
)
_THANKS = re.compile(r"^\W*(thanks|thank you|thx|cheers)\b", re.IGNORECASE)
_EXIT_CODE = re.compile(r"exit code:\s*(-?\d+)", re.IGNORECASE)
_CONFIGURE = (
    "To use a real model, set SB_MODEL (for example SB_MODEL=openrouter/openai/gpt-4o-mini "
    "with OPENROUTER_API_KEY exported) or name models per tier in topology.yaml."
)


LESSONS_HEADING = "Lessons from earlier runs:"
HISTORY_HEADING = "Conversation so far:"
"""Headings of ``actors/prompts/planner.txt`` that delimit the lessons section."""
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_EMPTY_MARKERS = {"(none)", "none", "(empty)", "-"}


class ScriptedCall(NamedTuple):
    """A tool call the offline model makes; ``arguments`` is JSON text."""

    call_id: str
    name: str
    arguments: str


class ScriptedReply(NamedTuple):
    """One offline answer: its text and tool calls."""

    text: str
    tool_calls: tuple[ScriptedCall, ...] = ()


def content_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of OpenAI parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def purpose_of(messages: list[dict[str, Any]]) -> str:
    """``<purpose>`` from the first system message's first line, or ``assistant``."""
    for message in messages:
        if message.get("role") == "system":
            match = _PURPOSE.match(content_text(message))
            return match.group(1).strip().lower().replace(" ", "_") if match else "assistant"
    return "assistant"


def script_reply(model: str, messages: list[dict[str, Any]], *, has_tools: bool) -> ScriptedReply:
    """The offline model's reply to ``messages``.

    Args:
        model: the full model name shown in every reply (``offline/tier-2``).
        messages: the OpenAI-style conversation.
        has_tools: tools were offered (the SEQUENTIAL agentic loop).
    """
    purpose = purpose_of(messages)
    label = f"[offline model {model}]"
    if purpose == "planner":
        return ScriptedReply(_plan(label, messages))
    if purpose == "reflector":
        return ScriptedReply(_reflection(model, messages))
    if purpose == "brainstormer":
        return ScriptedReply(_brainstorm(model, messages))
    if purpose == "router":
        return ScriptedReply(_route(model, messages))
    if has_tools:
        return _agent_turn(label, purpose, messages)
    return ScriptedReply(_chat(label, last_user(messages)) + _recalled(messages))




def _recalled(messages: list[dict[str, Any]]) -> str:
    """A note naming what the person said elsewhere, when their memory was shown: the offline
    model cannot use memory, but shows that it got it (docs/design.md#reflexion-memory, per-user
    memory)."""
    for message in messages:
        text = content_text(message)
        if message.get("role") == "system" and text.startswith(REMEMBERED_HEADING):
            said = [line.partition("user:")[2].strip() for line in text.splitlines()
                    if line.startswith("- user:")]
            if said:
                return f'\n\n(From another conversation I remember you said: "{said[-1]}")'
    return ""


def last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message).strip()
    return ""


def _report(confidence: int, status: str) -> str:
    return f"\n\nConfidence: {confidence}\nStatus: {status}"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- planner -------------------------------------------------------------------------------


def _lessons(messages: list[dict[str, Any]]) -> list[str]:
    """Lines of the ``Lessons from earlier runs:`` section (up to ``Conversation so far:``).

    Bullets are removed; blank lines, sub-headings (``Key insights:``) and ``(none)`` skipped.
    """
    prompt = "\n".join(content_text(m) for m in messages if m.get("role") == "system")
    _, found, rest = prompt.partition(LESSONS_HEADING)
    if not found:
        return []
    section = rest.split(HISTORY_HEADING, 1)[0]
    lessons = []
    for line in section.splitlines():
        stripped = _BULLET.sub("", line).strip()
        if not stripped or stripped.endswith(":") or stripped.lower() in _EMPTY_MARKERS:
            continue
        lessons.append(stripped)
    return lessons


def _plan(label: str, messages: list[dict[str, Any]]) -> str:
    task = last_user(messages)
    lessons = _lessons(messages)
    recipe = find_recipe(task)
    steps = []
    if lessons:
        steps.append(f'Apply the lessons from earlier runs, first: "{_short(lessons[0], 160)}".')
    if recipe:
        steps += [
            f"Write {recipe.module}.py with a function {recipe.function}() that {recipe.summary}.",
            f"Write test_{recipe.module}.py covering normal input and edge cases.",
            f"Run python test_{recipe.module}.py and fix any failure.",
            "Report the files written and the test outcome.",
        ]
    else:
        steps += [
            f'Clarify what "{_short(task, 60)}" needs: inputs, outputs, constraints.',
            "Write the work down in the workspace as notes (PLAN.md).",
            "Check the result against the request.",
            "Report what was done and what is still open.",
        ]
    steps = steps[:5]
    body = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    return f"{label} Plan for: {_short(task)}\n{body}"


# --- reflector -----------------------------------------------------------------------------


def _section(prompt: str, heading: str) -> str:
    match = re.search(rf"^{heading}:\s*\n(.*?)(?=^\w[\w ]*:\s*$|\Z)", prompt,
                      re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else ""


def _score(prompt: str, name: str, default: int) -> int:
    """The score after ``name`` (``task_completion: 40`` or ``task completion 40``)."""
    pattern = name.replace("_", r"[\s_]")
    match = re.search(rf"{pattern}\D{{0,12}}(\d{{1,3}})", prompt, re.IGNORECASE)
    return int(match.group(1)) if match else default


def _reflection(model: str, messages: list[dict[str, Any]]) -> str:
    prompt = "\n".join(content_text(m) for m in messages)
    task = _section(prompt, "Task") or last_user(messages) or "the task"
    trajectory = _section(prompt, "Trajectory") or prompt
    completion = _score(prompt, "task_completion", 50)
    efficiency = _score(prompt, "efficiency", 50)
    failures = [line.strip() for line in trajectory.splitlines()
                if re.search(r"\b(error|failed|traceback|exception|refused)\b", line, re.I)]
    exit_codes = [int(code) for code in _EXIT_CODE.findall(trajectory)]
    failed_run = bool(exit_codes) and exit_codes[-1] != 0
    if completion < 60 or failed_run:
        first = _short(failures[0], 120) if failures else "the result did not meet the request"
        fields = {
            "what_worked": "The run followed its plan and kept its work in the workspace.",
            "what_failed": f"The run ended without a verified result: {first}",
            "root_cause": "The solution was not checked against tests early enough to "
                          "catch the problem.",
            "strategy_change": "Run the tests right after each change and fix the first "
                               "failure before writing more code.",
            "key_insight": f'For "{_short(task, 60)}": verify with a test run before '
                           "answering.",
        }
    else:
        slow = efficiency < 70
        fields = {
            "what_worked": "Writing the solution, then its tests, then running them gave a "
                           "verified result.",
            "what_failed": "It took more turns than needed." if slow else "Nothing significant.",
            "root_cause": "Too much exploration before writing code." if slow
                          else "No failure: the task was small and well specified.",
            "strategy_change": "Write the solution and its tests in the first turns." if slow
                               else "Keep the write, test, run order.",
            "key_insight": f'For "{_short(task, 60)}": a small test file run with python '
                           "proves the solution before answering.",
        }
    fields["model"] = f"offline model {model}"
    return json.dumps(fields, ensure_ascii=False, indent=2)


# --- router --------------------------------------------------------------------------------

_OTHER_PERSON = re.compile(r"^\s*<@!?\d+>")


def _route(model: str, messages: list[dict[str, Any]]) -> str:
    """The router's JSON, decided by the keyword rules (``actors.router.keyword_route``); an
    ambient message that starts by mentioning someone is left to that person."""
    text = last_user(messages)
    route = keyword_route(text)
    prompt = "\n".join(content_text(m) for m in messages if m.get("role") == "system")
    ambient = AMBIENT_RULE in prompt
    respond = route.respond and not (ambient and _OTHER_PERSON.match(text))
    reason = route.reason if respond else "addressed to someone else"
    answer = {"respond": respond, "flow": route.flow.value, "task_type": route.task_type.value,
              "role": route.role, "complexity": route.complexity.value,
              "reason": f"offline model {model}, keyword rules: {reason}"}
    return f"```json\n{json.dumps(answer)}\n```"


# --- brainstormer --------------------------------------------------------------------------

_APPROACHES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Start with the simplest thing that works",
     "Solve {q} with one straightforward component first and measure before adding more.",
     ("fast to build", "easy to understand and change"),
     ("may need rework at scale",)),
    ("Split it into independent components",
     "Divide {q} into small parts with clear interfaces that can evolve and scale separately.",
     ("parts scale and fail independently", "clear ownership"),
     ("more moving parts", "integration testing needed")),
    ("Use an existing managed service or library",
     "Adopt a proven off-the-shelf solution for {q} instead of building it.",
     ("least code to maintain", "battle-tested"),
     ("less control", "vendor lock-in or licence cost")),
    ("Make it event-driven",
     "Handle {q} as a stream of events processed asynchronously by workers.",
     ("absorbs load spikes", "loose coupling"),
     ("eventual consistency", "harder to debug")),
    ("Prototype first, then harden",
     "Build a throwaway prototype of {q} to learn the real constraints, then rebuild the "
     "parts that matter.",
     ("learns quickly from real use",),
     ("prototype code tends to stay", "two builds")),
)


def _brainstorm(model: str, messages: list[dict[str, Any]]) -> str:
    question = _short(last_user(messages) or "the problem", 80)
    tier = re.search(r"(\d+)\D*$", model)
    offset = int(tier.group(1)) if tier else zlib.crc32(model.encode())
    others = len(_APPROACHES) - 1
    picks = (0, 1 + offset % others, 1 + (offset + 1) % others)
    approaches = []
    for index in picks:
        title, summary, pros, cons = _APPROACHES[index]
        approaches.append({
            "title": title,
            "summary": summary.format(q=f'"{question}"') + f" (offline model {model})",
            "pros": list(pros),
            "cons": list(cons),
        })
    return json.dumps({"model": f"offline model {model}", "approaches": approaches},
                      ensure_ascii=False, indent=2)


# --- agents without tools (SIMPLE) ---------------------------------------------------------


def _chat(label: str, question: str) -> str:
    if not question or _GREETING.match(question):
        text = (f"{label} Hello! I'm Switchboard, running on the built-in offline model: it "
                "needs no key or network, but it only gives scripted answers. " + _CONFIGURE)
        return text + _report(90, "done")
    if _THANKS.match(question):
        return f"{label} You're welcome!" + _report(90, "done")
    recipe = find_recipe(question)
    if recipe:
        text = (f"{label} Here is a function that {recipe.summary}:\n\n```python\n"
                f"{recipe.code}```\n\nAsk me to write and test it to see the agentic loop.")
        return text + _report(80, "done")
    text = (f'{label} I can\'t really answer "{_short(question)}": the offline model has no '
            f"knowledge, it only demonstrates the system. {_CONFIGURE} Offline, try asking me "
            "to write and test a small Python function (reverse a string, fizzbuzz, factorial).")
    return text + _report(30, "done")


# --- agents with tools (SEQUENTIAL) --------------------------------------------------------


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """Contents of the tool messages after the last user message (this run's results)."""
    start = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    return [content_text(m) for m in messages[start + 1 :] if m.get("role") == "tool"]


def _call(turn: int, name: str, **arguments: str) -> ScriptedCall:
    return ScriptedCall(f"call_{turn}_{name}", name, json.dumps(arguments))


def _explicit_command(task: str) -> str | None:
    match = re.search(r"`([^`\n]+)`", task) or re.match(r"^\s*run:?\s+(.+)$", task, re.I)
    if not match:
        return None
    command = match.group(1).strip()
    try:
        shlex.split(command)
    except ValueError:
        return None
    return command


def _agent_turn(label: str, purpose: str, messages: list[dict[str, Any]]) -> ScriptedReply:
    task = last_user(messages)
    results = _tool_results(messages)
    turn = len(results) + 1
    command = _explicit_command(task) if purpose == "command_executor" else None
    if command:
        return _command_turn(label, command, results, turn)
    recipe = find_recipe(task)
    if recipe:
        return _recipe_turn(label, recipe, results, turn)
    return _unknown_turn(label, task, results, turn)


def _outcome(result: str) -> tuple[bool, str]:
    """Whether a tool result is a success, and its last meaningful line."""
    lines = [line for line in result.strip().splitlines() if line.strip()]
    tail = lines[-1].strip() if lines else "(no output)"
    if result.lstrip().lower().startswith("error"):
        return False, _short(lines[0] if lines else result, 160)
    codes = _EXIT_CODE.findall(result)
    return (not codes or int(codes[0]) == 0), _short(tail, 160)


def _command_turn(label: str, command: str, results: list[str], turn: int) -> ScriptedReply:
    if not results:
        text = f"{label} Running `{command}` in the workspace." + _report(70, "continue")
        return ScriptedReply(text, (_call(turn, "run_command", command=command),))
    ok, _ = _outcome(results[-1])
    output = results[-1].strip()
    shown = output if len(output) <= 1500 else output[:1500] + "\n…"
    verdict = "It succeeded" if ok else "It failed"
    text = f"{label} I ran `{command}`. {verdict}:\n```\n{shown}\n```"
    return ScriptedReply(text + _report(85 if ok else 40, "done"))


def _recipe_turn(label: str, recipe: Recipe, results: list[str], turn: int) -> ScriptedReply:
    solution, tests = f"{recipe.module}.py", f"test_{recipe.module}.py"
    run = f"python {tests}"
    if turn == 1:
        text = (f"{label} Step 1: I'll write {solution} with {recipe.function}(), which "
                f"{recipe.summary}.")
        call = _call(turn, "write_file", path=solution, content=recipe.code)
        return ScriptedReply(text + _report(70, "continue"), (call,))
    if turn == 2:
        text = f"{label} Step 2: tests for the normal cases and the edge cases in {tests}."
        call = _call(turn, "write_file", path=tests, content=recipe.tests)
        return ScriptedReply(text + _report(75, "continue"), (call,))
    if turn == 3:
        text = f"{label} Step 3: running the tests with `{run}`."
        return ScriptedReply(text + _report(80, "continue"), (_call(turn, "run_command",
                                                                     command=run),))
    ok, tail = _outcome(results[-1])
    errors = [r for r in results[:-1] if r.lstrip().lower().startswith("error")]
    if ok and not errors:
        text = (f"{label} Done. I wrote <<{solution}>> with {recipe.function}(), which "
                f"{recipe.summary}, and <<{tests}>>. `{run}` passed: {tail}")
        return ScriptedReply(text + _report(90, "done"))
    problem = tail if not ok else _short(errors[0], 160)
    text = (f"{label} I wrote {solution} and {tests}, but it did not all go well: {problem}. "
            "The offline model cannot debug this further; a real model can. " + _CONFIGURE)
    return ScriptedReply(text + _report(20, "done"))


def _unknown_turn(label: str, task: str, results: list[str], turn: int) -> ScriptedReply:
    if turn == 1:
        notes = (
            "# Notes from the offline model\n\n"
            f"Task: {task}\n\n"
            "The offline model cannot write code for this task: it only knows a few small\n"
            "Python exercises (reverse a string, palindrome, fibonacci, factorial, fizzbuzz,\n"
            "sum of a list, primes, vowels).\n\n"
            f"{_CONFIGURE}\n"
        )
        text = (f"{label} I can't solve this offline; I'm writing PLAN.md with notes on how "
                "to get it done.")
        return ScriptedReply(text + _report(30, "continue"),
                             (_call(turn, "write_file", path="PLAN.md", content=notes),))
    ok, tail = _outcome(results[-1])
    saved = "I left notes in <<PLAN.md>>." if ok else f"I could not even save notes: {tail}."
    text = (f'{label} The offline model cannot do "{_short(task)}": it has no real '
            f"knowledge, only scripted answers. {saved} {_CONFIGURE}")
    return ScriptedReply(text + _report(20, "done"))


TEXT_CHUNKS = 6
"""Pieces a streamed answer comes in."""


def usage_counts(messages: list[dict[str, Any]], reply: ScriptedReply) -> Any:
    """Rough token counts: about four characters per token, four tokens per message."""
    prompt = sum(len(content_text(m)) // 4 + 4 for m in messages)
    produced = len(reply.text) + sum(len(c.arguments) + len(c.name) for c in reply.tool_calls)
    completion = max(1, produced // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def split(text: str, parts: int) -> list[str]:
    """``text`` in about ``parts`` pieces cut at spaces; concatenating them gives ``text``."""
    if not text:
        return []
    size = max(1, len(text) // parts)
    pieces, start = [], 0
    while start < len(text):
        end = text.find(" ", start + size)
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    return pieces
