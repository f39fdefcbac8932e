"""Every model call goes through here, with translated errors, by one of three paths:

- the offline model (and any registered custom provider with a ``direct`` method) is called
  in-process, without litellm's custom-provider wrapper (2-3 ms a call, docs/measurements.md);
- OpenAI-compatible providers are called directly (``modelcall._direct``: streamed when an
  ``on_text`` listens, else one answer), litellm resolving the provider, endpoint, key and
  price;
- everything else, and any model with ``transport: litellm``, through ``litellm.acompletion``.

The three give the same ``ModelReply`` and raise the same errors (``tests/test_modelcall_paths.py``
runs the same streams through the direct and the litellm path and compares them).

``import litellm`` costs about 1.6 s and 160 MB (docs/measurements.md), so it is imported on first
use, never when ``modelcall`` is imported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, Protocol, TypeVar

from core.config import ModelSpec
from core.errors import ModelError, ModelTimeoutError
from modelcall import _direct, _providers
from modelcall._direct import spec_key
from modelcall._errors import provider_of, translate_litellm
from modelcall._reply import Fold, ModelReply
from modelcall._usage import LOCAL_SERVER_PROVIDERS, usage_of
from modelcall._vision import fit_messages

_log = logging.getLogger(__name__)

OnText = Callable[[str], Awaitable[None]]
T = TypeVar("T")

async def close_sessions() -> None:
    """Close the model-call HTTP connections: the direct path's session of the running event
    loop and, when litellm was imported, the clients litellm caches
    (``litellm.in_memory_llm_clients_cache``), which are then forgotten so that a later call
    makes new ones. A process that leaves them open gets "Unclosed client session" errors
    logged when they are garbage-collected, at exit after logging has shut down. Called from
    an actor's ``on_stop``; tests call it before their event loop goes."""
    await _direct.close_sessions()
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()  # swallows each client's own close errors
    litellm.in_memory_llm_clients_cache.flush_cache()


def needs_litellm(models: Iterable[str], providers: Mapping[str, str]) -> bool:
    """Whether calling ``models`` needs litellm: a model of a provider other than the custom
    ones in ``providers`` (which serve their calls in-process: the offline model) does
    (litellm resolves every real provider's endpoint, key and price)."""
    return any(provider_of(model) not in providers for model in models)


_mapped_local: set[str] = set()
"""Models of ``LOCAL_SERVER_PROVIDERS`` in litellm's map (already, or put there)."""
_mapped_local_lock = threading.Lock()


def _map_local_model(litellm: Any, model: str) -> None:
    """Put ``model`` (``ollama_chat/<name>``) in litellm's model map as a free chat model,
    once per process, unless the map has it already (litellm's own test,
    ``OllamaModelInfo._is_static_ollama_model``: the name with or without its provider).

    ``litellm.register_model`` asks the server once (``/api/show`` at ``OLLAMA_API_BASE``,
    else ``http://localhost:11434``) and keeps what it answers (context length, tool
    support); an unreachable server or an unknown model leaves the defaults. Blocking: run
    it in a worker thread. A failure is logged and not retried (litellm then asks on each
    call, as without this).
    """
    with _mapped_local_lock:  # a concurrent first call waits here, then finds it mapped
        if model in _mapped_local:
            return
        name = model.partition("/")[2].lower()
        known = {key.lower() for key in litellm.model_cost}
        try:
            if not {model.lower(), name, f"ollama/{name}", f"ollama_chat/{name}"} & known:
                litellm.register_model({model: {
                    "litellm_provider": provider_of(model), "mode": "chat",
                    "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                    "cache_creation_input_token_cost": 0.0,
                    "cache_read_input_token_cost": 0.0}})
        except Exception:  # litellm then looks the model up per call
            _log.warning("could not put %s in litellm's model map", model, exc_info=True)
        _mapped_local.add(model)


def supports_json_schema(model: str) -> bool:
    """Whether ``model`` takes a JSON-schema ``response_format`` (structured output), by
    litellm's model map (``litellm.supports_response_schema``); False for registered custom
    providers (the offline model) and models litellm does not know; True for Ollama's
    (``LOCAL_SERVER_PROVIDERS``). Asked once per model (the router asks for every message)."""
    provider = provider_of(model)
    if provider in LOCAL_SERVER_PROVIDERS:
        return True
    return provider not in _providers.registered and _schema_support(model)


@functools.cache
def _schema_support(model: str) -> bool:
    try:
        return bool(_providers.load_litellm().supports_response_schema(model=model))
    except Exception:  # an unknown model simply has no schema support
        return False


def _call_kwargs(
    spec: ModelSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
    timeout_s: float, response_format: dict[str, Any] | None = None, max_tokens: int = 0,
    *, stream: bool = True,
) -> dict[str, Any]:
    limit = _token_limit(spec, max_tokens)
    kwargs: dict[str, Any] = {
        "model": spec.name,
        "messages": messages,
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
        "timeout": timeout_s,
        "tools": tools or None,
        "api_base": spec.api_base,
        "temperature": spec.temperature,
        "max_tokens": limit,
        "response_format": response_format,
    }
    if provider_of(spec.name) not in _providers.registered:
        # One attempt per call: the SDK under litellm retries 429 / 5xx twice by default,
        # which delays the fallback to the tier's next model (docs/design.md#models);
        # ModelSpec.params
        # can set it back.
        kwargs["max_retries"] = 0
    kwargs["api_key"] = spec_key(spec)
    kwargs.update(spec.params)
    return {key: value for key, value in kwargs.items() if value is not None}


def _token_limit(spec: ModelSpec, max_tokens: int) -> int | None:
    """The lower of the model's ``max_tokens`` and the caller's (0 / None: no limit)."""
    if max_tokens and spec.max_tokens:
        return min(spec.max_tokens, max_tokens)
    return max_tokens or spec.max_tokens


async def complete(
    spec: ModelSpec,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    on_text: OnText | None = None,
    timeout_s: float | None = None,
    response_format: dict[str, Any] | None = None,
    max_tokens: int = 0,
) -> ModelReply:
    """Call a model, by the path of the module docstring (in-process for the offline model,
    direct for OpenAI-compatible providers, else ``litellm.acompletion``): streamed when an
    ``on_text`` listens, else asked for one answer (``stream`` left out) on the direct and
    the litellm path, which costs a fraction of the chunks' CPU
    (``modelcall._direct.answer``).

    Args:
        spec: the model; ``spec.params`` are passed to the provider as they are (litellm's
            own options, such as ``max_retries``, only to litellm).
        messages: OpenAI-style chat messages; a user message's image parts reach only a
            model with vision (``modelcall._vision``), the others get its text parts.
        tools: OpenAI function-calling schemas (``actors.tools.TOOL_SCHEMAS``), or None.
        on_text: awaited with the whole text so far each time the streamed text grows (not
            throttled here); its exceptions propagate unchanged.
        timeout_s: bound on the whole call in seconds; defaults to ``spec.timeout_s``.
        response_format: litellm's ``response_format`` (structured output), or None.
        max_tokens: a cap on completion tokens (a bot's answer limit; 0: ``spec.max_tokens``
            alone); the lower of the two applies.

    Returns:
        The text, complete tool calls, usage (tokens, cost in US dollars, ``calls=1``),
        finish reason and streamed reasoning.

    Raises:
        ModelTimeoutError: the call took longer than the timeout.
        ModelRejectedError: the provider refused it for good (authentication, unknown model,
            bad request, content policy, unknown provider, missing key variable);
            ContextWindowError when the conversation is too long for the model.
        ModelUnavailableError: the provider could not answer now (rate limit, 5xx,
            connection). Every message names the model and the cause, never the key.
    """
    limit = timeout_s or spec.timeout_s
    transport = transport_for(spec)
    messages = fit_messages(spec, messages)  # image parts only to a model with vision
    try:
        return await _bounded(spec, limit, transport.call(
            spec, messages, tools=tools, on_text=on_text, response_format=response_format,
            max_tokens=max_tokens, limit=limit))
    except _CallbackError as wrapped:
        raise wrapped.error from None


class Transport(Protocol):
    """One way of calling a model, chosen once per model (``transport_for``): ``in_process``
    (a registered provider's own ``direct`` method: the offline model), ``direct`` (an
    OpenAI-compatible provider streamed by ``modelcall._direct``) or ``litellm``
    (``litellm.acompletion``). Every kind gives the same ``ModelReply`` and raises the same
    errors (``tests/test_modelcall_paths.py``). A role backed by a hosted agent
    (``modelcall.hosted``) is answered by it instead of by models, a choice made once per role
    (``actors.agent.AgentActor.hosted``): it also gives a ``ModelReply``."""

    kind: str

    async def call(self, spec: ModelSpec, messages: list[dict[str, Any]], *,
                   tools: list[dict[str, Any]] | None, on_text: OnText | None,
                   response_format: dict[str, Any] | None, max_tokens: int,
                   limit: float) -> ModelReply:
        """One streamed call (``complete``'s arguments; ``limit`` in seconds)."""
        ...


class _InProcess:
    kind = "in_process"

    def __init__(self, direct: Callable[..., Awaitable[ModelReply]]) -> None:
        self._direct = direct

    async def call(self, spec: ModelSpec, messages: list[dict[str, Any]], *,
                   tools: list[dict[str, Any]] | None, on_text: OnText | None,
                   response_format: dict[str, Any] | None, max_tokens: int,
                   limit: float) -> ModelReply:
        del response_format, max_tokens, limit  # the in-process provider has no such options
        return await self._direct(spec.name, messages, tools=tools, params=spec.params,
                                  on_text=_guarded(on_text))


class _Direct:
    kind = "direct"

    def __init__(self, route: _direct.DirectRoute) -> None:
        self._route = route

    async def call(self, spec: ModelSpec, messages: list[dict[str, Any]], *,
                   tools: list[dict[str, Any]] | None, on_text: OnText | None,
                   response_format: dict[str, Any] | None, max_tokens: int,
                   limit: float) -> ModelReply:
        del limit  # bounded by ``complete``
        body = _direct.request_body(self._route, spec, messages, tools=tools,
                                    max_tokens=_token_limit(spec, max_tokens),
                                    response_format=response_format,
                                    stream=on_text is not None)
        litellm = _providers.load_litellm()
        if on_text is None:  # no one reads the text as it grows: one answer, not chunks
            fold = Fold()
            await _direct.answer(self._route, spec, body, fold)
            return fold.reply(usage_of(litellm, spec, messages, fold))
        return await _stream_direct(litellm, self._route, spec, messages, body, on_text)


class _Litellm:
    kind = "litellm"

    async def call(self, spec: ModelSpec, messages: list[dict[str, Any]], *,
                   tools: list[dict[str, Any]] | None, on_text: OnText | None,
                   response_format: dict[str, Any] | None, max_tokens: int,
                   limit: float) -> ModelReply:
        kwargs = _call_kwargs(spec, messages, tools, limit, response_format, max_tokens,
                              stream=on_text is not None)
        return await _call_litellm(_providers.load_litellm(), spec, kwargs, on_text)


_LITELLM = _Litellm()
_transports: dict[tuple[str, str | None, str, int], Transport] = {}
"""The transport of each model: name, ``api_base``, ``transport`` and the provider handler's
identity (a provider registered again gets its model's transport chosen again)."""


def transport_for(spec: ModelSpec) -> Transport:
    """How ``spec`` is called, chosen on its first call and kept: in-process when its provider
    is registered with a ``direct`` method (unless ``transport: litellm``), else direct when
    ``modelcall._direct`` resolves an OpenAI-compatible endpoint for it (which it caches by
    key), else litellm."""
    handler = _providers.handler(provider_of(spec.name))
    key = (spec.name, spec.api_base, spec.transport, id(handler))
    if handler is None or spec.transport == "litellm" or getattr(handler, "direct", None) is None:
        if handler is None and (route := _direct.resolve(spec)) is not None:
            return _Direct(route)  # resolve() keeps the route per key value: no cache here
        return _LITELLM
    transport = _transports.get(key)
    if transport is None:
        transport = _transports[key] = _InProcess(handler.direct)
    return transport


async def _stream_direct(litellm: ModuleType, route: Any, spec: ModelSpec,
                         messages: list[dict[str, Any]], body: bytes,
                         on_text: OnText) -> ModelReply:
    fold = Fold()
    guarded = _guarded(on_text)

    async def on_chunk() -> None:
        if guarded is not None:
            await guarded(fold.text)

    await _direct.stream(route, spec, body, fold, on_chunk)
    return fold.reply(usage_of(litellm, spec, messages, fold))


async def _bounded(spec: ModelSpec, limit: float, call: Awaitable[T]) -> T:
    """``call`` within ``limit`` seconds, litellm's errors translated
    (``modelcall._errors.translate_litellm``).

    Raises:
        ModelTimeoutError: past the limit. ModelError: as ``translate_litellm`` maps it.
        _CallbackError: unchanged (the caller's own callback failed).
    """
    try:
        async with asyncio.timeout(limit):
            return await call
    except TimeoutError as exc:
        msg = f"model {spec.name!r} did not finish within {limit:g} s"
        raise ModelTimeoutError(msg, model=spec.name) from exc
    except (ModelError, _CallbackError, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise translate_litellm(_providers.load_litellm(), spec, exc, limit) from exc


async def embed(spec: ModelSpec, text: str, *, timeout_s: float | None = None
                ) -> tuple[float, ...]:
    """The embedding of ``text`` through ``litellm.aembedding`` (case-base ranking).

    Args:
        spec: an embedding model (``openai/text-embedding-3-small``, ``ollama/nomic-embed-text``).
        text: what to embed (cut to 8,000 characters).
        timeout_s: bound in seconds; defaults to ``spec.timeout_s``.

    Returns:
        The vector as floats.

    Raises:
        ModelError: as ``complete`` raises (``ModelRejectedError``, ``ModelUnavailableError``,
            ``ModelTimeoutError``).
    """
    litellm = _providers.load_litellm()
    limit = timeout_s or spec.timeout_s
    kwargs: dict[str, Any] = {"model": spec.name, "input": [text[:8000]], "timeout": limit,
                              "api_base": spec.api_base, **spec.params}
    if spec.api_key_env:
        kwargs["api_key"] = os.environ.get(spec.api_key_env)
    if provider_of(spec.name) not in _providers.registered:
        kwargs.setdefault("max_retries", 0)
    request = {k: v for k, v in kwargs.items() if v is not None}
    response = await _bounded(spec, limit, litellm.aembedding(**request))
    item = response.data[0]
    vector = item["embedding"] if isinstance(item, dict) else item.embedding
    return tuple(float(v) for v in vector)


class _CallbackError(Exception):
    """Carries an exception of the caller's ``on_text`` past the litellm error translation."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _guarded(on_text: OnText | None) -> OnText | None:
    """``on_text`` whose exceptions travel as ``_CallbackError`` (re-raised unchanged by
    ``complete``)."""
    if on_text is None:
        return None
    callback = on_text

    async def guarded(text: str) -> None:
        try:
            await callback(text)
        except Exception as exc:
            raise _CallbackError(exc) from exc

    return guarded


async def _call_litellm(
    litellm: ModuleType, spec: ModelSpec, kwargs: dict[str, Any], on_text: OnText | None,
) -> ModelReply:
    if provider_of(spec.name) in LOCAL_SERVER_PROVIDERS and spec.name not in _mapped_local:
        await asyncio.to_thread(_map_local_model, litellm, spec.name)
    response = await litellm.acompletion(**kwargs)
    fold = Fold()
    if not kwargs["stream"]:  # one ModelResponse, read as the direct path reads one answer
        fold.add_completion(response.model_dump())
        return fold.reply(usage_of(litellm, spec, kwargs["messages"], fold))
    guarded = _guarded(on_text)
    async for chunk in response:
        if fold.add_litellm(chunk) and guarded is not None:
            await guarded(fold.text)
    return fold.reply(usage_of(litellm, spec, kwargs["messages"], fold))
