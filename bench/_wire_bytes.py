"""Bytes on the wire per hop of one typical SIMPLE and one SEQUENTIAL request, in the nested
shapes written before flat messages (figures measured then) and in today's flat shapes
(protocol/README.md, "Flat messages"), encoded by ``protocol.encoder`` (JSON, defaults
omitted).

The content is the same for both: a Discord question answered in one turn (SIMPLE), and a
coding request answered by a four-turn run that reads a module, writes it and its tests, runs
pytest and answers (SEQUENTIAL). The hops: ``chat_message`` (gateway → classifier),
``classification`` (classifier → planner), ``turn_request`` (→ role), ``reply`` (role →
gateway), ``turn_result`` (role → evaluator), ``evaluation`` (evaluator → reflector) and the
run's final ``checkpoint`` (a KV value, not a hop, but one write per SEQUENTIAL task).
``wire_bytes()`` returns ``{flow: {hop: (before, after)}}``; ``BEFORE`` are the figures the
nested shapes gave for this content, measured on commit b2dd9a3 (the nested types are gone).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from actors.run_task import RunTask
from actors.runs import pack_messages
from bench._store import Figure
from protocol import (
    ChatMessage,
    Complexity,
    Flow,
    Reply,
    ReplyTo,
    Scores,
    StepDigest,
    TaskType,
    ToolCall,
    ToolResult,
    ToolUse,
    Usage,
    encoder,
)

BEFORE_COMMIT = "b2dd9a344a00476a5212d3759076d93cce7c44ce"
BEFORE: dict[str, dict[str, int]] = {
    "simple": {"chat_message": 377, "turn_request": 563, "reply": 574},
    "sequential": {"chat_message": 424, "classification": 634, "turn_request": 1155,
                   "reply": 908, "turn_result": 5573, "evaluation": 5696, "checkpoint": 8023},
}
"""Bytes per hop of the nested shapes, measured on ``BEFORE_COMMIT`` with this content."""

MODEL = "openai/gpt-4o-mini"
_CHAT: dict[str, Any] = {
    "message_id": "1311874512996454401", "session": "discord-1311874512996454400",
    "origin": "discord-1299031225810608130", "user_id": "1288150297131823104",
    "user_name": "ada", "channel_id": "1311874512996454400",
    "guild_id": "1277418893561643028", "sent_at": 1764331200.123,
}
SIMPLE_TEXT = ("What's the difference between a list and a tuple in Python, and when should I "
               "use each?")
SEQUENTIAL_TEXT = ("Add a function slugify(title) to utils/text.py that lowercases, strips "
                   "accents and joins words with hyphens, with pytest tests for it.")
SEQUENTIAL_ID = "1311874598237161512"
_SIMPLE_VERDICT: dict[str, Any] = {
    "flow": Flow.SIMPLE, "task_type": TaskType.QUESTION, "role": "researcher",
    "complexity": Complexity.SIMPLE, "reason": "a factual question with a short answer",
    "decided_by": "model"}
_SEQUENTIAL_VERDICT: dict[str, Any] = {
    "flow": Flow.SEQUENTIAL, "task_type": TaskType.CODING, "role": "python_coder",
    "complexity": Complexity.MEDIUM, "reason": "a code change with tests in the workspace",
    "decided_by": "model"}
PLAN = ("Read utils/text.py to see its style and imports",
        "Write slugify with unicodedata normalisation and a hyphen join",
        "Write tests/test_text.py covering accents, punctuation and spaces",
        "Run pytest and fix any failure")
MEMORY = ("Key insights:\n- write a test and run it before answering\n"
          "- small verified steps work for this kind of task")
PLAN_USAGE = Usage(model=MODEL, prompt_tokens=812, completion_tokens=96, cost_usd=0.000180,
                   calls=1)
RUN_USAGE = Usage(model=MODEL, prompt_tokens=9640, completion_tokens=1412, cost_usd=0.002293,
                  calls=5)
SIMPLE_USAGE = Usage(model=MODEL, prompt_tokens=164, completion_tokens=212, cost_usd=0.000152,
                     calls=1)
_EXISTING = ('"""Text helpers."""\n\nfrom __future__ import annotations\n\nimport re\n\n\n'
             'def squash(text: str) -> str:\n    """Collapse runs of whitespace to one space."""\n'
             '    return re.sub(r"\\s+", " ", text).strip()\n\n\n'
             'def truncate(text: str, limit: int) -> str:\n'
             '    """At most ``limit`` characters, with an ellipsis when cut."""\n'
             '    return text if len(text) <= limit else text[: limit - 1] + "…"\n')
_MODULE = _EXISTING + (
    '\n\ndef slugify(title: str) -> str:\n'
    '    """Lower-case ASCII words of ``title`` joined by hyphens."""\n'
    '    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore")\n'
    '    words = re.findall(r"[a-z0-9]+", ascii_text.decode().lower())\n'
    '    return "-".join(words)\n')
_TESTS = ('from utils.text import slugify\n\n\n'
          'def test_lowercases_and_hyphenates() -> None:\n'
          '    assert slugify("Hello World") == "hello-world"\n\n\n'
          'def test_strips_accents() -> None:\n'
          '    assert slugify("Crème brûlée") == "creme-brulee"\n\n\n'
          'def test_drops_punctuation() -> None:\n'
          '    assert slugify("Rock & Roll!") == "rock-roll"\n\n\n'
          'def test_empty() -> None:\n'
          '    assert slugify("  ") == ""\n')
SIMPLE_ANSWER = ("A list is mutable: you can append, remove and change items. A tuple is "
                 "immutable, hashable when its items are, and slightly smaller. Use a list for "
                 "a collection that changes (a queue of jobs, results you build up); use a "
                 "tuple for a fixed record (a point (x, y), a row from a database) or a dict "
                 "key.")
_FINAL = ("Added `slugify(title)` to utils/text.py: it normalises to NFKD, drops non-ASCII "
          "marks, lower-cases and joins the alphanumeric words with hyphens. "
          "tests/test_text.py covers accents, punctuation, spaces and the empty string; "
          "`pytest -q tests/test_text.py` passes (4 tests).")
_COMMIT = "Add a function slugify(title) to utils/text.py that lowercases (2 files)"
_BRANCH = "sb/discord-1311874512996454400/1311874598237161512"
SEQUENTIAL_ANSWER = (f"{_FINAL}\n\n📝 Commit: {_COMMIT}\nBranch: `{_BRANCH}`\n"
                     "Files: tests/test_text.py, utils/text.py")
FILES_WRITTEN = ("utils/text.py", "tests/test_text.py")
SCORES = Scores(task_completion=100, code_quality=85, efficiency=85)
_WRITES = {"call_2": json.dumps({"path": "utils/text.py", "content": _MODULE}),
           "call_3": json.dumps({"path": "tests/test_text.py", "content": _TESTS})}
_TURNS: tuple[tuple[str, list[tuple[str, str, str | None, str]], int], ...] = (
    ("I'll read the module first to follow its style.\nConfidence: 60\nStatus: continue",
     [("call_1", "read_file", '{"path": "utils/text.py"}', _EXISTING)], 58),
    ("Writing slugify and its tests.\nConfidence: 70\nStatus: continue",
     [("call_2", "write_file", None, "wrote 1032 bytes to utils/text.py"),
      ("call_3", "write_file", None, "wrote 463 bytes to tests/test_text.py")], 66),
    ("Running the tests.\nConfidence: 75\nStatus: continue",
     [("call_4", "run_command", '{"command": "pytest -q tests/test_text.py"}',
       "$ pytest -q tests/test_text.py\nexit code: 0\n....                                      "
       "                               [100%]\n4 passed in 0.04s\n")], 74),
    (_FINAL + "\nConfidence: 90\nStatus: done", [], 88),
)
"""The run's turns: (model text, [(call id, tool, arguments, output)], confidence)."""


def chats() -> dict[str, ChatMessage]:
    """The two requests as the Discord gateway sends them."""
    return {"simple": ChatMessage(**_CHAT, text=SIMPLE_TEXT),
            "sequential": ChatMessage(**{**_CHAT, "message_id": SEQUENTIAL_ID},
                                      text=SEQUENTIAL_TEXT)}


def trajectory() -> tuple[StepDigest, ...]:
    """The SEQUENTIAL run's turns as the loop records them (``actors.agent_loop``)."""
    from modelcall import parse_report

    steps = []
    for turn, (text, calls, confidence) in enumerate(_TURNS, 1):
        steps.append(StepDigest(
            turn=turn, model=MODEL, tier=2, confidence=confidence,
            status=parse_report(text).status or "", duration_ms=1830.0 + 211 * turn,
            tools=tuple(ToolUse.of(ToolCall(call_id=c, name=n, arguments=a or _WRITES[c]),
                                   ToolResult(call_id=c, name=n, content=out))
                        for c, n, a, out in calls)))
    return tuple(steps)


def conversation() -> list[dict[str, Any]]:
    """The model conversation the run's checkpoint keeps (the same in both shapes)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Switchboard's python coder.\n"
                                      + "\n".join(PLAN) + MEMORY},
        {"role": "user", "content": SEQUENTIAL_TEXT}]
    for text, calls, _ in _TURNS:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [
                {"id": c, "type": "function", "function": {"name": n, "arguments": a or _WRITES[c]}}
                for c, n, a, _ in calls]
        messages.append(message)
        messages += [{"role": "tool", "tool_call_id": c, "content": out} for c, _, _, out in calls]
    return messages


def _reply(chat: ChatMessage, flow: Flow) -> Reply:
    reply_to = ReplyTo.of(chat)
    if flow is Flow.SIMPLE:
        return reply_to.build(Reply, text=SIMPLE_ANSWER, flow=flow, usage=SIMPLE_USAGE,
                              role="researcher")
    return reply_to.build(Reply, text=SEQUENTIAL_ANSWER, flow=flow, usage=RUN_USAGE,
                          role="python_coder", branch=_BRANCH, commit=_COMMIT)


def flat_messages() -> dict[str, dict[str, msgspec.Struct]]:
    """Each hop's message in the flat shapes, built as the actors build them."""
    from actors.classifier import turn_request, verdict
    from actors.evaluator import evaluation
    from actors.router import Route

    simple, sequential = chats()["simple"], chats()["sequential"]
    fields = ("flow", "task_type", "role", "complexity", "reason")
    simple_route = Route(**{k: _SIMPLE_VERDICT[k] for k in fields})
    route = Route(**{k: _SEQUENTIAL_VERDICT[k] for k in fields})
    classified = verdict(sequential, ReplyTo.of(sequential), route)
    request = msgspec.structs.replace(
        turn_request(sequential, ReplyTo.of(sequential), route, tier=2), plan=PLAN,
        memory=MEMORY, max_turns=20, usage=PLAN_USAGE)
    task = RunTask.of_request(request)
    steps = trajectory()
    result = task.result("python_coder", ok=True, trajectory=steps,
                         files_written=FILES_WRITTEN, confidence=88, usage=RUN_USAGE,
                         duration_ms=9214.0)
    reply = _reply(sequential, Flow.SEQUENTIAL)
    return {
        "simple": {"chat_message": simple,
                   "turn_request": turn_request(simple, ReplyTo.of(simple), simple_route, 1),
                   "reply": _reply(simple, Flow.SIMPLE)},
        "sequential": {
            "chat_message": sequential, "classification": classified, "turn_request": request,
            "reply": reply, "turn_result": result,
            "evaluation": evaluation(result, SCORES, ("tests passed",)),
            "checkpoint": msgspec.structs.replace(
                task.checkpoint("python_coder", turn=4), status="done", confidence=88,
                messages=pack_messages(conversation()), trajectory=steps,
                files_written=FILES_WRITTEN, usage=RUN_USAGE, branch=_BRANCH, reply=reply,
                at=1764331212.5)},
    }


def _sizes(messages: dict[str, dict[str, msgspec.Struct]]) -> dict[str, dict[str, int]]:
    return {flow: {hop: len(encoder.encode(m)) for hop, m in hops.items()}
            for flow, hops in messages.items()}


def wire_bytes() -> dict[str, dict[str, tuple[int, int]]]:
    """Bytes of each hop before (``BEFORE``) and after (the flat shapes), per flow, with a
    ``task`` entry summing a task's hops: ``{"simple": {"chat_message": (377, 377), ...,
    "task": (...)}, "sequential": {...}}``."""
    after = _sizes(flat_messages())
    table: dict[str, dict[str, tuple[int, int]]] = {}
    for flow, hops in BEFORE.items():
        rows = {hop: (before, after[flow][hop]) for hop, before in hops.items()}
        rows["task"] = (sum(b for b, _ in rows.values()), sum(a for _, a in rows.values()))
        table[flow] = rows
    return table


SCENARIO = "wire"


def run_wire(workdir: object = None, *, quick: bool = False) -> list[Figure]:
    """Scenario ``wire``: bytes per hop and per task, nested (label
    ``nested``) and flat (label ``flat``), for each flow (``simple``, ``sequential``). No
    process is started; ``workdir`` and ``quick`` are unused."""
    figures = []
    for flow, hops in wire_bytes().items():
        for hop, (before, after) in hops.items():
            metric = "bytes_per_task" if hop == "task" else "bytes_per_hop"
            for label, value in (("nested", before), ("flat", after)):
                figures.append(Figure(scenario=SCENARIO, flow=flow, metric=metric,
                                      value=float(value), unit="bytes", label=label,
                                      params={"hop": hop}))
    return figures


def wire_table(rows: list[dict[str, Any]]) -> str:
    """Bytes per hop, nested → flat, for the flows in ``rows`` ("" when the scenario did not
    run)."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row["scenario"] == SCENARIO:
            hop = json.loads(row.get("params") or "{}").get("hop", "")
            cells.setdefault((row["flow"] or "", hop), {})[row["label"]] = row["value"]
    if not cells:
        return ""
    lines = ["== Bytes on the wire per hop (nested → flat) ==",
             f"{'flow':<12}{'hop':<18}{'nested':>8}{'flat':>8}{'flat ÷ nested':>15}"]
    for (flow, hop), values in sorted(cells.items()):
        nested, flat = values.get("nested", 0.0), values.get("flat", 0.0)
        ratio = f"{flat / nested:.2f}" if nested else "-"
        lines.append(f"{flow:<12}{hop:<18}{nested:>8.0f}{flat:>8.0f}{ratio:>15}")
    return "\n".join(lines)
