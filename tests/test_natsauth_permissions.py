"""A nats-server running the configuration of
`switchboard nats-config`, every process of `switchboard up` its own nkey identity
(SB_NATS_CREDS_DIR). Every flow works — Discord (the gateway's identity) and the terminal
(the CLI's) — and the server refuses a role that publishes outside its subjects or reads
another role's stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import nats
import nats.errors
import nats.js.errors
import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import containing, discord_system, wait_until_tracked
from system import REPO, running_system, stop_up, system_env
from waiting import eventually, until

from core.config import ActorSpec, Settings, load_topology
from core.errors import AuthError, PermissionDeniedError
from natsauth import NatsConfig, new_seed, refusal, write_nats_config
from protocol import SessionState, Subjects, session_decoder
from runtime.bus import connect, ensure_consumer, provision
from switchboard.embedded import EmbeddedNats, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SUBJECTS = Subjects()
TOPOLOGY = load_topology()
TASK = "write a python function that reverses a string and test it"
SLOW_TIER_2 = {1: ["offline/tier-1"], 2: [{"name": "offline/tier-2", "params": {"delay_s": 0.6}}],
               3: ["offline/tier-3"], 4: ["offline/tier-4"]}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[EmbeddedNats, NatsConfig]]:
    """A nats-server that knows only the identities of `switchboard nats-config`."""
    creds = write_nats_config(TOPOLOGY, tmp_path / "creds")
    server = EmbeddedNats(tmp_path / "nats", config=creds.server_config).start()
    try:
        yield server, creds
    finally:
        server.stop()


def violations(server: EmbeddedNats) -> list[str]:
    """The server's log lines of refused publishes and subscriptions."""
    log = server.store_dir / "nats-server.log"
    return [line for line in log.read_text().splitlines() if "Violation" in line]


async def _session(settings: Settings, session: str) -> SessionState:
    nc = await connect(settings.nats_url or "", name="test/cli", settings=settings)
    try:
        kv = await nc.jetstream().key_value(SUBJECTS.sessions_bucket)
        return session_decoder.decode((await kv.get(session)).value or b"")
    finally:
        await nc.close()


async def _cases(settings: Settings) -> int:
    nc = await connect(settings.nats_url or "", name="test/cli", settings=settings)
    try:
        return (await nc.jetstream().stream_info(SUBJECTS.cases_stream)).state.messages
    finally:
        await nc.close()


async def switchboard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``switchboard`` command as a user would."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "switchboard.cli", *args], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=120, check=False)


def as_identity(creds: NatsConfig, identity: str, url: str) -> Settings:
    return Settings(NATS_URL=url, NATS_CREDS=str(creds.seeds[identity]))


async def test_every_flow_works_with_each_process_its_own_identity(
        secured: tuple[EmbeddedNats, NatsConfig], tmp_path: Path,
        discord_standin: DiscordStandIn) -> None:  # noqa: F811
    server, creds = secured
    s = discord_standin
    env = {"SB_NATS_CREDS_DIR": str(creds.seeds["cli"].parent)}
    async with discord_system(server.url, tmp_path, s, env=env, tiers=SLOW_TIER_2) as system:
        alice = s.alice["id"]
        # SIMPLE, and a 👎 (the gateway's control to the reflector).
        hello = await s.post_user_message(s.channel_id, alice, "hello")
        [answer] = await s.wait_for(lambda: containing(s, s.channel_id, "SB_MODEL"),
                                    timeout=60, what="the answer to hello")
        await s.add_user_reaction(s.channel_id, answer["id"], alice, "👎")
        # SEQUENTIAL with an attachment (artifacts), its commit merged with 👍 (a control to
        # the role), and the evaluator, reflector and case base behind it.
        data = b"name,value\nx,1\n"
        task = await s.post_user_message(s.channel_id, alice, TASK, files={"data.csv": data})
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [commit] = await s.wait_for(lambda: containing(s, thread["id"], "👍 to merge"),
                                    timeout=120, what="the commit message")
        assert "reverse_string.py" in s.attachment_bytes(commit)
        await wait_until_tracked(s, commit)
        await s.add_user_reaction(thread["id"], commit["id"], alice, "👍")
        await s.wait_for(lambda: containing(s, thread["id"], "Merged"), timeout=60,
                         what="the merge confirmation")
        workspace = system.data_dir / "workspaces" / f"discord-{thread['id']}"
        assert (workspace / "data.csv").read_bytes() == data
        # 🛑 on a second run: the abort on the control stream, read by the role.
        await s.post_user_message(thread["id"], alice, TASK + " again, in a new file")
        [status] = await s.wait_for(lambda: containing(s, thread["id"], "Turn 1/"),
                                    timeout=60, what="the status message of the second run")
        await s.add_user_reaction(thread["id"], status["id"], alice, "🛑")
        await s.wait_for(lambda: containing(s, thread["id"], "Stopped at turn"), timeout=60,
                         what="the run stopped at the next turn")
        # BRANCH from the terminal (the CLI's identity), and the events it can read.
        result = await switchboard(
            {**system.env, **env}, "chat", "--session", "terminal-branch", "--message",
            "what are the pros and cons of different approaches to caching?")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Pros" in result.stdout or "pros" in result.stdout, result.stdout
        tail = await switchboard({**system.env, **env}, "events", "tail", "--json", "--session",
                                 "terminal-branch", "--last", "50", "--limit", "3")
        assert tail.returncode == 0, tail.stderr
        assert [json.loads(line)["session"] for line in tail.stdout.splitlines()] == [
            "terminal-branch"] * 3
        # What the reflector stored: the 👎's reflection, the run's case.
        cli = as_identity(creds, "cli", server.url)
        state = await until(lambda: _session(cli, f"discord-{hello['id']}"),
                            lambda st: st.reflections, within_s=30, what="the 👎's reflection")
        assert state.confidence == 30  # 50 - 20 (docs/design.md#feedback-and-confidence)
        assert await _cases(cli) >= 1
        # Deleting the thread: the reflector deletes the session and its artifacts.
        await s.delete_thread(thread["id"])
        await eventually(lambda: not workspace.exists(), within_s=30,
                         what="deleting the thread deletes its workspace")
    assert violations(server) == [], "\n".join(violations(server))


async def test_the_http_api_runs_as_its_own_identity(
        secured: tuple[EmbeddedNats, NatsConfig], tmp_path: Path) -> None:
    server, creds = secured
    listen = f"127.0.0.1:{free_port()}"
    env = {"SB_NATS_CREDS_DIR": str(creds.seeds["cli"].parent), "SB_API_TOKEN": "t0ken",
           "SB_API_LISTEN": listen, "SB_API_WEBHOOK_SECRET": "hook-secret",
           "SB_API_WEBHOOK_ATTEMPTS": "1"}
    headers = {"Authorization": "Bearer t0ken"}
    context = running_system(server.url, tmp_path, extra_env=env)
    await asyncio.to_thread(context.__enter__)
    try:
        async with aiohttp.ClientSession(f"http://{listen}", headers=headers) as http:
            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get("/healthz") as response:
                        return (await response.json())["status"] == "ok"
                return False

            await eventually(healthy, within_s=60, what="the API's /healthz says ok")
            # The operations routes read consumers, the events and the DLQ as the api identity.
            for path in ("/metrics", "/v1/dead-letters", "/v1/dead-letters/1"):
                async with http.get(path) as response:
                    assert response.status in {200, 404}, (path, await response.text())
            # A webhook to a name that resolves to loopback: refused when called, and its
            # attempt published as the api identity's execution events.
            async with http.post("/v1/runs", json={"message": TASK, "tags": ["perm"],
                                                   "webhook": "http://localhost:9/hook"},
                                 headers={"Idempotency-Key": "perm-1"}) as response:
                assert response.status == 202, await response.text()
                run_id = (await response.json())["run_id"]

            async def run() -> dict[str, object]:
                async with http.get(f"/v1/runs/{run_id}") as response:
                    return dict(await response.json())

            done = await until(run, lambda r: r["status"] != "queued" and r["status"] != "running",
                               within_s=90, what="the run to end")
            assert done["status"] == "done", done
            assert "reverse_string.py" in done["files"], done  # type: ignore[operator]
            async with http.get(f"/v1/runs/{run_id}/files/reverse_string.py") as response:
                assert response.status == 200 and b"def " in await response.read()
            async with http.get(f"/v1/runs/{run_id}/events") as response:  # replayed to the end
                assert response.status == 200
                assert b"event: answer" in await response.read()
            # The runs index, the session and the wait read the runs bucket as the api identity.
            async with http.get("/v1/runs?tag=perm") as response:
                assert [r["run_id"] for r in (await response.json())["runs"]] == [run_id]
            for path in (f"/v1/sessions/{done['session']}", f"/v1/runs/{run_id}/wait"):
                async with http.get(path) as response:
                    assert response.status == 200, (path, await response.text())
            failed = await until(run, lambda r: r["webhook"]["state"] == "failed",  # type: ignore[index]
                                 within_s=30, what="the webhook to be refused")
            assert failed["webhook"]["attempts"] == 1  # type: ignore[index]
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)
    assert violations(server) == [], "\n".join(violations(server))


async def test_a_role_is_refused_outside_its_subjects_and_other_roles_streams(
        secured: tuple[EmbeddedNats, NatsConfig]) -> None:
    server, creds = secured
    cli = await connect(server.url, name="test/cli", settings=as_identity(creds, "cli", server.url))
    coder = await connect(server.url, name="python_coder/9",
                          settings=as_identity(creds, "python_coder", server.url))
    try:
        admin = cli.jetstream(timeout=5)
        await provision(admin, TOPOLOGY, TOPOLOGY.roles)
        await ensure_consumer(admin, SUBJECTS, "classifier", ActorSpec())
        stream = SUBJECTS.task_stream("classifier")
        await admin.publish(SUBJECTS.task("classifier"), b"{}", timeout=5)
        js = coder.jetstream(timeout=1)

        # Its own subjects work: a task for the evaluator is stored.
        ack = await js.publish(SUBJECTS.task("evaluator"), b"{}")
        assert ack.stream == SUBJECTS.task_stream("evaluator")

        # Publishing outside them: the server drops it and says so.
        with pytest.raises(nats.errors.TimeoutError):
            await js.publish(SUBJECTS.task("classifier"), b"{}")
        await eventually(lambda: refusal(coder, SUBJECTS.task("classifier")) is not None,
                         within_s=5, what="the server refused the publish")

        # Reading another role's stream: pulling from its consumer, making a consumer of
        # one's own on it, reading a message directly, subscribing to its subject or to
        # other identities' replies.
        pull = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{SUBJECTS.durable('classifier')}"
        with pytest.raises(nats.errors.TimeoutError):
            await coder.request(pull, b'{"batch": 1}', timeout=1)
        with pytest.raises(PermissionDeniedError, match=r"CONSUMER\.DURABLE\.CREATE"):
            await ensure_consumer(js, SUBJECTS, "classifier", ActorSpec())
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_msg(stream, seq=1, direct=True)
        await coder.subscribe(SUBJECTS.task("classifier"))
        await coder.subscribe("_INBOX.>")
        await coder.flush()
        for subject in (pull, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.sb-classifier",
                        f"$JS.API.DIRECT.GET.{stream}", SUBJECTS.task("classifier"),
                        "_INBOX.>"):
            def refused(subject: str = subject) -> bool:
                return refusal(coder, subject) is not None

            await eventually(refused, within_s=5, what=f"the server refused {subject}")
        info = await admin.consumer_info(stream, SUBJECTS.durable("classifier"))
        assert info.num_pending == 1 and info.delivered.stream_seq == 0  # nothing was read
        assert (await admin.stream_info(stream)).state.messages == 1
        denied = refusal(coder, pull)  # what the role is told names it and the subject
        assert denied is not None and denied.subject == pull and "python_coder/9" in str(denied)
    finally:
        await coder.close()
        await cli.close()


async def test_a_client_without_a_known_key_is_refused(
        secured: tuple[EmbeddedNats, NatsConfig], tmp_path: Path) -> None:
    server, _creds = secured
    with pytest.raises(AuthError, match="refused this process's credentials"):
        await connect(server.url, name="anonymous", settings=Settings(), reconnect=False)
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(new_seed() + b"\n")
    with pytest.raises(AuthError):
        await connect(server.url, name="stranger", settings=Settings(NATS_CREDS=str(stranger)),
                      reconnect=False)


def test_up_runs_the_embedded_server_with_the_identities(tmp_path: Path) -> None:
    """`switchboard nats-config DIR` then `SB_NATS_CREDS_DIR=DIR switchboard up`, without
    NATS_URL: the embedded server takes DIR/nats-server.conf."""
    creds = tmp_path / "creds"
    env = system_env("", tmp_path / "data", REPO / "topology.yaml")
    env.pop("NATS_URL")
    made = subprocess.run([sys.executable, "-m", "switchboard.cli", "nats-config", str(creds)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "18 identities" in made.stdout
    port = free_port()
    env["SB_NATS_CREDS_DIR"] = str(creds)
    up = subprocess.Popen([sys.executable, "-m", "switchboard.cli", "up", "--port", str(port)],
                          env=env, cwd=REPO, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if "Switchboard is up" in line:
                break
        else:
            raise AssertionError("switchboard up exited")
        threading.Thread(target=up.stdout.read, daemon=True).start()  # keep the pipe drained
        chat = subprocess.run([sys.executable, "-m", "switchboard.cli", "chat", "-m", "hello",
                               "--timeout", "60"], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=90, check=False)
        assert chat.returncode == 0, chat.stdout + chat.stderr
        assert "offline model" in chat.stdout
        anonymous = {k: v for k, v in env.items() if k != "SB_NATS_CREDS_DIR"}
        refused = subprocess.run([sys.executable, "-m", "switchboard.cli", "chat", "-m", "hello",
                                  "--timeout", "10"], env=anonymous, cwd=REPO,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "refused this process's credentials" in refused.stdout, refused.stdout
    finally:
        stop_up(up)
