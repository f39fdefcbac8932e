"""Brains: ``brain(request: ChatRequest) -> Answer`` (or an awaitable of one).

The default, :func:`chat_brain`, behaves like a plain chat model; tests plug their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ._answers import Answer
from ._request import ChatRequest, content_text

Brain = Callable[[ChatRequest], "Answer | Awaitable[Answer]"]
"""Chooses the answer to one validated request; may be a coroutine function."""

_TOPIC_WORDS = 8


def chat_brain(request: ChatRequest) -> Answer:
    """A plain chat model: a short markdown paragraph answering the last user message.

    With ``response_format`` ``json_schema`` it answers bare JSON shaped by the schema, with
    ``json_object`` a small JSON object (as the real API does: no fence). When the turn holds
    tool results it summarises them. It never calls tools and never writes a report line
    (``Confidence:`` / ``Status:``): it knows nothing of this project's prompts.
    """
    question = " ".join(request.last_user_text.split())
    topic = " ".join(question.split()[:_TOPIC_WORDS]).rstrip("?.!,:;") or "your message"
    if request.json_schema is not None:
        return Answer(json.dumps(_instance(request.json_schema, "answer"), ensure_ascii=False))
    if request.wants_json:
        return Answer(json.dumps({"answer": f"A short answer about {topic}."}))
    if request.tool_results:
        found = "\n".join(f"- {_first_line(content_text(m))}" for m in request.tool_results)
        return Answer(f"Here's what the tools returned:\n\n{found}\n\n"
                      "Let me know if you want me to dig into any of these.")
    return Answer(f"Good question! On **{topic}**: the short answer is that it depends on your "
                  "setup, but a sensible start is to break the problem into small steps and "
                  "check each one before moving on.\n\nWant me to go into more detail?")


def _first_line(text: str) -> str:
    line = next((line for line in text.splitlines() if line.strip()), "(empty)")
    return line if len(line) <= 80 else line[:79] + "…"


def _instance(schema: dict[str, Any], name: str) -> Any:
    """A small value matching a JSON schema (objects, arrays, enums, scalars; no ``$ref``)."""
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {key: _instance(sub, key) for key, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_instance(schema.get("items", {}), name)]
    scalars: dict[str, Any] = {"integer": 1, "number": 0.5, "boolean": True, "null": None}
    return scalars.get(kind, f"A short {name.replace('_', ' ')}.")


def sequence(*answers: Answer, then: Brain = chat_brain) -> Brain:
    """A brain answering ``answers`` in order, one per request, then as ``then``.

    Meant for faults and retries (a 429, then a normal answer), not for scripting content.
    Safe to call from several threads.
    """
    queue = list(answers)
    lock = threading.Lock()

    def brain(request: ChatRequest) -> Answer | Awaitable[Answer]:
        with lock:
            if queue:
                return queue.pop(0)
        return then(request)

    return brain
