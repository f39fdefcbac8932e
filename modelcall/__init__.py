"""Model calls: litellm, the direct OpenAI-compatible stream, in-process providers (the offline
model, ``offline_model``), hosted agents (``modelcall.hosted``), and parsing of model answers.

Importing this package does not import litellm; the first call that needs it does (a call of
the offline model never does).
"""

from modelcall._client import (
    close_sessions,
    complete,
    embed,
    needs_litellm,
    supports_json_schema,
)
from modelcall._providers import register_providers
from modelcall._reply import ModelReply
from modelcall._report import Report, Status, parse_json_object, parse_report, strip_report
from modelcall._vision import content_text, fit_messages, supports_vision, without_images

__all__ = [
    "ModelReply",
    "Report",
    "Status",
    "close_sessions",
    "complete",
    "content_text",
    "embed",
    "fit_messages",
    "needs_litellm",
    "parse_json_object",
    "parse_report",
    "register_providers",
    "strip_report",
    "supports_json_schema",
    "supports_vision",
    "without_images",
]
