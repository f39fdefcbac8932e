"""A local Ollama server: the native chat API (``POST /api/chat``), streamed as NDJSON.

Request validation, answers and errors follow Ollama's API documentation
(https://github.com/ollama/ollama/blob/main/docs/api.md, "Generate a chat completion", "Show
model information") and its server (``server/routes.go``): errors are ``{"error": "..."}``
with 400 (a bad body) or 404 (a model that is not pulled); a streamed answer is one JSON
object per line, ``{"model", "created_at", "message": {"role": "assistant", "content",
"tool_calls"?}, "done": false}``, and a final line with ``"done": true``, ``done_reason`` and
the counters (``total_duration``, ``load_duration``, ``prompt_eval_count``,
``prompt_eval_duration``, ``eval_count``, ``eval_duration``; durations in nanoseconds). Tool
calls arrive whole in one line, their ``arguments`` a JSON object (not a string, as in
OpenAI's format), and are sent back that way in later requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from local_server import LocalServer

_ROLES = {"system", "user", "assistant", "tool"}


@dataclass(frozen=True)
class OllamaToolCall:
    """A tool call as Ollama streams it: a name and an arguments object."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class OllamaAnswer:
    """What the brain answers: text streamed in ``pieces`` (or whole), tool calls, an error
    (``status`` and words), a delay before the first line."""

    text: str = ""
    tool_calls: tuple[OllamaToolCall, ...] = ()
    status: int = 200
    error: str = ""
    piece_chars: int = 6
    delay_s: float = 0.0


@dataclass
class OllamaCall:
    """One ``/api/chat`` request as the stand-in saw it (``status`` once answered)."""

    body: dict[str, Any]
    status: int | None = None

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def system(self) -> str:
        first = (self.messages or [{}])[0]
        return str(first.get("content") or "") if first.get("role") == "system" else ""

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or [])


OllamaBrain = Callable[[OllamaCall], OllamaAnswer]


def echo(call: OllamaCall) -> OllamaAnswer:
    users = [m for m in call.messages if m.get("role") == "user"]
    said = str(users[-1].get("content") or "") if users else ""
    return OllamaAnswer(text=f"Ollama {call.model} heard: {said}")


@dataclass
class _Invalid(Exception):
    status: int
    error: str


class OllamaStandin(LocalServer):
    """Ollama's ``/api/chat``, ``/api/show`` and ``/api/tags`` on 127.0.0.1.

    Args:
        models: the pulled models (``llama3.1`` also answers as ``llama3.1:latest``).
        brain: chooses each answer; an echo by default.

    Attributes:
        url: ``http://127.0.0.1:PORT``: ``api_base`` of ``ollama_chat/<model>``.
        calls: every chat request, in arrival order.
    """

    def __init__(self, models: tuple[str, ...] = ("llama3.1",), *,
                 brain: OllamaBrain = echo) -> None:
        super().__init__()
        self.models = {name if ":" in name else f"{name}:latest" for name in models}
        self.brain = brain
        self.calls: list[OllamaCall] = []
        self.shown: list[str] = []
        self._lock = threading.Lock()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/", self._root)

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    def _known(self, model: str) -> bool:
        return (model if ":" in model else f"{model}:latest") in self.models

    async def _tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [
            {"name": name, "model": name, "size": 4_920_753_328,
             "details": {"family": "llama", "parameter_size": "8.0B"}}
            for name in sorted(self.models)]})

    async def _show(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = str(body.get("model") or body.get("name") or "")
        self.shown.append(name)
        if not self._known(name):
            return web.json_response({"error": f"model '{name}' not found"}, status=404)
        return web.json_response({
            "modelfile": f"FROM {name}", "parameters": "stop \"<|eot_id|>\"",
            "template": "{{ .Prompt }}", "capabilities": ["completion", "tools"],
            "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B",
                        "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072}})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        call = OllamaCall({})
        with self._lock:
            self.calls.append(call)
        try:
            call.body = _validate(await request.read())
            if not self._known(call.model):
                raise _Invalid(404, f'model "{call.model}" not found, try pulling it first')
            answer = self.brain(call)
            if answer.error:
                raise _Invalid(answer.status, answer.error)
        except _Invalid as invalid:
            call.status = invalid.status
            return web.json_response({"error": invalid.error}, status=invalid.status)
        call.status = 200
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if call.body.get("stream", True) is False:
            return web.json_response(_final(call.model, answer, whole=True))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in _lines(call.model, answer):
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _lines(model: str, answer: OllamaAnswer) -> list[dict[str, Any]]:
    step = max(1, answer.piece_chars)
    lines = [{"model": model, "created_at": _now(),
              "message": {"role": "assistant", "content": answer.text[i:i + step]},
              "done": False} for i in range(0, len(answer.text), step)]
    if answer.tool_calls:
        lines.append({"model": model, "created_at": _now(), "message": {
            "role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": c.name, "arguments": c.arguments}}
                           for c in answer.tool_calls]}, "done": False})
    lines.append(_final(model, answer, whole=False))
    return lines


def _final(model: str, answer: OllamaAnswer, *, whole: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text if whole else ""}
    if whole and answer.tool_calls:
        message["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}}
                                 for c in answer.tool_calls]
    eval_count = max(1, len(answer.text) // 4)
    return {"model": model, "created_at": _now(), "message": message, "done": True,
            "done_reason": "stop", "total_duration": 912_000_000, "load_duration": 4_000_000,
            "prompt_eval_count": 42, "prompt_eval_duration": 120_000_000,
            "eval_count": eval_count, "eval_duration": 780_000_000}


def _validate(raw: bytes) -> dict[str, Any]:
    """The body, checked as Ollama's ``ChatHandler`` checks it (a 400 for each problem)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Invalid(400, f"invalid character in request body: {exc}") from exc
    if not isinstance(body, dict):
        raise _Invalid(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
    if not body.get("model"):
        raise _Invalid(400, "model is required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _Invalid(400, "json: cannot unmarshal messages into []api.Message")
    for message in messages:
        _check_message(message)
    if not isinstance(body.get("options", {}), dict):
        raise _Invalid(400, "json: cannot unmarshal options into map[string]interface {}")
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) \
                or not function.get("name"):
            raise _Invalid(400, "json: cannot unmarshal tools into api.Tool")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _Invalid(400, "json: cannot unmarshal stream into bool")
    return body


def _check_message(message: Any) -> None:
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise _Invalid(400, f"invalid role in message: {message!r:.80}")
    if "content" in message and not isinstance(message["content"], str):
        raise _Invalid(400, "json: cannot unmarshal array into Go struct field "
                            "Message.messages.content of type string")
    for call in message.get("tool_calls") or ():
        arguments = (call.get("function") or {}).get("arguments")
        if not isinstance(arguments, dict):
            raise _Invalid(400, "json: cannot unmarshal string into Go struct field "
                                "ToolCallFunction.messages.tool_calls.function.arguments of "
                                "type api.ToolCallFunctionArguments")


__all__ = ["OllamaAnswer", "OllamaBrain", "OllamaCall", "OllamaStandin", "OllamaToolCall",
           "echo"]
