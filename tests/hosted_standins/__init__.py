"""Local stand-ins of hosted model services for tests, speaking their real wire formats:
an Amazon Bedrock agent runtime (``InvokeAgent``, AWS event-stream framing, SigV4 checked)
and Ollama's native chat API (``/api/chat``, NDJSON streaming)."""

from ._bedrock import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    AgentCall,
    BedrockAgentStandin,
    HttpError,
    StreamEvent,
    chunk,
    chunk_bytes,
    echo_brain,
    failure,
    model_output,
    rationale,
    return_control,
    stream_error,
)
from ._ollama import OllamaAnswer, OllamaCall, OllamaStandin, OllamaToolCall

__all__ = [
    "ACCESS_KEY",
    "REGION",
    "SECRET_KEY",
    "AgentCall",
    "BedrockAgentStandin",
    "HttpError",
    "OllamaAnswer",
    "OllamaCall",
    "OllamaStandin",
    "OllamaToolCall",
    "StreamEvent",
    "chunk",
    "chunk_bytes",
    "echo_brain",
    "failure",
    "model_output",
    "rationale",
    "return_control",
    "stream_error",
]
