"""TLS. A CA made at test time (``cryptography``), a nats-server that takes
TLS clients only, and the whole system on it (with the nkey identities of
`switchboard nats-config`, as in production); a client without the CA is refused with a
clear error, as is one that asks for TLS from a server that does not offer it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from system import REPO, running_system
from tls_certs import Pki, make_pki

from core.config import Settings, load_topology
from core.errors import BrokerError, TLSError
from natsauth import write_nats_config
from runtime.bus import connect
from switchboard.embedded import EmbeddedNats

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def _start(tmp_path: Path, name: str, config_text: str) -> EmbeddedNats:
    config = tmp_path / f"{name}.conf"
    config.write_text(config_text)
    return EmbeddedNats(tmp_path / name, config=config).start()


@pytest.fixture
def tls_server(tmp_path: Path, pki: Pki) -> Iterator[EmbeddedNats]:
    """TLS clients only, and only the identities of `switchboard nats-config` (its file
    included in a configuration of one's own, as the README says)."""
    creds = write_nats_config(load_topology(), tmp_path / "creds")
    tls = pki.server_config(tmp_path / "tls-block.conf").read_text()
    # An include is relative to the including file (nats-server takes no absolute path).
    include = creds.server_config.relative_to(tmp_path)
    server = _start(tmp_path, "nats", f'{tls}\ninclude "{include}"\n')
    try:
        yield server
    finally:
        server.stop()


def _chat(env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard.cli", "chat", "--message", message,
                           "--timeout", "120"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=False)


def _connections(server: EmbeddedNats) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{server.monitor_port}/connz?limit=1000"
    with urllib.request.urlopen(url, timeout=5) as resp:  # loopback
        return list(json.load(resp)["connections"])


def test_the_whole_system_runs_on_a_tls_only_server(tls_server: EmbeddedNats, pki: Pki,
                                                    tmp_path: Path) -> None:
    url = tls_server.url.replace("nats://", "tls://")
    env = {"NATS_TLS_CA": str(pki.ca), "SB_NATS_CREDS_DIR": str(tmp_path / "creds")}
    with running_system(url, tmp_path, extra_env=env) as system:
        user_env = {**system.env, **env}
        hello = _chat(user_env, "hello")
        assert hello.returncode == 0, hello.stdout + hello.stderr
        assert "offline model" in hello.stdout
        work = _chat(user_env, "write a python function that reverses a string and test it")
        assert work.returncode == 0, work.stdout + work.stderr
        assert "reverse_string.py" in work.stdout
        connections = _connections(tls_server)
        assert len(connections) >= 15  # every actor, each over TLS
        assert all(c.get("tls_version") for c in connections), connections

        no_ca = {k: v for k, v in user_env.items() if k != "NATS_TLS_CA"}
        refused = _chat(no_ca, "hello")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "TLS with NATS at" in refused.stdout  # not OpenSSL's words: our hint
        assert "NATS_TLS_CA must be the CA" in refused.stdout, refused.stdout


async def test_a_client_without_the_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    server = _start(tmp_path, "nats", pki.server_config(tmp_path / "tls.conf").read_text())
    try:
        url = server.url.replace("nats://", "tls://")
        with pytest.raises(TLSError, match="NATS_TLS_CA must be the CA"):
            await connect(url, name="no-ca", settings=Settings(), reconnect=False)
        other = make_pki(tmp_path / "other", ca_name="Another CA")
        with pytest.raises(TLSError, match="NATS_TLS_CA must be the CA"):
            await connect(url, name="other-ca", settings=Settings(NATS_TLS_CA=str(other.ca)),
                          reconnect=False)
        # A process that keeps reconnecting (an actor) says the same once it gives up.
        with pytest.raises(TLSError, match="NATS_TLS_CA must be the CA"):
            await connect(url, name="actor", settings=Settings(), timeout_s=1.0)
        # With the CA, nats:// or tls://, the connection is TLS.
        for address in (server.url, url):
            nc = await connect(address, name="with-ca", settings=Settings(NATS_TLS_CA=str(pki.ca)),
                               reconnect=False)
            try:
                await nc.flush()
                [conn] = [c for c in await asyncio.to_thread(_connections, server)
                          if c.get("name") == "with-ca"]
                assert conn["tls_version"]
            finally:
                await nc.close()
    finally:
        server.stop()


async def test_asking_for_tls_from_a_plain_server_is_refused(nats_url: str, pki: Pki) -> None:
    with pytest.raises(TLSError, match="does not offer TLS"):
        await connect(nats_url, name="wants-tls", settings=Settings(NATS_TLS_CA=str(pki.ca)),
                      reconnect=False)
    with pytest.raises(TLSError, match="does not offer TLS"):
        await connect(nats_url.replace("nats://", "tls://"), name="wants-tls",
                      settings=Settings(), reconnect=False)


async def test_a_server_that_verifies_clients_takes_the_client_certificate(
        tmp_path: Path, pki: Pki) -> None:
    config = pki.server_config(tmp_path / "tls.conf", verify_clients=True).read_text()
    server = _start(tmp_path, "nats", config)
    try:
        url = server.url.replace("nats://", "tls://")
        with_cert = Settings(NATS_TLS_CA=str(pki.ca), NATS_TLS_CERT=str(pki.client_cert),
                             NATS_TLS_KEY=str(pki.client_key))
        nc = await connect(url, name="mtls", settings=with_cert, reconnect=False)
        await nc.close()
        # TLS 1.3 reports the missing certificate after the handshake: an alert, or the
        # connection closed; either way the message names the client certificate settings.
        with pytest.raises(BrokerError, match="NATS_TLS_CERT"):
            await connect(url, name="no-cert", settings=Settings(NATS_TLS_CA=str(pki.ca)),
                          reconnect=False)
    finally:
        server.stop()
