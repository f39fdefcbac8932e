"""What a brain answers: text, tool calls and reasoning as a chat model writes them, or a fault.

Error bodies and headers of the fault helpers follow the OpenAI API reference
(platform.openai.com/docs/guides/error-codes and .../guides/rate-limits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from . import _errors as e
from ._errors import ApiError


@dataclass(frozen=True)
class Call:
    """One tool call of an answer.

    Attributes:
        name: the function name.
        arguments: a mapping (sent as its JSON text) or JSON text as it is, valid or not.
        id: the call id; empty means the server makes one (``call_`` and 24 characters).
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str = ""

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text the API sends."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False)


@dataclass(frozen=True)
class Fault:
    """An HTTP error answer instead of a completion.

    Attributes:
        status: the HTTP status.
        body: a JSON body (OpenAI's ``{"error": {...}}``) or raw text (an HTML proxy page).
        headers: extra response headers (``retry-after``).
        content_type: the ``Content-Type`` of a raw text body.
    """

    status: int
    body: Mapping[str, Any] | str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def from_error(cls, error: ApiError) -> Fault:
        """The fault for an :class:`ApiError`."""
        return cls(error.status, error.body(), error.headers)


@dataclass(frozen=True)
class Answer:
    """One answer of the model, or a fault.

    Attributes:
        text: the message content, markdown prose as chat models write it.
        calls: tool calls (several are parallel calls); a ``(name, arguments)`` pair is
            accepted for a :class:`Call`.
        reasoning_content: reasoning text streamed before the content (``delta.reasoning_content``
            as DeepSeek, OpenRouter and litellm name it), or None.
        finish_reason: None derives it: ``tool_calls`` with calls, ``length`` when the text is
            longer than the request's ``max_tokens`` (then cut there), else ``stop``.
        delay_s: seconds to wait before answering (to provoke client timeouts).
        fault: answer this HTTP error instead of a completion.
        stream_error: an ``error`` object sent as an SSE event after ``stream_error_after``
            content chunks, ending the stream without ``[DONE]``; a non-streaming request gets
            it as a 500 answer.
        stream_error_after: content chunks sent before ``stream_error``.
    """

    text: str = ""
    calls: tuple[Call, ...] = ()
    reasoning_content: str | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0
    fault: Fault | None = None
    stream_error: Mapping[str, Any] | None = None
    stream_error_after: int = 3

    def __post_init__(self) -> None:
        calls = tuple(call if isinstance(call, Call) else Call(*call) for call in self.calls)
        object.__setattr__(self, "calls", calls)

    def after(self, seconds: float) -> Answer:
        """This answer, sent ``seconds`` after the request arrives."""
        return replace(self, delay_s=seconds)

    # ------------------------------------------------------------------ content

    @classmethod
    def json_in_fence(cls, obj: Any, *, prose_before: str = "Here is the JSON you asked for:",
                      prose_after: str = "", indent: int = 2) -> Answer:
        """A ```` ```json ```` fenced block inside prose, as chat models answer "reply in JSON".

        Args:
            obj: the JSON value.
            prose_before, prose_after: paragraphs around the fence ("" leaves one out).
            indent: JSON indentation in spaces.
        """
        fence = f"```json\n{json.dumps(obj, indent=indent, ensure_ascii=False)}\n```"
        return cls("\n\n".join(part for part in (prose_before, fence, prose_after) if part))

    @classmethod
    def tool_calls(cls, *calls: Call | tuple[str, Mapping[str, Any] | str], text: str = "",
                   reasoning_content: str | None = None) -> Answer:
        """Parallel tool calls (``Call`` or ``(name, arguments)``), with optional text before.

        Example: ``Answer.tool_calls(("list_files", {"path": "."}), ("read_file", {...}))``.
        """
        return cls(text, tuple(Call(*c) if isinstance(c, tuple) else c for c in calls),
                   reasoning_content)

    @classmethod
    def garbage(cls, text: str = "") -> Answer:
        """Prose that is not JSON, for a request that asked for JSON (models do this)."""
        return cls(text or "Sure! Here's a quick summary instead: everything went mostly fine, "
                           "though a couple of details could be improved. Let me know if you'd "
                           "like the structured version.")

    # ------------------------------------------------------------------ faults

    @classmethod
    def api_error(cls, status: int, message: str, *, type: str = "invalid_request_error",
                  code: str | None = None, param: str | None = None,
                  headers: Mapping[str, str] | None = None) -> Answer:
        """Any OpenAI error answer: ``status`` and ``{"error": {message, type, param, code}}``."""
        error = ApiError(status, message, type=type, param=param, code=code, headers=headers)
        return cls(fault=Fault.from_error(error))

    @classmethod
    def raw(cls, status: int, body: str, content_type: str = "text/html") -> Answer:
        """A non-JSON HTTP answer (a proxy's HTML error page, a truncated body)."""
        return cls(fault=Fault(status, body, content_type=content_type))

    @classmethod
    def rate_limited(cls, retry_after_s: float = 20.0, *, model: str = "gpt-4o-mini") -> Answer:
        """429 ``rate_limit_exceeded`` with ``retry-after`` (seconds) and ``x-ratelimit-*``."""
        message = (f"Rate limit reached for {model} in organization org-standin on tokens per "
                   "min (TPM): Limit 30000, Used 29870, Requested 1024. Please try again in "
                   f"{retry_after_s:g}s. Visit https://platform.openai.com/account/rate-limits "
                   "to learn more.")
        headers = {"retry-after": f"{retry_after_s:g}", "x-ratelimit-limit-tokens": "30000",
                   "x-ratelimit-remaining-tokens": "130",
                   "x-ratelimit-reset-tokens": f"{retry_after_s:g}s"}
        return cls.api_error(429, message, type="tokens", code="rate_limit_exceeded",
                             headers=headers)

    @classmethod
    def server_error(cls) -> Answer:
        """500 ``server_error``."""
        return cls(fault=Fault.from_error(e.server_error()))

    @classmethod
    def overloaded(cls) -> Answer:
        """503: the service is overloaded."""
        return cls.api_error(503, "The server is overloaded or not ready yet.",
                             type="server_error")

    @classmethod
    def context_length_exceeded(cls, limit: int = 128000, used: int = 131072) -> Answer:
        """400 ``context_length_exceeded``: the conversation is longer than ``limit`` tokens."""
        message = (f"This model's maximum context length is {limit} tokens. However, your "
                   f"messages resulted in {used} tokens. Please reduce the length of the "
                   "messages.")
        return cls.api_error(400, message, param="messages", code="context_length_exceeded")

    @classmethod
    def invalid_api_key(cls, masked_key: str = "sk-proj-****************************revk") \
            -> Answer:
        """401 ``invalid_api_key``, as when a key is revoked between two calls."""
        return cls(fault=Fault.from_error(e.invalid_api_key(masked_key)))

    @classmethod
    def broken_stream(cls, text: str, *, after_chunks: int = 3,
                      message: str = "The server had an error while processing your request. "
                                     "Sorry about that!",
                      type: str = "server_error") -> Answer:
        """``after_chunks`` chunks of ``text``, then an SSE ``error`` event and no ``[DONE]``."""
        error = {"message": message, "type": type, "param": None, "code": None}
        return cls(text, stream_error=error, stream_error_after=after_chunks)
