"""A process's side of NATS security: which credentials and TLS context it connects with, and
what the server's refusals mean.

- Credentials: ``NATS_USER`` / ``NATS_PASSWORD``; ``NATS_CREDS``, a JWT ``.creds`` file or an
  nkey seed file (told apart by content); ``NATS_NKEY_SEED``, a seed file; or
  ``SB_NATS_CREDS_DIR``, where each process takes its own identity's seed (``settings_for``).
  With a seed, replies come to ``_INBOX.<16 characters of the public key>``, the one inbox
  the server configuration of ``switchboard nats-config`` lets that identity read.
- TLS (docs.nats.io, "TLS"): ``NATS_TLS_CA`` verifies the server's certificate,
  ``NATS_TLS_CERT`` / ``NATS_TLS_KEY`` present a client certificate. nats-py switches to TLS
  only when the server's INFO says ``tls_required``; asking for TLS (``tls://`` or any
  ``NATS_TLS_*``) and meeting a server that does not offer it is refused here.
- Refusals: the server answers a publish or subscription outside an identity's permissions
  with an asynchronous ``-ERR 'Permissions Violation ...'`` (nats-py calls ``error_cb``; the
  request itself times out), and a bad credential with ``Authorization Violation``.
"""

from __future__ import annotations

import logging
import re
import ssl
import weakref
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from nats.aio.client import Client

from core.config import Settings
from core.errors import AuthError, BrokerError, ConfigError, PermissionDeniedError, TLSError
from natsauth._files import SEED_SUFFIX, public_key, read_seed
from natsauth._permissions import inbox_prefix

_log = logging.getLogger(__name__)

_JWT_MARK = b"BEGIN NATS USER JWT"
_MAX_CREDS_BYTES = 64 * 1024


def settings_for(settings: Settings, identity: str) -> Settings:
    """``settings`` for a process that runs as ``identity`` (an actor role, ``gateway``,
    ``cli``): with ``SB_NATS_CREDS_DIR`` set, ``NATS_CREDS`` becomes ``<dir>/<identity>.nk``;
    otherwise ``settings`` unchanged.

    Raises:
        ConfigError: the directory has no seed file for ``identity``.
    """
    directory = settings.nats_creds_dir
    if directory is None:
        return settings
    path = Path(directory) / f"{identity}{SEED_SUFFIX}"
    if not path.is_file():
        msg = (f"no {path.name} in {directory} (SB_NATS_CREDS_DIR): run "
               f"`switchboard nats-config {directory}` to write every identity's seed")
        raise ConfigError(msg)
    return settings.model_copy(update={"nats_creds": str(path.resolve())})


def _is_jwt_creds(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(_MAX_CREDS_BYTES)
    except OSError as exc:
        msg = f"cannot read NATS credentials {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    return _JWT_MARK in head


def seed_file(settings: Settings) -> Path | None:
    """The nkey seed file this process authenticates with: ``NATS_CREDS`` when it holds a
    seed rather than a JWT, else ``NATS_NKEY_SEED``; None without one.

    Raises:
        ConfigError: the file cannot be read, or holds neither a JWT nor a valid seed.
    """
    if settings.nats_creds:
        path = Path(settings.nats_creds)
        if _is_jwt_creds(path):
            return None
        try:
            read_seed(path)
        except ConfigError as exc:
            msg = (f"NATS_CREDS {path} is neither a NATS JWT .creds file nor an nkey seed: "
                   f"{exc}")
            raise ConfigError(msg) from exc
        return path
    if settings.nats_nkey_seed:
        path = Path(settings.nats_nkey_seed)
        read_seed(path)
        return path
    return None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``NATS_TLS_CA`` (trusted CAs, PEM), ``NATS_TLS_CERT`` and
    ``NATS_TLS_KEY`` (client certificate and key, PEM); None when none is set (a ``tls://``
    URL then trusts the system's CAs, as nats-py does).

    Raises:
        ConfigError: a file is missing or not PEM, or a key comes without its certificate.
    """
    ca, cert, key = settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key
    if not (ca or cert or key):
        return None
    if key and not cert:
        msg = "NATS_TLS_KEY is set without NATS_TLS_CERT (the client certificate it signs for)"
        raise ConfigError(msg)
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        msg = f"NATS_TLS_CA {ca}: not a readable PEM file of CA certificates ({exc})"
        raise ConfigError(msg) from exc
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            msg = (f"NATS_TLS_CERT {cert} / NATS_TLS_KEY {key}: not a readable PEM certificate "
                   f"and matching key ({exc})")
            raise ConfigError(msg) from exc
    return context


def wants_tls(url: str, settings: Settings) -> bool:
    """Whether this process asked for TLS: a ``tls://`` server or any ``NATS_TLS_*``."""
    tls_url = any(u.strip().lower().startswith("tls://") for u in url.split(","))
    return tls_url or bool(settings.nats_tls_ca or settings.nats_tls_cert)


def client_options(settings: Settings) -> dict[str, object]:
    """``nats.connect`` options for ``settings``' credentials and TLS (never logged: they
    name files, not secrets, except ``password``).

    Raises:
        ConfigError: a credentials or TLS file is unusable.
    """
    options: dict[str, object] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    seed = seed_file(settings)
    if seed is not None:
        options["nkeys_seed"] = str(seed)
        options["inbox_prefix"] = inbox_prefix(public_key(read_seed(seed)))
    elif settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    return options


def redact(url: str) -> str:
    """``url`` (comma-separated servers) with any password replaced by ``***``."""
    def one(server: str) -> str:
        parts = urlsplit(server.strip())
        if parts.password is None:
            return server.strip()
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return ",".join(one(s) for s in url.split(","))


def connect_error(url: str, exc: BaseException, last: BaseException | None,
                  settings: Settings | None = None) -> BrokerError:
    """The error to raise when connecting to ``url`` failed with ``exc``; ``last`` is the last
    error nats-py reported on the way (a timeout hides the TLS or authorization error that
    made each attempt fail); ``settings`` (when given) adds hints about TLS files."""
    cause = last if last is not None and isinstance(exc, TimeoutError) else exc
    text = str(cause) or type(cause).__name__
    where = redact(url)
    has_cert = settings is not None and bool(settings.nats_tls_cert)
    if isinstance(cause, ssl.SSLError):
        reason = getattr(cause, "verify_message", None) or cause.reason or text
        if "CERTIFICATE_REQUIRED" in str(reason).upper():
            hint = ("the server verifies clients: set NATS_TLS_CERT and NATS_TLS_KEY to a "
                    "certificate its CA signed")
        else:
            hint = ("NATS_TLS_CA must be the CA that signed the server's certificate, for the "
                    "host in the URL")
        return TLSError(f"TLS with NATS at {where} failed: {reason} ({hint})")
    if "authorization violation" in text.lower():
        msg = (f"NATS at {where} refused this process's credentials (Authorization "
               f"Violation): check NATS_CREDS, NATS_NKEY_SEED, SB_NATS_CREDS_DIR or "
               f"NATS_USER / NATS_PASSWORD")
        return AuthError(msg)
    msg = f"cannot reach NATS at {where}: {text}"
    if settings is not None and wants_tls(url, settings) and not has_cert:
        msg += (" (over TLS: a server that verifies clients closes connections without a "
                "client certificate, NATS_TLS_CERT / NATS_TLS_KEY)")
    return BrokerError(msg)


class _SslEofFilter(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl",
    which nats-py's transport causes on every TLS connection that closes: noise, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


_ssl_eof_filter = _SslEofFilter()


def quiet_tls_close() -> None:
    """Install ``_SslEofFilter`` on the ``asyncio`` logger (once; for TLS connections)."""
    asyncio_log = logging.getLogger("asyncio")
    if _ssl_eof_filter not in asyncio_log.filters:
        asyncio_log.addFilter(_ssl_eof_filter)


def check_tls(nc: Client, url: str, settings: Settings) -> None:
    """Refuse a connection made without TLS when this process asked for it.

    Raises:
        TLSError: TLS was asked for and the server does not require it (nats-py then talks
            plain text).
    """
    if not wants_tls(url, settings):
        return
    info = getattr(nc, "_server_info", {}) or {}
    if not info.get("tls_required"):
        msg = (f"NATS at {redact(url)} does not offer TLS, but a tls:// URL or NATS_TLS_* asks "
               f"for it: refusing to talk in plain text")
        raise TLSError(msg)


_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"',
                        re.IGNORECASE)
MAX_REFUSALS = 64
"""Permission refusals remembered per connection (the latest per subject)."""


class ErrorLog:
    """nats-py's ``error_cb`` for one connection: a permission violation is logged at ERROR
    and remembered by subject (``refusal``); any other error at DEBUG, the last one kept for
    ``connect_error``. (nats-py reports the server's ``-ERR`` in lower case, subject
    included; the server's own log has it as it was.)

    Args:
        name: the connection's name, for the log.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.last: Exception | None = None
        self._refused: dict[str, str] = {}  # lower-cased subject -> "publish to" / ...

    async def callback(self, exc: Exception) -> None:
        """The ``error_cb`` (nats-py wants a coroutine function)."""
        found = _VIOLATION.search(str(exc))
        if found is None:
            self.last = exc
            _log.debug("nats %s: %s", self.name, exc)
            return
        action, subject = found.groups()
        verb = "publish to" if action.lower() == "publish" else "subscribe to"
        _log.error("%s", self._message(verb, subject))
        self._refused.pop(subject.lower(), None)
        self._refused[subject.lower()] = verb
        while len(self._refused) > MAX_REFUSALS:
            self._refused.pop(next(iter(self._refused)))

    def _message(self, verb: str, subject: str) -> str:
        return (f"NATS refused to let {self.name} {verb} {subject!r}: this identity's "
                f"permissions do not allow it (is its NATS_CREDS / SB_NATS_CREDS_DIR its own? "
                f"after changing topology.yaml run `switchboard nats-config` again)")

    def refusal(self, subject: str | None = None) -> PermissionDeniedError | None:
        """The refusal of ``subject``, or the latest of any subject (None: none)."""
        if subject is None:
            if not self._refused:
                return None
            subject, verb = next(reversed(self._refused.items()))
        else:
            verb = self._refused.get(subject.lower(), "")
            if not verb:
                return None
        return PermissionDeniedError(self._message(verb, subject), subject=subject)


_logs: weakref.WeakKeyDictionary[Client, ErrorLog] = weakref.WeakKeyDictionary()


def watch_refusals(nc: Client, log: ErrorLog) -> None:
    """Remember ``log`` as ``nc``'s, for ``refusal``."""
    _logs[nc] = log


def refusal(nc: object, subject: str | None = None) -> PermissionDeniedError | None:
    """The server's refusal of ``subject`` (any subject when None) on connection ``nc`` (a
    client or a JetStream context), if it refused one: what a request that timed out
    should raise instead."""
    client = getattr(nc, "_nc", nc)  # a JetStreamContext keeps its client as _nc
    log = _logs.get(client) if isinstance(client, Client) else None
    return log.refusal(subject) if log is not None else None
