"""``POST /v1/runs`` beyond the body's own schema: the ``webhook`` URL allowed, and the
``Idempotency-Key`` (``api._idempotency``) before the run is submitted."""

from __future__ import annotations

import uuid

from api._idempotency import Idempotency, KeyEntry, fingerprint
from api._records import RunRecord
from api._runs import RunService
from api._schema import RunRequest
from api._webhook_rules import WebhookConfig, check_url
from api.errors import ApiError, IdempotencyInProgressError


class Submitter:
    """Checks and submits new runs.

    Args:
        runs: submits and reads runs.
        keys: the idempotency keys.
        webhooks: which webhook URLs are allowed (and whether webhooks are on).
    """

    def __init__(self, runs: RunService, keys: Idempotency, webhooks: WebhookConfig) -> None:
        self.runs, self.keys, self.webhooks = runs, keys, webhooks

    async def submit(self, request: RunRequest, key: str | None) -> tuple[RunRecord, bool]:
        """Submit ``request`` (see ``RunService.submit``), once per idempotency ``key``.

        Returns:
            The run as stored, and whether it is an earlier request's (``key`` seen before
            with the same body).

        Raises:
            WebhookRefusedError: a ``webhook`` the API will not call.
            IdempotencyKeyReusedError: ``key`` came before with another body.
            IdempotencyInProgressError: ``key``'s first request has stored no run yet.
            SessionBusyError, StoreError, UnavailableError: as ``RunService.submit``.
        """
        if request.webhook is not None:
            check_url(request.webhook, self.webhooks)
        run_id = uuid.uuid4().hex
        if key is not None:
            earlier = await self.keys.claim(key, KeyEntry(
                run_id=run_id, fingerprint=fingerprint(request),
                created_at=self.runs.clock()))
            if earlier is not None:
                record = await self.runs.store.get(earlier)
                if record is None:
                    msg = f"the first request with this key (run {earlier}) is not done yet"
                    raise IdempotencyInProgressError(msg)
                return record, True
        try:
            return await self.runs.submit(request, run_id), False
        except ApiError:
            if key is not None:
                await self.keys.forget(key)
            raise
