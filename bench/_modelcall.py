"""Scenario ``modelcall``: client CPU per streamed chat completion.

One OpenAI-compatible server in its own process (``bench._sse_server``) streams answers of
1, 20 and 200 content chunks, or two parallel tool calls in as many fragments; in this
process, 32 calls at a time, the same work is done by:

- ``raw aiohttp``: the floor — one aiohttp session, ``json.loads`` per SSE line, the text
  and tool calls folded by hand;
- ``direct``: Switchboard's default path for OpenAI-compatible providers
  (``modelcall.complete``, ``transport: auto``: litellm resolves, Switchboard streams);
- ``litellm``: ``modelcall.complete`` with ``transport: litellm`` (``litellm.acompletion``);
- ``offline``: the offline model (``offline/tier-1``, its own six pieces), in-process.

Reported: process CPU milliseconds per call (``time.process_time`` over the calls, after a
warm-up) and the ratio to ``raw aiohttp`` in the same run.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench._store import Figure
from switchboard.embedded import free_port

SCENARIO = "modelcall"
IN_FLIGHT = 32
CHUNKS = (1, 20, 200)
CALLS = {False: 600, True: 160}
"""Calls per client and setting (a quarter of them for 200 chunks)."""
LITELLM_SHARE = {False: 1, True: 4}
"""``--quick`` makes a quarter of the calls through litellm's full path (30-50 times the
direct path's CPU: the reference beside the target, not the target), to stay in 5 minutes."""
OFFLINE_CALLS = {False: 6000, True: 2000}
"""Calls of the offline model (about 20 µs each: enough of them to measure)."""
WARMUP = 16
REPO = Path(__file__).resolve().parent.parent
TOOLS = [{"type": "function", "function": {
    "name": "write_file", "description": "Write a file.",
    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]


async def _wait_listening(port: int) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def raw_call(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """The floor: POST, split SSE lines, ``json.loads`` each, fold text and tool calls."""
    text = ""
    calls: dict[int, list[str]] = {}
    async with session.post(url, data=body,
                            headers={"Content-Type": "application/json",
                                     "Authorization": "Bearer bench"}) as response:
        async for line in response.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text += delta.get("content") or ""
                for call in delta.get("tool_calls") or ():
                    entry = calls.setdefault(call["index"], [""])
                    entry[0] += (call.get("function") or {}).get("arguments") or ""
    return len(text) + sum(len(v[0]) for v in calls.values())


async def cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int, *,
                       in_flight: int = IN_FLIGHT) -> float:
    """Process CPU milliseconds per call, ``in_flight`` at a time, after a warm-up and a full
    garbage collection: in run ``20261128T061348Z`` a collection of the heap the scenarios
    before had left in the bench process fell into the 3 ms measurement of the offline model
    and made it about 150 ms (0.92 ms a call instead of 0.02)."""
    limit = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with limit:
            await call()

    await asyncio.gather(*(one() for _ in range(WARMUP)))
    gc.collect()
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (time.process_time() - started) * 1000 / calls


async def _run(quick: bool) -> list[Figure]:
    from core.config import ModelSpec
    from modelcall import close_sessions, complete, register_providers

    register_providers({"offline": "offline_model:OfflineLLM"})
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._sse_server", str(port), cwd=REPO)
    figures: list[Figure] = []
    try:
        await _wait_listening(port)
        base = f"http://127.0.0.1:{port}/v1"
        os.environ["SB_BENCH_MODEL_KEY"] = "bench"
        specs = {transport: ModelSpec(name="openai/bench-model", api_base=base,
                                      api_key_env="SB_BENCH_MODEL_KEY", transport=transport)
                 for transport in ("auto", "litellm")}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            for kind in ("content", "tool_calls"):
                tools = TOOLS if kind == "tool_calls" else None
                for chunks in CHUNKS:
                    messages = [{"role": "user", "content": str(chunks)}]
                    body = json.dumps({"model": "bench-model", "messages": messages,
                                       "stream": True, "tools": tools}).encode()
                    calls = CALLS[quick] // (4 if chunks >= 200 else 1)
                    clients: dict[str, Callable[[], Awaitable[Any]]] = {
                        "raw aiohttp": functools.partial(
                            raw_call, session, f"{base}/chat/completions", body),
                        "direct": functools.partial(
                            complete, specs["auto"], messages, tools=tools),
                        "litellm": functools.partial(
                            complete, specs["litellm"], messages, tools=tools),
                    }
                    results = {name: await cpu_per_call(
                                   call, calls // (LITELLM_SHARE[quick] if name == "litellm"
                                                   else 1))
                               for name, call in clients.items()}
                    for name, ms in results.items():
                        figures += _figures(name, ms, results["raw aiohttp"], kind, chunks)
        offline = ModelSpec(name="offline/tier-1")
        ms = await cpu_per_call(lambda: complete(offline, [{"role": "user", "content": "hi"}]),
                                 OFFLINE_CALLS[quick])
        figures.append(Figure(scenario=SCENARIO, metric="cpu_ms_per_call", value=ms,
                              unit="ms", label="offline", flow="content", in_flight=IN_FLIGHT,
                              params={"chunks": 6}))
        await close_sessions()
    finally:
        server.terminate()
        async with asyncio.timeout(10):
            await server.wait()
    return figures


def _figures(name: str, ms: float, raw: float, kind: str, chunks: int) -> list[Figure]:
    common: dict[str, Any] = {"scenario": SCENARIO, "label": name, "flow": kind,
                              "in_flight": IN_FLIGHT, "params": {"chunks": chunks}}
    return [Figure(metric="cpu_ms_per_call", value=ms, unit="ms", **common),
            Figure(metric="ratio_to_raw", value=ms / raw if raw else float("nan"), unit="x",
                   **common)]


def run_modelcall(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the scenario (module docstring); ``workdir`` is unused (nothing is written)."""
    return asyncio.run(_run(quick))


def modelcall_table(rows: list[dict[str, Any]]) -> str:
    """The latest ``modelcall`` figures: CPU ms per call and the ratio to the raw client."""
    mine = [r for r in rows if r["scenario"] == SCENARIO]
    if not mine:
        return ""
    cells: dict[tuple[str, int], dict[str, float]] = {}
    for row in mine:
        params = row["params"] if isinstance(row["params"], dict) else json.loads(
            row["params"] or "{}")
        key = (row["flow"] or "", int(params.get("chunks", 0)))
        cells.setdefault(key, {})[f"{row['label']}|{row['metric']}"] = row["value"]
    clients = ("raw aiohttp", "direct", "litellm")
    lines = [f"== Model calls: client CPU ms per streamed call, {IN_FLIGHT} in flight "
             "(ratio to raw aiohttp) =="]
    header = f"{'stream':<12}{'chunks':>7}" + "".join(f"{c:>22}" for c in clients)
    lines.append(header)
    for (kind, chunks), values in sorted(cells.items()):
        if kind == "content" and chunks == 6:
            continue
        parts = []
        for client in clients:
            ms = values.get(f"{client}|cpu_ms_per_call")
            ratio = values.get(f"{client}|ratio_to_raw")
            parts.append(f"{ms:.3f} ({ratio:.2f}x)" if ms is not None and ratio is not None
                         else "-")
        lines.append(f"{kind:<12}{chunks:>7}" + "".join(f"{p:>22}" for p in parts))
    offline = cells.get(("content", 6), {}).get("offline|cpu_ms_per_call")
    if offline is not None:
        lines.append(f"offline model (in-process, 6 pieces): {offline:.3f} ms per call")
    return "\n".join(lines)
