"""What the API's HTTP server logs about requests: one access-log line per request in the
Common Log Format, and requests HTTP itself cannot parse as one line each, without a traceback.

Neither ever holds a credential: the access log's user field is the API key's name (``-``
before a key was checked; the key itself is never written), the query string is left out (a
client may put a key in it), and a request that does not parse is named by its error class,
not by the header line that broke it.
"""

from __future__ import annotations

import datetime
import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

from api._keys import ApiKey
from api._params import CALLER

ACCESS_LOGGER = "api.access"
"""The logger of the access log (INFO, one line per request)."""
SERVER_LOGGER = "api.http"
"""The logger aiohttp's request handler reports to (unparseable requests, handler crashes)."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE = re.compile(r'[^\x21-\x7e]|["\\]')


def _escape(text: str) -> str:
    """``text`` with ``"``, ``\\``, spaces, control and non-ASCII characters as ``\\xHH`` (or
    ``\\uHHHH``), so that one request is one line and a field cannot be forged."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                       else f"\\u{ord(m.group()):04x}", text)


def clf_time(moment: datetime.datetime) -> str:
    """``moment`` as the Common Log Format writes it, ``10/Oct/2000:13:55:36 -0700`` (English
    month names whatever the locale; ``moment`` must be aware)."""
    return (f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year:04d}:"
            f"{moment:%H:%M:%S} {moment:%z}")


def clf_line(request: BaseRequest, status: int, size: int, started: datetime.datetime) -> str:
    """One access-log line in the Common Log Format (the NCSA httpd format Apache documents as
    ``%h %l %u %t "%r" %>s %b``): client address, ``-``, the API key's name (``-`` for none:
    the key itself is never logged), the time the request arrived, the request line without
    its query string, the status, and the body's size in bytes (``-`` for none)."""
    path = request.raw_path.split("?", 1)[0]
    major, minor = request.version
    line = f"{_escape(request.method)} {_escape(path)} HTTP/{major}.{minor}"
    key = request.get(CALLER)
    user = _escape(key.name) if isinstance(key, ApiKey) else "-"
    return (f'{_escape(request.remote or "-")} - {user} [{clf_time(started)}] "{line}" '
            f'{status} {size or "-"}')


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access-log hook writing ``clf_line`` at INFO (``AppRunner(access_log_class=
    AccessLogger, access_log=logging.getLogger(ACCESS_LOGGER))``)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Log one request; ``time`` is how long it took, in seconds."""
        started = (datetime.datetime.now().astimezone()
                   - datetime.timedelta(seconds=max(time, 0.0)))
        self.logger.info("%s", clf_line(request, response.status, response.body_length,
                                        started))


class QuietBadRequests(logging.Filter):
    """A filter for ``SERVER_LOGGER``: a request that HTTP cannot parse (a malformed header,
    a line too long: aiohttp's ``HttpProcessingError`` with a 4xx status) becomes one INFO
    line naming the error class; everything else, a crash of a handler included, passes as it
    is, traceback and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` when it reports an unparseable request; always keep it."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "%d bad request from %s: %s (answered by the HTTP layer)"
            record.args = (exc.code, remote, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def server_logger() -> logging.Logger:
    """``SERVER_LOGGER``, with ``QuietBadRequests`` on it (added once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, QuietBadRequests) for f in logger.filters):
        logger.addFilter(QuietBadRequests())
    return logger
