"""``POST /v1/runs`` beyond the body's own schema: the ``webhook`` URL allowed, the
``Idempotency-Key`` (``api._idempotency``, one namespace per API key) and the key's quota of
runs (``api._limits``) before the run is submitted."""

from __future__ import annotations

import uuid

from api._idempotency import Idempotency, KeyEntry, fingerprint
from api._keys import ApiKey
from api._limits import Quotas
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
        quotas: each API key's runs per day.
    """

    def __init__(self, runs: RunService, keys: Idempotency, webhooks: WebhookConfig,
                 quotas: Quotas) -> None:
        self.runs, self.keys, self.webhooks, self.quotas = runs, keys, webhooks, quotas

    async def submit(self, request: RunRequest, key: str | None, caller: ApiKey
                     ) -> tuple[RunRecord, bool]:
        """Submit ``request`` for API key ``caller`` (see ``RunService.submit``), once per
        idempotency ``key`` of that API key (another API key's same ``key`` is another).

        Returns:
            The run as stored, and whether it is an earlier request's (``key`` seen before
            with the same body).

        Raises:
            WebhookRefusedError: a ``webhook`` the API will not call.
            IdempotencyKeyReusedError: ``key`` came before with another body.
            IdempotencyInProgressError: ``key``'s first request has stored no run yet.
            QuotaExceededError: ``caller`` started its runs of the day (a replay of an earlier
                request is still answered).
            SessionBusyError, SessionOwnedError, StoreError, UnavailableError: as
                ``RunService.submit``.
        """
        if request.webhook is not None:
            check_url(request.webhook, self.webhooks)
        run_id = uuid.uuid4().hex
        if key is not None:
            key = f"{caller.name}\x00{key}"
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
            await self.quotas.take(caller)
        except ApiError:
            if key is not None:
                await self.keys.forget(key)
            raise
        try:
            return await self.runs.submit(request, run_id, client=caller.name,
                                          owner=caller.owner), False
        except ApiError:
            if key is not None:
                await self.keys.forget(key)
            await self.quotas.give_back(caller)
            raise
