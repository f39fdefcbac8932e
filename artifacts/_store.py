"""The artifact store interface every backend implements, and the naming rules it shares."""

from __future__ import annotations

import abc
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.errors import ArtifactError
from protocol import check_token

_log = logging.getLogger(__name__)

_PATH_PART = re.compile(r"^[^\x00-\x1f\\]+$")
MAX_PATH_CHARS = 1000
"""Longest relative path accepted, in characters (S3 keys are at most 1,024 bytes)."""


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What the store knows of one object without downloading it.

    Attributes:
        path: the path relative to the session's workspace, ``/``-separated.
        size: bytes.
        sha256: lowercase hex SHA-256 of the content.
        mtime_ns: the workspace file's modification time when it was uploaded, in nanoseconds
            since the epoch (0 when unknown).
    """

    path: str
    size: int
    sha256: str
    mtime_ns: int = 0


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_session(session: str) -> str:
    """Return ``session`` when it is a subject token (``discord-1234``).

    Raises:
        ArtifactError: it is not (empty, ``/``, ``.``, spaces...).
    """
    try:
        return check_token(session, "session")
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc


def check_path(path: str) -> str:
    """Return ``path`` when it is a clean relative path (``src/app.py``, ``.git/HEAD``).

    Raises:
        ArtifactError: it is empty, absolute, has ``.``/``..``/empty parts, backslashes or control
            characters, or is longer than ``MAX_PATH_CHARS``.
    """
    parts = path.split("/")
    if (not path or len(path) > MAX_PATH_CHARS or PurePosixPath(path).is_absolute()
            or any(p in {"", ".", ".."} or not _PATH_PART.match(p) for p in parts)):
        msg = f"invalid artifact path {path!r}: use a relative path like 'src/app.py'"
        raise ArtifactError(msg)
    return path


class ArtifactStore(abc.ABC):
    """Files of each session's workspace, kept off the machine
    (docs/design.md#workspaces-and-artifacts).

    Objects are addressed by ``(session, path)``; ``path`` is relative to the workspace. Every
    method raises ``ArtifactError`` when the backend fails or times out.
    """

    @abc.abstractmethod
    async def put(self, session: str, path: str, data: bytes, *, mtime_ns: int = 0) -> None:
        """Store ``data`` (any size; replaces an existing object).

        Args:
            session: the session id (a subject token).
            path: relative path in the workspace.
            data: the content.
            mtime_ns: the file's modification time in nanoseconds, kept as metadata for
                ``restore_workspace``.
        """

    @abc.abstractmethod
    async def get(self, session: str, path: str) -> bytes:
        """The content of one object.

        Raises:
            ArtifactNotFoundError: no such object.
        """

    @abc.abstractmethod
    async def stat(self, session: str) -> dict[str, ArtifactInfo]:
        """Every object of ``session`` by relative path, without content."""

    @abc.abstractmethod
    async def delete(self, session: str, path: str) -> bool:
        """Remove one object; False when there was none."""

    @abc.abstractmethod
    async def delete_session(self, session: str) -> int:
        """Remove every object of ``session``; returns how many there were."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections (the NATS connection itself belongs to the caller)."""

    async def list(self, session: str) -> list[str]:
        """Relative paths of every object of ``session``, sorted."""
        return sorted(await self.stat(session))
