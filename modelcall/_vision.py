"""Images in model messages: which models see them, and what the others get instead.

A user message may carry OpenAI content parts (``[{"type": "text", ...}, {"type": "image_url",
"image_url": {"url": "data:image/png;base64,..."}}]``, built by ``actors.attachments``); each
image part follows a text part that names the file and its workspace path. A model with vision
gets the parts as they are; one without gets the text parts only, joined into a string, so it
reads that an image was attached and where it is (``fit_messages``, applied by
``modelcall.complete`` to every call).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from core.config import ModelSpec
from modelcall import _providers
from modelcall._errors import provider_of

_log = logging.getLogger(__name__)


def supports_vision(spec: ModelSpec) -> bool:
    """Whether ``spec`` takes image content parts: ``spec.vision`` when set, else litellm's
    model map (``litellm.supports_vision``, asked once per model); False for registered custom
    providers (the offline model) and models litellm does not know."""
    if spec.vision is not None:
        return spec.vision
    if provider_of(spec.name) in _providers.registered:
        return False
    return _litellm_vision(spec.name)


@functools.cache
def _litellm_vision(model: str) -> bool:
    try:
        return bool(_providers.load_litellm().supports_vision(model=model))
    except Exception:  # a model litellm does not know has no known vision
        _log.debug("litellm does not know whether %s has vision", model, exc_info=True)
        return False


def has_images(messages: list[dict[str, Any]]) -> bool:
    """Whether any message carries an ``image_url`` part."""
    return any(isinstance(m.get("content"), list) and any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
        for m in messages)


def content_text(content: Any) -> str:
    """A message content's text: the string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each content list that has image parts made one string of its text
    parts (the images' own lines say they were attached and where they are)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            message = {**message, "content": content_text(content)}
        out.append(message)
    return out


def fit_messages(spec: ModelSpec, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` as ``spec`` can take them: unchanged with vision or without images, else
    ``without_images``."""
    if not has_images(messages) or supports_vision(spec):
        return messages
    return without_images(messages)
