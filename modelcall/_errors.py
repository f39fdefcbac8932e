"""Model-call failures as ``core.errors.ModelError`` subclasses, one wording for both paths.

Each failure has a *cause*; the cause decides the class (whether a retry or another model can
help) and the words the person and the operator read. litellm's exceptions
(``translate_litellm``) and the HTTP answers of the direct path (``from_http``) map to the same
causes, so a 401 reads the same whichever path met it. Details are the provider's own message,
first line, at most 300 characters, with the model's key (``ModelSpec.api_key_env``) masked.
"""

from __future__ import annotations

import os
import re
from types import ModuleType
from typing import Any

import msgspec

from core.config import ModelSpec
from core.errors import (
    ContextWindowError,
    ModelError,
    ModelRejectedError,
    ModelTimeoutError,
    ModelUnavailableError,
)

DETAIL_CHARS = 300

_CAUSES: dict[str, tuple[type[ModelError], str]] = {
    "auth": (ModelRejectedError, "authentication failed: check {where} ({detail})"),
    "not_found": (ModelRejectedError, "the provider does not know this model ({detail})"),
    "unknown_provider": (ModelRejectedError,
                         "unknown provider {provider!r}: name models as 'provider/model' with "
                         "a litellm provider (openai, openrouter, anthropic, ollama, ...) or "
                         "one registered under providers: in topology.yaml"),
    "rejected": (ModelRejectedError, "the provider rejected the request ({detail})"),
    "context": (ContextWindowError,
                "the conversation is longer than the model's context window ({detail})"),
    "rate": (ModelUnavailableError, "rate limited by the provider ({detail})"),
    "connection": (ModelUnavailableError, "cannot reach the provider at {where} ({detail})"),
    "server": (ModelUnavailableError, "the provider failed or is unavailable ({detail})"),
    "mid_stream": (ModelUnavailableError, "the answer broke off mid-stream ({detail})"),
}
"""Cause → (class, words): 401, 404, an unknown provider, 400 / 422 and context windows are
permanent (``ContextWindowError`` lets another model try); 429, connection failures, 5xx and
a stream cut short are transient."""


def model_error(spec: ModelSpec, cause: str, detail: str, *, where: str = "") -> ModelError:
    """The error of ``cause`` (a key of ``_CAUSES``) for ``spec``, naming the model.

    Args:
        detail: the provider's message (already clipped and masked: ``clipped``).
        where: for ``auth`` the key variable, for ``connection`` the address.
    """
    cls, words = _CAUSES[cause]
    if cause == "auth":
        where = spec.api_key_env or "the provider's API key variable"
    text = words.format(where=where, detail=detail, provider=provider_of(spec.name))
    return cls(f"model {spec.name!r} failed: {text}", model=spec.name)


def provider_of(model: str) -> str:
    """The provider part of a litellm model name (``openrouter/x/y`` → ``openrouter``)."""
    return model.partition("/")[0] if "/" in model else model


def clipped(text: str, spec: ModelSpec) -> str:
    """``text`` on one line, the model's key masked, at most 300 characters."""
    text = " ".join(text.split())
    if spec.api_key_env and (key := os.environ.get(spec.api_key_env)):
        text = text.replace(key, "***")
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


# --- the litellm path ---------------------------------------------------------------------

_NOISE = re.compile(r"^(litellm\.)?\w+(Error|Exception):\s*", re.IGNORECASE)


def _detail(exc: Exception, spec: ModelSpec) -> str:
    """The first line of the error's message, without litellm's class-name prefixes."""
    text = " ".join(str(getattr(exc, "message", "") or exc).split("Traceback", 1)[0].split())
    while (match := _NOISE.match(text)) is not None:
        text = text[match.end():]
    return clipped(text or type(exc).__name__, spec)


def translate_litellm(litellm: ModuleType, spec: ModelSpec, exc: Exception,
                      limit: float) -> ModelError:
    """The ModelError for an exception of ``litellm.acompletion`` (``litellm/exceptions.py``).

    An error event in the middle of the stream comes wrapped (``MidStreamFallbackError``, often
    around a connection error although the provider was reached): the answer broke off.
    """
    errors = litellm.exceptions
    if isinstance(exc, errors.MidStreamFallbackError):
        original = getattr(exc, "original_exception", None)
        cause = original if isinstance(original, Exception) else exc
        return model_error(spec, "mid_stream", _detail(cause, spec))
    if isinstance(exc, errors.Timeout):
        msg = f"model {spec.name!r} timed out after {limit:g} s"
        return ModelTimeoutError(msg, model=spec.name)
    if isinstance(exc, errors.APIConnectionError) and (answer := _http_answer(exc)) is not None:
        return from_http(spec, *answer)
    detail = _detail(exc, spec)
    cause = _litellm_cause(errors, exc, detail)
    if cause is not None:
        return model_error(spec, cause, detail,
                           where=spec.api_base or "its default address")
    permanent = isinstance(exc, errors.PermissionDeniedError | errors.UnprocessableEntityError)
    cls = ModelRejectedError if permanent else ModelUnavailableError
    return cls(f"model {spec.name!r} failed: {type(exc).__name__} ({detail})", model=spec.name)


def _http_answer(exc: Exception) -> tuple[int, bytes] | None:
    """The provider's HTTP error answer (status, body) behind a litellm
    ``APIConnectionError``, or None when there was none (a real connection failure).

    litellm words some providers' HTTP errors as connection errors (Ollama's native API: a
    404 for a model that is not pulled arrives as ``APIConnectionError`` with status 500).
    When the provider did answer, its exception (a ``BaseLLMException`` with the answer's
    body, ``litellm/llms/base_llm/chat/transformation.py``) and httpx's ``HTTPStatusError``
    with the answer's status are on the exception's cause chain; a refused connection has no
    ``HTTPStatusError`` there.
    """
    import httpx  # with litellm: only where litellm was imported (modelcall's docstring)
    from litellm.llms.base_llm.chat.transformation import BaseLLMException

    body: bytes | None = None
    seen: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, BaseLLMException) and body is None:
            body = str(seen.message).encode()
        if isinstance(seen, httpx.HTTPStatusError):
            status = seen.response.status_code
            return (status, body or b"") if 400 <= status < 600 else None
        seen = seen.__cause__ or seen.__context__
    return None


def _litellm_cause(errors: ModuleType, exc: Exception, detail: str) -> str | None:
    """The cause of a litellm exception, or None for one of no known cause (worded by its
    class name; permanent when it is a 403 or 422)."""
    if isinstance(exc, errors.AuthenticationError):
        return "auth"
    if isinstance(exc, errors.RateLimitError):
        return "rate"
    if isinstance(exc, errors.NotFoundError):
        return "not_found"
    if "LLM Provider NOT provided" in detail or isinstance(exc, errors.LiteLLMUnknownProvider):
        return "unknown_provider"
    if isinstance(exc, errors.ContextWindowExceededError):
        return "context"
    if isinstance(exc, errors.BadRequestError):  # content policy violations included
        return "rejected"
    if isinstance(exc, errors.PermissionDeniedError | errors.UnprocessableEntityError):
        return None
    if isinstance(exc, errors.APIConnectionError) or "Connection error" in detail \
            or "Cannot connect to host" in detail:  # aiohttp's words (Ollama's native path)
        return "connection"
    if isinstance(exc, errors.InternalServerError | errors.ServiceUnavailableError):
        return "server"
    return None


# --- the direct path ----------------------------------------------------------------------

_decode = msgspec.json.Decoder().decode


def error_message(error: Any) -> str:
    """The words of an OpenAI error object (``{"message", "type", "code"}``) or anything else."""
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    return str(error)


def from_http(spec: ModelSpec, status: int, body: bytes) -> ModelError:
    """The ModelError for an HTTP error answer of a Chat Completions endpoint
    (https://platform.openai.com/docs/guides/error-codes): 401 → ``auth``, 404 →
    ``not_found``, 429 → ``rate``, 400 / 413 about the context length → ``context``, other
    400 / 403 / 413 / 422 → ``rejected``, anything else (408, 409, 5xx) → ``server``."""
    try:
        parsed = _decode(body)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        detail = error_message(error)
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec: bad UTF-8 is the latter
        detail, code = body.decode("utf-8", "replace"), ""
    detail = clipped(detail or f"HTTP {status}", spec)
    lowered = detail.lower()
    if status == 401:
        return model_error(spec, "auth", detail)
    if status == 404:
        return model_error(spec, "not_found", detail)
    if status == 429:
        return model_error(spec, "rate", detail)
    if status in (400, 413) and (code == "context_length_exceeded"
                                 or "context length" in lowered
                                 or "context window" in lowered):
        return model_error(spec, "context", detail)
    if status in (400, 403, 413, 422):
        return model_error(spec, "rejected", detail)
    return model_error(spec, "server", detail)
