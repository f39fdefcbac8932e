"""``actors.tools._child``: a program started without forking the actor behaves as asyncio's
``Process`` does for the tools: its outputs, its exit status, its input, a kill; and it is
reaped (no zombie is left), under asyncio's loop and under uvloop (the actors' loop)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from actors.tools import _child


def _run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_outputs_status_input_and_kill_as_asyncio_gives_them(loop: str) -> None:
    async def main() -> None:
        child = await _child.start(["sh", "-c", "cat; echo err >&2; exit 3"], cwd="/",
                                   env={"PATH": os.environ["PATH"]}, stdin=_child.PIPE,
                                   stdout=_child.PIPE, stderr=_child.PIPE)
        assert isinstance(child, _child.Child)  # pidfds exist here: not the fallback
        async with asyncio.timeout(10):
            out, err = await child.communicate(b"in\n")
        assert (out, err, child.returncode) == (b"in\n", b"err\n", 3)
        assert _state(child.pid) == "gone"  # reaped, not a zombie

        merged = await _child.start(["sh", "-c", "echo a; echo b >&2"], cwd="/", env={},
                                    stdin=_child.DEVNULL, stdout=_child.PIPE,
                                    stderr=_child.STDOUT)
        assert merged.stdout is not None and merged.stderr is None
        async with asyncio.timeout(10):
            assert sorted((await merged.stdout.read()).split()) == [b"a", b"b"]
            assert await merged.wait() == 0

        sleeper = await _child.start(["sleep", "30"], cwd="/",
                                     env={"PATH": os.environ["PATH"]}, stdin=_child.DEVNULL,
                                     stdout=_child.PIPE, stderr=_child.PIPE)
        assert sleeper.returncode is None
        sleeper.kill()
        async with asyncio.timeout(10):
            assert await sleeper.wait() == -signal.SIGKILL
        assert _state(sleeper.pid) == "gone"

    _run(loop, main)


def test_a_program_that_cannot_start_is_an_oserror() -> None:
    async def main() -> None:
        with pytest.raises(OSError):
            await _child.start(["/nonexistent/program"], cwd="/", env={},
                               stdin=_child.DEVNULL, stdout=_child.PIPE, stderr=_child.PIPE)

    _run("uvloop", main)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_childs_pipes_are_closed_once_so_no_other_threads_descriptor_is_closed(
        loop: str) -> None:
    """uvloop's pipe transports close their descriptor and then the file object handed to
    them, which closes the same number again (MagicStack/uvloop#763): a descriptor another
    thread opened in between (a workspace walk's directory, an exporter's socket) was closed
    under it, and a later program's output never reached its end (a git command timed out).
    A thread here opens pipes all along and checks each stays open until it closes it."""
    stolen: list[str] = []
    stop = threading.Event()

    def open_pipes() -> None:
        while not stop.is_set():
            read, write = os.pipe()
            try:
                os.write(write, b"x")
                if os.read(read, 1) != b"x":
                    stolen.append("read back something else")
            except OSError as exc:
                stolen.append(f"{exc.__class__.__name__} {exc.errno}")
            for fd in (read, write):
                try:
                    os.close(fd)
                except OSError as exc:
                    stolen.append(f"close: {exc.errno}")

    async def main() -> None:
        thread = threading.Thread(target=open_pipes, daemon=True)
        thread.start()
        try:
            for n in range(200):
                child = await _child.start(["true"], cwd="/", env={}, stdin=_child.PIPE,
                                           stdout=_child.PIPE, stderr=_child.PIPE)
                async with asyncio.timeout(10):
                    await child.communicate()
                del child
                if n % 20 == 0:  # file objects left to the collector are closed too
                    gc.collect()
        finally:
            stop.set()
            thread.join(10)

    _run(loop, main)
    assert stolen == []
