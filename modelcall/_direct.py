"""The direct path for OpenAI-compatible providers: litellm resolves, this module streams.

litellm stays the one place that knows providers: ``litellm.get_llm_provider`` maps a model
name to its provider, model id and endpoint, ``litellm.utils.get_api_key`` finds its key,
``litellm.cost_per_token`` prices it (``modelcall._usage.cost``). What litellm's own
streaming path costs per call and per chunk (pydantic objects per chunk, the openai SDK, its
logging: 13-16 ms of CPU for a 20-chunk answer, docs/measurements.md) is replaced by one aiohttp
request and a msgspec decode per Server-Sent Event (about 0.4-0.6 ms). The wire format is the
Chat Completions API's (https://platform.openai.com/docs/api-reference/chat/streaming):
``data: {chunk}`` lines, ``: comment`` keep-alives, ``data: [DONE]`` at the end, a final
usage-only chunk (``choices: []``) when ``stream_options.include_usage`` is set, and
``data: {"error": ...}`` when the provider fails mid-stream.

Direct for the providers of ``OPENAI_COMPATIBLE`` (OpenAI — and so Ollama's and vLLM's
``/v1`` through ``openai/<model>`` with ``api_base`` — OpenRouter, Groq, Together, DeepSeek,
Fireworks, Mistral, xAI, DeepInfra, Cerebras, vLLM, LM Studio) when an endpoint is known;
everything else (Anthropic's and Bedrock's native APIs, Vertex, custom providers) and any
model with ``transport: litellm`` go through ``litellm.acompletion``. Errors are translated
into the same classes and wording as on the litellm path (``modelcall._errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from core.config import ModelSpec
from core.errors import ModelRejectedError, ModelUnavailableError
from modelcall import _providers
from modelcall._errors import clipped, error_message, from_http, model_error
from modelcall._reply import Fold

DRAIN_S = 0.25
"""Longest wait for the end of a streamed body after ``[DONE]``, in seconds (``_drain``)."""
OPENAI_COMPATIBLE = frozenset({
    "openai", "openrouter", "groq", "together_ai", "deepseek", "fireworks_ai", "mistral",
    "xai", "deepinfra", "cerebras", "hosted_vllm", "lm_studio",
})
"""litellm providers whose chat endpoint speaks the Chat Completions wire format."""

_BASE_ENV: dict[str, tuple[tuple[str, ...], str]] = {
    # Where litellm's own openai and openrouter paths look (litellm/main.py), as
    # get_llm_provider leaves the endpoint of these two to them.
    "openai": (("OPENAI_BASE_URL", "OPENAI_API_BASE"), "https://api.openai.com/v1"),
    "openrouter": (("OPENROUTER_API_BASE",), "https://openrouter.ai/api/v1"),
}
_KEY_ENV: dict[str, tuple[str, ...]] = {
    "openrouter": ("OPENROUTER_API_KEY", "OR_API_KEY"),
}
_LITELLM_ONLY = frozenset({"max_retries", "num_retries", "drop_params", "mock_response",
                           "custom_llm_provider", "api_version", "timeout"})
"""``ModelSpec.params`` keys that are litellm's own options, never sent to the provider."""


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """Where and how to send one model's requests: the chat-completions URL, the headers
    (``Authorization`` included when a key is known) and the provider's model id."""

    url: str
    headers: dict[str, str]
    model_id: str
    provider: str


_routes: dict[tuple[str, str | None, str | None], DirectRoute | None] = {}


def resolve(spec: ModelSpec) -> DirectRoute | None:
    """The direct route of ``spec``, or None when it goes through litellm (module docstring).

    Cached per model name, endpoint and key variable; the key itself is read when resolving.

    Raises:
        ModelRejectedError: ``spec.api_key_env`` names a variable that is not set.
    """
    if spec.transport == "litellm":
        return None
    key_value = spec_key(spec)
    cache_key = (spec.name, spec.api_base, key_value)
    if cache_key not in _routes:
        _routes[cache_key] = _resolve(spec, key_value)
    return _routes[cache_key]


def spec_key(spec: ModelSpec) -> str | None:
    """The key in ``spec.api_key_env`` (None when the model names no variable).

    Raises:
        ModelRejectedError: the variable is not set (no retry can help).
    """
    if not spec.api_key_env:
        return None
    try:
        return os.environ[spec.api_key_env]
    except KeyError as exc:
        msg = (f"model {spec.name!r}: the API key variable {spec.api_key_env} is not set in the "
               "environment")
        raise ModelRejectedError(msg, model=spec.name) from exc


def _resolve(spec: ModelSpec, key: str | None) -> DirectRoute | None:
    litellm: Any = _providers.load_litellm()
    try:
        model_id, provider, dynamic_key, api_base = litellm.get_llm_provider(
            spec.name, api_base=spec.api_base)
    except Exception:  # an unknown provider: litellm's path says it properly
        return None
    if provider not in OPENAI_COMPATIBLE:
        return None
    if not api_base and provider in _BASE_ENV:
        names, default = _BASE_ENV[provider]
        api_base = next((os.environ[n] for n in names if os.environ.get(n)), default)
    if not api_base:
        return None
    if key is None:
        from litellm.utils import get_api_key

        key = get_api_key(provider, dynamic_key) or next(
            (os.environ[n] for n in _KEY_ENV.get(provider, ()) if os.environ.get(n)), None)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = api_base.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions"
    return DirectRoute(url=url, headers=headers, model_id=model_id, provider=provider)


def request_body(route: DirectRoute, spec: ModelSpec, messages: list[dict[str, Any]], *,
                 tools: list[dict[str, Any]] | None, max_tokens: int | None,
                 response_format: dict[str, Any] | None, stream: bool = True) -> bytes:
    """The JSON body of a chat completion, as litellm's openai path builds it: streamed
    (with the usage chunk asked for) or, ``stream=False``, answered in one JSON object (the
    API's default, so the field is left out, as litellm leaves it)."""
    body: dict[str, Any] = {"model": route.model_id, "messages": messages}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    if tools:
        body["tools"] = tools
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if max_tokens:
        body["max_tokens"] = max_tokens
    if response_format is not None:
        body["response_format"] = response_format
    body.update({k: v for k, v in spec.params.items() if k not in _LITELLM_ONLY})
    if isinstance(body.get("response_format"), type):
        # A pydantic model as the response format: the JSON schema litellm would send.
        from litellm.llms.base_llm.base_utils import type_to_response_format_param

        body["response_format"] = type_to_response_format_param(body["response_format"])
    return msgspec.json.encode(body)


class _Sessions:
    """One aiohttp session per event loop (a process may run several loops in tests; a loop's
    id can be reused once it is gone, so the loop itself is kept beside its session)."""

    def __init__(self) -> None:
        self._by_loop: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(id(loop))
        if entry is not None and entry[0] is loop and not entry[1].closed:
            return entry[1]
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector,
                                        timeout=aiohttp.ClientTimeout(total=None))
        self._by_loop[id(loop)] = (loop, session)
        return session

    async def close(self) -> None:
        """Close the running loop's session (an actor's ``on_stop``; tests between loops)."""
        entry = self._by_loop.pop(id(asyncio.get_running_loop()), None)
        if entry is not None and not entry[1].closed:
            await entry[1].close()


_sessions = _Sessions()


async def close_sessions() -> None:
    """Close the HTTP session of the running event loop (connections to model providers)."""
    await _sessions.close()
_decode = msgspec.json.Decoder().decode


async def stream(route: DirectRoute, spec: ModelSpec, body: bytes, fold: Fold,
                 on_chunk: Callable[[], Awaitable[None]] | None) -> None:
    """POST ``body`` and fold every streamed chunk into ``fold``; ``on_chunk()`` (None: no
    one listens) is awaited after each chunk whose text grew.

    Raises:
        ModelError: an HTTP error status, a connection failure or an error event in the
            stream, translated as on litellm's path.
    """
    try:
        async with _sessions.get().post(route.url, data=body, headers=route.headers) as resp:
            if resp.status >= 400:
                raise from_http(spec, resp.status, await resp.read())
            buffer = b""
            async for data in resp.content.iter_any():
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    got = _line(line, spec, fold)
                    if got is _DONE:
                        await _drain(resp)
                        return
                    if got is _GREW and on_chunk is not None:
                        await on_chunk()
            if buffer and _line(buffer, spec, fold) is _GREW and on_chunk is not None:
                await on_chunk()
    except aiohttp.ClientError as exc:
        detail = clipped(str(exc) or type(exc).__name__, spec)
        raise model_error(spec, "connection", detail,
                          where=spec.api_base or route.url) from exc


async def answer(route: DirectRoute, spec: ModelSpec, body: bytes, fold: Fold) -> None:
    """POST ``body`` (a ``stream: false`` request) and fold the one JSON answer
    (https://platform.openai.com/docs/api-reference/chat/object) into ``fold``.

    For calls no one listens to as they grow (the router's, the planner's): a streamed
    answer costs a wake-up, a socket read and a parse per chunk, one answer costs one
    (``bench/README.md#one-requests-cpu``: a fifth of a SIMPLE request's actor CPU).

    Raises:
        ModelError: an HTTP error status, a connection failure, an answer that is not a
            JSON object or holds an ``error``, translated as on the streamed path.
    """
    try:
        async with _sessions.get().post(route.url, data=body, headers=route.headers) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise from_http(spec, resp.status, raw)
    except aiohttp.ClientError as exc:
        detail = clipped(str(exc) or type(exc).__name__, spec)
        raise model_error(spec, "connection", detail,
                          where=spec.api_base or route.url) from exc
    try:
        completion = _decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: bad UTF-8 is the latter
        msg = f"model {spec.name!r} failed: its answer is not JSON ({exc})"
        raise ModelUnavailableError(msg, model=spec.name) from exc
    if not isinstance(completion, dict):
        msg = f"model {spec.name!r} failed: its answer is JSON but not an object"
        raise ModelUnavailableError(msg, model=spec.name)
    if completion.get("error"):
        raise model_error(spec, "server", clipped(error_message(completion["error"]), spec))
    fold.add_completion(completion)


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body, usually in the same or the
    next packet) for at most ``DRAIN_S``: a body read to its end lets aiohttp keep the
    connection for the next call, where one left unread is closed, and each call then paid
    a new TCP connection (found by the ``request_cpu`` bench: 3 % of the classifier's CPU in
    ``connect``). A server that holds the body open longer just loses the connection."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(DRAIN_S):
            while await resp.content.readany():
                pass


_DONE, _GREW, _NOTHING = object(), object(), object()
"""What one SSE line did (``_line``): ended the stream, grew the text, anything else."""


def _line(line: bytes, spec: ModelSpec, fold: Fold) -> object:
    """Fold one SSE line into ``fold``: ``_DONE`` at ``[DONE]``, ``_GREW`` when the text
    grew, else ``_NOTHING``. A plain function, not a coroutine: a stream has about two lines
    per chunk (the data and a blank separator), and awaiting a coroutine for each was a
    tenth of a streamed call's CPU (``bench/results/request_cpu_profile.txt``)."""
    if not line.startswith(b"data:"):
        line = line.strip()
        if not line.startswith(b"data:"):
            return _NOTHING  # blank separators, ": keep-alive" comments, "event:" fields
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    try:
        chunk = _decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: bad UTF-8 is the latter
        msg = f"model {spec.name!r} failed: the stream held a line that is not JSON ({exc})"
        raise ModelUnavailableError(msg, model=spec.name) from exc
    if isinstance(chunk, dict) and chunk.get("error"):
        raise model_error(spec, "mid_stream", clipped(error_message(chunk["error"]), spec))
    return _GREW if isinstance(chunk, dict) and fold.add(chunk) else _NOTHING
