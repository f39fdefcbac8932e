"""OpenAI's error bodies: ``{"error": {"message", "type", "param", "code"}}`` with their status.

Wording and codes follow the OpenAI API reference (platform.openai.com/docs/guides/error-codes)
and error bodies the real API returns, as quoted in public bug reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KEYS_PAGE = "https://platform.openai.com/account/api-keys"


class ApiError(Exception):
    """An error answer of the API: HTTP ``status`` and OpenAI's error object.

    Args:
        status: the HTTP status (400, 401, 404, 429, 500, 503, ...).
        message: ``error.message``, as the real API words it.
        type: ``error.type`` (``invalid_request_error``, ``server_error``, ``tokens``, ...).
        param: ``error.param``: the offending parameter (``messages.[2].role``) or None.
        code: ``error.code`` (``invalid_api_key``, ``model_not_found``, ...) or None.
        headers: extra response headers (``retry-after`` for 429).
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def error(self) -> dict[str, Any]:
        """The ``error`` object: ``{"message", "type", "param", "code"}``."""
        return {"message": self.message, "type": self.type, "param": self.param,
                "code": self.code}

    def body(self) -> dict[str, Any]:
        """The whole response body: ``{"error": {...}}``."""
        return {"error": self.error()}


def mask_key(key: str) -> str:
    """A key as the API shows it in errors: ``sk-`` prefix, stars, the last four characters."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def invalid_api_key(key: str) -> ApiError:
    """401 for a wrong key; only a masked form of the key appears in the message."""
    msg = f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {KEYS_PAGE}."
    return ApiError(401, msg, code="invalid_api_key")


def missing_api_key() -> ApiError:
    """401 for a request without ``Authorization: Bearer ...``."""
    msg = ("You didn't provide an API key. You need to provide your API key in an Authorization "
           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
           "field (with blank username) if you're accessing the API from your browser and are "
           f"prompted for a username. You can obtain an API key from {KEYS_PAGE}.")
    return ApiError(401, msg)


def model_not_found(model: str) -> ApiError:
    """404 for a model id the account cannot use."""
    msg = f"The model `{model}` does not exist or you do not have access to it."
    return ApiError(404, msg, code="model_not_found")


def invalid_json() -> ApiError:
    """400 for a body that is not JSON."""
    msg = ("We could not parse the JSON body of your request. (HINT: This likely means you "
           "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
           "what was sent was not valid JSON. If you have trouble figuring out how to fix this, "
           "please contact us through our help center at help.openai.com.)")
    return ApiError(400, msg)


def invalid_url(method: str, path: str) -> ApiError:
    """404 for a route the API does not have."""
    return ApiError(404, f"Invalid URL ({method} {path})")


def unknown_argument(name: str) -> ApiError:
    """400 for a top-level body key the endpoint does not know."""
    return ApiError(400, f"Unrecognized request argument supplied: {name}")


def missing(param: str) -> ApiError:
    """400 for a required parameter that is absent."""
    return ApiError(400, f"Missing required parameter: '{param}'.", param=param,
                    code="missing_required_parameter")


def kind(value: Any) -> str:
    """The API's name for a JSON value's type, with its article (``an integer``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(param: str, expected: str, value: Any) -> ApiError:
    """400 for a value of the wrong JSON type; ``expected`` reads like ``an integer``."""
    msg = f"Invalid type for '{param}': expected {expected}, but got {kind(value)} instead."
    return ApiError(400, msg, param=param, code="invalid_type")


def invalid_value(param: str, value: Any, supported: Iterable[str]) -> ApiError:
    """400 for a value outside an enumeration."""
    options = [f"'{option}'" for option in supported]
    listed = options[0] if len(options) == 1 else (
        ", ".join(options[:-1]) + ("," if len(options) > 2 else "") + f" and {options[-1]}")
    msg = f"Invalid value: '{value}'. Supported values are: {listed}."
    return ApiError(400, msg, param=param, code="invalid_value")


def out_of_range(param: str, value: float, bound: float, *, above: bool,
                 number: str = "decimal") -> ApiError:
    """400 for a number above its maximum or below its minimum; ``number`` is ``decimal`` or
    ``integer``, as the parameter is declared."""
    side, limit, relation = ("above", "maximum", "<=") if above else ("below", "minimum", ">=")
    msg = (f"Invalid '{param}': {number} {side} {limit} value. Expected a value {relation} "
           f"{bound}, but got {value} instead.")
    return ApiError(400, msg, param=param, code=f"{number}_{side}_{limit[:3]}_value")


def empty_array(param: str) -> ApiError:
    """400 for an array that must not be empty."""
    msg = (f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
           "empty array instead.")
    return ApiError(400, msg, param=param, code="empty_array")


def unanswered_tool_calls(index: int, call_ids: Iterable[str]) -> ApiError:
    """400: an assistant message's tool calls are not all answered by ``tool`` messages."""
    msg = ("An assistant message with 'tool_calls' must be followed by tool messages responding "
           "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
           + ", ".join(call_ids))
    return ApiError(400, msg, param=f"messages.[{index}].role")


def tool_without_call(index: int) -> ApiError:
    """400: a ``tool`` message follows no assistant message with ``tool_calls``."""
    msg = ("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
           "message with 'tool_calls'.")
    return ApiError(400, msg, param=f"messages.[{index}].role")


def unknown_tool_call_id(index: int, call_id: str) -> ApiError:
    """400: a ``tool`` message answers an id the preceding assistant message did not call."""
    msg = (f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of "
           "previous message.")
    return ApiError(400, msg, param=f"messages.[{index}].tool_call_id")


def server_error() -> ApiError:
    """500, as the API answers an internal failure."""
    msg = "The server had an error while processing your request. Sorry about that!"
    return ApiError(500, msg, type="server_error")
