"""Secrets never leak: a whole flow runs with known fake secrets — the NATS
password, a model provider's key, the HTTP API's token — and none of them appears in any log
line of any process, in any execution event, in the terminal chat's output or in an API
answer (the refusals included)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from openai_standin import OpenAIStandin
from system import REPO, running_system
from waiting import eventually

from protocol import Subjects
from switchboard.embedded import EmbeddedNats, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NATS_USER, NATS_PASSWORD = "switchboard", "nats-pw-Zq81-do-not-log"
MODEL_KEY = "sk-fake-model-key-7Hc2-do-not-log"
API_TOKEN = "api-token-Rm49-do-not-log"
SECRETS = (NATS_PASSWORD, MODEL_KEY, API_TOKEN)


@pytest.fixture
def authenticated_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    config = tmp_path / "nats.conf"
    config.write_text(
        f'authorization {{ user: "{NATS_USER}", password: "{NATS_PASSWORD}" }}\n')
    with EmbeddedNats(tmp_path / "nats", config=config) as server:
        yield server


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def _api(base: str, method: str, path: str, token: str, body: bytes | None = None
         ) -> tuple[int, str]:
    request = urllib.request.Request(base + path, data=body, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


async def _all_events(url: str) -> list[str]:
    nc = await nats.connect(url, user=NATS_USER, password=NATS_PASSWORD)
    try:
        js = nc.jetstream()
        info = await js.stream_info(Subjects().events_stream)
        sub = await js.subscribe(Subjects().events_all, ordered_consumer=True)
        events = []
        for _ in range(info.state.messages):
            events.append((await sub.next_msg(timeout=5)).data.decode())
        return events
    finally:
        await nc.close()


def test_no_secret_reaches_a_log_an_event_or_an_answer(
        authenticated_nats: EmbeddedNats, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    with OpenAIStandin(models=("alpha",), api_keys=(MODEL_KEY,)).in_thread() as model:
        env = {"NATS_USER": NATS_USER, "NATS_PASSWORD": NATS_PASSWORD,
               "SB_MODEL": "openai/alpha", "OPENAI_API_KEY": MODEL_KEY,
               "OPENAI_BASE_URL": model.base_url, "OPENAI_API_BASE": model.base_url,
               "SB_API_TOKEN": API_TOKEN, "SB_API_LISTEN": listen, "SB_LOG_LEVEL": "DEBUG"}
        (tmp_path / "sb").mkdir()
        with running_system(authenticated_nats.url, tmp_path / "sb", extra_env=env) as system:
            chat_env = {**system.env, **env}
            outputs = []
            for text in ("hello there", "write a python function that reverses a string "
                                        "and test it"):
                chat = subprocess.run(
                    [sys.executable, "-m", "switchboard.cli", "chat", "--session", "secrets",
                     "--message", text], env=chat_env, cwd=REPO, capture_output=True,
                    text=True, timeout=150, check=False)
                assert chat.returncode == 0, chat.stdout + chat.stderr
                outputs += [chat.stdout, chat.stderr]
            wrong = subprocess.run(  # a refused connection says why, without the password
                [sys.executable, "-m", "switchboard.cli", "chat", "--message", "hi"],
                env={**chat_env, "NATS_PASSWORD": NATS_PASSWORD + "-wrong"}, cwd=REPO,
                capture_output=True, text=True, timeout=60, check=False)
            assert wrong.returncode != 0
            outputs += [wrong.stdout, wrong.stderr]

            base = f"http://{listen}"

            def healthy() -> bool:
                try:
                    return _api(base, "GET", "/healthz", "")[0] == 200
                except OSError:
                    return False

            asyncio.run(eventually(healthy, within_s=60, what="the API to answer /healthz"))
            status, body = _api(base, "POST", "/v1/runs", API_TOKEN,
                                json.dumps({"message": "hello again"}).encode())
            assert status == 202, body
            run_id = json.loads(body)["run_id"]
            answers = [body]

            def settled() -> bool:
                answers.append(_api(base, "GET", f"/v1/runs/{run_id}", API_TOKEN)[1])
                return json.loads(answers[-1])["status"] in {"done", "failed"}

            asyncio.run(eventually(settled, within_s=60, what="the API run to end"))
            for token in ("", API_TOKEN[:-1], API_TOKEN + "x", "Bearer " + API_TOKEN):
                answers.append(_api(base, "GET", f"/v1/runs/{run_id}", token)[1])
            events = asyncio.run(_all_events(authenticated_nats.url))
        logs = "".join(system.output)
    assert "answer" in answers[-5] or json.loads(answers[-5])["status"] == "done"
    assert len(events) > 20 and len(logs.splitlines()) > 50  # there was plenty to leak into
    leaks = {name: _leaks(text) for name, text in
             [("logs", logs), ("chat", "\n".join(outputs)), ("api", "\n".join(answers)),
              ("events", "\n".join(events))]}
    assert not any(leaks.values()), leaks
    for directory in (tmp_path / "sb",):
        for path in directory.rglob("*"):
            if path.is_file() and path.suffix in {".log", ".json", ".txt"}:
                assert not _leaks(path.read_text(errors="replace")), path
