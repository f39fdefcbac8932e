"""Request validation of ``POST /v1/chat/completions``, as strict as the real API.

Parameter names, types, ranges and the message rules come from the OpenAI API reference
("Create chat completion", platform.openai.com/docs/api-reference/chat/create); wording of the
errors from the bodies the real API returns.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection
from typing import Any

from . import _errors as e
from ._errors import ApiError

KNOWN_PARAMETERS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "stop",
    "max_tokens", "max_completion_tokens", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "user", "seed", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "reasoning_effort", "metadata", "store",
    "service_tier", "modalities", "prediction", "audio", "web_search_options",
    # Also in the current reference: newer ones, and the deprecated function-calling pair.
    "verbosity", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    "function_call", "functions",
})
"""Top-level body keys the endpoint accepts; any other key is a 400."""

ROLES = ("system", "developer", "user", "assistant", "tool")
RESPONSE_FORMATS = ("json_object", "json_schema", "text")
TOOL_CHOICES = ("none", "auto", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_STOP_SEQUENCES = 4
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_DECIMALS = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2),
             "frequency_penalty": (-2, 2)}
_INTEGERS: dict[str, tuple[int | None, int | None]] = {
    "n": (1, 128), "max_tokens": (1, None), "max_completion_tokens": (1, None),
    "top_logprobs": (0, 20), "seed": (None, None)}
_BOOLEANS = ("stream", "logprobs", "parallel_tool_calls", "store")
_STRINGS = ("user", "safety_identifier", "prompt_cache_key", "service_tier", "verbosity")
_OBJECTS = ("stream_options", "response_format", "metadata", "logit_bias", "prediction",
            "audio", "web_search_options")


def validate(body: Any, models: Collection[str]) -> None:
    """Check a chat-completions body the way the real API does.

    Args:
        body: the decoded JSON body.
        models: the model ids this server serves.

    Raises:
        ApiError: 400 for an invalid body (unknown argument, bad type or range, bad message
            sequence, bad ``tools`` / ``response_format`` / ``stream_options``), 404
            ``model_not_found`` for a model not in ``models``.
    """
    if not isinstance(body, dict):
        raise e.invalid_type("body", "an object", body)
    model = body.get("model")
    if not model:
        raise ApiError(400, "you must provide a model parameter")
    for name in body:
        if name not in KNOWN_PARAMETERS:
            raise e.unknown_argument(name)
    if not isinstance(model, str):
        raise e.invalid_type("model", "a string", model)
    if model not in models:
        raise e.model_not_found(model)
    _check_scalars(body)
    check_messages(body.get("messages"))
    _check_stream(body)
    _check_tools(body)
    _check_response_format(body)


def _check_scalars(body: dict[str, Any]) -> None:
    for name, (low, high) in _DECIMALS.items():
        if (value := body.get(name)) is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise e.invalid_type(name, "a decimal", value)
            _check_range(name, value, low, high, "decimal")
    for name, (ilow, ihigh) in _INTEGERS.items():
        if (value := body.get(name)) is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise e.invalid_type(name, "an integer", value)
            _check_range(name, value, ilow, ihigh, "integer")
    for names, kind, expected in ((_BOOLEANS, bool, "a boolean"), (_STRINGS, str, "a string"),
                                  (_OBJECTS, dict, "an object")):
        for name in names:
            if (value := body.get(name)) is not None and not isinstance(value, kind):
                raise e.invalid_type(name, expected, value)
    _check_stop(body.get("stop"))
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise e.invalid_value("reasoning_effort", effort, REASONING_EFFORTS)


def _check_range(name: str, value: float, low: float | None, high: float | None,
                 number: str) -> None:
    if low is not None and value < low:
        raise e.out_of_range(name, value, low, above=False, number=number)
    if high is not None and value > high:
        raise e.out_of_range(name, value, high, above=True, number=number)


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise e.invalid_type("stop", "a string or an array of strings", stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        msg = (f"Invalid 'stop': array too long. Expected an array with maximum length "
               f"{MAX_STOP_SEQUENCES}, but got an array with length {len(stop)} instead.")
        raise ApiError(400, msg, param="stop", code="array_above_max_length")


def check_messages(messages: Any) -> None:
    """Check ``messages``: a non-empty array of well-formed messages in a valid order.

    Raises:
        ApiError: 400 naming the first offending message (``messages[2].role``).
    """
    if messages is None:
        raise e.missing("messages")
    if not isinstance(messages, list):
        raise e.invalid_type("messages", "an array", messages)
    if not messages:
        raise e.empty_array("messages")
    for index, message in enumerate(messages):
        _check_message(index, message)
    _check_tool_sequence(messages)


def _check_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise e.invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise e.missing(f"{where}.role")
    if role not in ROLES:
        raise e.invalid_value(f"{where}.role", role, ROLES)
    content = message.get("content")
    has_calls = role == "assistant" and message.get("tool_calls") is not None
    if content is None and not has_calls:
        if "content" not in message and role != "assistant":
            raise e.missing(f"{where}.content")
        msg = "Invalid value for 'content': expected a string, got null."
        raise ApiError(400, msg, param=f"messages.[{index}].content")
    if content is not None:
        _check_content(f"{where}.content", content)
    if has_calls:
        _check_tool_calls(f"{where}.tool_calls", message["tool_calls"])
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise e.missing(f"{where}.tool_call_id")


def _check_content(where: str, content: Any) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise e.invalid_type(where, "one of a string or array of objects", content)
    for position, part in enumerate(content):
        here = f"{where}[{position}]"
        if not isinstance(part, dict):
            raise e.invalid_type(here, "an object", part)
        if not isinstance(part.get("type"), str):
            raise e.missing(f"{here}.type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise e.missing(f"{here}.text")
        if part["type"] == "image_url":
            _check_image(here, part.get("image_url"))


IMAGE_FORMATS = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",),
                 "image/gif": (b"GIF87a", b"GIF89a"), "image/webp": (b"RIFF",)}
"""The image types the API takes in a ``data:`` URL, and how each one's bytes begin."""
_DATA_URL = re.compile(r"^data:(?P<mime>[a-z]+/[a-z0-9.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_UNSUPPORTED_IMAGE = ("You uploaded an unsupported image. Please make sure your image has of one "
                      "the following formats: ['png', 'jpeg', 'gif', 'webp'].")


def _check_image(where: str, image: Any) -> None:
    """An ``image_url`` part: ``{"url": https URL or base64 data URL, "detail"?: ...}``; a data
    URL's bytes must decode and be a PNG, JPEG, GIF or WebP (checked by its first bytes)."""
    if not isinstance(image, dict):
        raise e.missing(f"{where}.image_url")
    url = image.get("url")
    if not isinstance(url, str):
        raise e.missing(f"{where}.image_url.url")
    detail = image.get("detail", "auto")
    if detail not in ("auto", "low", "high"):
        msg = (f"Invalid value: '{detail}'. Supported values are: 'auto', 'low', and 'high'.")
        raise ApiError(400, msg, param=f"{where}.image_url.detail", code="invalid_value")
    if url.startswith(("https://", "http://")):
        return
    match = _DATA_URL.match(url)
    if match is None:
        msg = "Invalid image URL: expected a base64-encoded data URL with an image MIME type."
        raise ApiError(400, msg, param=f"{where}.image_url.url", code="invalid_image_url")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except ValueError:
        raise ApiError(400, "You uploaded an invalid image.", param=f"{where}.image_url.url",
                       code="invalid_image_format") from None
    starts = IMAGE_FORMATS.get(match["mime"])
    if starts is None or not data.startswith(starts):
        raise ApiError(400, _UNSUPPORTED_IMAGE, param=f"{where}.image_url.url",
                       code="invalid_image_format")


def check_vision(messages: list[dict[str, Any]], model: str,
                 vision_models: Collection[str] | None) -> None:
    """400 when a model without vision is sent an image, as the API answers."""
    images = any(isinstance(m.get("content"), list)
                 and any(p.get("type") == "image_url" for p in m["content"]) for m in messages)
    if vision_models is not None and model not in vision_models and images:
        msg = "Invalid content type. image_url is only supported by certain models."
        raise ApiError(400, msg, param="messages", code="invalid_content_type")


def _check_tool_calls(where: str, calls: Any) -> None:
    if not isinstance(calls, list):
        raise e.invalid_type(where, "an array", calls)
    if not calls:
        raise e.empty_array(where)
    for position, call in enumerate(calls):
        here = f"{where}[{position}]"
        if not isinstance(call, dict):
            raise e.invalid_type(here, "an object", call)
        for key in ("id", "type", "function"):
            if call.get(key) is None:
                raise e.missing(f"{here}.{key}")
        if call["type"] != "function":
            raise e.invalid_value(f"{here}.type", call["type"], ("function",))
        function = call["function"]
        if not isinstance(function, dict):
            raise e.invalid_type(f"{here}.function", "an object", function)
        for key in ("name", "arguments"):
            if function.get(key) is None:
                raise e.missing(f"{here}.function.{key}")
            if not isinstance(function[key], str):
                raise e.invalid_type(f"{here}.function.{key}", "a string", function[key])


def _check_tool_sequence(messages: list[dict[str, Any]]) -> None:
    """Every assistant ``tool_calls`` is answered, one ``tool`` message per id, before any
    other message; every ``tool`` message answers the assistant message just before."""
    pending: dict[str, None] = {}
    callable_ids: set[str] = set()
    owner = -1
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if owner < 0:
                raise e.tool_without_call(index)
            if message["tool_call_id"] not in callable_ids:
                raise e.unknown_tool_call_id(index, message["tool_call_id"])
            pending.pop(message["tool_call_id"], None)
            continue
        if pending:
            raise e.unanswered_tool_calls(owner, pending)
        owner, callable_ids = -1, set()
        if message["role"] == "assistant" and message.get("tool_calls"):
            ids = [call["id"] for call in message["tool_calls"]]
            owner, pending, callable_ids = index, dict.fromkeys(ids), set(ids)
    if pending:
        raise e.unanswered_tool_calls(owner, pending)


def _check_stream(body: dict[str, Any]) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if body.get("stream") is not True:
        msg = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        raise ApiError(400, msg, param="stream_options")
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise e.invalid_type("stream_options.include_usage", "a boolean", usage)


def _check_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        for name in ("tool_choice", "parallel_tool_calls"):
            if body.get(name) is not None:
                msg = (f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are "
                       "specified.")
                raise ApiError(400, msg, param=name)
        return
    if not isinstance(tools, list):
        raise e.invalid_type("tools", "an array", tools)
    if not tools:
        raise e.empty_array("tools")
    for position, tool in enumerate(tools):
        _check_tool(f"tools[{position}]", tool)
    _check_tool_choice(body.get("tool_choice"))


def _check_tool(where: str, tool: Any) -> None:
    if not isinstance(tool, dict):
        raise e.invalid_type(where, "an object", tool)
    if tool.get("type") is None:
        raise e.missing(f"{where}.type")
    if tool["type"] != "function":
        raise e.invalid_value(f"{where}.type", tool["type"], ("function",))
    function = tool.get("function")
    if function is None:
        raise e.missing(f"{where}.function")
    if not isinstance(function, dict):
        raise e.invalid_type(f"{where}.function", "an object", function)
    name = function.get("name")
    if name is None:
        raise e.missing(f"{where}.function.name")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        msg = (f"Invalid '{where}.function.name': string does not match pattern. Expected a "
               f"string that matches the pattern '{_FUNCTION_NAME.pattern}'.")
        raise ApiError(400, msg, param=f"{where}.function.name", code="invalid_value")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise e.invalid_type(f"{where}.function.parameters", "an object", parameters)


def _check_tool_choice(choice: Any) -> None:
    if choice is None or choice in TOOL_CHOICES:
        return
    if isinstance(choice, str):
        raise e.invalid_value("tool_choice", choice, TOOL_CHOICES)
    if not isinstance(choice, dict):
        raise e.invalid_type("tool_choice", "a string or an object", choice)
    if choice.get("type") != "function":
        raise e.invalid_value("tool_choice.type", choice.get("type"), ("function",))
    function = choice.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise e.missing("tool_choice.function.name")


def _check_response_format(body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is None:
        return
    kind = response_format.get("type")
    if kind is None:
        raise e.missing("response_format.type")
    if kind not in RESPONSE_FORMATS:
        raise e.invalid_value("response_format.type", kind, RESPONSE_FORMATS)
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        if schema is None:
            raise e.missing("response_format.json_schema")
        if not isinstance(schema, dict):
            raise e.invalid_type("response_format.json_schema", "an object", schema)
        for key in ("name", "schema"):
            if schema.get(key) is None:
                raise e.missing(f"response_format.json_schema.{key}")
    if kind == "json_object" and not _mentions_json(body["messages"]):
        msg = ("'messages' must contain the word 'json' in some form, to use 'response_format' "
               "of type 'json_object'.")
        raise ApiError(400, msg, param="messages")


def _mentions_json(messages: list[dict[str, Any]]) -> bool:
    return any("json" in str(message.get("content") or "").lower() for message in messages)
