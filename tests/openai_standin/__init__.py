"""A local OpenAI-compatible chat-completions API for tests, validating like the real one.

Use ``async with OpenAIStandin() as server:`` (or ``with OpenAIStandin().in_thread() as
server:`` from synchronous code) and point ``ModelSpec(name="openai/gpt-4o-mini",
api_base=server.base_url, ...)`` at it. A brain (``server.brain = ...``) chooses each answer;
see ``_server.py`` for what is recorded and ``_answers.py`` for the answers and faults.
"""

from ._answers import Answer, Call, Fault
from ._brains import Brain, chat_brain, sequence
from ._errors import ApiError
from ._records import RecordedRequest
from ._request import ChatRequest, content_text
from ._server import DEFAULT_KEY, DEFAULT_MODELS, OpenAIStandin
from ._validate import KNOWN_PARAMETERS, validate

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_MODELS",
    "KNOWN_PARAMETERS",
    "Answer",
    "ApiError",
    "Brain",
    "Call",
    "ChatRequest",
    "Fault",
    "OpenAIStandin",
    "RecordedRequest",
    "chat_brain",
    "content_text",
    "sequence",
    "validate",
]
