"""nats-py's header parser with its per-character generator taken out.

nats-py (2.x, ``nats.aio.client.Client._parse_header_lines``) parses every received header
block in Python, and rejects a header name holding whitespace with ``any(c.isspace() for c in
key)``: a generator stepped once per character of every name. Timed here on the blocks the
actors receive most: a pulled task's (3 headers) 3.6 µs → 2.2 µs, a KV direct get's (6
headers) 5.6 µs → 2.6 µs; about 2 % of a runtime step's CPU (``bench/README.md#one-requests-cpu``;
cProfile, which inflates small calls, had ranked the generator first in both actors).

``parse_header_lines`` gives the same dict for every input (``tests/test_headers.py``
compares the two on generated header blocks, so a nats-py release that changes its parser
fails there): the same split on CRLF and on the first ``:``, the same ASCII name and
``utf-8``/``replace`` value, the same names skipped. Only the whitespace test differs in form:
``str.split()`` splits where ``str.isspace()`` is true (both use ``Py_UNICODE_ISSPACE``), so a
name holds whitespace exactly when its split is not the name alone. ``install`` puts it in
nats-py's place; the runtime does it on import.

The header block format: ``NATS/1.0\\r\\nName: Value\\r\\n...`` (ADR-4, "NATS Message
Headers", nats-io/nats-architecture-and-design).
"""

from __future__ import annotations

from nats.aio.client import Client

_CRLF = b"\r\n"

ORIGINAL = getattr(Client.__dict__.get("_parse_header_lines"), "__func__", None)
"""nats-py's own parser (None: this nats-py has none by that name, and it is left alone)."""


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The headers of ``raw`` (the block after ``NATS/1.0\\r\\n``): name → value, both
    stripped; a line without ``:``, a name that is not ASCII or that holds whitespace is
    skipped; a later line with the same name wins."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue  # an empty line, or no ``:``
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:
            continue  # whitespace inside the name (or a separator ``bytes.strip`` keeps)
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def install() -> None:
    """Make ``parse_header_lines`` nats-py's header parser in this process (idempotent; nothing
    when nats-py has no ``_parse_header_lines`` to replace)."""
    if ORIGINAL is not None:
        Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
