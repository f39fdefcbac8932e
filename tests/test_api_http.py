"""The HTTP API's correctness as HTTP, end to end against ``switchboard up`` on a real
nats-server: ``Allow`` on 405, the JSON media type enforced (415), bad header lines answered
400 with no traceback in the log, files as ``application/octet-stream``, the access log in the
Common Log Format without credentials, and schemathesis checking every operation against the
OpenAPI document the API serves."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request

import pytest
import schemathesis
from api_client import TOKEN, Api
from api_system import (  # noqa: F401 (the fixtures api, system)
    api_env_fixture,
    api_fixture,
    api_listen_fixture,
    system_fixture,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from system import RunningSystem
from waiting import eventually

from api._openapi import openapi_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
RUN = "0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLF = re.compile(r'^\S+ - (\S+) \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
                 r'"(\S+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+|-)$')
"""An access-log line: the user field (the API key's name), method, path, status, size."""


def _access_lines(system: RunningSystem) -> list[re.Match[str]]:
    lines = (line.rstrip("\n").split("api.access: ", 1) for line in list(system.output))
    return [m for parts in lines if len(parts) == 2 and (m := CLF.match(parts[1]))]


async def test_a_method_a_path_lacks_is_405_with_allow(api: Api) -> None:
    for method, path, allowed in [
            ("DELETE", "/v1/runs", {"GET", "HEAD", "POST"}),
            ("DELETE", f"/v1/runs/{RUN}", {"GET", "HEAD"}),
            ("POST", f"/v1/runs/{RUN}/wait", {"GET", "HEAD"}),
            ("PUT", "/v1/sessions/s1", {"GET", "HEAD"}),
            ("PUT", f"/v1/runs/{RUN}/stop", {"POST"}),
            ("HEAD", f"/v1/runs/{RUN}/events", {"GET"}),
            ("POST", "/openapi.json", {"GET", "HEAD"})]:
        async with api.http.request(method, api.base + path,
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 405, (method, path)
            assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed
            if method != "HEAD":
                assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_a_body_not_sent_as_json_is_415_and_json_with_a_charset_passes(api: Api) -> None:
    body = b'{"message": "hello there"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "application/jsonx", "multipart/form-data; boundary=x"):
        status, answer = await api.call("POST", "/v1/runs", body=body,
                                        headers={"Content-Type": content_type})
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type")
    async with api.http.post(f"{api.base}/v1/runs", data=body,  # no Content-Type at all
                             skip_auto_headers=["Content-Type"],
                             headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 415 and response.headers["Accept"] == "application/json"
    status, answer = await api.call("POST", "/v1/runs", body=body, headers={
        "Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 202 and answer["status"] == "queued"


async def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(4096)
    finally:
        writer.close()


async def test_bad_header_lines_are_400_and_log_no_traceback(api: Api,
                                                            system: RunningSystem) -> None:
    secret = "sk-do-not-log-me"
    for request in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret.encode()
            + b"\x01\r\n\r\n"):
        assert (await _raw(api.base, request)).startswith(b"HTTP/1.0 400")
    answer = await _raw(api.base, f"GET /v1/runs/{RUN} HTTP/1.1\r\nHost: x\r\n".encode()
                        + b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401") and b'"unauthorized"' in answer
    status, _ = await api.call("GET", "/healthz")  # a request after them, to log its line
    assert status == 200
    await eventually(lambda: any(m.group(3) == "/healthz" for m in _access_lines(system)),
                     within_s=30, what="the access log line of /healthz")
    logs = "".join(system.output)
    assert "Traceback" not in logs and secret not in logs
    assert "bad request from" in logs


async def test_files_are_octet_streams(api: Api) -> None:
    accepted = await api.submit("[badpath] write a python file", session="api-http-files")
    run = await api.settled(accepted["run_id"])
    async with api.http.get(f"{api.base}/v1/runs/{run['run_id']}/files/ok.txt",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 200 and await response.read() == b"fine\n"
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Disposition"] == 'attachment; filename="ok.txt"'


async def test_the_access_log_has_one_common_log_format_line_per_request_and_no_secret(
        api: Api, system: RunningSystem) -> None:
    secret = "query-secret-77"
    status, _ = await api.call("GET", f"/v1/runs/{RUN}?api_key={secret}")
    assert status == 404
    status, _ = await api.call("GET", f"/v1/runs/{RUN}", token="wrong-token-55")
    assert status == 401

    def _found() -> list[re.Match[str]]:
        return [m for m in _access_lines(system) if m.group(3) == f"/v1/runs/{RUN}"]

    # The key's name (SB_API_TOKEN's key is `default`), `-` for a wrong key.
    wanted = {("default", "GET", "404"), ("-", "GET", "401")}
    await eventually(lambda: {(m.group(1), m.group(2), m.group(4)) for m in _found()} >= wanted,
                     within_s=30, what="the access log lines of both requests")
    logs = "".join(system.output)
    for never in (secret, TOKEN, "wrong-token-55"):
        assert never not in logs


# ------------------------------------------------------------------------------ schemathesis


@pytest.fixture
def api_schema(system: RunningSystem, api_listen: str) -> schemathesis.BaseSchema:
    """The OpenAPI document the running API serves, loaded by schemathesis with the token."""
    base = f"http://{api_listen}"
    request = urllib.request.Request(f"{base}/openapi.json",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = 60.0
    while True:  # the supervised API may still be starting
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # loopback
                document = json.loads(response.read())
            break
        except OSError:
            deadline -= 1.0
            if deadline <= 0:
                raise
            asyncio.run(asyncio.sleep(1.0))
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})
    # An invalid body can also be too large: 413 is a rejection too (RFC 9110 §15.5.14).
    schema.config.checks.negative_data_rejection.expected_statuses.append("413")
    # A generated Idempotency-Key may repeat with another body: 422, by a rule of state the
    # document cannot express (tests/test_api_runs.py tests it).
    schema.config.checks.positive_data_acceptance.expected_statuses.append("422")
    return schema


def test_every_operation_keeps_to_the_openapi_document(api_schema: schemathesis.BaseSchema
                                                        ) -> None:
    """Status codes, media types, headers and bodies as documented; valid and invalid input
    (schemathesis' positive and negative modes) answered as documented, never a 5xx; a
    request without the token refused (schemathesis' own checks, with their defaults)."""
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    documented = sum(len(item) for item in json.loads(openapi_document(65536))["paths"].values())
    assert len(operations) == len(results) == documented  # the document is read whole
    for operation in operations:
        for mode in schemathesis.GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=12, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def _check(case: schemathesis.Case) -> None:
                # The token passed here too: an operation with header parameters of its own
                # (`Idempotency-Key`) gets the configured headers merged into the generated
                # ones, which schemathesis' ignored_auth check then takes for generated auth.
                case.call_and_validate(timeout=30, headers=AUTH)

            try:
                _check()
            except Unsatisfiable:
                # Nothing of this operation can be made invalid (no parameter, no body:
                # /readyz, /metrics); its valid requests were checked in the positive mode.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
