"""The approval requests the Interactions endpoint showed (docs/design.md#approvals): where
each one's decision goes and who asked, kept in memory (bounded) and, with a KV bucket, in
it too, so a click after the endpoint restarted is still decided."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

_log = logging.getLogger(__name__)

KV_TIMEOUT_S = 5.0
KEPT = 10_000
"""Approvals remembered in memory (the oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class ShownApproval:
    """An approval request shown through the endpoint: its session and role (where the
    decision goes), who asked (they, the bot's admins and members who manage messages may
    decide) and the request it belongs to."""

    session: str
    role: str
    user_id: str
    request_id: str


class ShownApprovals:
    """Approval id → ``ShownApproval``.

    Args:
        kv: the gateway's messages bucket (keys ``ia.<approval id>``); None: memory only.
    """

    def __init__(self, kv: KeyValue | None = None) -> None:
        self._kv = kv
        self._kept: collections.OrderedDict[str, ShownApproval] = collections.OrderedDict()

    async def keep(self, approval_id: str, shown: ShownApproval) -> None:
        """Remember ``shown``; a bucket that does not take it is logged (the click then finds
        it in memory, unless the endpoint restarts)."""
        self._kept[approval_id] = shown
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        await self._put(approval_id, json.dumps(dataclasses.asdict(shown)).encode())

    async def get(self, approval_id: str) -> ShownApproval | None:
        """The approval shown as ``approval_id``: from memory, else from the bucket."""
        if (shown := self._kept.get(approval_id)) is not None or self._kv is None:
            return shown
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, TimeoutError,
                                 nats.errors.Error, ValueError, TypeError):
            async with asyncio.timeout(KV_TIMEOUT_S):
                entry = await self._kv.get(f"ia.{approval_id}")
            if entry.value:
                shown = ShownApproval(**json.loads(entry.value))
        return shown

    async def forget(self, approval_id: str) -> None:
        """It was decided here."""
        self._kept.pop(approval_id, None)
        await self._put(approval_id, b"")

    async def _put(self, approval_id: str, value: bytes) -> None:
        if self._kv is None:
            return
        try:
            async with asyncio.timeout(KV_TIMEOUT_S):
                await self._kv.put(f"ia.{approval_id}", value)
        except (TimeoutError, nats.errors.Error) as exc:
            _log.warning("approval %s: not kept for after a restart: %s", approval_id, exc)
