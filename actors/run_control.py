"""Run control (docs/design.md#the-agentic-loop): what may happen to a session's SEQUENTIAL run,
decided here and nowhere else, each under the session's run lock (``actors.runs.RunLock``).

- **Run**: a run holds the lock from its start to its pause or end (``RunControl.run``); only
  the holder (``HeldRun``) writes the run's checkpoint and its ``CheckpointStatus``: ``running``
  every few turns, ``paused`` when it asks the person, ``awaiting_approval`` when tool calls
  wait for a person's approval (docs/design.md#approvals), ``done`` or ``aborted`` at the end.
- **Resume**: ``HeldRun.resume`` reads the session's checkpoint and decides how a delivery goes
  on (``Resume``): afresh, from the checkpoint (a redelivery after a crash, the person's
  answer to the run's question, or the decision on its approval), by repeating a finished
  run's answer or its approval request, or not at all.
- **Abort**: a flag anyone publishes on the session's control subject (``actors.runs``); the
  holder reads it before each turn (``HeldRun.abort_requested``).
- **Merge, discard, delete**: 👍 / 👎 on a commit message and a deleted thread take the same
  lock, so a run still committing in or syncing the workspace, or a later run, is never raced.
  While a run holds the lock they wait for it up to ``lock_wait_s`` seconds, then raise
  ``TransientError`` having changed nothing (the control is delivered again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from actors.runs import CheckpointStore, RunLock, abort_requested, control_sequence
from actors.tools import GitRepo
from artifacts import ArtifactStore, Workspace, restore_workspace, sync_to_store
from core.errors import ToolError
from protocol import (
    ActorId,
    Checkpoint,
    CheckpointStatus,
    Control,
    ControlAction,
    RunState,
    Subjects,
)

if TYPE_CHECKING:
    from core.config import ToolPolicy
    from runtime import Services

_FINISHED = frozenset({CheckpointStatus.DONE, CheckpointStatus.ABORTED})


class Resume(enum.Enum):
    """How a delivery of a run goes on from the session's checkpoint (``resume_from``)."""

    FRESH = "fresh"
    """The session has no checkpoint of this run: start afresh."""
    CONTINUE = "continue"
    """Go on from the checkpoint: a redelivery after a crash, or the person's answer to the
    run's question."""
    REPEAT = "repeat"
    """The run finished (with its ``reply``) before its delivery was acked: publish its answer
    and result again."""
    REASK = "reask"
    """The run stopped for an approval before its delivery was acked: publish the approval
    request (and its deadline) again."""
    SKIP = "skip"
    """Nothing to do: an answer to a run that is no longer paused, a decision on an approval
    the run no longer waits on, a duplicate of the request that paused, or a finished run
    with no answer kept."""


def resume_from(checkpoint: Checkpoint | None, request_id: str, *, answering: bool,
                deciding: str = "") -> Resume:
    """How a delivery of run ``request_id`` goes on, given the session's ``checkpoint`` (None:
    there is none); ``answering``: the delivery is the person's answer to the run's question;
    ``deciding``: the ``approval_id`` the delivery decides ("" when it decides none)."""
    if checkpoint is None or checkpoint.request_id != request_id:
        return Resume.SKIP if answering or deciding else Resume.FRESH
    if checkpoint.status == CheckpointStatus.AWAITING_APPROVAL:
        pending = checkpoint.approval
        if deciding:
            return (Resume.CONTINUE if pending is not None and pending.approval_id == deciding
                    else Resume.SKIP)
        return Resume.SKIP if answering else Resume.REASK
    if deciding:
        return Resume.SKIP
    if checkpoint.status in _FINISHED:
        return Resume.REPEAT if checkpoint.reply is not None else Resume.SKIP
    if checkpoint.status == CheckpointStatus.PAUSED and not answering:
        return Resume.SKIP
    return Resume.CONTINUE


def answered(checkpoint: Checkpoint) -> bool:
    """Whether a finished run ended with its answer (``done``, not stopped by an abort)."""
    return checkpoint.status == CheckpointStatus.DONE and checkpoint.reply is not None


async def paused_run(checkpoints: CheckpointStore, session: str) -> Checkpoint | None:
    """The session's run paused on a clarifying question, or None.

    Raises:
        BrokerError: the checkpoints bucket did not answer.
    """
    checkpoint = await checkpoints.load(session)
    if checkpoint is None or checkpoint.status != CheckpointStatus.PAUSED:
        return None
    return checkpoint


class HeldRun:
    """One session's run while this replica holds its lock (``RunControl.run``): the only
    writer of the run's checkpoint.

    ``control_seq`` is the sequence of the session's last control message when the run
    started (``resume`` sets it): only aborts published after it stop this run.
    """

    def __init__(self, lock: RunLock, checkpoints: CheckpointStore, js: JetStreamContext,
                 subjects: Subjects) -> None:
        self._lock, self._checkpoints = lock, checkpoints
        self._js, self._subjects = js, subjects
        self.session = lock.state.session
        self.request_id = lock.state.request_id
        self.control_seq = 0

    async def resume(self, *, answering: bool, deciding: str = ""
                     ) -> tuple[Resume, Checkpoint | None]:
        """How this delivery goes on (``resume_from``), with the run's checkpoint (None unless
        ``CONTINUE``, ``REPEAT`` or ``REASK``); ``answering`` and ``deciding`` as
        ``resume_from``'s.

        Raises:
            BrokerError: the checkpoints bucket did not answer.
        """
        checkpoint = await self._checkpoints.load(self.session)
        how = resume_from(checkpoint, self.request_id, answering=answering, deciding=deciding)
        if how is Resume.FRESH:
            self.control_seq = await control_sequence(self._js, self._subjects, self.session)
            return how, None
        if how is Resume.SKIP or checkpoint is None:
            return Resume.SKIP, None
        self.control_seq = checkpoint.control_seq
        return how, checkpoint

    async def abort_requested(self) -> bool:
        """Whether an abort of the session was published since the run started (a control
        stream that does not answer counts as no abort)."""
        return await abort_requested(self._js, self._subjects, self.session, self.control_seq)

    async def progress(self, *, turn: int, model: str, confidence: int) -> None:
        """Show the run's turn, model and confidence (0-100) in the lock's state (``/status``)
        and renew the lease.

        Raises:
            LockLostError: another holder took the lock.
        """
        await self._lock.update(turn=turn, model=model, confidence=confidence)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` as the state of the running run (status ``running``).

        Raises:
            BrokerError: the checkpoints bucket did not take it.
        """
        await self._store(checkpoint, CheckpointStatus.RUNNING)

    async def pause(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` (its ``question`` asked) as the paused run's: the person's answer
        resumes it (``Resume.CONTINUE``). Raises as ``save``."""
        await self._store(checkpoint, CheckpointStatus.PAUSED)

    async def await_approval(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` (its ``approval`` pending) as the run's that waits for a
        person's approval: a decision on it resumes the run (``Resume.CONTINUE``), on any
        replica, once this one has released the lock. Raises as ``save``."""
        assert checkpoint.approval is not None
        await self._store(checkpoint, CheckpointStatus.AWAITING_APPROVAL)

    async def done(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` (its ``reply`` the answer) as the finished run's. Raises as
        ``save``."""
        await self._store(checkpoint, CheckpointStatus.DONE)

    async def stopped(self, checkpoint: Checkpoint) -> None:
        """Keep ``checkpoint`` (its ``reply`` the stop notice) as the run's stopped by an abort.
        Raises as ``save``."""
        await self._store(checkpoint, CheckpointStatus.ABORTED)

    async def _store(self, checkpoint: Checkpoint, status: CheckpointStatus) -> None:
        checkpoint.status, checkpoint.control_seq = status, self.control_seq
        await self._checkpoints.save(checkpoint)


def artifact_store(services: Services) -> ArtifactStore | None:
    """The deployment's artifact store, as the actors use it (the runtime holds it only as
    something to close), or None when there is none."""
    store = services.artifacts
    return store if isinstance(store, ArtifactStore) else None


class RunControl:
    """Runs of sessions, and the controls on them (see the module docstring).

    Args:
        js: JetStream context; ``subjects`` the deployment's names (the control stream, the
            runs bucket's name).
        runs: the runs bucket (the locks); ``checkpoints`` the checkpoints bucket.
        ttl_s: lease of a lock in seconds (``lock_ttl_s``); ``wait_s`` how long to wait for a
            lock another run holds (``lock_wait_s``).
        workspace_root: the directory of the sessions' workspaces.
        artifacts: the artifact store (``artifacts.ArtifactStore``; None: there is none).
        tools: the tool policy git runs under.
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, runs: KeyValue,
                 checkpoints: KeyValue, *, ttl_s: float, wait_s: float, workspace_root: Path,
                 artifacts: ArtifactStore | None, tools: ToolPolicy) -> None:
        self._js, self._subjects, self._runs = js, subjects, runs
        self._checkpoints = CheckpointStore(checkpoints)
        self._ttl_s, self._wait_s = ttl_s, wait_s
        self._workspace_root, self._artifacts, self._tools = workspace_root, artifacts, tools

    @classmethod
    def of(cls, services: Services) -> RunControl:
        """The run control of an actor process's ``services``."""
        topology = services.topology
        return cls(services.js, services.subjects, services.runs, services.checkpoints,
                   ttl_s=topology.lock_ttl_s, wait_s=topology.lock_wait_s,
                   workspace_root=services.settings.workspace_root,
                   artifacts=artifact_store(services), tools=topology.tools)

    # ------------------------------------------------------------------ reading

    async def paused(self, session: str) -> Checkpoint | None:
        """The session's run paused on a clarifying question, or None (``paused_run``)."""
        return await paused_run(self._checkpoints, session)

    async def awaiting(self, session: str, role: str, approval_id: str) -> Checkpoint | None:
        """The session's checkpoint when its run by ``role`` waits on approval
        ``approval_id``, else None (decided already, timed out, or another run's).

        Raises:
            BrokerError: the checkpoints bucket did not answer.
        """
        checkpoint = await self._checkpoints.load(session)
        if (checkpoint is None or checkpoint.role != role
                or checkpoint.status != CheckpointStatus.AWAITING_APPROVAL
                or checkpoint.approval is None
                or checkpoint.approval.approval_id != approval_id):
            return None
        return checkpoint

    async def checkpoint_of(self, session: str, request_id: str, role: str
                            ) -> Checkpoint | None:
        """The session's checkpoint when it is of run ``request_id`` by ``role`` (whatever its
        status: the run decides with ``resume_from``), else None.

        Raises:
            BrokerError: the checkpoints bucket did not answer.
        """
        checkpoint = await self._checkpoints.load(session)
        if (checkpoint is None or checkpoint.request_id != request_id
                or checkpoint.role != role):
            return None
        return checkpoint

    # ------------------------------------------------------------------ a run

    @contextlib.asynccontextmanager
    async def run(self, session: str, request_id: str, *, by: ActorId, max_turns: int,
                  on_wait: Callable[[RunState], Awaitable[None]] | None = None
                  ) -> AsyncIterator[HeldRun]:
        """Hold the session's run lock for run ``request_id`` by replica ``by`` (at most
        ``max_turns`` turns) while the block runs; ``on_wait`` is awaited once with the
        holder's state when another run holds it (the person is told they are queued).

        Raises:
            TransientError: another run still held the lock after ``lock_wait_s``.
            BrokerError: the runs bucket did not answer.
        """
        state = RunState(session=session, role=by.role, holder=str(by), request_id=request_id,
                         max_turns=max_turns)
        async with self._held(state, on_wait) as held:
            yield held

    @contextlib.asynccontextmanager
    async def _held(self, state: RunState,
                    on_wait: Callable[[RunState], Awaitable[None]] | None = None
                    ) -> AsyncIterator[HeldRun]:
        lock = RunLock(self._js, self._runs, self._subjects.runs_bucket, state,
                       ttl_s=self._ttl_s)
        await lock.acquire(wait_s=self._wait_s, on_wait=on_wait)
        try:
            yield HeldRun(lock, self._checkpoints, self._js, self._subjects)
        finally:
            await lock.release()

    # ------------------------------------------------------------------ controls

    async def merge(self, control: Control, by: ActorId) -> str:
        """👍 on a commit message: merge ``control.branch`` into ``main`` in the session's
        workspace (restored from and synced back to the artifact store), under the session's
        run lock; the person's confirmation text (a git failure is told, not raised).

        Raises:
            TransientError: a run still held the lock after ``lock_wait_s``.
            BrokerError: a bucket did not answer.
        """
        return await self._on_branch(control, by, ControlAction.MERGE)

    async def discard(self, control: Control, by: ActorId) -> str:
        """👎 on a commit message: delete ``control.branch``; as ``merge`` otherwise."""
        return await self._on_branch(control, by, ControlAction.DISCARD)

    async def delete(self, control: Control, by: ActorId) -> int:
        """The session's thread was deleted: remove its stored artifacts, its workspace and its
        checkpoint, under the session's run lock (a run still syncing its workspace finishes
        first). Returns the number of artifacts removed from the store.

        Raises:
            TransientError: a run still held the lock after ``lock_wait_s``.
            BrokerError: a bucket did not answer.
        """
        async with self._held(_control_state(control, by, ControlAction.DELETE_SESSION)):
            removed = 0
            if self._artifacts is not None:
                removed = int(await self._artifacts.delete_session(control.session))
            workspace = Workspace.for_session(self._workspace_root, control.session)
            await asyncio.to_thread(shutil.rmtree, workspace.root, ignore_errors=True)
            await self._checkpoints.delete(control.session)
        return removed

    async def _on_branch(self, control: Control, by: ActorId, action: ControlAction) -> str:

        async with self._held(_control_state(control, by, action)):
            workspace = Workspace.for_session(self._workspace_root, control.session)
            if self._artifacts is not None:
                await restore_workspace(self._artifacts, workspace)
            git = GitRepo(workspace, policy=self._tools)
            try:
                if action is ControlAction.MERGE:
                    sha = await git.merge(control.branch)
                    text = f"✅ Merged `{control.branch}` into `main` ({sha[:12]})."
                else:
                    await git.delete_branch(control.branch)
                    text = f"🗑️ Deleted branch `{control.branch}`."
            except ToolError as exc:
                text = f"⚠️ Could not {action} `{control.branch}`: {exc}"
            if self._artifacts is not None:
                await sync_to_store(self._artifacts, workspace)
        return text


def _control_state(control: Control, by: ActorId, action: ControlAction) -> RunState:
    """The lock's state while replica ``by`` carries out ``action`` on ``control``'s session
    (``/status`` shows the action)."""
    return RunState(session=control.session, role=by.role, holder=str(by), status=str(action),
                    request_id=f"{action}:{control.message_id}")
