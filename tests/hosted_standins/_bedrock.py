"""A local Amazon Bedrock agent runtime: ``InvokeAgent`` over HTTP, answered as AWS does.

The route, validation, error answers and the event stream follow the InvokeAgent API
reference (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_InvokeAgent.html)
and botocore's service model ``bedrock-agent-runtime/2023-07-26``: ``POST
/agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text``, a SigV4-signed
request (the signature is checked with the stand-in's known secret key, through botocore's own
signer), errors as JSON bodies with ``x-amzn-ErrorType``, and a 200 answer whose body is an
AWS event stream (``_eventstream``) of ``chunk`` / ``trace`` / ``returnControl`` events or an
exception event. A brain (``server.brain = ...``) chooses each answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from local_server import LocalServer

from ._eventstream import event, exception

ACCESS_KEY, SECRET_KEY = "AKIASTANDIN000000000", "standin/secret/key/0000000000000000000000"
REGION = "us-east-1"
_ID = re.compile(r"^[0-9a-zA-Z]{1,10}$")
_SESSION = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")
_CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_SIGNED = re.compile(r"SignedHeaders=([^,]+)")
_SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


@dataclass(frozen=True)
class StreamEvent:
    """One framed event-stream message, sent ``delay_s`` seconds after the previous one."""

    frame: bytes
    delay_s: float = 0.0


@dataclass(frozen=True)
class HttpError:
    """An AWS error answer: ``status``, ``x-amzn-ErrorType: <error_type>:...``, JSON
    ``{"message": ...}``."""

    status: int
    error_type: str
    message: str


@dataclass
class AgentCall:
    """One InvokeAgent request as the stand-in saw it (``status`` once answered)."""

    agent_id: str
    alias_id: str
    session_id: str
    body: dict[str, Any]
    access_key: str = ""
    status: int | None = None
    peer: tuple[str, int] | None = None
    """The client's address and port: one connection for several calls means one port."""

    @property
    def input_text(self) -> str:
        return str(self.body.get("inputText") or "")


Answer = list[StreamEvent] | HttpError
Brain = Callable[[AgentCall], Answer]


def chunk(text: str, delay_s: float = 0.0) -> StreamEvent:
    """A ``chunk`` event: ``PayloadPart`` ``{"bytes": <base64 of the UTF-8 text>}``."""
    payload = {"bytes": base64.b64encode(text.encode()).decode()}
    return StreamEvent(event("chunk", json.dumps(payload).encode()), delay_s)


def chunk_bytes(data: bytes) -> StreamEvent:
    """A ``chunk`` event carrying raw bytes (a UTF-8 character may be split across two)."""
    return StreamEvent(event("chunk", json.dumps(
        {"bytes": base64.b64encode(data).decode()}).encode()))


def trace(body: dict[str, Any], session_id: str = "s", agent_id: str = "AGENT") -> StreamEvent:
    """A ``trace`` event: a ``TracePart`` around one ``Trace`` member."""
    part = {"sessionId": session_id, "agentId": agent_id, "agentAliasId": "ALIAS",
            "agentVersion": "1", "eventTime": "2026-01-01T00:00:00Z", "trace": body}
    return StreamEvent(event("trace", json.dumps(part).encode()))


def model_output(input_tokens: int, output_tokens: int, kind: str = "orchestrationTrace"
                 ) -> StreamEvent:
    """A trace of one model invocation of the agent, with its token usage."""
    return trace({kind: {"modelInvocationOutput": {
        "traceId": str(uuid.uuid4()), "rawResponse": {"content": "..."},
        "metadata": {"usage": {"inputTokens": input_tokens, "outputTokens": output_tokens}}}}})


def rationale(text: str) -> StreamEvent:
    return trace({"orchestrationTrace": {"rationale": {"traceId": "t-1", "text": text}}})


def failure(reason: str, code: int = 0) -> StreamEvent:
    body: dict[str, Any] = {"traceId": "t-f", "failureReason": reason}
    if code:
        body["failureCode"] = code
    return trace({"failureTrace": body})


def return_control(action_group: str, function: str, **parameters: str) -> StreamEvent:
    """A ``returnControl`` event asking the caller to run ``action_group``'s ``function``."""
    payload = {"invocationId": "inv-0001", "invocationInputs": [{"functionInvocationInput": {
        "actionGroup": action_group, "function": function, "actionInvocationType": "RESULT",
        "parameters": [{"name": k, "type": "string", "value": v}
                       for k, v in parameters.items()]}}]}
    return StreamEvent(event("returnControl", json.dumps(payload).encode()))


def stream_error(exception_type: str, message: str) -> StreamEvent:
    """A modeled exception event in the stream (``throttlingException``, ...)."""
    return StreamEvent(exception(exception_type, json.dumps({"message": message}).encode()))


def echo_brain(call: AgentCall) -> Answer:
    """Answers ``Agent heard: <input>`` in three chunks, with traces and token usage."""
    text = f"Agent heard: {call.input_text}"
    third = max(1, len(text) // 3)
    return [rationale("The user wants an echo."), model_output(120, 30),
            *(chunk(text[i:i + third]) for i in range(0, len(text), third))]


class BedrockAgentStandin(LocalServer):
    """The InvokeAgent route of a Bedrock agent runtime, on 127.0.0.1.

    Args:
        agents: ``(agent id, alias id)`` pairs that exist; others are 404
            ``ResourceNotFoundException``.
        brain: chooses each answer; ``echo_brain`` by default.
        region: the region requests must be signed for.
        secret_key: the secret of ``ACCESS_KEY`` the signatures are checked with.

    Attributes:
        endpoint_url: for ``endpoint_url`` of an agent spec.
        calls: every request, in arrival order.
    """

    def __init__(self, agents: tuple[tuple[str, str], ...] = (("AGENT1", "ALIAS1"),), *,
                 brain: Brain = echo_brain, region: str = REGION,
                 secret_key: str = SECRET_KEY) -> None:
        super().__init__()
        self.secret_key = secret_key
        self.agents = set(agents)
        self.brain = brain
        self.region = region
        self.calls: list[AgentCall] = []
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return self.url

    def routes(self, app: web.Application) -> None:
        app.router.add_post(
            "/agents/{agent}/agentAliases/{alias}/sessions/{session}/text", self._invoke)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def _unknown(self, request: web.Request) -> web.Response:
        return _error(HttpError(404, "UnknownOperationException", "Unknown operation"))

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        info = request.match_info
        call = AgentCall(info["agent"], info["alias"], info["session"], {},
                         peer=request.transport.get_extra_info("peername")
                         if request.transport else None)
        with self._lock:
            self.calls.append(call)
        try:
            call.access_key = self._authenticate(request, raw)
            call.body = _body(raw)
            _validate(call)
            if (call.agent_id, call.alias_id) not in self.agents:
                raise _Refused(HttpError(404, "ResourceNotFoundException",
                                         f"Failed to retrieve resource because it doesn't exist."
                                         f" Retry the request with a different resource "
                                         f"identifier. (agent {call.agent_id})"))
            answer = self.brain(call)
        except _Refused as refused:
            answer = refused.error
        if isinstance(answer, HttpError):
            call.status = answer.status
            return _error(answer)
        call.status = 200
        return await self._stream(request, call, answer)

    async def _stream(self, request: web.Request, call: AgentCall,
                      events: list[StreamEvent]) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "application/vnd.amazon.eventstream",
            "x-amzn-bedrock-agent-content-type": "application/json",
            "x-amz-bedrock-agent-session-id": call.session_id,
            "x-amzn-RequestId": str(uuid.uuid4())})
        await response.prepare(request)
        for item in events:
            if item.delay_s:
                await asyncio.sleep(item.delay_s)
            await response.write(item.frame)
        await response.write_eof()
        return response

    def _authenticate(self, request: web.Request, raw: bytes) -> str:
        """Check the SigV4 ``Authorization`` header as AWS does, recomputing the signature
        with botocore's signer and the stand-in's secret key; the access key id."""
        header = request.headers.get("Authorization", "")
        credential, signed = _CREDENTIAL.search(header), _SIGNED.search(header)
        signature = _SIGNATURE.search(header)
        if not header.startswith("AWS4-HMAC-SHA256") or not (credential and signed
                                                             and signature):
            raise _Refused(HttpError(403, "MissingAuthenticationTokenException",
                                     "Missing Authentication Token"))
        key, _, region, service = credential.groups()
        if key != ACCESS_KEY:
            raise _Refused(HttpError(403, "UnrecognizedClientException",
                                     "The security token included in the request is invalid."))
        if region != self.region or service != "bedrock":
            raise _Refused(HttpError(403, "InvalidSignatureException",
                                     f"Credential should be scoped to a valid region "
                                     f"and service ({region}/{service})."))
        names = signed.group(1).split(";")
        copy = AWSRequest(method=request.method, url=f"{self.url}{request.path_qs}", data=raw,
                          headers={name: request.headers.get(name, "") for name in names})
        copy.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        signer = SigV4Auth(Credentials(ACCESS_KEY, self.secret_key), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(copy, signer.canonical_request(copy)),
                                    copy)
        if expected != signature.group(1):
            raise _Refused(HttpError(403, "InvalidSignatureException",
                                     "The request signature we calculated does not match the "
                                     "signature you provided."))
        return key


class _Refused(Exception):
    def __init__(self, error: HttpError) -> None:
        super().__init__(error.message)
        self.error = error


def _error(error: HttpError) -> web.Response:
    return web.json_response({"message": error.message}, status=error.status, headers={
        "x-amzn-ErrorType": f"{error.error_type}:http://internal.amazon.com/coral/"
                            "com.amazon.bedrock/",
        "x-amzn-RequestId": str(uuid.uuid4())})


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise _Refused(HttpError(400, "SerializationException",
                                 "Could not parse the request body")) from exc
    if not isinstance(body, dict):
        raise _Refused(HttpError(400, "SerializationException", "Expected a JSON object"))
    return body


def _validate(call: AgentCall) -> None:
    """The constraints of ``InvokeAgentRequest`` in botocore's service model, worded as AWS
    words them."""
    problems = []
    for name, value, pattern in (("agentId", call.agent_id, _ID),
                                 ("agentAliasId", call.alias_id, _ID),
                                 ("sessionId", call.session_id, _SESSION)):
        if not pattern.match(value):
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: Member "
                            f"must satisfy regular expression pattern: {pattern.pattern}")
    body = call.body
    if "inputText" in body and not isinstance(body["inputText"], str):
        problems.append("Value at 'inputText' must be a string")
    for name in ("enableTrace", "endSession"):
        if name in body and not isinstance(body[name], bool):
            problems.append(f"Value at '{name}' must be a boolean")
    streaming = body.get("streamingConfigurations", {})
    if not isinstance(streaming, dict) or not isinstance(
            streaming.get("streamFinalResponse", False), bool):
        problems.append("Value at 'streamingConfigurations' is invalid")
    if "inputText" not in body and "returnControlInvocationResults" not in body.get(
            "sessionState", {}):
        problems.append("inputText is required when there are no returnControl results")
    if problems:
        message = (f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} "
                   f"detected: {'; '.join(problems)}")
        raise _Refused(HttpError(400, "ValidationException", message))


__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "AgentCall", "Answer", "BedrockAgentStandin",
           "Brain", "HttpError", "StreamEvent", "chunk", "chunk_bytes", "echo_brain", "failure",
           "model_output", "rationale", "return_control", "stream_error", "trace"]
