"""Webhooks on run end: when a write settles a run that has a webhook, one API replica claims
the delivery (a compare-and-set of the run record: ``webhook_state`` ``""`` → ``delivering``,
``webhook_claim`` its id; the replica whose write wins delivers, any other leaves it), POSTs
``{"type": "run.<status>", "timestamp", "data": <the run>}`` signed per Standard Webhooks
(``api._webhook_rules``), and retries a failed attempt (no 2xx within the timeout) after
``backoff_s``, doubling, ``attempts`` times in all. Each attempt is kept on the run record
and published as an execution event (actor ``api``, kind ``webhook_attempt``, then
``webhook_delivered`` or ``webhook_failed``; ``value`` the HTTP status, 0 for none), so
``switchboard events tail`` shows it.

A replica that stops (or dies) while delivering leaves the delivery where it was:
``delivering``, with the attempts made so far; nothing delivers it again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import aiohttp
import msgspec
import nats.errors
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from nats.aio.client import Client

from api._records import RunRecord
from api._store import RunStore
from api._webhook_rules import WebhookConfig, check_url, headers, public_address
from api.errors import ApiError, StoreError
from core.tasks import cancel_and_wait
from protocol import ExecutionEvent, Subjects, encoder

_log = logging.getLogger(__name__)

ACTOR = "api"
"""The ``actor`` of the webhook execution events (subject ``<prefix>.event.api.<kind>.*``)."""
DELIVERING, DELIVERED, FAILED = "delivering", "delivered", "failed"
STOP_TIMEOUT_S = 5.0

_json = msgspec.json.Encoder()


class PublicResolver(AbstractResolver):
    """A resolver that refuses a host any of whose addresses is not public (a name that
    points inside the network), unless the host is in ``allow_hosts``; the addresses it
    returns are the ones the connection then uses, so a second lookup cannot change them."""

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self._inner = DefaultResolver()
        self._allow = allow_hosts

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The addresses of ``host``.

        Raises:
            OSError: one of them is not public and ``host`` is not allowed.
        """
        found = await self._inner.resolve(host, port, family)
        if host.lower() not in self._allow and not all(
                public_address(r["host"]) for r in found):
            msg = f"webhook host {host} resolves to an address that is not public"
            raise OSError(msg)
        return found

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def _claim(replica: str) -> Callable[[RunRecord], RunRecord]:
    def change(record: RunRecord) -> RunRecord:
        if not record.webhook or record.webhook_state:
            return record
        return msgspec.structs.replace(record, webhook_state=DELIVERING, webhook_claim=replica)
    return change


def _attempted(attempt: int, status: int) -> Callable[[RunRecord], RunRecord]:
    def change(record: RunRecord) -> RunRecord:
        return msgspec.structs.replace(record, webhook_attempts=attempt, webhook_status=status)
    return change


class Webhooks:
    """Delivers the webhooks of the runs this replica settles (see the module docstring).

    Args:
        store: the runs (its ``settled_hooks`` get ``on_settled``).
        nc: publishes the execution events.
        subjects: the deployment's names.
        config: URLs allowed, signing key, attempts and backoff.
    """

    def __init__(self, store: RunStore, nc: Client, subjects: Subjects,
                 config: WebhookConfig) -> None:
        self.store, self.nc, self.subjects, self.config = store, nc, subjects, config
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        store.settled_hooks.append(self.on_settled)

    def on_settled(self, record: RunRecord) -> None:
        """Start delivering ``record``'s webhook, if it has one (a named task)."""
        if not record.webhook or not self.config.key:
            return
        task = asyncio.create_task(self._deliver(record.run_id),
                                   name=f"webhook:{record.run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop every delivery under way and close the HTTP client."""
        for task in list(self._tasks):
            await cancel_and_wait(task, timeout_s=STOP_TIMEOUT_S, what=task.get_name())
        if self._http is not None:
            await self._http.close()

    async def _deliver(self, run_id: str) -> None:
        try:
            changed = await self.store.update(run_id, _claim(self.replica))
            if changed is None or changed[0].webhook_state or \
                    changed[1].webhook_claim != self.replica:
                return  # another replica claimed it, or it has none
            await self._attempts(changed[1])
        except StoreError as exc:
            _log.warning("webhook of run %s: %s", run_id, exc)
        except Exception:  # a bug must not go unseen in a background task
            _log.exception("webhook of run %s failed", run_id)

    async def _attempts(self, record: RunRecord) -> None:
        body = _json.encode({
            "type": f"run.{record.status}",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            "data": record.view()})
        msg_id = f"msg_{record.run_id}"
        delays = self.config.delays()
        for attempt, delay in enumerate(delays, 1):
            await asyncio.sleep(delay)
            started = time.monotonic()
            status, problem = await self._post(record.webhook, msg_id, body)
            ok = 200 <= status < 300
            await self.store.update(record.run_id, _attempted(attempt, status))
            await self._event(record, "webhook_attempt", status, time.monotonic() - started,
                              f"attempt {attempt}/{len(delays)}: {problem or status}")
            if ok:
                await self._finish(record, DELIVERED, status, f"delivered at attempt {attempt}")
                return
        await self._finish(record, FAILED, status, f"gave up after {len(delays)} attempts")

    async def _finish(self, record: RunRecord, state: str, status: int, detail: str) -> None:
        await self.store.update(record.run_id, lambda r: msgspec.structs.replace(
            r, webhook_state=state))
        await self._event(record, f"webhook_{state}", status, 0.0, detail)
        _log.info("webhook of run %s %s: %s", record.run_id, state, detail)

    async def _post(self, url: str, msg_id: str, body: bytes) -> tuple[int, str]:
        """One attempt: the HTTP status (0 with the reason when there is none)."""
        try:
            target = check_url(url, self.config)
        except ApiError as exc:
            return 0, str(exc)
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=PublicResolver(self.config.allow_hosts)),
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        try:
            async with self._http.post(
                    target, data=body, allow_redirects=False,
                    headers=headers(self.config.key, msg_id, int(time.time()), body)) as answer:
                return answer.status, ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 0, f"{type(exc).__name__}: {str(exc)[:200]}"

    async def _event(self, record: RunRecord, kind: str, status: int, duration_s: float,
                     detail: str) -> None:
        """Publish one execution event of the delivery (not confirmed, as every event)."""
        event = ExecutionEvent(
            event_id=uuid.uuid4().hex, session=record.session, actor=ACTOR, kind=kind,
            at=time.time(), duration_ms=duration_s * 1000, detail=detail,
            trace_id=record.trace_id, request_id=record.run_id, value=status)
        subject = self.subjects.event(actor=ACTOR, kind=kind, session=record.session)
        try:
            await self.nc.publish(subject, encoder.encode(event))
        except nats.errors.Error as exc:  # observability: a lost event is logged
            _log.warning("webhook event %s of run %s not published: %s", kind,
                         record.run_id, exc)
