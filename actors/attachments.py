"""The person's attachments in the model's user message (docs/design.md#workspaces-and-artifacts).

The gateway stores each attachment in the session's workspace (the artifact store) and the
request names its path (``protocol.Attachment.path``); the bytes are read here, where the
model call is made, never carried in a message. Attachments are hostile input:

- an image (PNG, JPEG, GIF, WebP, recognised by its magic bytes, not by its declared type; at
  most ``MAX_IMAGE_BYTES``) becomes a line naming it and its workspace path, then an
  ``image_url`` content part (a ``data:`` URL); a model without vision gets the line alone
  (``modelcall.fit_messages``);
- a text file (``text/*`` or a known source extension, and no NUL byte; at most
  ``MAX_TEXT_CHARS`` characters shown, decoded as UTF-8 with replacement) is inlined in a
  fenced block naming it;
- anything else, and anything that cannot be read, is a line saying what and where it is.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from modelcall import content_text
from protocol import Attachment

if TYPE_CHECKING:
    from artifacts import ArtifactStore

_log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Largest image sent to a model, bytes (a data URL is a third larger)."""
MAX_TEXT_CHARS = 20_000
"""Most characters of one text file inlined in the prompt; the rest is cut with a note."""
MAX_TEXT_BYTES = MAX_TEXT_CHARS * 4
"""Most bytes of a text file decoded (a UTF-8 character is at most 4 bytes)."""
MAX_ATTACHMENTS = 10
"""Most attachments put in one prompt; the others are only named."""
TEXT_EXTENSIONS = frozenset({
    ".py", ".md", ".txt", ".json", ".yaml", ".yml", ".csv", ".toml", ".ini", ".cfg", ".log",
    ".js", ".ts", ".tsx", ".jsx", ".html", ".css", ".sql", ".sh", ".rs", ".go", ".java", ".c",
    ".h", ".cpp", ".hpp", ".rb", ".xml", ".diff", ".patch", ".rst", ".tsv",
})

Read = Callable[[str], Awaitable[bytes]]
"""Reads one workspace path of the session from where the gateway stored it."""


def attachment_reader(store: ArtifactStore | None, session: str) -> Read | None:
    """Reads ``session``'s workspace paths from ``store`` (None without a store)."""
    if store is None:
        return None

    async def read(path: str) -> bytes:
        return await store.get(session, path)

    return read


def image_mime(data: bytes) -> str:
    """The MIME type of an image the models take, by its magic bytes; "" for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def _looks_text(attachment: Attachment) -> bool:
    suffix = PurePosixPath(attachment.path or attachment.name).suffix.lower()
    return attachment.content_type.startswith("text/") or suffix in TEXT_EXTENSIONS


def _claims_image(attachment: Attachment) -> bool:
    suffix = PurePosixPath(attachment.path or attachment.name).suffix.lower()
    return (attachment.content_type.startswith("image/")
            or suffix in {".png", ".jpg", ".jpeg", ".gif", ".webp"})


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text``."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def text_block(name: str, data: bytes) -> str:
    """``data`` decoded (UTF-8, replacement characters for bad bytes), cut to
    ``MAX_TEXT_CHARS``, in a fenced block naming the file."""
    text = data[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")
    cut = len(data) > MAX_TEXT_BYTES or len(text) > MAX_TEXT_CHARS
    text = text[:MAX_TEXT_CHARS]
    fence = _fence(text)
    note = f"\n(cut at {MAX_TEXT_CHARS:,} characters)" if cut else ""
    return f"📎 Attached file `{name}`:\n{fence}\n{text}\n{fence}{note}"


async def _part(attachment: Attachment, read: Read | None) -> list[dict[str, Any]]:
    """The content parts of one attachment (see the module docstring)."""
    name = attachment.name.replace("`", "'")[:200]
    where = attachment.path.replace("`", "'")
    if not where or read is None:
        return [_text(f"📎 `{name}` was attached but not stored, so I cannot read it.")]
    try:
        data = await read(attachment.path)
    except Exception as exc:  # the store's errors: a line, never a failed request
        _log.warning("attachment %s: not readable: %s", attachment.path, exc)
        return [_text(f"📎 `{name}` was attached (workspace path `{where}`) but could not be "
                      "read.")]
    mime = image_mime(data)
    if mime:
        line = f"📎 Image `{name}` attached (workspace path `{where}`)."
        if len(data) > MAX_IMAGE_BYTES:
            return [_text(f"{line} It is over {MAX_IMAGE_BYTES // 2**20} MiB, so it is not "
                          "shown.")]
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return [_text(line), {"type": "image_url", "image_url": {"url": url}}]
    if _claims_image(attachment):
        return [_text(f"📎 `{name}` (workspace path `{where}`) claims to be an image but is "
                      "not a PNG, JPEG, GIF or WebP, so it is not shown.")]
    if _looks_text(attachment) and b"\x00" not in data[:MAX_TEXT_BYTES]:
        return [_text(text_block(where, data))]
    return [_text(f"📎 `{name}` attached ({len(data):,} bytes), in the workspace at "
                  f"`{where}`.")]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


async def user_content(text: str, attachments: Sequence[Attachment], read: Read | None
                       ) -> str | list[dict[str, Any]]:
    """The user message's content for ``text`` with ``attachments``: a string when no image
    is shown, else OpenAI content parts (text, then each attachment's parts).

    Args:
        text: what the person wrote.
        attachments: the request's attachments (``RequestFacts.attachments``).
        read: reads a workspace path of the session (``ArtifactStore.get``); None when there
            is no store (the attachments are then only named).
    """
    if not attachments:
        return text
    parts: list[dict[str, Any]] = [_text(text)] if text else []
    for attachment in attachments[:MAX_ATTACHMENTS]:
        parts.extend(await _part(attachment, read))
    for attachment in attachments[MAX_ATTACHMENTS:]:
        parts.append(_text(f"📎 `{attachment.name}` attached (not shown: over "
                           f"{MAX_ATTACHMENTS} attachments)."))
    if any(p["type"] == "image_url" for p in parts):
        return parts
    return "\n\n".join(p["text"] for p in parts)


async def restore_images(messages: list[dict[str, Any]], text: str,
                         attachments: Sequence[Attachment], read: Read | None) -> bool:
    """Put the images back into the request's message of a conversation read from a
    checkpoint (``actors.runs.pack_messages`` leaves image parts out, keeping their text):
    the ``user`` message whose text is the request's, as ``user_content`` made it, gets its
    content parts again, read anew from the workspace. Returns whether it did (False: no
    image among the attachments, no store, or the message is not found)."""
    if read is None or not attachments:
        return False
    content = await user_content(text, attachments, read)
    if not isinstance(content, list):
        return False
    flat = content_text(content)
    for message in messages:
        if message.get("role") == "user" and message.get("content") == flat:
            message["content"] = content
            return True
    return False
