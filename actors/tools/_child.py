"""Start a child process for asyncio without forking the actor: ``subprocess.Popen`` (CPython
starts it with ``vfork``) and the loop watching its pipes and its pidfd.

Why: under uvloop, ``asyncio.create_subprocess_exec`` is libuv's ``uv_spawn``, a ``fork()``
of the whole actor process: with an actor's 200 MB heap that costs 8 ms of the actor's CPU
and 16 ms of wall time per program, against 0.5 ms and 1 ms for CPython's ``vfork`` path
(measured on this machine; ``bench/README.md#one-requests-cpu``). A run's git commands and
its sandbox launchers start several programs a second.

``Child`` has the part of ``asyncio.subprocess.Process``'s interface the tools use: ``pid``,
``returncode``, ``stdin``, ``stdout``, ``stderr``, ``wait``, ``communicate``, ``kill``. Its exit is
seen through a pidfd (``pidfd_open(2)``, Linux 5.3); where there is none, ``start`` falls
back to ``asyncio.create_subprocess_exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any, Protocol

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


class Process(Protocol):
    """What the tools use of a started program (``Child`` or asyncio's ``Process``)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    async def wait(self) -> int:
        """Wait for the program to end; its exit status."""
        ...

    async def communicate(self, input: bytes | None = None
                          ) -> tuple[bytes, bytes]:
        """Send ``input``, read both outputs to their end, wait for the end."""
        ...

    def kill(self) -> None:
        """Send it SIGKILL."""
        ...


class Child:
    """A program started by ``start`` (see the module docstring)."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self._exited: asyncio.Future[int] | None = None
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._exited = loop.create_future()
        loop.add_reader(self._pidfd, self._on_exit, loop)

    def _on_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        code = self._popen.wait()  # it has exited: waitpid does not block
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        """Wait for the program to end; its exit status (negative: the signal that ended
        it)."""
        if self._popen.returncode is not None:
            return self._popen.returncode
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    async def communicate(self, input: bytes | None = None
                          ) -> tuple[bytes, bytes]:
        """Write ``input`` (then close the input), read stdout and stderr to their end, and
        wait for the program to end; what each output held (b"" when not piped)."""
        if self.stdin is not None:
            if input:
                self.stdin.write(input)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await self.stdin.drain()
            self.stdin.close()

        async def read(stream: asyncio.StreamReader | None) -> bytes:
            return await stream.read() if stream is not None else b""

        out, err = await asyncio.gather(read(self.stdout), read(self.stderr))
        await self.wait()
        return out, err

    def kill(self) -> None:
        """Send it SIGKILL (nothing once it has been waited for)."""
        self._popen.kill()

    def close(self) -> None:
        """Stop watching its exit (its start failed half-way); the program itself is left as
        it is."""
        if self._pidfd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


def _owns_closing(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s pipe transports close the descriptor themselves and then close the
    file object too (uvloop: MagicStack/uvloop#763, open as of 0.23), rather than only through
    the file object (asyncio's ``_UnixReadPipeTransport``)."""
    return type(loop).__module__.startswith("uvloop")


def _pipe_end(loop: asyncio.AbstractEventLoop, fd: int, mode: str) -> IO[bytes]:
    """The file object a pipe transport is given for ``fd``, so that ``fd`` is closed exactly
    once: by the transport under uvloop, through the file object under asyncio.

    A second close of the same number closes whatever another thread opened in between (a
    workspace walk's directory, an exporter's socket); a later program's output then never
    reached its end and its git command timed out (``tests/test_child.py``)."""
    return open(fd, mode, buffering=0, closefd=not _owns_closing(loop))


async def _reader(loop: asyncio.AbstractEventLoop, fd: int
                  ) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _pipe_end(loop, fd, "rb"))
    return reader, transport


async def _writer(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamWriter:
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop),
        _pipe_end(loop, fd, "wb"))
    return asyncio.StreamWriter(transport, protocol, None, loop)


class _Pipes:
    """The pipes of one start: the program's ends (closed here once it has started) and ours
    (each owned by its transport once connected)."""

    def __init__(self) -> None:
        self.ours: dict[str, int] = {}
        self.theirs: list[int] = []

    def end(self, name: str, spec: int, *, we_read: bool) -> int:
        """What the program gets for stream ``name``: ``spec`` itself unless it is ``PIPE``,
        else its end of a new pipe."""
        if spec != PIPE:
            return spec
        read, write = os.pipe()
        ours, theirs = (read, write) if we_read else (write, read)
        self.ours[name] = ours
        self.theirs.append(theirs)
        return theirs

    def take(self, name: str) -> int | None:
        """Our end of ``name``'s pipe, no longer closed by ``close_ours``."""
        return self.ours.pop(name, None)

    def close_theirs(self) -> None:
        for fd in self.theirs:
            os.close(fd)
        self.theirs.clear()

    def close_ours(self) -> None:
        for fd in self.ours.values():
            os.close(fd)
        self.ours.clear()


async def start(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdin: int,
                stdout: int, stderr: int, pass_fds: Sequence[int] = (),
                start_new_session: bool = True) -> Process:
    """Start ``argv`` (the arguments of ``asyncio.create_subprocess_exec`` the tools use:
    ``PIPE``, ``DEVNULL`` or ``STDOUT`` for the streams).

    The pipes are made here rather than by ``Popen``, so that no file object of ``Popen``'s
    closes a descriptor a transport owns (``_pipe_end``).

    Raises:
        OSError: the program could not be started.
    """
    if not hasattr(os, "pidfd_open"):
        return await _fallback(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                               stderr=stderr, pass_fds=pass_fds,
                               start_new_session=start_new_session)
    loop = asyncio.get_running_loop()
    pipes = _Pipes()
    try:
        ends = (pipes.end("stdin", stdin, we_read=False),
                pipes.end("stdout", stdout, we_read=True),
                pipes.end("stderr", stderr, we_read=True))
        # A vfork and an exec: 0.5 ms, less than handing it to a thread (module docstring).
        popen = subprocess.Popen(list(argv), cwd=cwd, env=dict(env),  # noqa: ASYNC220
                                 stdin=ends[0], stdout=ends[1], stderr=ends[2],
                                 pass_fds=tuple(pass_fds),
                                 start_new_session=start_new_session)
    except BaseException:
        pipes.close_ours()
        raise
    finally:
        pipes.close_theirs()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError:  # a kernel without pidfds: reap it the way asyncio would have
        popen.kill()
        popen.wait()
        pipes.close_ours()
        return await _fallback(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                               stderr=stderr, pass_fds=pass_fds,
                               start_new_session=start_new_session)
    child = Child(popen, pidfd)
    transports: list[asyncio.BaseTransport] = []
    try:
        child._watch(loop)
        # Once handed to its transport, an end is the transport's to close, even when
        # connecting fails (uvloop may have closed it already).
        if (fd := pipes.take("stdin")) is not None:
            child.stdin = await _writer(loop, fd)
            transports.append(child.stdin.transport)
        if (fd := pipes.take("stdout")) is not None:
            child.stdout, transport = await _reader(loop, fd)
            transports.append(transport)
        if (fd := pipes.take("stderr")) is not None:
            child.stderr, transport = await _reader(loop, fd)
            transports.append(transport)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        child.close()
        for transport in transports:
            transport.close()
        pipes.close_ours()
        raise
    return child


async def _fallback(argv: Sequence[str], **options: Any) -> Process:
    process: Process = await asyncio.create_subprocess_exec(*argv, **options)
    return process
