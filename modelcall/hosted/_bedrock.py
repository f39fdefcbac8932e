"""One ``InvokeAgent`` call of an Amazon Bedrock agent through aioboto3, streamed.

The request and the response stream are those of the InvokeAgent API reference
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_InvokeAgent.html):
``POST /agents/{agentId}/agentAliases/{agentAliasId}/sessions/{sessionId}/text`` with
``inputText``, ``enableTrace`` and ``streamingConfigurations.streamFinalResponse``; the answer
is an AWS event stream (``application/vnd.amazon.eventstream``, each message framed as
https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream
describes, parsed by botocore) of ``chunk`` events (``bytes``: a part of the answer),
``trace`` events (the agent's steps), ``returnControl`` (the agent asks the caller to run an
action) and exception events. Chunks are relayed as they come, as a model's streamed text is.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.eventstream import ParserError
from botocore.exceptions import BotoCoreError, ClientError

from core.config import HostedAgentSpec
from core.errors import ModelRejectedError, ModelTimeoutError, ModelUnavailableError
from modelcall import ModelReply
from modelcall.hosted._bedrock_errors import from_botocore, from_client_error
from modelcall.hosted._session import bedrock_session_id
from modelcall.hosted._trace import TraceSummary
from protocol import Usage

_log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""Bound on opening the HTTPS connection, in seconds (the whole call is bounded by the
agent's ``timeout_s``)."""

OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AgentAnswer:
    """What one invocation produced.

    ``reply`` is shaped as a model's (text, ``usage`` with ``model`` = the agent's name and
    ``calls=1``, finish reason ``stop``); ``traces`` folds the trace events; ``chunks`` counts
    the ``chunk`` events; ``tokens_from_trace`` is False when no trace carried token counts
    and ``reply.usage`` holds an estimate (4 characters a token).
    """

    reply: ModelReply
    traces: TraceSummary
    chunks: int
    tokens_from_trace: bool


@functools.cache
def _aws_session() -> aioboto3.Session:
    """One aioboto3 session per process (credentials and region from the standard AWS
    variables and files)."""
    return aioboto3.Session()


class _Clients:
    """One ``bedrock-agent-runtime`` client per event loop and endpoint (region, endpoint URL,
    timeout), kept open until ``close``: a client holds botocore's connection pool, so every
    call after the first reuses its HTTPS connection instead of opening one (a TLS handshake)
    and building a client (botocore's service model, signer and pool) per call. A loop's id can
    be reused once it is gone, so the loop itself is kept beside its clients."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, str, str | None, float],
                         tuple[asyncio.AbstractEventLoop, AsyncExitStack, Any]] = {}

    async def get(self, spec: HostedAgentSpec, limit: float) -> Any:
        loop = asyncio.get_running_loop()
        key = (id(loop), spec.region, spec.endpoint_url, limit)
        entry = self._open.get(key)
        if entry is not None and entry[0] is loop:
            return entry[2]
        config = Config(connect_timeout=min(CONNECT_TIMEOUT_S, limit), read_timeout=limit,
                        retries={"total_max_attempts": 1, "mode": "standard"})
        stack = AsyncExitStack()
        client = await stack.enter_async_context(_aws_session().client(
            "bedrock-agent-runtime", region_name=spec.region, endpoint_url=spec.endpoint_url,
            config=config))
        entry = self._open.get(key)
        if entry is not None and entry[0] is loop:  # another call opened one meanwhile
            await stack.aclose()
            return entry[2]
        self._open[key] = (loop, stack, client)
        return client

    async def close(self) -> None:
        """Close the running loop's clients (an actor's ``on_stop``; tests between loops)."""
        loop = asyncio.get_running_loop()
        for key, (owner, stack, _) in list(self._open.items()):
            if owner is loop:
                del self._open[key]
                await stack.aclose()


_clients = _Clients()


async def close_clients() -> None:
    """Close the Bedrock clients (and their connections) of the running event loop."""
    await _clients.close()


def _request(spec: HostedAgentSpec, session: str, text: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "agentId": spec.agent_id, "agentAliasId": spec.agent_alias_id,
        "sessionId": bedrock_session_id(session), "inputText": text,
        "enableTrace": spec.enable_trace,
    }
    if spec.stream_final_response:
        request["streamingConfigurations"] = {"streamFinalResponse": True}
    return request


async def invoke_agent(spec: HostedAgentSpec, session: str, text: str, *,
                       on_text: OnText | None = None,
                       timeout_s: float | None = None) -> AgentAnswer:
    """Send ``text`` to the agent in ``session``'s conversation and read its streamed answer.

    Args:
        spec: the agent (id, alias, region, optional ``endpoint_url``).
        session: the Switchboard session; the agent's ``sessionId`` is derived from it
            (``bedrock_session_id``), so the agent remembers earlier turns of the thread.
        text: the person's message (``inputText``).
        on_text: awaited with the whole answer so far after each ``chunk`` event; its
            exceptions propagate unchanged.
        timeout_s: bound on the whole call (connect, request, every event) in seconds;
            defaults to ``spec.timeout_s``. botocore's own retries are off: a retry is the
            dispatcher's or another model's decision.

    Returns:
        The answer, its traces and token counts (``AgentAnswer``).

    Raises:
        ModelTimeoutError: the call took longer than the timeout.
        ModelUnavailableError: throttling, quotas, the service's or a dependency's failure,
            a connection failure, a stream cut short (``modelcall.hosted._bedrock_errors``).
        ModelRejectedError: validation, access denied, unknown agent, no credentials, a
            ``failureTrace`` with no answer, or a ``returnControl`` event (the agent wants the
            caller to run an action group itself, which Switchboard cannot do).
    """
    limit = timeout_s or spec.timeout_s
    where = spec.endpoint_url or f"bedrock-agent-runtime.{spec.region}.amazonaws.com"
    started = time.perf_counter()
    stream = _Stream(spec, session, on_text)
    try:
        async with asyncio.timeout(limit):
            client = await _clients.get(spec, limit)
            response = await client.invoke_agent(**_request(spec, session, text))
            completion = response["completion"]
            try:
                async for event in completion:
                    await stream.add(event)
            finally:
                completion.close()
    except TimeoutError as exc:
        msg = f"hosted agent {spec.name!r} did not finish within {limit:g} s"
        raise ModelTimeoutError(msg, model=spec.name) from exc
    except ClientError as exc:
        raise from_client_error(spec, exc) from exc
    except (BotoCoreError, ParserError) as exc:
        raise from_botocore(spec, exc, where) from exc
    answer = stream.finish(text)
    _log.info("session %s: %s answered in %.0f ms (%d chunks, %s)", session, spec.name,
              (time.perf_counter() - started) * 1000, answer.chunks, answer.traces.describe())
    return answer


class _Stream:
    """Folds the events of one invocation (module docstring) into an answer."""

    def __init__(self, spec: HostedAgentSpec, session: str, on_text: OnText | None) -> None:
        self.spec, self.session, self.on_text = spec, session, on_text
        self.text = ""
        self.chunks = 0
        self.files = 0
        self.traces = TraceSummary()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def add(self, event: dict[str, Any]) -> None:
        """Fold one parsed event (a dict with one ``ResponseStream`` member) in.

        Raises:
            ModelRejectedError: the event is ``returnControl``.
        """
        if "chunk" in event:
            self.chunks += 1
            part = self._decoder.decode(event["chunk"].get("bytes") or b"")
            if part:
                self.text += part
                if self.on_text is not None:
                    await self.on_text(self.text)
        elif "trace" in event:
            step = self.traces.add(event["trace"])
            _log.debug("session %s: %s trace %s", self.session, self.spec.name, step)
        elif "returnControl" in event:
            raise self._return_control(event["returnControl"])
        elif "files" in event:
            self.files += len(event["files"].get("files") or ())
        else:
            _log.warning("session %s: %s sent an event Switchboard does not know (%s); "
                         "ignored", self.session, self.spec.name, ", ".join(event) or "empty")

    def _return_control(self, payload: dict[str, Any]) -> ModelRejectedError:
        wanted = [_action(item) for item in payload.get("invocationInputs") or ()]
        what = "; ".join(wanted) or "an action"
        _log.warning("session %s: %s returned control for %s (invocation %s); Switchboard "
                     "cannot run it", self.session, self.spec.name, what,
                     payload.get("invocationId", "?"))
        msg = (f"hosted agent {self.spec.name!r} asked Switchboard to run {what} itself "
               f"(returnControl, invocation {payload.get('invocationId', '?')}); Switchboard "
               "cannot act on returnControl: give that action group a Lambda executor in the "
               "agent's configuration")
        return ModelRejectedError(msg, model=self.spec.name)

    def finish(self, prompt: str) -> AgentAnswer:
        """The answer once the stream ended.

        Raises:
            ModelRejectedError / ModelUnavailableError: the agent sent a ``failureTrace`` and
                no answer (unavailable when its ``failureCode`` is 429 or 5xx).
        """
        self.text += self._decoder.decode(b"", final=True)
        traces = self.traces
        if traces.failure and not self.text:
            msg = f"hosted agent {self.spec.name!r} failed: {traces.failure[:300]}"
            transient = traces.failure_code == 429 or traces.failure_code >= 500
            cls = ModelUnavailableError if transient else ModelRejectedError
            raise cls(msg, model=self.spec.name)
        if self.files:
            _log.info("session %s: %s sent %d files; Switchboard does not relay agent files",
                      self.session, self.spec.name, self.files)
        if traces.usage_seen:
            prompt_tokens, completion_tokens = traces.input_tokens, traces.output_tokens
        else:
            prompt_tokens, completion_tokens = len(prompt) // 4 + 1, len(self.text) // 4
        usage = Usage(model=self.spec.name, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, cost_usd=0.0, calls=1)
        return AgentAnswer(reply=ModelReply(text=self.text, usage=usage), traces=traces,
                           chunks=self.chunks, tokens_from_trace=traces.usage_seen)


def _action(item: dict[str, Any]) -> str:
    """``action group / function`` or ``action group: METHOD /path`` of an invocation input."""
    if function := item.get("functionInvocationInput"):
        return f"{function.get('actionGroup', '?')}/{function.get('function', '?')}"
    if api := item.get("apiInvocationInput"):
        return (f"{api.get('actionGroup', '?')}: {api.get('httpMethod', '?')} "
                f"{api.get('apiPath', '?')}")
    return "an unknown action"
