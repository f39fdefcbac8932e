"""The stand-in HTTP server: OpenAI's chat-completions and models routes on aiohttp.

Routes, auth, status codes and bodies follow the OpenAI API reference (platform.openai.com/docs/
api-reference/chat/create, .../models/list, .../guides/error-codes).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from local_server import LocalServer

from . import _errors as e
from ._answers import Answer, Fault
from ._brains import Brain, chat_brain
from ._errors import ApiError
from ._records import REDACTED, RecordedRequest, Records
from ._render import Ids, Stream, StreamStyle, Turn, completion, resolve
from ._request import ChatRequest
from ._validate import check_vision, validate

_log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_KEY = "sk-standin-3f9c2a7be1d84c06a5e2"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o")
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class OpenAIStandin(LocalServer):
    """A local OpenAI-compatible chat-completions API that validates like the real one.

    Use ``async with OpenAIStandin() as server:`` inside an async test, or
    ``with OpenAIStandin().in_thread() as server:`` from synchronous code (the server then runs
    its own event loop in a daemon thread, for subprocesses calling it over HTTP).

    Args:
        api_keys: valid bearer keys; any other key is answered 401 ``invalid_api_key``.
        models: model ids served; any other is answered 404 ``model_not_found``.
        brain: chooses each answer (see :data:`Brain`); :func:`chat_brain` by default.
            Replace it any time with ``server.brain = ...``.
        chunk_chars: streamed pieces are this many characters (inclusive range).
        keepalive_every: a ``: keep-alive`` SSE comment every this many chunks (0: never).
        chunk_delay_s: seconds between streamed events (0: as fast as possible).
        seed: seeds piece sizes and ids, so runs repeat.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1``, for ``api_base`` of ``openai/<model>``.
        port: the bound port (0 before start).
        api_keys: the set of valid keys (mutable: remove one to simulate a revoked key).
    """

    def __init__(self, *, api_keys: Iterable[str] = (DEFAULT_KEY,),
                 models: Iterable[str] = DEFAULT_MODELS, brain: Brain | None = None,
                 chunk_chars: tuple[int, int] = (4, 8), keepalive_every: int = 8,
                 chunk_delay_s: float = 0.0, seed: int = 0,
                 vision_models: Iterable[str] | None = None) -> None:
        if not 1 <= chunk_chars[0] <= chunk_chars[1]:
            msg = f"chunk_chars must be (low, high) with 1 <= low <= high, not {chunk_chars}"
            raise ValueError(msg)
        self.api_keys = set(api_keys)
        self.models = tuple(models)
        self.vision_models = None if vision_models is None else frozenset(vision_models)
        """Models that take images (None: every model); another is answered 400 for one."""
        self.brain: Brain = brain or chat_brain
        self.style = StreamStyle(chunk_chars, keepalive_every)
        self.chunk_delay_s = chunk_delay_s
        self._rng = random.Random(seed)
        self._ids = Ids(self._rng)
        self._records = Records()
        super().__init__()

    # ------------------------------------------------------------------ reading

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy; records fill in as answered)."""
        return self._records.snapshot()

    def completions(self) -> list[RecordedRequest]:
        """Chat-completion requests answered 200."""
        return [r for r in self.requests if r.completed and r.path.endswith("/chat/completions")]

    def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until ``count`` requests are answered (status set); for synchronous tests
        with the server :meth:`in_thread`. Returns them all.

        Raises:
            TimeoutError: fewer after ``timeout`` seconds.
        """
        self._records.wait_sync(lambda rs: sum(r.status is not None for r in rs) >= count,
                                timeout)
        return self.requests

    def wait_until(self, predicate: Callable[[list[RecordedRequest]], T], *,
                   timeout: float = 10.0) -> T:
        """Block until ``predicate(requests)`` is truthy; return it (sync tests, thread mode).

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds.
        """
        return self._records.wait_sync(predicate, timeout)

    async def wait_for(self, predicate: Callable[[list[RecordedRequest]], T], *,
                       timeout: float = 10.0) -> T:  # noqa: ASYNC109
        """Await until ``predicate(requests)`` is truthy, from any event loop; return it.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds.
        """
        return await self._records.wait(predicate, timeout)

    # ------------------------------------------------------------------ lifecycle

    client_max_size = 1 << 26

    def routes(self, app: web.Application) -> None:
        for path in ("/v1/chat/completions", "/chat/completions"):
            app.router.add_post(path, self._chat)
        for path in ("/v1/models", "/models"):
            app.router.add_get(path, self._models)
        for path in ("/v1/embeddings", "/embeddings"):
            app.router.add_post(path, self._embeddings)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve (``LocalServer``; ``in_thread`` for
        synchronous code)."""
        await super().start()
        _log.info("OpenAI stand-in on %s", self.base_url)

    # ------------------------------------------------------------------ routes

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        record = RecordedRequest(request.method, request.path, _redacted(request.headers),
                                 peer=f"{peer[0]}:{peer[1]}" if peer else "")
        self._records.add(record)
        try:
            return await self._complete(request, record)
        except ApiError as error:
            return self._error_response(record, error)
        except asyncio.CancelledError:
            record.client_left = True
            raise
        finally:
            self._records.changed()

    async def _complete(self, request: web.Request, record: RecordedRequest) \
            -> web.StreamResponse:
        raw = await request.read()
        body = _decode_json(raw)
        record.body = body
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record.model = body["model"]
        self._authorize(request, record)
        if body is _NOT_JSON:
            record.body = None
            raise e.invalid_json()
        validate(body, self.models)
        check_vision(body["messages"], body["model"], self.vision_models)
        chat = ChatRequest.from_body(body, request.path)
        answer = await self._think(chat, record)
        if answer.delay_s > 0:
            await asyncio.sleep(answer.delay_s)
        if answer.fault is not None:
            return self._fault_response(record, answer.fault)
        turn = resolve(answer, chat, self._ids)
        if not chat.stream:
            if answer.stream_error is not None:
                error = answer.stream_error
                raise ApiError(500, str(error.get("message")), type=str(error.get("type")),
                               code=error.get("code"), param=error.get("param"))
            record.status = 200
            return web.json_response(completion(chat, turn, self._ids.fingerprint),
                                     headers=self._headers())
        return await self._stream(request, record, chat, turn, answer)

    def _authorize(self, request: web.Request, record: RecordedRequest) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise e.missing_api_key()
        if key not in self.api_keys:
            raise e.invalid_api_key(key)
        record.auth_ok = True

    async def _think(self, chat: ChatRequest, record: RecordedRequest) -> Answer:
        try:
            answer = self.brain(chat)
            if inspect.isawaitable(answer):
                answer = await answer
            if not isinstance(answer, Answer):
                msg = f"the brain returned {answer!r}, not an Answer"
                raise TypeError(msg)
        except Exception as exc:
            _log.exception("OpenAI stand-in: the brain failed")
            record.brain_error = repr(exc)
            raise e.server_error() from exc
        record.answer = answer
        return answer

    async def _stream(self, request: web.Request, record: RecordedRequest, chat: ChatRequest,
                      turn: Turn, answer: Answer) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={**self._headers(), **_SSE_HEADERS})
        record.status = 200
        if answer.stream_error is not None:
            record.error = dict(answer.stream_error)
        await response.prepare(request)
        stream = Stream(chat, turn, self._ids.fingerprint, self._rng, self.style,
                        answer.stream_error, answer.stream_error_after)
        try:
            for event in stream.events():
                await response.write(event)
                if self.chunk_delay_s > 0:
                    await asyncio.sleep(self.chunk_delay_s)
            await response.write_eof()
        except ConnectionResetError:
            _log.info("OpenAI stand-in: the client left during the stream")
        return response

    async def _models(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(request.method, request.path, _redacted(request.headers))
        self._records.add(record)
        try:
            self._authorize(request, record)
        except ApiError as error:
            return self._error_response(record, error)
        finally:
            self._records.changed()
        record.status = 200
        data = [{"id": model, "object": "model", "created": 1715367049, "owned_by": "system"}
                for model in self.models]
        return web.json_response({"object": "list", "data": data}, headers=self._headers())

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/embeddings`` (https://platform.openai.com/docs/api-reference/embeddings):
        ``input`` a string or a list of strings; each vector is a normalised bag of hashed
        words (``EMBEDDING_DIMENSIONS`` floats), so texts sharing words are close by cosine."""
        record = RecordedRequest(request.method, request.path, _redacted(request.headers))
        self._records.add(record)
        try:
            self._authorize(request, record)
            body = _decode_json(await request.read())
            record.body = body if isinstance(body, dict) else None
            if not isinstance(body, dict):
                raise e.invalid_json()
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise ApiError(400, "'input' must be a string or an array of strings.",
                               type="invalid_request_error", param="input")
            if body.get("model") not in self.models:
                raise e.model_not_found(str(body.get("model")))
        except ApiError as error:
            return self._error_response(record, error)
        finally:
            self._records.changed()
        record.status = 200
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t)}
                for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                                 headers=self._headers())

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        record = RecordedRequest(request.method, request.path, _redacted(request.headers))
        self._records.add(record)
        response = self._error_response(record, e.invalid_url(request.method, request.path))
        self._records.changed()
        return response

    # ------------------------------------------------------------------ answers

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": self._ids.request(), "openai-version": "2020-10-01",
                "openai-processing-ms": str(self._rng.randint(80, 900))}

    def _error_response(self, record: RecordedRequest, error: ApiError) -> web.Response:
        record.status, record.error = error.status, error.error()
        return web.json_response(error.body(), status=error.status,
                                 headers={**self._headers(), **error.headers})

    def _fault_response(self, record: RecordedRequest, fault: Fault) -> web.Response:
        record.status = fault.status
        headers = {**self._headers(), **fault.headers}
        if isinstance(fault.body, str):
            return web.Response(status=fault.status, text=fault.body,
                                content_type=fault.content_type, headers=headers)
        error = fault.body.get("error")
        record.error = dict(error) if isinstance(error, Mapping) else None
        return web.json_response(dict(fault.body), status=fault.status, headers=headers)


_NOT_JSON: Any = object()


def _decode_json(raw: bytes) -> Any:
    """The decoded body, or ``_NOT_JSON`` (an error answered after the key is checked, as the
    real API checks the key first)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _NOT_JSON


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if name.lower() == "authorization" else value
            for name, value in headers.items()}


EMBEDDING_DIMENSIONS = 64


def bag_of_words(text: str) -> list[float]:
    """A deterministic unit vector of ``text``'s lower-cased words hashed into 64 buckets."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w{2,}", text.lower()):
        vector[zlib.crc32(word.encode()) % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
