"""API keys, end to end against ``switchboard up`` on a real nats-server: named keys from
``SB_API_KEYS_FILE`` with scopes (a missing one is 403 ``insufficient_scope``), each key
reaching only its own runs and sessions (``admin`` every one), a rate per key (429 with
``Retry-After``), runs per day shared by two API replicas, the key's name in the access log
and never the key; and the stuck-work routes: ``terminate`` ends a run at once and frees its
session, ``retry`` sends a failed run again and its agent goes on from its checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from api_client import WITHIN_S, Api
from api_system import (  # noqa: F401 (the fixtures api, replica, system)
    api_fixture,
    api_listen_fixture,
    replica_fixture,
    system_fixture,
)
from system import RunningSystem
from waiting import eventually, until

from api._keys import KeyRing, Scope, digest, key_entry, new_key
from api.errors import ApiConfigError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[1]
KEYS = {name: new_key() for name in ("reader", "alice", "bob", "ops", "slow")}
QUOTA = 3


@pytest.fixture(scope="module", name="api_env")
def api_env_fixture_here(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``SB_API_KEYS_FILE`` with five keys: ``reader`` (read), ``alice`` (default scopes,
    ``QUOTA`` runs a day), ``bob`` (default scopes), ``ops`` (admin), ``slow`` (read, 3
    requests a minute)."""
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    entries = [
        {"name": "reader", "sha256": digest(KEYS["reader"]), "scopes": ["read"]},
        {"name": "alice", "sha256": digest(KEYS["alice"]), "runs_per_day": QUOTA},
        {"name": "bob", "sha256": digest(KEYS["bob"])},
        {"name": "ops", "sha256": digest(KEYS["ops"]), "scopes": ["admin"]},
        {"name": "slow", "sha256": digest(KEYS["slow"]), "scopes": ["read"],
         "rate": "3/minute"},
    ]
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")  # JSON is YAML
    return {"SB_API_KEYS_FILE": str(path)}


def _as(api: Api, name: str) -> Api:
    return Api(api.base, api.http, token=KEYS[name])


async def _post(api: Api, body: dict[str, Any], headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
    return await api.call("POST", "/v1/runs", body=json.dumps(body).encode(),
                          headers=headers)


# ------------------------------------------------------------------------------ no server


def test_a_key_file_is_checked_and_keys_are_found_by_their_digest(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key = new_key()
    path.write_text("keys:\n" + key_entry("ci", key, frozenset({Scope.READ}), "10/second", 5)
                    .replace("- ", "  - ", 1).replace("\n  ", "\n    "), encoding="utf-8")
    ring = KeyRing.load("", path)
    found = ring.authenticate(f"  {key} ")
    assert found is not None and found.name == "ci" and found.scopes == {Scope.READ}
    assert found.rate is not None and found.rate.amount == 10 and found.runs_per_day == 5
    assert found.owner == "ci" and not found.allows(Scope.SUBMIT)
    assert key not in path.read_text(encoding="utf-8")  # only the digest is kept
    assert ring.authenticate(key + "x") is None
    admin = KeyRing.load("tok", None).authenticate("tok")
    assert admin is not None and admin.owner is None and admin.allows(Scope.CONTROL)
    bad = {
        "keys:\n  - {name: ci, sha256: abc}\n": "64 hex digits",
        "keys:\n  - {name: Bad Name, sha256: " + "a" * 64 + "}\n": "name",
        "keys:\n  - {name: ci, sha256: " + "a" * 64 + ", rate: fast}\n": "rate",
        "keys:\n  - {name: ci, sha256: " + "a" * 64 + ", scopes: [root]}\n": "scopes",
        "keys:\n  - {name: ci, sha256: " + "a" * 64 + ", colour: red}\n": "colour",
        "keys:\n  - {name: a, sha256: " + "a" * 64 + "}\n  - {name: b, sha256: "
        + "a" * 64 + "}\n": "digest",
        "keys: [": "YAML",
    }
    for text, where in bad.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ApiConfigError, match=where):
            KeyRing.load("", path)
    with pytest.raises(ApiConfigError):
        KeyRing.load("", None)  # no key at all
    with pytest.raises(ApiConfigError, match="cannot be read"):
        KeyRing.load("", tmp_path / "missing.yaml")


def test_switchboard_api_key_prints_a_key_and_its_entry_only_once() -> None:
    run = subprocess.run([sys.executable, "-m", "switchboard.cli", "api", "key", "ci",
                          "--scopes", "read,submit", "--rate", "60/minute",
                          "--runs-per-day", "9"],
                         cwd=REPO, text=True, capture_output=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    [key] = re.findall(r"sb_[A-Za-z0-9_-]{43}", run.stdout)
    assert digest(key) in run.stdout and run.stdout.count(key) == 1
    assert "runs_per_day: 9" in run.stdout and "- read\n  - submit" in run.stdout
    for bad in (["Bad Name"], ["ci", "--scopes", "root"], ["ci", "--rate", "fast"]):
        run = subprocess.run([sys.executable, "-m", "switchboard.cli", "api", "key", *bad],
                             cwd=REPO, text=True, capture_output=True, timeout=60,
                             check=False)
        assert run.returncode == 2 and "sb_" not in run.stdout, bad


# ------------------------------------------------------------------------------ end to end


async def test_scopes_are_checked_per_route(api: Api) -> None:
    reader = _as(api, "reader")
    assert (await reader.call("GET", "/v1/runs"))[0] == 200
    status, body = await _post(reader, {"message": "hello"})
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    status, body = await reader.call("POST", f"/v1/runs/{'0' * 32}/stop")
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    status, body = await _as(api, "alice").call("GET", "/v1/dead-letters")
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    assert (await _as(api, "ops").call("GET", "/v1/dead-letters"))[0] == 200
    status, body = await api.call("GET", "/v1/runs", token="sb_not-a-key")
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_a_key_reaches_only_its_own_runs_and_sessions(api: Api,
                                                            system: RunningSystem) -> None:
    alice, bob, ops = _as(api, "alice"), _as(api, "bob"), _as(api, "ops")
    run = await alice.submit("hello from alice", session="alice-own")
    run_id = run["run_id"]
    done = await alice.settled(run_id)
    assert done["status"] == "done" and done["client"] == "alice"
    for path in (f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/events",
                 f"/v1/runs/{run_id}/wait", "/v1/sessions/alice-own"):
        status, body = await bob.call("GET", path)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    status, body = await bob.call("POST", f"/v1/runs/{run_id}/terminate")
    assert status == 404
    status, body = await _post(bob, {"message": "let me in", "session": "alice-own"})
    assert (status, body["error"]["code"]) == (403, "session_owned")
    listed = (await bob.call("GET", "/v1/runs?client=alice"))[1]["runs"]
    assert listed == []
    mine = (await bob.call("GET", "/v1/runs"))[1]["runs"]
    assert all(r["client"] == "bob" for r in mine)
    seen = (await ops.call("GET", "/v1/runs?client=alice"))[1]["runs"]
    assert run_id in [r["run_id"] for r in seen]
    assert (await ops.call("GET", f"/v1/runs/{run_id}"))[0] == 200
    assert (await ops.call("GET", "/v1/runs?bot=api&client=alice"))[1]["runs"]
    assert (await ops.call("GET", "/v1/runs?bot=discord"))[1]["runs"] == []
    # The access log names the key that asked, never the key itself.
    await eventually(lambda: any(" - alice [" in line for line in list(system.output)),
                     within_s=30, what="an access-log line naming alice")
    assert not any(key in line for line in list(system.output) for key in KEYS.values())


async def test_a_key_over_its_rate_gets_429_with_retry_after(api: Api) -> None:
    slow = _as(api, "slow")
    statuses = []
    for _ in range(4):
        async with api.http.get(api.base + "/v1/runs",
                                headers={"Authorization": f"Bearer {KEYS['slow']}"}
                                ) as response:
            statuses.append(response.status)
            body, retry_after = await response.json(), response.headers.get("Retry-After")
    assert statuses == [200, 200, 200, 429]
    assert body["error"]["code"] == "rate_limited"
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert (await _as(api, "reader").call("GET", "/v1/runs"))[0] == 200  # its own rate
    assert (await slow.call("GET", "/healthz"))[0] == 200  # no key needed: not counted


async def test_runs_per_day_are_counted_across_api_replicas(api: Api, replica: Api) -> None:
    alice, alice_there = _as(api, "alice"), _as(replica, "alice")
    status, body = await alice.call("GET", "/v1/runs?client=alice&limit=100")
    started = len(body["runs"])
    assert started < QUOTA
    first = None
    for i in range(QUOTA - started):
        client = alice if i % 2 else alice_there
        status, body = await _post(client, {"message": f"hello {i}"},
                                   {"Idempotency-Key": f"quota-{i}"})
        assert status == 202, body
        first = first or body["run_id"]
    for client in (alice, alice_there):
        status, body = await _post(client, {"message": "one too many"})
        assert (status, body["error"]["code"]) == (429, "quota_exceeded")
    # A repeat of an earlier request is answered with its run, not counted.
    status, body = await _post(alice, {"message": "hello 0"}, {"Idempotency-Key": "quota-0"})
    assert status == 202 and body["run_id"] == first
    # Bob's quota is his own; his Idempotency-Key is not alice's.
    status, body = await _post(_as(api, "bob"), {"message": "hello 0"},
                               {"Idempotency-Key": "quota-0"})
    assert status == 202 and body["run_id"] != first


async def test_terminate_ends_a_run_now_and_frees_its_session(api: Api) -> None:
    bob = _as(api, "bob")
    long = await bob.submit("[long 60] write a python module in many steps",
                            session="bob-stuck")
    waiting = await bob.submit("hello after the long one", session="bob-stuck")
    await until(lambda: bob.run(long["run_id"]), lambda r: r["turn"] >= 1,
                within_s=WITHIN_S, what="the long run's first turn")
    status, body = await _as(api, "reader").call(
        "POST", f"/v1/runs/{long['run_id']}/terminate")
    assert (status, body["error"]["code"]) == (403, "insufficient_scope")
    status, body = await bob.call("POST", f"/v1/runs/{long['run_id']}/terminate")
    assert (status, body["status"]) == (202, "aborted")
    run = await bob.run(long["run_id"])
    assert run["status"] == "aborted" and run["error"]["code"] == "terminated"
    assert "bob" in run["error"]["message"]
    assert (await bob.settled(waiting["run_id"]))["status"] == "done"  # the session went on
    status, body = await bob.call("POST", f"/v1/runs/{long['run_id']}/terminate")
    assert status == 409
    assert (await bob.run(long["run_id"]))["status"] == "aborted"  # stays so


async def test_a_failed_run_is_retried_from_its_checkpoint(api: Api, tmp_path: Path) -> None:
    bob = _as(api, "bob")
    marker = tmp_path / "refused"
    run = await bob.submit(f"[flaky 8 {marker}] write a python module in eight steps")
    run_id = run["run_id"]
    failed = await bob.settled(run_id)
    assert failed["status"] == "failed", failed
    assert marker.exists()
    status, body = await bob.call("POST", f"/v1/runs/{'0' * 32}/retry")
    assert status == 404
    status, body = await bob.call("POST", f"/v1/runs/{run_id}/retry")
    assert status == 202 and body["run_id"] == run_id, body
    done = await bob.settled(run_id)
    assert done["status"] == "done" and done["retries"] == 1 and done["error"] is None, done
    calls = [int(n) for n in (tmp_path / "refused.calls").read_text().split()]
    refused_at = calls.index(6)
    after = calls[refused_at + 1:]
    # The agent's calls after the retry start from the tool results of its checkpoint
    # (turn 5) and none repeats turns 1-4: it went on from its last saved turn. (A call
    # holding none is the planner's, which plans the request again.)
    assert min(n for n in after if n) == 5 and not set(after) & {1, 2, 3, 4}, calls
    assert 6 in after and 8 in after, calls
    status, body = await bob.call("POST", f"/v1/runs/{run_id}/retry")
    assert (status, body["error"]["code"]) == (409, "not_retryable")
