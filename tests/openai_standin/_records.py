"""What the stand-in records of each request, safe to read and await from any thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._answers import Answer

T = TypeVar("T")
REDACTED = "<redacted>"


@dataclass
class RecordedRequest:
    """One HTTP request the stand-in received, filled in as it is answered.

    Attributes:
        method, path: e.g. ``POST``, ``/v1/chat/completions``.
        headers: request headers; ``Authorization`` is replaced by ``<redacted>``.
        auth_ok: the bearer key was one of the valid keys.
        body: the decoded JSON body (None when absent or not JSON).
        model: ``body["model"]`` when it is a string.
        status: the HTTP status answered (None while the answer is pending, e.g. delayed).
        error: the ``error`` object answered (in the body or mid-stream), or None.
        answer: what the brain chose, or None when validation rejected the request.
        brain_error: ``repr`` of an exception the brain raised (answered 500).
        client_left: the client disconnected before the answer was complete (a client timeout
            during a delay); ``status`` then stays None.
        peer: the client's ``host:port``: two requests with one peer came over one kept-alive
            connection.
    """

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    peer: str = ""
    auth_ok: bool = False
    body: Any = None
    model: str | None = None
    status: int | None = None
    error: dict[str, Any] | None = None
    answer: Answer | None = None
    brain_error: str | None = None
    client_left: bool = False

    @property
    def stream(self) -> bool:
        """The body asked for a stream."""
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def completed(self) -> bool:
        """Answered 200 (a completion or a stream; a stream may still have failed midway)."""
        return self.status == 200


class Records:
    """Requests in arrival order, with waiting for sync threads and for any event loop."""

    def __init__(self) -> None:
        self._items: list[RecordedRequest] = []
        self._condition = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def add(self, record: RecordedRequest) -> None:
        with self._condition:
            self._items.append(record)
        self.changed()

    def snapshot(self) -> list[RecordedRequest]:
        with self._condition:
            return list(self._items)

    def changed(self) -> None:
        """Wake every waiter, in whichever thread or loop it waits."""
        with self._condition:
            self._condition.notify_all()
            waiters = list(self._waiters)
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def wait_sync(self, predicate: Callable[[list[RecordedRequest]], T], timeout: float) -> T:
        """Block until ``predicate(requests)`` is truthy; return it.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds.
        """
        with self._condition:
            result = self._condition.wait_for(lambda: predicate(list(self._items)), timeout)
        if not result:
            msg = f"OpenAI stand-in: condition not met within {timeout} s; {self._summary()}"
            raise TimeoutError(msg)
        return result

    async def wait(self, predicate: Callable[[list[RecordedRequest]], T], timeout: float) -> T:  # noqa: ASYNC109
        """Await until ``predicate(requests)`` is truthy, from any event loop; return it.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate(self.snapshot())):
                    future: asyncio.Future[None] = loop.create_future()
                    entry = (loop, future)
                    with self._condition:
                        self._waiters.add(entry)
                    try:
                        if not predicate(self.snapshot()):
                            await future
                    finally:
                        with self._condition:
                            self._waiters.discard(entry)
                return result
        except TimeoutError as exc:
            msg = f"OpenAI stand-in: condition not met within {timeout} s; {self._summary()}"
            raise TimeoutError(msg) from exc

    def _summary(self) -> str:
        seen = [f"{r.method} {r.path} {r.model} -> {r.status}" for r in self.snapshot()[-10:]]
        return f"last requests: {seen}"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
