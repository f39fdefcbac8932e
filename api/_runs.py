"""Runs of the HTTP API: submitted, queued per session, sent to the actors, stopped, and
updated from what the actors answer on the API's outbox.

A session has one run with the actors at a time, as a Discord thread does
(``gateway.discord._intake``): a later run waits in the session's queue (KV, so every API
replica sees it) and goes out when the run before it is answered, by whichever replica
records that answer.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable

from api import _records as rec
from api._records import ORIGIN, RunRecord, SessionQueue
from api._schema import Decision, MultitaskStrategy, RunRequest, RunStatus, RunView
from api._store import RunStore
from api._tracing import run_traceparent
from api.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    NotRetryableError,
    SessionBusyError,
    SessionOwnedError,
    StoreError,
    UnavailableError,
)
from gateway.approvals import decision_control
from gateway.bridge import Bridge
from gateway.errors import NotRunningError
from gateway.render import render_options
from protocol import (
    ApprovalRequest,
    ConsolidatedOptions,
    Control,
    ControlAction,
    Flow,
    Outbound,
    Progress,
    Reply,
)

_log = logging.getLogger(__name__)

QUEUE_STALE_S = 900.0
"""A run unanswered this long stops holding its session (the Discord gateway's
``SB_GATEWAY_QUEUE_STALE_S`` default)."""
DEFAULT_USER = "api"


class _Busy(Exception):
    """Raised inside a queue change: ``reject`` and the session has a run in progress."""


class _Owned(Exception):
    """Raised inside a queue change: the session is another API key's."""


class RunService:
    """Submits, stops and records runs (see the module docstring).

    Args:
        store: the API's buckets.
        bridge: sends requests and controls to the actors as origin ``api``.
        clock: Unix seconds now.
        stale_s: seconds after which an unanswered run stops holding its session.
        default_webhook: the URL called when a run that names none ends ("": none).
    """

    def __init__(self, store: RunStore, bridge: Bridge, *,
                 clock: Callable[[], float] = time.time, stale_s: float = QUEUE_STALE_S,
                 default_webhook: str = "") -> None:
        self.store = store
        self.bridge = bridge
        self.clock = clock
        self.stale_s = stale_s
        self.default_webhook = default_webhook

    # ------------------------------------------------------------------ requests

    async def submit(self, request: RunRequest, run_id: str | None = None, *,
                     client: str = "", owner: str | None = None) -> RunRecord:
        """Record a new run (``run_id``: 32 hex digits, default a new one) of API key
        ``client`` and send it, or queue it behind its session's active run as
        ``request.multitask_strategy`` says: ``enqueue`` waits, ``reject`` is refused,
        ``interrupt`` goes next and stops the active run. ``owner`` (None: any) is the key
        whose sessions alone the run may join (``ApiKey.owner``).

        Returns:
            The run as stored (``queued``).

        Raises:
            SessionBusyError: ``reject``, and the session has a run in progress (nothing is
                kept of this one).
            SessionOwnedError: the session is another key's (nothing is kept of this one).
            StoreError: the runs bucket did not answer (nothing was sent).
            UnavailableError: the actors' stream did not take the request (the run is stored
                as ``failed``).
        """
        run_id = run_id or uuid.uuid4().hex
        now = self.clock()
        strategy = request.multitask_strategy
        record = RunRecord(
            run_id=run_id, session=request.session or f"api-{run_id}",
            user=request.user or DEFAULT_USER, message=request.message,
            traceparent=run_traceparent(rec.new_traceparent()), created_at=now,
            updated_at=now, tags=tuple(request.tags), metadata=request.metadata,
            webhook=request.webhook or self.default_webhook, client=client)
        await self.store.create(record)

        def _admit(queue: SessionQueue) -> SessionQueue:
            if owner is not None and queue.client not in ("", owner):
                raise _Owned
            if strategy is MultitaskStrategy.REJECT and rec.busy(queue, now, self.stale_s):
                raise _Busy(queue.active)
            return rec.owned(rec.admit(queue, run_id, now, self.stale_s,
                                       first=strategy is MultitaskStrategy.INTERRUPT), client)

        try:
            queue = await self.store.change_queue(record.session, _admit)
        except _Busy as busy:
            await self.store.discard(record)
            msg = (f"session {record.session} has run {busy.args[0]} in progress "
                   "(multitask_strategy: reject)")
            raise SessionBusyError(msg) from None
        except _Owned:
            await self.store.discard(record)
            msg = f"session {record.session} was started by another API key"
            raise SessionOwnedError(msg) from None
        except StoreError as exc:
            reason = f"the run could not be queued: {exc}"
            await self.store.update(run_id, lambda r: rec.send_failed(r, reason, now))
            raise
        if queue.active != run_id:
            _log.info("run %s waits in session %s behind %s", run_id, record.session,
                      queue.active)
            if strategy is MultitaskStrategy.INTERRUPT:
                await self._interrupt(queue.active, run_id)
            return record
        await self._send_or_release(record)
        return record

    async def _interrupt(self, active: str, by: str) -> None:
        """Stop ``active`` for run ``by`` (``interrupt``); one that ended meanwhile is left."""
        try:
            await self.stop(active)
        except (ConflictError, NotFoundError) as exc:
            _log.info("run %s: %s not interrupted: %s", by, active, exc)
            return
        _log.info("run %s interrupts run %s", by, active)

    async def get(self, run_id: str, owner: str | None = None) -> RunRecord:
        """The stored run; with ``owner``, only a run API key ``owner`` submitted.

        Raises:
            NotFoundError: no such run (or it is another key's: a key learns nothing of the
                runs of others, not even that they exist).
            StoreError: the runs bucket did not answer.
        """
        record = await self.store.get(run_id)
        if record is None or owner not in (None, record.client):
            msg = f"no run {run_id}"
            raise NotFoundError(msg)
        return record

    async def view(self, run_id: str, owner: str | None = None) -> RunView:
        """The run's public state. A ``paused`` run whose question was answered (its
        session's checkpoint moved on) reads as ``done``: the answer's own run carries on.

        Raises:
            NotFoundError: no such run.
            StoreError: a bucket did not answer.
        """
        record = await self.get(run_id, owner)
        return record.view(await self.current_status(record))

    async def current_status(self, record: RunRecord) -> RunStatus:
        """``record.status``, except ``done`` for a paused run that was answered."""
        if record.status is RunStatus.PAUSED and not await self.store.paused(
                record.session, record.run_id):
            return RunStatus.DONE
        return record.status

    async def stop(self, run_id: str, owner: str | None = None) -> RunRecord:
        """Stop a run: one still waiting in its session's queue is aborted at once; one with
        the actors is aborted at its next turn (one waiting on an approval: its approval is
        denied, so it resumes and stops) (the abort control goes out as soon as its
        agentic loop runs: ``<prefix>.control.<session>``). A run with no loop (one-turn
        answers) finishes normally.

        Returns:
            The run as stored after the request.

        Raises:
            NotFoundError: no such run.
            ConflictError: it finished already, or it is paused (answer it instead).
            StoreError: a bucket did not answer.
            UnavailableError: the control could not be published.
        """
        record = await self.get(run_id, owner)
        if record.finished:
            msg = f"run {run_id} is {record.status} already"
            raise ConflictError(msg)
        if record.status is RunStatus.PAUSED:
            msg = (f"run {run_id} is paused on a question: answer it with a new run in "
                   f"session {record.session}")
            raise ConflictError(msg)
        now = self.clock()
        if not record.sent_at:
            changed = await self.store.update(run_id, lambda r: rec.stopped_before_sent(r, now))
            if changed is not None and changed[1].status is RunStatus.ABORTED:
                _log.info("run %s stopped before it was sent", run_id)
                await self._release(changed[1])
                return changed[1]
        changed = await self.store.update(run_id, lambda r: rec.stopping(r, now))
        if changed is None:
            msg = f"no run {run_id}"
            raise NotFoundError(msg)
        after = await self._abort_if_due(changed[1])
        if after.status is RunStatus.AWAITING_APPROVAL and after.approval is not None:
            # Stopped for an approval, the loop reads no abort: deny it, so the run resumes
            # and finds the abort before it runs anything.
            after = await self.decide(run_id, after.approval.approval_id, Decision.DENY, None)
        return after

    async def decide(self, run_id: str, approval_id: str, decision: Decision,
                     user: str | None, owner: str | None = None) -> RunRecord:
        """Send ``decision`` on approval ``approval_id`` of the run, made by ``user`` (None:
        the run's own user), docs/design.md#approvals.

        Returns:
            The run as stored after (``running`` again).

        Raises:
            NotFoundError: no such run.
            ForbiddenError: ``user`` is not the run's user.
            ConflictError: the run does not wait on that approval (decided, expired, another).
            StoreError: a bucket did not answer.
            UnavailableError: the decision could not be published.
        """
        record = await self.get(run_id, owner)
        if user is not None and user != record.user:
            msg = f"only {record.user}, who asked for run {run_id}, may decide its approvals"
            raise ForbiddenError(msg)
        pending = record.approval
        if (record.status is not RunStatus.AWAITING_APPROVAL or pending is None
                or pending.approval_id != approval_id):
            msg = f"run {run_id} does not wait on approval {approval_id} (it is {record.status})"
            raise ConflictError(msg)
        await self._publish_decision(record, approval_id, decision)
        changed = await self.store.update(
            run_id, lambda r: rec.approval_decided(r, approval_id, self.clock()))
        return changed[1] if changed else record

    async def retry(self, run_id: str, owner: str | None = None) -> RunRecord:
        """Send a failed run again, under its own id: it joins its session's queue as a new
        run would (``enqueue``) and goes out with a new message id, so the actors take it
        again; an agent finds the run's checkpoint and goes on from its last saved turn
        (``actors.run_control.resume_from``: ``continue``), a one-turn answer is made anew.

        Returns:
            The run as stored after (``queued``, or ``running`` once sent).

        Raises:
            NotFoundError: no such run (of ``owner``).
            NotRetryableError: the run did not fail.
            StoreError: a bucket did not answer.
            UnavailableError: the actors' stream did not take it (it is ``failed`` again).
        """
        record = await self.get(run_id, owner)
        now = self.clock()
        changed = await self.store.update(run_id, lambda r: rec.retried(r, now))
        if changed is None or changed[1].retries == record.retries:
            current = changed[1].status if changed else record.status
            msg = f"run {run_id} is {current}: only a failed run is retried"
            raise NotRetryableError(msg)
        retried = changed[1]
        queue = await self.store.change_queue(
            retried.session, lambda q: rec.admit(q, run_id, now, self.stale_s))
        _log.info("run %s retried (attempt %d)", run_id, retried.retries + 1)
        if queue.active != run_id:
            return retried
        return await self._send_or_release(retried)

    async def terminate(self, run_id: str, by: str, owner: str | None = None) -> RunRecord:
        """End a run now, as API key ``by`` asks, whatever the actors do (Temporal's
        terminate): it is ``aborted`` at once, its session goes to the next run, and the
        actors are told to stop (the abort control, the denial of an approval it waits on)
        in case they still work on it. For a run the actors lost (a dead letter, a replica
        gone), where ``stop`` would wait for an answer that never comes.

        Returns:
            The run as stored after (``aborted``).

        Raises:
            NotFoundError: no such run (of ``owner``).
            ConflictError: it ended already, or it is paused (answer it instead).
            StoreError: a bucket did not answer.
            UnavailableError: the stop could not be published to the actors (the run is
                aborted here all the same).
        """
        record = await self.get(run_id, owner)
        if record.settled:
            msg = f"run {run_id} is {record.status} already"
            raise ConflictError(msg)
        changed = await self.store.update(
            run_id, lambda r: rec.terminated(r, by, self.clock()))
        if changed is None or changed[1].status is not RunStatus.ABORTED:
            msg = f"run {run_id} ended meanwhile"
            raise ConflictError(msg)
        after = changed[1]
        _log.info("run %s terminated by API key %s", run_id, by)
        await self._release(after)
        pending = record.approval
        if record.sent_at:
            await self._abort(after)
        if record.status is RunStatus.AWAITING_APPROVAL and pending is not None:
            await self._publish_decision(record, pending.approval_id, Decision.DENY)
        return after

    # ------------------------------------------------------------------ the actors' answers

    async def on_outbound(self, message: Outbound) -> None:
        """Record a Progress, Reply, ConsolidatedOptions or ApprovalRequest for an API run; a
        final answer frees the run's session for the next run. Safe to repeat (a redelivery).

        Raises:
            StoreError: a bucket did not answer (the message is redelivered later).
            UnavailableError: the next run of the session could not be sent (likewise).
        """
        run_id, now = message.in_reply_to, self.clock()
        match message:
            case Progress():
                changed = await self.store.update(
                    run_id, lambda r: rec.progressed(r, message, now))
            case Reply():
                paused = (message.error is None and message.flow is Flow.SEQUENTIAL
                          and await self.store.paused(message.session, run_id))
                if message.files:
                    await self.store.put_files(run_id, message.files)
                changed = await self.store.update(
                    run_id, lambda r: rec.answered(r, message, paused=paused, now=now))
            case ConsolidatedOptions():
                text = render_options(message)
                changed = await self.store.update(
                    run_id, lambda r: rec.options_answered(r, message, text, now))
            case ApprovalRequest():
                changed = await self.store.update(
                    run_id, lambda r: rec.approval_asked(r, message, now))
        if changed is None:
            _log.warning("outbox: %s for unknown run %s dropped", type(message).__name__, run_id)
            return
        after = await self._abort_if_due(changed[1])
        if after.settled and isinstance(message, Reply | ConsolidatedOptions):
            await self._release(after)

    # ------------------------------------------------------------------ sending

    async def _send(self, record: RunRecord) -> RunRecord:
        """Mark the run sent, unless it was stopped meanwhile, then send its ChatMessage
        (JetStream de-duplicates a repeat by its message id). The mark comes first, so a stop
        either finds the run still waiting (and aborts it) or already sent (and aborts its
        loop), never both.

        Returns:
            The run as stored after: sent; stopped meanwhile (not sent); or ``failed`` when
            the actors' stream did not take it.

        Raises:
            StoreError: the runs bucket did not answer.
        """
        now = self.clock()
        changed = await self.store.update(record.run_id, lambda r: rec.sent(r, now))
        if changed is None or changed[1].settled:
            return changed[1] if changed else record
        try:
            await self.bridge.send(
                record.chat_message(), traceparent=record.traceparent,
                msg_id=f"chat:{record.session}:{record.run_id}:retry{record.retries}"
                if record.retries else "")
        except NotRunningError as exc:
            reason = f"the actors did not take the run: {exc}"
            _log.warning("run %s: %s", record.run_id, reason)
            failed = await self.store.update(
                record.run_id, lambda r: rec.send_failed(r, reason, self.clock()))
            return failed[1] if failed else changed[1]
        _log.info("run %s sent (session %s)", record.run_id, record.session)
        return changed[1]

    async def _send_or_release(self, record: RunRecord) -> RunRecord:
        """Send the run that holds its session now (``_send``); when the actors did not take
        it, free the session for the next run.

        Raises:
            StoreError: the runs bucket did not answer.
            UnavailableError: the actors' stream did not take it (it is ``failed``).
        """
        sent = await self._send(record)
        if sent.status is RunStatus.FAILED:
            await self._release(sent)
            msg = sent.error.message if sent.error else f"run {record.run_id} was not sent"
            raise UnavailableError(msg)
        return sent

    async def _release(self, record: RunRecord) -> None:
        """Free ``record``'s session and send the run that is next in it; one that was
        stopped meanwhile or that the actors did not take frees the session in turn.

        Raises:
            StoreError: the runs bucket did not answer.
        """
        current = record
        while True:
            queue: SessionQueue = await self.store.change_queue(
                current.session,
                functools.partial(rec.release, run_id=current.run_id, now=self.clock()))
            if not queue.active or queue.active == current.run_id:
                return
            following = await self.store.get(queue.active)
            if following is None or (following.sent_at and not following.settled):
                return  # out already (or expired: the session frees itself when stale)
            if not following.settled:
                following = await self._send(following)
                if not following.settled:
                    return
            current = following

    async def _publish_decision(self, record: RunRecord, approval_id: str,
                                decision: Decision) -> None:
        """Publish ``decision`` on the approval ``approval_id`` ``record`` waits on.

        Raises:
            UnavailableError: it could not be published.
        """
        role = record.approval.role if record.approval is not None else ""
        action = ControlAction.APPROVE if decision is Decision.APPROVE else ControlAction.DENY
        try:
            await self.bridge.control(decision_control(
                action, session=record.session, role=role, approval_id=approval_id,
                user_id=f"api:{record.user}", request_id=record.run_id),
                traceparent=record.traceparent)
        except NotRunningError as exc:
            msg = f"the decision on run {record.run_id} was not published: {exc}"
            raise UnavailableError(msg) from exc
        _log.info("run %s: approval %s %s", record.run_id, approval_id, decision)

    async def _abort_if_due(self, record: RunRecord) -> RunRecord:
        """Publish the abort of ``record`` when it was asked to stop and its loop runs, then
        note it was sent (a repeat before that is de-duplicated by JetStream: one message id
        per run). Returns the run as stored after that.

        Raises:
            UnavailableError: the control was not published (the next Progress tries again).
        """
        if not rec.abort_due(record):
            return record
        await self._abort(record)
        changed = await self.store.update(record.run_id, rec.abort_noted)
        return changed[1] if changed else record

    async def _abort(self, record: RunRecord) -> None:
        """Publish the abort control of ``record``'s session (de-duplicated per run)."""
        try:
            await self.bridge.control(Control(
                session=record.session, action=ControlAction.ABORT, user_id=f"api:{record.user}",
                message_id=f"stop-{record.run_id}", origin=ORIGIN))
        except NotRunningError as exc:
            msg = f"the stop of run {record.run_id} was not published: {exc}"
            raise UnavailableError(msg) from exc
        _log.info("run %s: abort published for session %s", record.run_id, record.session)

