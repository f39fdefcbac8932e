"""Parsing the structured parts of a model's answer: the report lines and JSON objects.

Agent prompts (``actors/prompts``) ask the model to end every message with two lines::

    Confidence: <0-100>
    Status: continue|done|stuck

Models decorate them (``**Confidence:** 85%``, ``- status: DONE``); the parsers here accept
that and take the last occurrence of each line.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

import msgspec

_log = logging.getLogger(__name__)

Status = Literal["continue", "done", "stuck"]

_DECOR = r"[\s>*_`#~\-]*"
_CONFIDENCE = re.compile(
    rf"^{_DECOR}confidence{_DECOR}\s*[:=]{_DECOR}(\d{{1,3}})\s*%?{_DECOR}$",
    re.IGNORECASE | re.MULTILINE,
)
_STATUS = re.compile(
    rf"^{_DECOR}status{_DECOR}\s*[:=]{_DECOR}(continue|done|stuck){_DECOR}[.!]?{_DECOR}$",
    re.IGNORECASE | re.MULTILINE,
)


class Report(msgspec.Struct, frozen=True):
    """The report a model appended to its message; a field is None when the line is missing.

    ``confidence`` is clamped to 0-100.
    """

    confidence: int | None = None
    status: Status | None = None


def parse_report(text: str) -> Report:
    """Read the ``Confidence:`` and ``Status:`` lines of a model's message.

    Args:
        text: the model's whole message.

    Returns:
        The last confidence (0-100) and status found; None for a line that is absent.
    """
    confidences = _CONFIDENCE.findall(text)
    statuses = _STATUS.findall(text)
    confidence = max(0, min(100, int(confidences[-1]))) if confidences else None
    status: Status | None = statuses[-1].lower() if statuses else None
    return Report(confidence=confidence, status=status)


def strip_report(text: str) -> str:
    """``text`` without its report lines, for showing to the user (trailing blanks trimmed)."""
    stripped = _STATUS.sub("", _CONFIDENCE.sub("", text))
    return re.sub(r"\n{3,}", "\n\n", stripped).strip()


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's answer, fenced (```json) or bare, or None.

    Models wrap JSON in prose or code fences; this tries the fenced blocks, then the span from
    the first ``{`` to the last ``}``.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    _log.debug("no JSON object in a %d-character answer", len(text))
    return None
