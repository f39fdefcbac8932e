"""An aiohttp application on 127.0.0.1 (a free port), in the test's loop or in a thread: the
base of the local stand-ins (``openai_standin``, ``hosted_standins``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Self

from aiohttp import web

SHUTDOWN_TIMEOUT_S = 2.0
START_TIMEOUT_S = 10.0


class LocalServer:
    """Base of the stand-ins: subclasses add routes in ``routes``.

    Use ``async with Server() as s:`` in an async test or ``with Server().in_thread() as s:``
    from synchronous code (the server then runs its own loop in a daemon thread, for
    subprocesses that call it over HTTP).
    """

    client_max_size = 1 << 24
    """Largest request body the server reads, in bytes."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve."""
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                                     handler_cancellation=True)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving; requests still being answered are cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, *, start_timeout: float = START_TIMEOUT_S) -> Iterator[Self]:
        """Serve from a daemon thread with its own event loop while the block runs.

        Raises:
            TimeoutError: the server did not start within ``start_timeout`` seconds.
            RuntimeError: it failed to start (the cause is chained).
        """
        ready = threading.Event()
        state: dict[str, object] = {}

        async def serve() -> None:
            stopping = asyncio.Event()
            state["loop"], state["stopping"] = asyncio.get_running_loop(), stopping
            try:
                await self.start()
            except BaseException as exc:
                state["failure"] = exc
                raise
            finally:
                ready.set()
            try:
                await stopping.wait()
            finally:
                await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True,
                                  name=type(self).__name__)
        thread.start()
        if not ready.wait(start_timeout):
            msg = f"{type(self).__name__} did not start within {start_timeout} s"
            raise TimeoutError(msg)
        failure = state.get("failure")
        if isinstance(failure, BaseException):
            msg = f"{type(self).__name__} failed to start: {failure!r}"
            raise RuntimeError(msg) from failure
        try:
            yield self
        finally:
            loop, stopping = state["loop"], state["stopping"]
            assert isinstance(loop, asyncio.AbstractEventLoop)
            assert isinstance(stopping, asyncio.Event)
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
            thread.join(SHUTDOWN_TIMEOUT_S + 5.0)
