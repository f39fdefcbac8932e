"""A client of the HTTP API for its end-to-end tests: requests with the bearer token, runs
submitted and awaited, a run's Server-Sent Events read to their end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from waiting import until

TOKEN = "test-token-9f3c"
WITHIN_S = 90.0
"""How long a run may take to end, in seconds."""


@dataclass
class Api:
    """A client of one API replica."""

    base: str
    http: aiohttp.ClientSession
    token: str = TOKEN

    def _headers(self, token: str | None) -> dict[str, str]:
        token = self.token if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def call(self, method: str, path: str, *, body: bytes | None = None,
                   token: str | None = None, url: yarl.URL | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request; a ``body`` goes as ``application/json`` unless ``headers`` say
        otherwise. Returns the status and the JSON body (else the bytes)."""
        typed = {"Content-Type": "application/json"} if body is not None else {}
        async with self.http.request(method, url or self.base + path, data=body,
                                     headers={**typed, **self._headers(token), **(headers or {})}
                                     ) as response:
            data = await response.read()
            if response.content_type == "application/json":
                return response.status, json.loads(data)
            return response.status, data

    async def submit(self, message: str, **fields: str) -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/runs",
                                       body=json.dumps({"message": message, **fields}).encode())
        assert status == 202, body
        return dict(body)

    async def run(self, run_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/runs/{run_id}")
        assert status == 200, body
        return dict(body)

    async def settled(self, run_id: str, within_s: float = WITHIN_S) -> dict[str, Any]:
        return await until(lambda: self.run(run_id),
                           lambda r: r["status"] in {"done", "failed", "aborted", "paused"},
                           within_s=within_s, what=f"run {run_id} to end")

    async def events(self, run_id: str) -> Stream:
        """Read the run's event stream to its end."""
        stream = Stream()
        timeout = aiohttp.ClientTimeout(total=WITHIN_S)
        async with self.http.get(f"{self.base}/v1/runs/{run_id}/events",
                                 headers=self._headers(None), timeout=timeout) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("text/event-stream")
            name, data = "", ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    stream.comments += 1
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and name:
                    stream.frames.append((name, json.loads(data)))
                    name, data = "", ""
        return stream


@dataclass
class Stream:
    frames: list[tuple[str, Any]] = field(default_factory=list)
    comments: int = 0

    def names(self) -> list[str]:
        return [name for name, _ in self.frames]

    def of(self, name: str) -> list[Any]:
        return [data for n, data in self.frames if n == name]


def send_blocking(base: str, method: str, path: str, body: bytes, token: str) -> int:
    """One request with ``urllib`` (blocking, for a worker thread), its body sent as JSON
    and the bearer ``token`` when given; returns the status (an event stream's at once)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=body if method != "GET" else None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # loopback
            if path.endswith("/events"):
                return int(response.status)  # an event stream: the status is the answer
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
