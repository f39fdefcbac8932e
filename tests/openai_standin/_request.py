"""What a brain sees: one validated chat-completions request, parsed for convenience."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def content_text(message: dict[str, Any]) -> str:
    """A message's text: its ``content`` string, or its text parts joined (images skipped)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and part.get("type") == "text")
    return ""


@dataclass(frozen=True)
class ChatRequest:
    """A request that passed validation (OpenAI "Create chat completion" body).

    Attributes:
        body: the whole JSON body as sent.
        path: the route called (``/v1/chat/completions`` or ``/chat/completions``).
        model: the model id (without litellm's ``openai/`` prefix, which never reaches the API).
        messages: the ``messages`` array as sent.
        stream: ``stream`` is true.
        include_usage: ``stream_options.include_usage`` is true.
        tools: the ``tools`` array (empty when none were offered).
        tool_choice: ``tool_choice`` as sent, or None.
        response_format: ``response_format`` as sent, or None.
        max_tokens: ``max_completion_tokens`` or ``max_tokens``, or None.
        n: how many choices to answer.
    """

    body: dict[str, Any]
    path: str = "/v1/chat/completions"
    model: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    n: int = 1

    @classmethod
    def from_body(cls, body: dict[str, Any], path: str = "/v1/chat/completions") -> ChatRequest:
        """Parse a body that :func:`validate` accepted."""
        options = body.get("stream_options") or {}
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        return cls(body=body, path=path, model=body["model"], messages=body["messages"],
                   stream=body.get("stream") is True,
                   include_usage=options.get("include_usage") is True,
                   tools=body.get("tools") or [], tool_choice=body.get("tool_choice"),
                   response_format=body.get("response_format"), max_tokens=limit,
                   n=body.get("n") or 1)

    @property
    def system_text(self) -> str:
        """The ``system`` and ``developer`` messages' text, joined by blank lines."""
        return "\n\n".join(content_text(m) for m in self.messages
                           if m["role"] in ("system", "developer"))

    @property
    def last_user_text(self) -> str:
        """The text of the last ``user`` message ("" when there is none)."""
        users = [m for m in self.messages if m["role"] == "user"]
        return content_text(users[-1]) if users else ""

    @property
    def images(self) -> list[dict[str, Any]]:
        """Every ``image_url`` object sent (``{"url": "data:image/png;base64,...", ...}``),
        in message order; each was validated (a data URL decodes to a supported image)."""
        return [part["image_url"] for message in self.messages
                if isinstance(message.get("content"), list)
                for part in message["content"] if part.get("type") == "image_url"]

    @property
    def tool_names(self) -> list[str]:
        """Names of the functions offered in ``tools``."""
        return [tool["function"]["name"] for tool in self.tools]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool`` messages after the last ``user`` message (this turn's results)."""
        last_user = max((i for i, m in enumerate(self.messages) if m["role"] == "user"),
                        default=-1)
        return [m for m in self.messages[last_user + 1:] if m["role"] == "tool"]

    @property
    def wants_json(self) -> bool:
        """``response_format`` asks for ``json_object`` or ``json_schema``."""
        return (self.response_format or {}).get("type") in ("json_object", "json_schema")

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema of a ``json_schema`` response format, or None."""
        if (self.response_format or {}).get("type") != "json_schema":
            return None
        schema = self.response_format["json_schema"]["schema"]  # type: ignore[index]
        return schema if isinstance(schema, dict) else None
