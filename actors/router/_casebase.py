"""The case base in JetStream: every replica sees every case.

Cases live in the ``<PREFIX>_CASES`` stream, one subject per case (``<prefix>.case.<id>``,
one message kept per subject, at most ``cases.max_cases`` messages, the oldest discarded:
``runtime.bus``). Each process that routes or plans keeps a ``CaseIndex`` fed by an ordered
consumer that delivers the last message of every case subject and then each new one, so a
case written on one replica is ranked on all of them within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from actors.router._cases import CaseIndex
from core.errors import BrokerError
from protocol import Case, Subjects, case_decoder, encoder

_log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0


class CaseBase:
    """Reads and writes cases; ``index`` always holds what the stream holds (eventually).

    Use ``await CaseBase.open(js, subjects, limit=...)``; ``close()`` stops following.
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, index: CaseIndex) -> None:
        self.js, self.subjects, self.index = js, subjects, index
        self._sub: object | None = None
        self._caught_up = asyncio.Event()

    @classmethod
    async def open(cls, js: JetStreamContext, subjects: Subjects, *, limit: int) -> CaseBase:
        """Follow the cases stream and wait (at most 10 s) until the index holds what it held
        when opened.

        Raises:
            BrokerError: the stream is missing (Switchboard not provisioned) or JetStream
                does not answer.
        """
        base = cls(js, subjects, CaseIndex(limit))
        await base._follow()
        return base

    async def _follow(self) -> None:
        try:
            info = await self.js.stream_info(self.subjects.cases_stream)
            if info.state.messages == 0:
                self._caught_up.set()
            self._sub = await self.js.subscribe(  # naming the stream saves a STREAM.NAMES call
                self.subjects.cases_all, stream=self.subjects.cases_stream, ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, cb=self._on_case,
            )
        except nats.js.errors.NotFoundError as exc:
            msg = f"no {self.subjects.cases_stream} stream: is Switchboard provisioned?"
            raise BrokerError(msg) from exc
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"following the case base failed: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        try:
            async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                await self._caught_up.wait()
        except TimeoutError:
            _log.warning("case base: not caught up after %.0f s (%d cases so far); going on",
                         CATCH_UP_TIMEOUT_S, len(self.index))

    async def _on_case(self, msg: Msg) -> None:
        try:
            self.index.put(case_decoder.decode(msg.data))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("case base: skipping an unreadable case on %s: %s", msg.subject, exc)
        with contextlib.suppress(Exception):  # metadata of an ordered consumer's message
            if msg.metadata.num_pending == 0:
                self._caught_up.set()

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()  # type: ignore[attr-defined]

    async def put(self, case: Case) -> None:
        """Store ``case`` (replacing an earlier value of its id) and index it here at once.

        Raises:
            BrokerError: JetStream did not store it within 10 s.
        """
        try:
            await self.js.publish(self.subjects.case(case.case_id), encoder.encode(case),
                                  timeout=PUBLISH_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"storing case {case.case_id} failed: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        self.index.put(case)

    async def update(self, case_id: str, change: Callable[[Case], Case]) -> Case | None:
        """Replace case ``case_id`` by ``change(case)``; None when there is no such case.

        Raises:
            BrokerError: JetStream failed.
        """
        case = self.index.get(case_id) or await self._read(case_id)
        if case is None:
            return None
        updated = change(case)
        await self.put(updated)
        return updated

    async def _read(self, case_id: str) -> Case | None:
        try:
            raw = await self.js.get_last_msg(self.subjects.cases_stream,
                                             self.subjects.case(case_id), direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"reading case {case_id} failed: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        if raw.data is None:
            return None
        return case_decoder.decode(raw.data)
