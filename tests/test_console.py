"""The browser console end to end: ``switchboard up`` with the HTTP API on a real nats-server
(the scripted model through the genuine litellm path; ``run_command`` asks for approval), and
the page driven in Debian's Chromium by Playwright. Through the browser: the key prompt (again
after a wrong key), a run submitted from the page and followed live (its timeline over SSE
with a model call's tokens, its span waterfall, its file downloaded), the list's live status,
a session, Stop and Terminate on a running run, Retry on a failed run (done after it),
Approve on a run waiting for approval, every role with a replica, and the analytics report
drawn as charts. A screenshot of each view goes to ``$SB_TEST_ARTIFACTS/console`` (default
``test-artifacts/console``). The two JSON routes the console reads besides the run routes
(``/v1/roles``, ``/v1/analytics/report``) are checked through aiohttp too.

Chromium missing skips the module, unless ``SB_TEST_REQUIRE_CHROMIUM=1`` (CI, whose
``.ci/run`` installs it): then it fails."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from api_client import TOKEN, WITHIN_S, Api
from api_system import (  # noqa: F401 (the fixtures api, system)
    api_env_fixture,
    api_fixture,
    api_listen_fixture,
    system_fixture,
)
from playwright.async_api import Page, async_playwright
from system import REPO, RunningSystem

from analytics._report import SECTIONS
from core.config import Settings, load_topology

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
WAIT_MS = 90_000
"""How long the page may take to show what a run does, in milliseconds."""


def _tools() -> dict[str, Any]:
    tools = dict(yaml.safe_load((REPO / "topology.yaml").read_text())["tools"])
    return {**tools, "approval": {"run_command": "ask"}, "approval_timeout_s": 300}


API_TOPOLOGY = {"tools": _tools()}
"""Over api_system's topology: ``run_command`` asks for approval (the ``[ask]`` script)."""


def _artifacts() -> Path:
    base = os.environ.get("SB_TEST_ARTIFACTS")
    folder = Path(base) / "console" if base else REPO / "test-artifacts" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("SB_TEST_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is not installed and SB_TEST_REQUIRE_CHROMIUM=1")
        pytest.skip("chromium is not installed (apt install chromium)")
    return found


@pytest_asyncio.fixture(name="page")
async def page_fixture(api: Api) -> AsyncIterator[Page]:
    """A Chromium page (headless) on nothing yet; fails the test when the page threw or the
    browser reported a Content-Security-Policy violation."""
    chromium = _chromium()
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = await browser.new_context(accept_downloads=True,
                                                viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(message.text)
                    if "Content Security Policy" in message.text else None)
            yield page
        finally:
            await browser.close()
    assert not problems, problems


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(_artifacts() / f"{name}.png"), full_page=True)


async def _enter_key(page: Page, key: str) -> None:
    await page.wait_for_selector("#key-overlay:not([hidden])")
    await page.fill("#key-input", key)
    await page.click("#key-save")


async def _open(page: Page, api: Api, route: str = "") -> None:
    """The console at ``#/route``, the right key entered."""
    await page.goto(f"{api.base}/#/{route}")
    await _enter_key(page, TOKEN)
    await page.wait_for_selector("#key-overlay", state="hidden")


async def test_a_wrong_key_gets_the_key_prompt_again(page: Page, api: Api) -> None:
    await page.goto(f"{api.base}/")
    await _shot(page, "key-prompt")
    await _enter_key(page, "not-the-key")
    await page.wait_for_selector("#key-overlay:not([hidden])")
    assert await page.text_content("#key-reason") == "The API refused the key: enter it again."
    assert await page.evaluate("sessionStorage.length") == 0
    await _enter_key(page, TOKEN)
    await page.wait_for_selector("#runs")
    assert await page.is_hidden("#key-overlay")


async def test_a_run_submitted_in_the_page_is_followed_live(page: Page, api: Api) -> None:
    await _open(page, api)
    await page.fill("#message", "[commit] write a python script hello.py")
    await page.fill("#submit-session", "console-one")
    await page.click("#submit")
    await page.wait_for_url(re.compile(r"#/runs/[0-9a-f]{32}$"))
    run_id = page.url.rsplit("/", 1)[1]
    await page.wait_for_selector('#run-head[data-status="done"]')
    await page.wait_for_selector('#stream-state[data-state="ended"]')
    tokens = await page.get_attribute('#timeline tr[data-kind="model_call"] td[data-tokens]',
                                      "data-tokens")
    assert tokens and re.fullmatch(r"[\d,]+/[\d,]+", tokens) and tokens != "0/0", tokens
    kinds = await page.eval_on_selector_all("#timeline tr", "rows => rows.map(r => r.dataset.kind)")
    assert {"run", "classified", "model_call", "end"} <= set(kinds), kinds
    await page.wait_for_selector("#waterfall rect.span")
    spans = await page.eval_on_selector_all("#waterfall rect.span", "r => r.length")
    assert spans >= 3, spans
    async with page.expect_download() as info:
        await page.click('#run-files button[data-path="hello.py"]')
    download = await info.value
    assert download.suggested_filename == "hello.py"
    saved = await download.path()
    assert await asyncio.to_thread(Path(saved).read_text) == "print('hello')\n"
    await _shot(page, "run")

    await page.click('[data-field="session"] a')
    await page.wait_for_selector(f'#runs-table tr[data-run-id="{run_id}"]')
    assert await page.text_content('#session-state [data-field="busy"]') == "no"
    await _shot(page, "session")


_FOLLOW = """async ({ runId, cutAt }) => {
    const { follow } = await import("/console/sse.js");
    const realFetch = window.fetch;
    const lastIds = [];
    window.fetch = async (url, init) => {
        lastIds.push(init.headers["Last-Event-ID"] || "");
        const response = await realFetch(url, init);
        if (lastIds.length > 1 || !cutAt) {
            return response;
        }
        // The first connection drops after cutAt bytes, in the middle of an event.
        const reader = response.body.getReader();
        let left = cutAt;
        const body = new ReadableStream({ async pull(controller) {
            const { value, done } = await reader.read();
            if (done || left <= 0) {
                reader.cancel();
                controller.close();
                return;
            }
            controller.enqueue(value.slice(0, left));
            left -= value.length;
        } });
        return new Response(body, { status: response.status, headers: response.headers });
    };
    const got = [];
    try {
        await follow(`/v1/runs/${runId}/events`, { signal: new AbortController().signal,
            onEvent: (type, data) => got.push(`${type} ${JSON.stringify(data)}`) });
    } finally {
        window.fetch = realFetch;
    }
    return { lastIds, got };
}"""


async def test_the_page_s_event_stream_resumes_after_a_dropped_connection(
        page: Page, api: Api) -> None:
    accepted = await api.submit("[long 3] write a python module in three steps",
                                session="console-resume")
    assert (await api.settled(accepted["run_id"]))["status"] == "done"
    await _open(page, api, "runs")
    whole = await page.evaluate(_FOLLOW, {"runId": accepted["run_id"], "cutAt": 0})
    assert whole["lastIds"] == [""] and whole["got"][-1].startswith("end ")
    cut = await page.evaluate(_FOLLOW, {"runId": accepted["run_id"], "cutAt": 2500})
    first, resumed = cut["lastIds"][:2]
    assert first == "" and re.fullmatch(r"\d+\.\d+\.[a-z_-]+", resumed), cut["lastIds"]
    assert cut["got"] == whole["got"]  # nothing twice, nothing left out, in order


async def test_the_list_shows_a_run_s_status_live(page: Page, api: Api) -> None:
    accepted = await api.submit("[long 4] write a python module in four steps",
                                session="console-list")
    run_id = accepted["run_id"]
    await _open(page, api, "runs")
    row = f'#runs-table tr[data-run-id="{run_id}"]'
    await page.wait_for_selector(row)
    await page.wait_for_selector(f'{row} .badge[data-status="done"]')
    await page.select_option('#filters select[name="status"]', "done")
    await page.fill('#filters input[name="session"]', "console-list")
    await page.click('#filters button[type="submit"]')
    await page.wait_for_url(re.compile(r"status=done"))
    await page.wait_for_selector(row)
    assert await page.eval_on_selector_all("#runs-table tbody tr", "r => r.length") == 1
    await _shot(page, "runs")


async def test_stop_aborts_a_running_run_and_terminate_ends_one_now(page: Page,
                                                                    api: Api) -> None:
    accepted = await api.submit("[long 60] write a python module in many steps",
                                session="console-stop")
    await _open(page, api, f"runs/{accepted['run_id']}")
    await page.wait_for_selector('#run-head[data-status="running"]')
    await page.wait_for_selector('#timeline tr[data-kind="turn"]')
    await page.click("#stop")
    await page.wait_for_selector('#run-head[data-status="aborted"]')
    assert await page.is_hidden("#stop") and await page.is_hidden("#retry")  # not failed
    await _shot(page, "run-aborted")
    second = await api.submit("[long 60] write a python module in many steps",
                              session="console-terminate")
    await page.goto(f"{api.base}/#/runs/{second['run_id']}")  # the key is kept: no prompt
    await page.wait_for_selector('#timeline tr[data-kind="turn"]')
    await page.click("#terminate")
    await page.wait_for_selector('#run-head[data-status="aborted"]')
    error = await page.text_content('[data-field="error"]') or ""
    assert error.startswith("terminated:"), error
    assert (await api.run(second["run_id"]))["error"]["code"] == "terminated"


async def test_retry_sends_a_failed_run_again(page: Page, api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "refused"  # the scripted model refuses the run's 7th call once
    accepted = await api.submit(f"[flaky 8 {marker}] write a python module in eight steps",
                                session="console-retry")
    await _open(page, api, f"runs/{accepted['run_id']}")
    await page.wait_for_selector('#run-head[data-status="failed"]', timeout=WITHIN_S * 1000)
    await _shot(page, "run-failed")
    await page.click("#retry")
    await page.wait_for_selector('#run-head[data-status="done"]', timeout=WITHIN_S * 1000)
    run = await api.run(accepted["run_id"])
    assert run["status"] == "done" and run["retries"] == 1


async def test_approve_lets_a_waiting_run_go_on(page: Page, api: Api) -> None:
    accepted = await api.submit("[ask] write a python script and run the check",
                                session="console-approve")
    await _open(page, api, f"runs/{accepted['run_id']}")
    await page.wait_for_selector('#run-head[data-status="awaiting_approval"]')
    await page.wait_for_selector("#approval")
    assert "run_command" in (await page.text_content("#approval") or "")
    await page.wait_for_selector('#timeline tr[data-kind="approval"].notable')
    await _shot(page, "run-approval")
    await page.click("#approve")
    await page.wait_for_selector('#run-head[data-status="done"]')
    await page.wait_for_selector('#timeline tr[data-kind="approval_decided"]')
    assert await page.is_hidden("#approval")


async def test_roles_and_analytics_views(page: Page, api: Api,
                                         system: RunningSystem) -> None:
    settings = Settings(topology=system.topology_path, data_dir=system.data_dir)
    roles = list(load_topology(settings=settings).roles)
    await _open(page, api, "roles")
    await page.wait_for_function("""(roles) => roles.every((role) => {
        const row = document.querySelector(`#roles-table tr[data-role="${role}"]`);
        return row && Number(row.querySelector('[data-field="replicas"]').textContent) >= 1;
    })""", arg=roles)
    shown = await page.eval_on_selector_all("#roles-table tbody tr",
                                            "rows => rows.map(r => r.dataset.role)")
    assert shown == roles
    assert await page.text_content("#scale")
    await _shot(page, "roles")

    await page.click("#nav-analytics")
    await page.wait_for_selector('#analytics-status[data-ready="true"]')
    sections = await page.eval_on_selector_all("#charts svg.chart",
                                               "charts => charts.map(c => c.dataset.section)")
    assert "model_usage" in sections and "outcomes" in sections, sections
    bars = await page.eval_on_selector_all('svg.chart[data-section="model_usage"] rect.bar',
                                           "r => r.length")
    assert bars >= 1
    await _shot(page, "analytics")


async def test_the_roles_and_report_routes(api: Api, system: RunningSystem) -> None:
    accepted = await api.submit("[commit] write a python script hello.py",
                                session="console-report")
    assert (await api.settled(accepted["run_id"]))["status"] == "done"
    status, body = await api.call("GET", "/v1/roles")
    assert status == 200
    settings = Settings(topology=system.topology_path, data_dir=system.data_dir)
    assert [r["role"] for r in body["roles"]] == list(load_topology(settings=settings).roles)
    assert set(body["roles"][0]) >= {"role", "lag", "held", "redelivered", "replicas", "ready"}
    status, first = await api.call("GET", "/v1/analytics/report?since=1h")
    assert status == 200, first
    assert [s["key"] for s in first["sections"]] == [s.key for s in SECTIONS]
    assert first["export"]["total"] > 0  # the analytics view may have exported them already
    models = next(s for s in first["sections"] if s["key"] == "model_usage")
    calls = models["columns"].index("calls")
    assert sum(row[calls] for row in models["rows"]) > 0
    status, again = await api.call("GET", "/v1/analytics/report")  # since 24h, incremental
    assert status == 200 and again["since"] == "24h"
    assert again["export"]["total"] == first["export"]["total"] + again["export"]["added"]
    assert (system.data_dir / "api-events.duckdb").is_file()
    together = await asyncio.gather(*(api.call("GET", "/v1/analytics/report?since=7d")
                                  for _ in range(3)))  # one export at a time, none refused
    assert [status for status, _ in together] == [200, 200, 200], together
    for query in ("since=0h", "since=1w", "since=", "since=100000d"):
        status, error = await api.call("GET", f"/v1/analytics/report?{query}")
        assert (status, error["error"]["code"]) == (400, "bad_request"), query
    for path in ("/v1/roles", "/v1/analytics/report"):
        assert (await api.call("GET", path, token="wrong"))[0] == 401
    async with aiohttp.ClientSession() as http, http.get(f"{api.base}/") as response:
        assert response.status == 200  # the page itself needs no key
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
