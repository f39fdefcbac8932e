"""A Bedrock agent backs a role (docs/design.md#models): ``modelcall.hosted.invoke_agent`` through
the genuine aioboto3 / botocore client, over HTTP, against a local InvokeAgent stand-in that
frames its answers in the AWS event-stream encoding and checks SigV4 signatures.

Shown here: chunks are relayed as they arrive and folded into the answer (a UTF-8 character
split across two chunks included); token counts come from the trace, or are estimated without
one; throttling, validation and access errors, as HTTP error answers or as exception events
mid-stream, become the model error classes (transient vs permanent); ``returnControl`` and a
``failureTrace`` are reported at once; a stalled stream and an unreachable endpoint are bounded.
"""

from __future__ import annotations

import asyncio
import socket
import time
from binascii import crc32
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from botocore.eventstream import EventStreamBuffer
from hosted_standins import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    AgentCall,
    BedrockAgentStandin,
    HttpError,
    StreamEvent,
    chunk,
    chunk_bytes,
    failure,
    model_output,
    rationale,
    return_control,
    stream_error,
)
from hosted_standins._eventstream import encode_message
from pydantic import ValidationError

from core.config import BedrockAgentSpec, Topology, load_topology
from core.errors import (
    ConfigError,
    ModelRejectedError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from modelcall.hosted import bedrock_session_id, close_clients, invoke_agent

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials in the standard AWS variables; no profile, file or metadata lookup."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


@pytest_asyncio.fixture
async def closed_clients() -> AsyncIterator[None]:
    """Close the test loop's agent clients afterwards, before the loop goes."""
    yield
    await close_clients()


@pytest_asyncio.fixture
async def agent_server(closed_clients: None) -> AsyncIterator[BedrockAgentStandin]:
    async with BedrockAgentStandin() as server:
        yield server


def _spec(server: BedrockAgentStandin, **changes: object) -> BedrockAgentSpec:
    fields: dict[str, object] = {"kind": "bedrock", "agent_id": "AGENT1",
                                 "agent_alias_id": "ALIAS1", "region": REGION,
                                 "endpoint_url": server.endpoint_url, "timeout_s": 20}
    fields.update(changes)
    return BedrockAgentSpec.model_validate(fields)


def _answers(*events: StreamEvent | HttpError) -> Callable[[AgentCall],
                                                             list[StreamEvent] | HttpError]:
    """A brain that answers every call with ``events`` (or the one HTTP error)."""
    def brain(call: AgentCall) -> list[StreamEvent] | HttpError:
        errors = [e for e in events if isinstance(e, HttpError)]
        return errors[0] if errors else [e for e in events if isinstance(e, StreamEvent)]
    return brain


async def test_calls_reuse_one_client_and_its_connection(
        agent_server: BedrockAgentStandin) -> None:
    agent_server.brain = _answers(chunk("Hi."))
    for n in range(3):
        answer = await invoke_agent(_spec(agent_server), f"discord-{n}", "hello")
        assert answer.reply.text == "Hi."
    peers = {call.peer for call in agent_server.calls}
    assert len(agent_server.calls) == 3 and len(peers) == 1, peers
    await close_clients()
    await invoke_agent(_spec(agent_server), "discord-9", "hello")
    assert agent_server.calls[-1].peer not in peers, "closed: a new client, a new connection"


async def test_chunks_are_relayed_as_they_arrive_and_make_the_answer(
        agent_server: BedrockAgentStandin) -> None:
    agent_server.brain = _answers(
        rationale("Answer the greeting."), model_output(310, 12, "preProcessingTrace"),
        model_output(400, 25), chunk("Hello "), chunk("from the ", delay_s=0.2),
        chunk("agent.", delay_s=0.2))
    seen: list[tuple[float, str]] = []

    async def on_text(text: str) -> None:
        seen.append((time.monotonic(), text))

    answer = await invoke_agent(_spec(agent_server), "discord-123", "hi there", on_text=on_text)
    assert answer.reply.text == "Hello from the agent."
    assert [text for _, text in seen] == ["Hello ", "Hello from the ", "Hello from the agent."]
    assert seen[-1][0] - seen[0][0] >= 0.35, "each chunk was relayed when it arrived"
    usage = answer.reply.usage
    assert (usage.model, usage.prompt_tokens, usage.completion_tokens, usage.calls) == (
        "bedrock-agent/AGENT1/ALIAS1", 710, 37, 1)
    assert answer.tokens_from_trace and answer.chunks == 3
    assert answer.traces.rationale == "Answer the greeting."
    assert answer.traces.steps["orchestrationTrace.modelInvocationOutput"] == 1
    [call] = agent_server.calls
    assert (call.agent_id, call.alias_id, call.session_id) == ("AGENT1", "ALIAS1", "discord-123")
    assert call.body == {"inputText": "hi there", "enableTrace": True,
                         "streamingConfigurations": {"streamFinalResponse": True}}
    assert call.access_key == ACCESS_KEY


async def test_a_character_split_across_chunks_and_no_trace(
        agent_server: BedrockAgentStandin) -> None:
    word = "naïve ☕ café".encode()
    agent_server.brain = _answers(chunk_bytes(word[:3]), chunk_bytes(word[3:9]),
                                  chunk_bytes(word[9:]))
    answer = await invoke_agent(_spec(agent_server, enable_trace=False,
                                      stream_final_response=False), "s1", "x" * 40)
    assert answer.reply.text == "naïve ☕ café"
    assert not answer.tokens_from_trace
    assert answer.reply.usage.prompt_tokens == 11  # 40 characters / 4 + 1: an estimate
    assert agent_server.calls[0].body == {"inputText": "x" * 40, "enableTrace": False}


async def test_return_control_is_reported_not_waited_on(
        agent_server: BedrockAgentStandin) -> None:
    agent_server.brain = _answers(rationale("I need the weather."),
                                  return_control("WeatherGroup", "get_weather", city="Oslo"))
    started = time.monotonic()
    with pytest.raises(ModelRejectedError) as caught:
        await invoke_agent(_spec(agent_server), "s-rc", "weather in Oslo?")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "WeatherGroup/get_weather" in message and "returnControl" in message
    assert "Lambda" in message and caught.value.model == "bedrock-agent/AGENT1/ALIAS1"


@pytest.mark.parametrize(("exception_type", "error"), [
    ("throttlingException", ModelUnavailableError),
    ("serviceQuotaExceededException", ModelUnavailableError),
    ("dependencyFailedException", ModelUnavailableError),
    ("internalServerException", ModelUnavailableError),
    ("validationException", ModelRejectedError),
    ("accessDeniedException", ModelRejectedError),
    ("resourceNotFoundException", ModelRejectedError),
])
async def test_exception_events_mid_stream_become_model_errors(
        agent_server: BedrockAgentStandin, exception_type: str,
        error: type[Exception]) -> None:
    agent_server.brain = _answers(chunk("Partial "), stream_error(exception_type,
                                                                  "the service said no"))
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    with pytest.raises(error) as caught:
        await invoke_agent(_spec(agent_server), "s-ex", "hello", on_text=on_text)
    assert type(caught.value) is error
    assert exception_type in str(caught.value) and "the service said no" in str(caught.value)
    assert seen == ["Partial "]


@pytest.mark.parametrize(("status", "error_type", "error"), [
    (429, "ThrottlingException", ModelUnavailableError),
    (400, "ValidationException", ModelRejectedError),
    (403, "AccessDeniedException", ModelRejectedError),
    (503, "ServiceUnavailableException", ModelUnavailableError),
    (502, "SomethingNewException", ModelUnavailableError),
    (409, "SomethingElseException", ModelRejectedError),
])
async def test_http_error_answers_become_model_errors(
        agent_server: BedrockAgentStandin, status: int, error_type: str,
        error: type[Exception]) -> None:
    agent_server.brain = _answers(HttpError(status, error_type, f"{error_type} happened"))
    with pytest.raises(error) as caught:
        await invoke_agent(_spec(agent_server), "s-http", "hello")
    assert type(caught.value) is error
    assert error_type in str(caught.value)
    assert [c.status for c in agent_server.calls] == [status], "botocore did not retry"


@pytest.mark.usefixtures("closed_clients")
async def test_an_unknown_agent_and_a_wrong_secret_are_permanent() -> None:
    async with BedrockAgentStandin(secret_key="another-secret") as wrong_secret:
        with pytest.raises(ModelRejectedError, match="InvalidSignatureException"):
            await invoke_agent(_spec(wrong_secret), "s-sig", "hello")
    async with BedrockAgentStandin() as server:
        with pytest.raises(ModelRejectedError, match="no such agent") as caught:
            await invoke_agent(_spec(server, agent_id="NOPE"), "s-404", "hello")
        assert "ResourceNotFoundException" in str(caught.value)


@pytest.mark.parametrize(("code", "error"), [(0, ModelRejectedError),
                                             (500, ModelUnavailableError)])
async def test_a_failure_trace_without_an_answer_is_reported(
        agent_server: BedrockAgentStandin, code: int, error: type[Exception]) -> None:
    agent_server.brain = _answers(failure("Lambda function ActionGroup1 timed out", code))
    with pytest.raises(error, match="Lambda function ActionGroup1 timed out"):
        await invoke_agent(_spec(agent_server), "s-fail", "hello")


async def test_a_stalled_stream_is_bounded(agent_server: BedrockAgentStandin) -> None:
    agent_server.brain = _answers(chunk("Thinking"), chunk("...", delay_s=30))
    started = time.monotonic()
    with pytest.raises(ModelTimeoutError, match="within 1 s"):
        await invoke_agent(_spec(agent_server), "s-slow", "hello", timeout_s=1)
    assert time.monotonic() - started < 5


async def test_missing_credentials_or_profile_are_permanent(
        agent_server: BedrockAgentStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    import aioboto3

    from modelcall.hosted import _bedrock

    monkeypatch.setattr(_bedrock, "_aws_session", lambda: aioboto3.Session())
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ModelRejectedError, match="no such AWS profile"):
        await invoke_agent(_spec(agent_server), "s-prof", "hello")
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ModelRejectedError, match="no AWS credentials"):
        await invoke_agent(_spec(agent_server), "s-creds", "hello")
    assert agent_server.calls == []


@pytest.mark.usefixtures("closed_clients")
async def test_an_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = BedrockAgentSpec(kind="bedrock", agent_id="A", agent_alias_id="B", region=REGION,
                            endpoint_url=f"http://127.0.0.1:{port}", timeout_s=10)
    with pytest.raises(ModelUnavailableError, match="cannot reach"):
        await invoke_agent(spec, "s-down", "hello")


def test_session_ids_fit_bedrock() -> None:
    assert bedrock_session_id("discord-1234_abc") == "discord-1234_abc"
    assert bedrock_session_id("x") == "x."
    long_a, long_b = "a" * 120, "a" * 119 + "b"
    mapped = {bedrock_session_id(s) for s in (long_a, long_b)}
    assert len(mapped) == 2 and all(len(m) == 100 for m in mapped)
    assert bedrock_session_id(long_a) == bedrock_session_id(long_a)


def test_the_stand_ins_frames_are_what_botocore_decodes() -> None:
    frame = encode_message({":event-type": "chunk", ":message-type": "event"}, b'{"a": 1}')
    assert int.from_bytes(frame[8:12], "big") == crc32(frame[:8])
    assert int.from_bytes(frame[-4:], "big") == crc32(frame[:-4])
    buffer = EventStreamBuffer()
    buffer.add_data(frame + frame[:7])
    [message] = list(buffer)
    assert message.headers == {":event-type": "chunk", ":message-type": "event"}
    assert message.payload == b'{"a": 1}'


# --- configuration --------------------------------------------------------------------------

_TIERS = "tiers: {1: [a/b], 2: [a/b], 3: [a/b], 4: [a/b]}\n"


def _topology(tmp_path: Path, actors: str) -> Topology:
    path = tmp_path / "topology.yaml"
    path.write_text(_TIERS + actors)
    return load_topology(path)


def test_a_role_backed_by_an_agent_is_the_topologys_one_decision(tmp_path: Path) -> None:
    topology = _topology(tmp_path, "actors: {researcher: {agent: {kind: bedrock, agent_id: "
                                   "AB12, agent_alias_id: TSTALIASID, region: eu-west-1}}}\n")
    agent = topology.hosted_agent("researcher")
    assert agent is not None and agent.name == "bedrock-agent/AB12/TSTALIASID"
    assert agent.endpoint_url is None and agent.timeout_s == 120
    assert topology.hosted_agent("python_coder") is None


def test_only_an_agent_role_may_be_a_hosted_agent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only agent roles"):
        _topology(tmp_path, "actors: {planner: {agent: {kind: bedrock, agent_id: A, "
                            "agent_alias_id: B, region: us-east-1}}}\n")


@pytest.mark.parametrize(("actors", "field"), [
    ("actors: {researcher: {agent: {kind: bedrock, agent_id: 'not/valid', agent_alias_id: B, "
     "region: us-east-1}}}\n", "agent_id"),
    ("actors: {researcher: {agent: {kind: openai, agent_id: A, agent_alias_id: B, "
     "region: us-east-1}}}\n", "kind"),
    ("actors: {researcher: {agent: {kind: bedrock, agent_id: A, region: us-east-1}}}\n",
     "agent_alias_id"),
])
def test_a_bad_agent_is_refused_at_load(tmp_path: Path, actors: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _topology(tmp_path, actors)
    cause = caught.value.__cause__  # pydantic's words are its own: its error locations are not
    assert isinstance(cause, ValidationError)
    assert [e["loc"] for e in cause.errors()] == [("actors", "researcher", "agent", field)]


async def test_two_calls_at_once_share_nothing_but_the_session(
        agent_server: BedrockAgentStandin) -> None:
    spec = _spec(agent_server)
    first, second = await asyncio.gather(invoke_agent(spec, "s-a", "one"),
                                         invoke_agent(spec, "s-b", "two"))
    assert (first.reply.text, second.reply.text) == ("Agent heard: one", "Agent heard: two")
    assert sorted(c.session_id for c in agent_server.calls) == ["s-a", "s-b"]
