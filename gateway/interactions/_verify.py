"""Ed25519 verification of Discord Interactions requests.

Discord signs ``X-Signature-Timestamp`` + the raw body with the application's key and sends the
signature hex-encoded in ``X-Signature-Ed25519``; an endpoint must reject a bad signature with
401 (https://discord.com/developers/docs/interactions/overview, "Setting Up an Endpoint":
"Validating Security Request Headers"). A timestamp older than ``max_age_s`` is refused too, so
a captured request cannot be replayed later.
"""

from __future__ import annotations

import logging

import nacl.exceptions
import nacl.signing

from gateway.errors import SignatureError

_log = logging.getLogger(__name__)

MAX_AGE_S = 300.0
"""Oldest (or furthest in the future) timestamp accepted: 5 minutes."""


def load_public_key(hex_key: str) -> nacl.signing.VerifyKey:
    """The application's public key (``DISCORD_PUBLIC_KEY``: 64 hex characters).

    Raises:
        SignatureError: it is not 32 bytes of hex.
    """
    try:
        return nacl.signing.VerifyKey(bytes.fromhex(hex_key.strip()))
    except (ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
        msg = "DISCORD_PUBLIC_KEY must be the application's public key: 64 hex characters"
        raise SignatureError(msg) from exc


def verify(key: nacl.signing.VerifyKey, signature: str | None, timestamp: str | None,
           body: bytes, *, now: float, max_age_s: float = MAX_AGE_S) -> None:
    """Check one request.

    Args:
        key: the application's public key.
        signature: the ``X-Signature-Ed25519`` header (128 hex characters).
        timestamp: the ``X-Signature-Timestamp`` header (Unix seconds, as text).
        body: the raw request body, exactly as received.
        now: Unix seconds now.
        max_age_s: how far the timestamp may be from ``now``.

    Raises:
        SignatureError: a header is missing or malformed, the timestamp is stale, or the
            signature does not verify.
    """
    if not signature or not timestamp:
        raise SignatureError("missing X-Signature-Ed25519 or X-Signature-Timestamp")
    try:
        sent_at = float(timestamp)
        raw = bytes.fromhex(signature)
    except ValueError as exc:
        raise SignatureError("malformed signature headers") from exc
    if abs(now - sent_at) > max_age_s:
        msg = f"stale timestamp: {now - sent_at:.0f} s from now (limit {max_age_s:.0f} s)"
        raise SignatureError(msg)
    try:
        key.verify(timestamp.encode() + body, raw)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise SignatureError("the signature does not verify") from exc
