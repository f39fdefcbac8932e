"""Webhooks without I/O: which URLs the API calls, and how a delivery is signed.

Signing follows Standard Webhooks (https://www.standardwebhooks.com, ``spec/standard-webhooks.md``):
``webhook-id`` (the same for every attempt of one message), ``webhook-timestamp`` (integer
Unix seconds), and ``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``,
the key being the bytes of a ``whsec_<base64>`` secret (any other secret: its UTF-8 bytes).

URLs: ``http`` or ``https`` only, no user info; the host must be public — every address it
resolves to a global unicast one, so loopback, private (RFC 1918, ULA), link-local (cloud
metadata at 169.254.169.254), CGNAT and reserved ranges are refused — unless it is named in
``allow_hosts`` (``SB_API_WEBHOOK_ALLOW_HOSTS``). Redirects are not followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

import yarl

from api.errors import WebhookRefusedError

SECRET_PREFIX = "whsec_"
"""The prefix of a Standard Webhooks secret (the rest is base64)."""
TIMEOUT_S = 10.0
"""Bound on one delivery attempt, connection and answer included (seconds)."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """How the API calls webhooks.

    Args:
        key: the HMAC-SHA256 key (``secret_key`` of ``SB_API_WEBHOOK_SECRET``); empty:
            webhooks are off and a run that asks for one is refused.
        default_url: called when a run names no ``webhook`` ("": none).
        allow_hosts: host names and IP addresses allowed although not public (lower case).
        attempts: attempts per delivery (at least 1).
        backoff_s: the wait before the second attempt, doubled before each later one (s).
        timeout_s: bound on one attempt (seconds).
    """

    key: bytes = b""
    default_url: str = ""
    allow_hosts: frozenset[str] = frozenset()
    attempts: int = 5
    backoff_s: float = 2.0
    timeout_s: float = TIMEOUT_S

    def delays(self) -> list[float]:
        """Seconds to wait before each attempt (0 before the first)."""
        return [0.0] + [self.backoff_s * 2 ** i for i in range(max(self.attempts, 1) - 1)]


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: the decoded base64 after ``whsec_``, else its UTF-8 bytes.

    Raises:
        WebhookRefusedError: a ``whsec_`` secret whose rest is not base64.
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except binascii.Error as exc:
            msg = "SB_API_WEBHOOK_SECRET starts with whsec_ but the rest is not base64"
            raise WebhookRefusedError(msg) from exc
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of a message: ``v1,<base64 HMAC-SHA256>`` of
    ``<msg_id>.<timestamp>.<body>`` (Standard Webhooks, "Signature scheme")."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The header fields of one delivery attempt (Standard Webhooks)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body),
            "Content-Type": "application/json"}


def public_address(address: str) -> bool:
    """Whether ``address`` (an IP address as text) is a global unicast one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, config: WebhookConfig) -> yarl.URL:
    """``url`` as the API will call it.

    Raises:
        WebhookRefusedError: webhooks are off, ``url`` is not http(s) with a host, carries
            user info, or names an IP address that is not public (and not allowed).
    """
    if not config.key:
        msg = "webhooks are off: the API has no SB_API_WEBHOOK_SECRET to sign them with"
        raise WebhookRefusedError(msg)
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        msg = f"webhook {url[:80]!r} is not a URL"
        raise WebhookRefusedError(msg) from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host or parsed.user is not None:
        msg = f"webhook {url[:80]!r}: only http(s) URLs with a host and no user info"
        raise WebhookRefusedError(msg)
    host = parsed.host.lower()
    if host in config.allow_hosts:
        return parsed
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return parsed  # a name: its addresses are checked when it is called
    if not public_address(host.strip("[]")):
        msg = (f"webhook host {host} is not a public address (allow it with "
               "SB_API_WEBHOOK_ALLOW_HOSTS)")
        raise WebhookRefusedError(msg)
    return parsed
