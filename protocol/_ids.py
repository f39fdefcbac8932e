"""Identifier value objects that map one-to-one onto NATS subject tokens and KV keys."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# One NATS subject token that is also a valid JetStream KV key: no dots, spaces or wildcards.
# Source: NATS subject naming (docs.nats.io, "Subject-Based Messaging") and the KV key rule
# `[-/_=\.a-zA-Z0-9]+` (nats-server `server/stream.go`, nats.go `kv.go` keyValid).
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_PLATFORM = re.compile(r"^[a-z][a-z0-9]{0,31}$")


@functools.lru_cache(maxsize=4096)
def check_token(value: str, what: str) -> str:
    """Return ``value`` when it is a single safe subject token (valid values are remembered:
    subjects are built on every publish).

    Raises:
        ValueError: ``value`` is empty, longer than 128 characters or has a character other than
            ASCII letters, digits, ``_`` and ``-``.
    """
    if not _TOKEN.match(value):
        msg = f"invalid {what} {value!r}: use 1-128 of A-Z a-z 0-9 _ -"
        raise ValueError(msg)
    return value


@dataclass(frozen=True, slots=True)
class SessionId:
    """A conversation: one Discord thread or channel, one DM, or one terminal chat.

    ``str(SessionId("discord", "1234"))`` is ``"discord-1234"``, usable as a subject token and
    a KV key; ``SessionId.from_str`` is its inverse.
    """

    platform: str
    key: str

    def __post_init__(self) -> None:
        if not _PLATFORM.match(self.platform):
            msg = f"invalid session platform {self.platform!r}: lowercase letters and digits"
            raise ValueError(msg)
        check_token(self.key, "session key")

    def __str__(self) -> str:
        return f"{self.platform}-{self.key}"

    @classmethod
    def from_str(cls, value: str) -> SessionId:
        """Parse ``"platform-key"``.

        Raises:
            ValueError: the string has no ``-`` or either part is invalid.
        """
        platform, sep, key = value.partition("-")
        if not sep:
            msg = f"invalid session id {value!r}: expected 'platform-key'"
            raise ValueError(msg)
        return cls(platform, key)


@dataclass(frozen=True, slots=True)
class ActorId:
    """One replica of one actor role: ``"python_coder/2"`` is replica 2 of ``python_coder``."""

    role: str
    replica: int = 0

    def __post_init__(self) -> None:
        check_token(self.role, "actor role")
        if self.replica < 0:
            msg = f"invalid replica {self.replica}: must be >= 0"
            raise ValueError(msg)

    def __str__(self) -> str:
        return f"{self.role}/{self.replica}"

    @classmethod
    def from_str(cls, value: str) -> ActorId:
        """Parse ``"role/replica"`` (the replica defaults to 0).

        Raises:
            ValueError: the role is not a token or the replica is not a non-negative integer.
        """
        role, _, replica = value.partition("/")
        try:
            number = int(replica) if replica else 0
        except ValueError as exc:
            msg = f"invalid actor id {value!r}: replica must be an integer"
            raise ValueError(msg) from exc
        return cls(role, number)
