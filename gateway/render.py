"""Text rendering of outbound messages for people: Discord and the terminal chat. No I/O.

Discord limits a message's ``content`` to 2,000 characters
(https://discord.com/developers/docs/resources/message#create-message, "content": "Message
contents (up to 2000 characters)"); :func:`split_message` cuts longer answers cleanly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol import ConsolidatedOptions, ErrorCode, Flow, Progress, Reply

DISCORD_MESSAGE_LIMIT = 2000
"""Characters (Unicode code points) in one Discord message's content (see the module doc)."""

_FENCE = "```"
_CLOSE = "\n" + _FENCE
_LANG = re.compile(r"^[\w+#.\-]{0,32}$")
_MIN_LIMIT = 64
"""The smallest limit that leaves room for a reopened fence with its language tag."""


# --------------------------------------------------------------------------- splitting


@dataclass(slots=True)
class _Line:
    """One line of the text, or a piece of a line too long for one chunk."""

    text: str
    fence_before: str | None
    """The language tag of the code block this line starts inside (``""`` untagged), or None."""
    fence_after: str | None
    joiner: str = "\n"
    """What joins this line to the previous one: ``""`` for a piece of a cut line."""

    @property
    def has_content(self) -> bool:
        """Whether the line is more than blank space or a fence marker."""
        return bool(self.text.strip()) and not _FENCE_LINE.match(self.text)


_FENCE_LINE = re.compile(r"^\s*```[\w+#.\-]*\s*$")


def _scan(text: str, limit: int) -> list[_Line]:
    """Split ``text`` into lines, noting which code fence each starts and ends inside, and cut
    each line too long for one chunk into pieces."""
    lines: list[_Line] = []
    fence: str | None = None
    for raw in text.split("\n"):
        before = fence
        if raw.count(_FENCE) % 2 == 1:
            if fence is None:
                tag = raw.rsplit(_FENCE, 1)[1].strip()
                fence = tag if _LANG.match(tag) else ""
            else:
                fence = None
        room = limit - (0 if before is None else len(_prefix(before)) + len(_CLOSE))
        joiner = "\n"
        rest = raw
        while len(rest) > room:
            piece, rest = _hard_split(rest, room)
            lines.append(_Line(piece, before, before, joiner))
            joiner = ""
        lines.append(_Line(rest, before, fence, joiner))
    return lines


def _hard_split(text: str, room: int) -> tuple[str, str]:
    """Cut ``text`` (longer than ``room``) after the last space in the window, else at ``room``."""
    cut = text.rfind(" ", 0, room)
    cut = room if cut < room // 2 else cut + 1
    return text[:cut], text[cut:]


def _prefix(fence: str | None) -> str:
    return "" if fence is None else f"{_FENCE}{fence}\n"


def _render_chunk(lines: list[_Line], start: int, end: int) -> str:
    """The text of ``lines[start:end]`` with the fence reopened / closed at the edges."""
    body = lines[start].text + "".join(line.joiner + line.text for line in lines[start + 1 : end])
    head = _prefix(lines[start].fence_before)
    tail = _CLOSE if lines[end - 1].fence_after is not None else ""
    if not head:
        body = body.lstrip("\n")
    if not tail:
        body = body.rstrip("\n")
    return head + body + tail


def _best_end(lines: list[_Line], start: int, limit: int) -> int:
    """The index of the line that starts the next chunk, for the chunk starting at ``start``.

    Preference: the end of the text; a paragraph break when the chunk is at least half full;
    the last line break outside a code block; any paragraph break; the last line break inside
    a code block (the fence is then closed and reopened); a cut inside a line.
    """
    size = len(_prefix(lines[start].fence_before)) - len(lines[start].joiner)
    outside = paragraph = inside = None
    half = False
    content = False
    for index in range(start, len(lines)):
        line = lines[index]
        size += len(line.joiner) + len(line.text)
        if size > limit:
            break
        content = content or line.has_content
        end = index + 1
        if not content or size + (len(_CLOSE) if line.fence_after is not None else 0) > limit:
            continue
        if end == len(lines):
            return end
        if line.fence_after is not None:
            inside = end
        elif lines[end].joiner and not (line.text.strip() and lines[end].text.strip()):
            paragraph, half = end, size >= limit // 2
            outside = end
        else:
            outside = end
    if paragraph is not None and half:
        return paragraph
    for choice in (outside, inside):
        if choice is not None:
            return choice
    return start + 1  # only fence markers fit: let them go alone rather than loop


def split_message(text: str, limit: int = DISCORD_MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters, keeping code blocks intact.

    Splits fall at paragraph breaks, else line breaks outside code blocks, else line breaks
    inside a code block: that block is closed at the end of the chunk and reopened, with the
    same language tag, at the start of the next. A single line too long for one chunk is cut at
    its last space in the window, else at the limit. Blank lines at the cut are dropped.

    Args:
        text: the message, Markdown as Discord renders it.
        limit: the most characters (Unicode code points, as Discord counts them) in one chunk;
            2,000 by default (Discord's content limit, see the module docstring).

    Returns:
        The chunks, in order; ``[]`` when ``text`` is empty or only whitespace.

    Raises:
        ValueError: ``limit`` is below 64, too small for a reopened fence.
    """
    if limit < _MIN_LIMIT:
        msg = f"limit {limit} is too small: at least {_MIN_LIMIT} characters"
        raise ValueError(msg)
    if not text.strip():
        return []
    if len(text) <= limit:
        return [text]
    lines = _scan(text, limit)
    chunks: list[str] = []
    start = 0
    while start < len(lines):
        end = _best_end(lines, start, limit)
        if any(line.has_content for line in lines[start:end]):
            chunks.append(_render_chunk(lines, start, end))
        start = end
    return chunks


# --------------------------------------------------------------------------- outbound messages


def _cap(text: str, limit: int = DISCORD_MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_STOP_HINT = "(react 🛑 to stop)"


def _status_line(p: Progress) -> str:
    parts: list[str] = []
    if p.turn:
        parts.append(f"Turn {p.turn}/{p.max_turns}" if p.max_turns else f"Turn {p.turn}")
    if p.confidence:
        parts.append(f"Confidence: {p.confidence}%")
    if p.model:
        parts.append(f"Model: {p.model}")
    return " | ".join(parts)


def _headline(p: Progress) -> str:
    match p.stage:
        case "classified" if p.flow is Flow.SEQUENTIAL:
            return f"🚀 Starting work… {_STOP_HINT}"
        case "classified" if p.flow is Flow.BRANCH:
            return f"💡 Brainstorming approaches… {_STOP_HINT}"
        case "classified":
            return "💬 Thinking…"
        case "planning":
            return "🗺️ Planning…"
        case "planned":
            return "🗺️ Plan ready"
        case "turn":
            return f"🤔 {_status_line(p) or 'Working…'}"
        case "brainstorm":
            return f"💡 Brainstorming{' with ' + p.model if p.model else ''}…"
        case "consolidating":
            return "🧩 Consolidating options…"
        case "retrying":
            return f"🔁 Retrying{' with ' + p.model if p.model else ''}…"
        case _:
            return f"⏳ {p.stage.capitalize() or 'Working'}…"


def render_progress(p: Progress) -> str:
    """One status message for a Progress, at most 2,000 characters.

    ``stream`` shows the answer so far (``p.text`` is the whole text, not a delta). Other
    stages show a headline (``🚀 Starting work… (react 🛑 to stop)`` for the first SEQUENTIAL
    progress; ``🤔 Turn 2/20 | Confidence: 80% | Model: offline/tier-2`` for a turn), the files
    read and written, and a one-line snippet of ``p.text``.

    Args:
        p: the progress; ``stage`` is one of those listed in ``protocol.Progress``.

    Returns:
        Markdown text for a Discord message or a terminal line.
    """
    if p.stage == "stream":
        return _cap(p.text or "…")
    lines = [_headline(p)]
    if p.stage != "turn" and p.stage != "classified" and (status := _status_line(p)):
        lines.append(status)
    if p.files_read:
        lines.append(f"📖 Reading: {', '.join(p.files_read)}")
    if p.files_written:
        lines.append(f"✍️ Writing: {', '.join(p.files_written)}")
    if p.text:
        lines.append(f"> {_snippet(p.text)}")
    return _cap("\n".join(lines))


def render_options(o: ConsolidatedOptions) -> str:
    """The BRANCH flow's answer: each option with its summary, pros and cons.

    Returns:
        Markdown such as ``**Option 1: title**``, the summary, then ``Pros:`` and ``Cons:``
        bullet lists; may exceed 2,000 characters (pass it to :func:`split_message`).
    """
    blocks: list[str] = []
    if o.question:
        blocks.append(f"**{_snippet(o.question, 200)}**")
    if not o.options:
        blocks.append("No options were found.")
    for number, option in enumerate(o.options, start=1):
        lines = [f"**Option {number}: {option.title}**"]
        if option.summary:
            lines.append(option.summary)
        if option.pros:
            lines.append("Pros:")
            lines.extend(f"- {pro}" for pro in option.pros)
        if option.cons:
            lines.append("Cons:")
            lines.extend(f"- {con}" for con in option.cons)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


_ERRORS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED: "the request could not be read",
    ErrorCode.MODEL_ERROR: "the model failed to answer",
    ErrorCode.MODEL_TIMEOUT: "the model took too long to answer",
    ErrorCode.TOOL_ERROR: "a tool failed",
    ErrorCode.TIMEOUT: "the request timed out",
    ErrorCode.DEAD_LETTER: "the request failed repeatedly and was set aside",
    ErrorCode.ABORTED: "the run was stopped",
    ErrorCode.INTERNAL: "an internal error occurred",
    ErrorCode.REFUSED: "a rule of this deployment refused the request",
}


def render_reply(r: Reply) -> str:
    """The final answer: ``r.text``, then ``⚠️ Error: <what happened> (<code>)`` when it failed.

    Returns:
        Markdown text; may exceed 2,000 characters (pass it to :func:`split_message`); empty
        when the reply has neither text nor error (files only).
    """
    parts = [r.text] if r.text.strip() else []
    if r.error is not None:
        parts.append(f"⚠️ Error: {_ERRORS.get(r.error, 'the request failed')} ({r.error.value})")
    return "\n\n".join(parts)
