"""The system the HTTP API's end-to-end tests run against: ``switchboard up`` with
``SB_API_TOKEN`` set runs the API as one more supervised process beside every actor, on a real
nats-server; a scripted model answers through the genuine litellm path. A test module imports
the fixtures it uses (``system``, ``api``, ``replica``); each module gets a system of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from api_client import TOKEN, Api
from pydantic.types import SecretStr
from system import RunningSystem, running_system
from waiting import eventually

from core.config import Settings, load_topology
from switchboard.embedded import free_port

TESTS = Path(__file__).resolve().parent


def _topology(delay_s: float) -> dict[str, object]:
    return {
        "providers": {"offline": "offline_model:OfflineLLM",
                      "scripted": "scripted_model:ScriptedLLM"},
        "tiers": {t: [{"name": f"scripted/tier-{t}", "params": {"delay_s": delay_s}}]
                  for t in (1, 2, 3, 4)},
        "escalation": [f"scripted/tier-{t}" for t in (1, 2, 3, 4)],
        "lock_ttl_s": 3.0,
        "actors": {"python_coder": {"tier": 1, "ack_wait_s": 5.0}},
    }


@pytest.fixture(scope="module", name="api_listen")
def api_listen_fixture() -> str:
    """Where the supervised API listens (``SB_API_LISTEN``): a free port per module."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module", name="api_env")
def api_env_fixture() -> dict[str, str]:
    """More environment of ``switchboard up`` (a module overrides it: webhook settings)."""
    return {}


@pytest.fixture(scope="module", name="system")
def system_fixture(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
                   api_listen: str, api_env: dict[str, str], request: pytest.FixtureRequest
                   ) -> Iterator[RunningSystem]:
    """``switchboard up`` with the API; a module's ``API_TOPOLOGY`` (top-level topology keys,
    e.g. ``tools`` with approvals) is applied over the scripted model's topology."""
    extra: dict[str, object] = getattr(request.module, "API_TOPOLOGY", {})
    with running_system(module_nats, tmp_path_factory.mktemp("api"),
                        extra_env={"PYTHONPATH": str(TESTS), "SB_API_TOKEN": TOKEN,
                                   "SB_API_LISTEN": api_listen, **api_env},
                        **{**_topology(delay_s=0.3), **extra}) as running:
        yield running


@pytest_asyncio.fixture(name="api")
async def api_fixture(system: RunningSystem, api_listen: str) -> AsyncIterator[Api]:
    """A client of the API process ``switchboard up`` supervises, once it answers."""
    async with aiohttp.ClientSession() as http:
        client = Api(f"http://{api_listen}", http)

        async def _ready() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                return (await client.call("GET", "/healthz"))[0] == 200
            return False

        await eventually(_ready, within_s=60, what="the API to answer /healthz")
        yield client


@pytest_asyncio.fixture(name="replica")
async def replica_fixture(system: RunningSystem, api: Api, api_env: dict[str, str]
                          ) -> AsyncIterator[Api]:
    """A second API replica in this event loop (port chosen by the OS, keep-alive 0.1 s),
    with the keys of the first (``SB_API_KEYS_FILE`` of ``api_env``)."""
    from api import ApiOptions, run_api

    keys_file = api_env.get("SB_API_KEYS_FILE")
    settings = Settings(api_token=SecretStr(TOKEN), topology=system.topology_path,
                        data_dir=system.data_dir, nats_url=system.nats_url,
                        api_keys_file=Path(keys_file) if keys_file else None)
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_api(
        settings, load_topology(settings=settings), nats_url=system.nats_url,
        listen="127.0.0.1:0", stop=stop, options=ApiOptions(keepalive_s=0.1), on_ready=ready))
    try:
        host, port = await asyncio.wait_for(asyncio.shield(ready), 30)
        yield Api(f"http://{host}:{port}", api.http)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
