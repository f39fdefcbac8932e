"""API keys: who calls the HTTP API, and what each key may do (docs/http-api.md#api-keys).

A key is a bearer token. The API keeps only its SHA-256 digest, read from the keys file
(``SB_API_KEYS_FILE``, YAML)::

    keys:
      - name: ci                 # 1-32 of a-z 0-9 _ -: the access log and the runs name it
        sha256: 9f86d08...       # hex digest of the key (``switchboard api key NAME`` makes one)
        scopes: [read, submit]   # default: read, submit, control
        rate: 60/minute          # requests per window, per API process (``limits`` notation)
        runs_per_day: 500        # runs it may start per UTC day, over every API process

``SB_API_TOKEN``, when set, is one more key, named ``default``, with every scope. A key
without ``admin`` sees and controls only the runs and sessions it started; ``admin`` sees
every run and the dead letters.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import limits
import msgspec
import yaml

from api.errors import ApiConfigError

DEFAULT_NAME = "default"
"""The name of ``SB_API_TOKEN``'s key."""
KEY_PREFIX = "sb_"
"""What keys ``new_key`` makes start with (so a leaked one is recognised in a scan)."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Scope(enum.StrEnum):
    """What a key may do (OAuth 2.0's term, RFC 6749 §3.3)."""

    READ = "read"
    """``GET`` routes: runs, sessions, events, files, roles, metrics, the report."""
    SUBMIT = "submit"
    """``POST /v1/runs``."""
    CONTROL = "control"
    """Stop, terminate, retry a run; decide its approvals."""
    ADMIN = "admin"
    """Every key's runs and sessions, and the dead letters."""


DEFAULT_SCOPES = frozenset({Scope.READ, Scope.SUBMIT, Scope.CONTROL})


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key, as the API uses it (never the key itself).

    ``rate`` is a ``limits`` rate (``60/minute``; None: no limit) counted per API process;
    ``runs_per_day`` the runs it may start per UTC day (None: no quota).
    """

    name: str
    scopes: frozenset[Scope]
    rate: limits.RateLimitItem | None = None
    runs_per_day: int | None = None

    @property
    def owner(self) -> str | None:
        """Whose runs this key reaches: its own name, or None (every run) with ``admin``."""
        return None if Scope.ADMIN in self.scopes else self.name

    def allows(self, scope: Scope) -> bool:
        """Whether the key has ``scope`` (``admin`` implies every other)."""
        return scope in self.scopes or Scope.ADMIN in self.scopes


class _Entry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    sha256: str
    scopes: list[Scope] = msgspec.field(default_factory=lambda: sorted(DEFAULT_SCOPES))
    rate: str | None = None
    runs_per_day: int | None = None


class _KeysFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keys: list[_Entry] = []


def digest(token: str) -> str:
    """The hex SHA-256 of ``token`` as UTF-8 (undecodable bytes as themselves)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    """A fresh key: ``sb_`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _rate(text: str, where: str) -> limits.RateLimitItem:
    try:
        return limits.parse(text)
    except ValueError as exc:
        msg = f"{where}: rate {text!r} is not a rate such as 60/minute or 1000/day"
        raise ApiConfigError(msg) from exc


class KeyRing:
    """The keys the API takes, found by their digest.

    Raises:
        ApiConfigError: no key at all, or two keys with one name.
    """

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        if not keys:
            msg = ("the HTTP API has no key: set SB_API_TOKEN or SB_API_KEYS_FILE (every "
                   "request must send Authorization: Bearer <key>)")
            raise ApiConfigError(msg)
        names = [key.name for key in keys.values()]
        if len(set(names)) != len(names):
            msg = f"two API keys share a name: {sorted(names)}"
            raise ApiConfigError(msg)
        self._by_digest = keys

    @property
    def names(self) -> list[str]:
        return sorted(key.name for key in self._by_digest.values())

    def authenticate(self, token: str) -> ApiKey | None:
        """The key whose token is ``token``, None for none (a dictionary lookup by digest:
        the time it takes tells nothing of any key)."""
        return self._by_digest.get(digest(token.strip())) if token.strip() else None

    @classmethod
    def load(cls, token: str, keys_file: Path | None) -> KeyRing:
        """``token`` (``SB_API_TOKEN``, "" for none) as the ``default`` key with every scope,
        and the keys of ``keys_file``.

        Raises:
            ApiConfigError: the file cannot be read or is not valid (the message says where),
                or there is no key at all.
        """
        found: list[tuple[str, ApiKey]] = []
        if token.strip():
            found.append((digest(token.strip()),
                          ApiKey(name=DEFAULT_NAME, scopes=frozenset(Scope))))
        if keys_file is not None:
            found += _read(keys_file)
        keys: dict[str, ApiKey] = {}
        for sha, key in found:
            if sha in keys:
                msg = f"API key {key.name} has the digest of key {keys[sha].name}"
                raise ApiConfigError(msg)
            keys[sha] = key
        return cls(keys)


def _checked(name: str, rate: str | None, runs_per_day: int | None, where: str
             ) -> limits.RateLimitItem | None:
    """An entry's name and limits checked (``where`` names it in the message), its rate
    parsed (None: no rate).

    Raises:
        ApiConfigError: a bad name, rate or runs per day.
    """
    if not _NAME.match(name):
        msg = f"{where}: a name is 1-32 of a-z 0-9 _ - (starting with a letter or digit)"
        raise ApiConfigError(msg)
    if runs_per_day is not None and runs_per_day < 0:
        msg = f"{where}: runs_per_day must be 0 or more"
        raise ApiConfigError(msg)
    return _rate(rate, where) if rate else None


def _read(path: Path) -> list[tuple[str, ApiKey]]:
    """The keys of the keys file ``path``, each with its digest.

    Raises:
        ApiConfigError: it cannot be read, is not YAML, or an entry is not valid.
    """
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        parsed = msgspec.convert(raw or {}, _KeysFile)
    except OSError as exc:
        msg = f"SB_API_KEYS_FILE {where} cannot be read: {exc.strerror or exc}"
        raise ApiConfigError(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"SB_API_KEYS_FILE {where} is not YAML: {exc}"
        raise ApiConfigError(msg) from exc
    except msgspec.ValidationError as exc:
        msg = f"SB_API_KEYS_FILE {where}: {exc}"
        raise ApiConfigError(msg) from exc
    keys: list[tuple[str, ApiKey]] = []
    for entry in parsed.keys:
        at = f"{where}: key {entry.name!r}"
        rate = _checked(entry.name, entry.rate, entry.runs_per_day, at)
        sha = entry.sha256.strip().lower()
        if not _DIGEST.match(sha):
            msg = f"{at}: sha256 must be 64 hex digits (`switchboard api key {entry.name}`)"
            raise ApiConfigError(msg)
        keys.append((sha, ApiKey(name=entry.name, scopes=frozenset(entry.scopes), rate=rate,
                                 runs_per_day=entry.runs_per_day)))
    return keys


def key_entry(name: str, key: str, scopes: frozenset[Scope], rate: str | None,
              runs_per_day: int | None) -> str:
    """The keys file's YAML entry of ``key`` (its digest, never the key), as
    ``switchboard api key`` prints it.

    Raises:
        ApiConfigError: a bad name, rate or runs per day.
    """
    _checked(name, rate, runs_per_day, f"key {name!r}")
    entry: dict[str, object] = {"name": name, "sha256": digest(key),
                                "scopes": sorted(str(s) for s in scopes)}
    if rate:
        entry["rate"] = rate
    if runs_per_day is not None:
        entry["runs_per_day"] = runs_per_day
    return yaml.safe_dump([entry], sort_keys=False)
