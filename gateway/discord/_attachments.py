"""Files in (docs/design.md#workspaces-and-artifacts): a message's attachments are stored under its
session in the artifact
store before the request is sent, so the agent finds them in the thread's workspace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import PurePosixPath

import discord
import msgspec

from gateway.errors import AttachmentError, AttachmentTooLargeError
from gateway.services import ArtifactSink
from protocol import ChatMessage

_log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60.0
"""Bound on downloading one attachment."""


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def check_sizes(attachments: Sequence[discord.Attachment], max_bytes: int) -> None:
    """Refuse the request when any attachment is over ``max_bytes`` (nothing is downloaded).

    Raises:
        AttachmentTooLargeError: the first oversized attachment, with a message for the person.
    """
    for a in attachments:
        if a.size > max_bytes:
            msg = (f"📎 `{a.filename}` is {_mib(a.size)}; the limit is {_mib(max_bytes)}. "
                   "Nothing was run: send a smaller file.")
            raise AttachmentTooLargeError(msg)


def workspace_name(filename: str) -> str:
    """The attachment's name in the workspace: its last path part, never ``..`` or hidden."""
    name = PurePosixPath(filename.replace("\\", "/")).name.lstrip(".") or "attachment"
    return name[:200]


async def store_attachments(attachments: Sequence[discord.Attachment], session: str,
                            sink: ArtifactSink, max_bytes: int) -> list[str]:
    """Download each attachment (at most ``max_bytes`` each) and put it under ``session``.

    Returns:
        The workspace paths stored.

    Raises:
        AttachmentTooLargeError: an attachment is over the limit (checked before any download).
        AttachmentError: a download or the store failed (the message says which file).
    """
    check_sizes(attachments, max_bytes)
    stored = []
    for a in attachments:
        name = workspace_name(a.filename)
        try:
            async with asyncio.timeout(DOWNLOAD_TIMEOUT_S):
                data = await a.read()
            if len(data) > max_bytes:
                msg = f"📎 `{a.filename}` is larger than {_mib(max_bytes)}. Nothing was run."
                raise AttachmentTooLargeError(msg)
            await sink.put(session, name, data)
        except (discord.HTTPException, TimeoutError) as exc:
            msg = f"📎 I could not download `{a.filename}` ({exc or 'timed out'}). Nothing was run."
            raise AttachmentError(msg) from exc
        except AttachmentError:
            raise
        except Exception as exc:  # the store's own errors (core.errors.ArtifactError)
            msg = f"📎 I could not store `{a.filename}` ({exc}). Nothing was run."
            raise AttachmentError(msg) from exc
        stored.append(name)
        _log.info("session %s: stored attachment %s (%d bytes)", session, name, len(data))
    return stored


def with_paths(request: ChatMessage, attachments: Sequence[discord.Attachment],
               stored: Sequence[str]) -> ChatMessage:
    """``request`` whose attachments name the workspace path each was stored under
    (``store_attachments``' answer, in the order of ``attachments``), matched by URL, so the
    agent reads them from the store; one not stored keeps ``path`` empty."""
    by_url = {a.url: path for a, path in zip(attachments, stored, strict=False)}
    return msgspec.structs.replace(request, attachments=tuple(
        msgspec.structs.replace(a, path=by_url.get(a.url, a.path)) for a in request.attachments))
