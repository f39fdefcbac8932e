"""``switchboard.embedded``: the embedded nats-server runs under Go's soft memory limit
(``GOMEMLIMIT``) that ``Settings.nats_memory_limit`` names, or none with ``off``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import Settings
from switchboard.embedded import EmbeddedNats


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize(("limit", "expected"), [("96MiB", "96MiB"), ("off", None)])
def test_the_server_runs_under_the_memory_limit_it_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, expected: str | None) -> None:
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    with EmbeddedNats(tmp_path / "nats", memory_limit=limit) as server:
        assert server.pid is not None
        assert _environment(server.pid).get("GOMEMLIMIT") == expected


def test_the_memory_limit_setting_takes_gos_syntax_or_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_NATS_MEMORY_LIMIT", raising=False)
    assert Settings().nats_memory_limit == "96MiB"
    for good in ("off", "128MiB", "1GiB", "100000000"):
        monkeypatch.setenv("SB_NATS_MEMORY_LIMIT", good)
        assert Settings().nats_memory_limit == good
    for bad in ("lots", "96 MiB", "96mb", "-1"):
        monkeypatch.setenv("SB_NATS_MEMORY_LIMIT", bad)
        with pytest.raises(ValidationError):
            Settings()
