"""One SEQUENTIAL run from lock to answer (docs/design.md#the-agentic-loop). The lock, the
checkpoint's status and the abort flag are ``actors.run_control``'s; what the run uses of its
role comes as an ``actors.agent_role.AgentRole``.

1. Take the session's run lock (a second request waits, and the person is told it is queued).
2. Resume from the session's checkpoint when it belongs to this request (a redelivery after a
   crash, the person's answer to a clarifying question, or a decision on an approval);
   otherwise start afresh.
3. Restore the workspace from the artifact store and check out the run's git branch.
4. Turns until done, max turns, an abort, or stuck at the top of the escalation path — then
   ask the person and pause. A turn whose tool calls need a person's approval stops the run
   until someone decides (docs/design.md#approvals): checkpointed, the lock released, the
   approval request shown, and a deadline sent to the role itself; the decision resumes it.
   Each turn's file changes are committed; a checkpoint every 5 turns, at a pause, at an
   approval and at the end.
5. Answer (files attached for ``<<path>>`` markers; branch and commit named, 👍 merges and 👎
   deletes), sync the workspace to the artifact store, hand the trajectory to the evaluator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from actors.agent_loop import LoopState, Outcome, TurnEngine
from actors.answer import cap_answer
from actors.attachments import attachment_reader, restore_images, user_content
from actors.escalation import cause_of
from actors.prompts import render
from actors.router import escalation_levels, start_level
from actors.run_control import HeldRun, Resume, answered
from actors.run_task import RunTask
from actors.runs import CHECKPOINT_EVERY, pack_messages, unpack_messages
from actors.tools import GitRepo, branch_name
from artifacts import Workspace, restore_workspace, sync_to_store
from core.errors import SwitchboardError, ToolError
from modelcall import strip_report
from protocol import (
    APPROVAL_ARGUMENT_CHARS,
    ApprovalCall,
    ApprovalRequest,
    Checkpoint,
    Control,
    ControlAction,
    ErrorCode,
    FileBlob,
    Flow,
    PendingApproval,
    Progress,
    Reply,
    RunState,
    TurnResult,
)

if TYPE_CHECKING:
    from actors.agent_role import AgentRole
    from runtime import MessageContext

MAX_FILE_BYTES = 8 * 1024 * 1024
"""Largest file attached to an answer (Discord's upload limit without boosts)."""
_MARKER = re.compile(r"<<([^<>\n]{1,300})>>")
ANSWER_KEY, RESULT_KEY = "answer", "result"
"""Publish keys of a run's answer and result (``MessageContext.send``): the same on a
redelivery, so a run that finished before its ack is answered and evaluated once."""
APPROVAL_KEY, DEADLINE_KEY = "approval", "approval-deadline"
"""Publish keys of an approval request and of its deadline (likewise, once per delivery)."""


class AgentRun:
    """Runs one SEQUENTIAL task (see the module docstring): a TurnRequest, or the person's
    answer to a paused run (``RunTask``), for ``role`` within the delivery ``ctx``."""

    def __init__(self, role: AgentRole, ctx: MessageContext, task: RunTask) -> None:

        self.agent, self.ctx, self.task = role, ctx, task
        self.role = role.name
        self.reply_to = task.reply_to
        self.session = task.reply_to.session
        self.topology = role.topology
        self.workspace = Workspace.for_session(role.workspace_root, self.session)
        request = task.request
        self.path = escalation_levels(self.topology, role=self.role, overrides=request.models,
                                      tier_min=request.tier_min, tier_max=request.tier_max)
        self.max_turns = max(1, task.max_turns)
        self.engine = TurnEngine(role.answer, ctx, self.workspace, self.path, self.reply_to,
                                 self.max_turns, request.max_tokens, tools=self.topology.tools,
                                 escalates=not role.hosted)
        self.started = time.perf_counter()
        self.branch = ""

    async def run(self) -> None:
        """Run the task under the session's run lock (see the module docstring).

        Raises:
            TransientError: another run held the session's lock for ``lock_wait_s``.
            BrokerError: a bucket did not answer.
            LockLostError: another replica took the lock meanwhile.
            ModelError: as the role's model answer raises.
        """
        async with self.agent.runs.run(self.session, self.task.request_id,
                                       by=self.agent.replica, max_turns=self.max_turns,
                                       on_wait=self._tell_queued) as held:
            state = await self._start_or_resume(held)
            if state is None:
                return
            await self._prepare_workspace()
            servers = {name: self.topology.mcp_servers[name]
                       for name in self.topology.actor(self.role).mcp}
            if not servers:
                await self._turns(state, held)
                return
            # Deferred: the MCP SDK takes most of a second to import, and only roles that use
            # MCP servers need it.
            from actors.tools._mcp import McpTools

            async def on_event(kind: str, detail: str) -> None:
                await self.ctx.emit(kind, detail=detail[:500])

            async with McpTools(servers, self.workspace, self.topology.tools, on_event) as mcp:
                self.engine.mcp = mcp
                try:
                    await self._turns(state, held)
                finally:
                    self.engine.mcp = None

    # ------------------------------------------------------------------ start / resume

    async def _start_or_resume(self, held: HeldRun) -> LoopState | None:
        decision = self.task.decision
        how, checkpoint = await held.resume(
            answering=bool(self.task.answer),
            deciding=decision.approval_id if decision is not None else "")
        if how is Resume.FRESH:
            confidence = await self.agent.memory.confidence(self.session)
            return LoopState(level=self._start_level(), messages=await self._first_messages(),
                             usage=self.task.usage, confidence=confidence)
        if checkpoint is None:  # Resume.SKIP
            return None
        self.branch = checkpoint.branch
        if how in {Resume.REPEAT, Resume.REASK} and checkpoint.delivery not in {
                0, self.ctx.stream_seq}:
            # Another message of the run (a decision, an answer) wrote it and published what
            # it says under its own ids: repeating it here would show it twice.
            await self.ctx.emit("resume_skipped", detail=(
                f"{checkpoint.status} by another delivery (#{checkpoint.delivery})"))
            return None
        if how is Resume.REPEAT:
            await self._repeat(checkpoint)
            return None
        if how is Resume.REASK:
            assert checkpoint.approval is not None
            await self._announce(checkpoint.approval, checkpoint.turn)
            return None
        state = _state_from(checkpoint)
        request = self.task.request
        if await restore_images(state.messages, request.text, request.attachments,
                                attachment_reader(self.agent.artifacts, self.session)):
            await self.ctx.emit("images_restored", detail="the request's images, from the "
                                "workspace")
        if decision is not None:
            await self.ctx.emit("resumed", detail=(
                f"turn {state.turn}: approval {decision.approval_id} "
                + ("approved" if decision.approved else f"denied: {decision.reason}")))
        elif self.task.answer:
            state.messages.append({"role": "user", "content": self.task.answer})
            state.memo.low_turns = state.memo.unchanged_turns = 0
            await self.ctx.emit("resumed", detail=f"after the person's answer, turn {state.turn}")
        else:
            await self.ctx.emit("resumed", detail=f"from the checkpoint of turn {state.turn}")
        return state

    def _start_level(self) -> int:
        return start_level(self.path, self.task.tier)

    async def _first_messages(self) -> list[dict[str, Any]]:
        plan = "\n".join(f"{i}. {step}" for i, step in enumerate(self.task.plan, 1))
        system = render(self.role, plan=plan, memory=self.task.memory)
        return [{"role": "system", "content": system},
                *await self.agent.memory.context_messages(self.task.speaker, limit=6),
                {"role": "user", "content": await user_content(
                    self.task.request.text, self.task.request.attachments,
                    attachment_reader(self.agent.artifacts, self.session))}]

    async def _prepare_workspace(self) -> None:

        if self.agent.artifacts is not None:
            report = await restore_workspace(self.agent.artifacts, self.workspace)
            if report.downloaded:
                await self.ctx.emit("workspace_restored", detail=f"{report.downloaded} files")
        self.branch = self.branch or branch_name(self.session, self.task.request_id)
        await GitRepo(self.workspace, policy=self.topology.tools).ensure(self.branch)

    async def _tell_queued(self, holder: RunState) -> None:
        await self.ctx.reply(self.reply_to.origin, self.reply_to.build(
            Progress, stage="queued", flow=Flow.SEQUENTIAL,
            text=f"Queued: another run is working in this thread (turn {holder.turn}); "
                 "this one starts when it ends."))

    async def _repeat(self, checkpoint: Checkpoint) -> None:
        """Finished before the ack: publish the answer and the result again, under the same
        keys, so JetStream drops whichever copies were already stored."""
        if checkpoint.reply is not None:
            await self.ctx.reply(checkpoint.reply.origin, checkpoint.reply, key=ANSWER_KEY)
            await self.ctx.send("evaluator", self._result_from(checkpoint), key=RESULT_KEY)

    def _result_from(self, checkpoint: Checkpoint) -> TurnResult:
        """The TurnResult of a run that finished, rebuilt from its final checkpoint."""
        return self.task.result(
            self.role, ok=answered(checkpoint),
            trajectory=checkpoint.trajectory, files_written=checkpoint.files_written,
            confidence=checkpoint.confidence, usage=checkpoint.usage)

    # ------------------------------------------------------------------ turns

    async def _turns(self, state: LoopState, held: HeldRun) -> None:
        git = GitRepo(self.workspace, policy=self.topology.tools)
        decision = self.task.decision
        while state.turn < self.max_turns or state.approval is not None:
            if await held.abort_requested():
                await self._finish(state, held, aborted=True)
                return
            if state.approval is not None:
                if decision is None:  # resume_from continues an approval only with its decision
                    await self._await_approval(state, held)
                    return
                outcome = await self.engine.decide(state, approved=decision.approved,
                                                   reason=decision.reason)
                decision = None
            else:
                outcome = await self.engine.turn(state)
            if outcome is Outcome.APPROVAL:
                await self._await_approval(state, held)
                return
            commit = await git.commit_all(f"turn {state.turn}: "
                                          f"{', '.join(state.files_written[-3:]) or 'changes'}")
            if commit is not None:
                await self.ctx.emit("commit", detail=f"{self.branch} {commit[:12]}")
            await held.progress(turn=state.turn, model=self.path[state.level].name,
                                confidence=state.confidence)
            if outcome is Outcome.STUCK:
                await self._pause(state, held)
                return
            if outcome is Outcome.DONE:
                break
            if state.turn % CHECKPOINT_EVERY == 0:
                await self._checkpoint(state, held.save)
        await self._finish(state, held, aborted=False)

    async def _checkpoint(self, state: LoopState, keep: Callable[[Checkpoint], Awaitable[None]],
                          *, question: str = "", reply: Reply | None = None) -> None:
        """Checkpoint ``state`` with ``keep`` (a ``HeldRun`` method: it sets the status)."""
        checkpoint = msgspec.structs.replace(
            self.task.checkpoint(self.role, turn=state.turn), level=state.level,
            confidence=state.confidence, escalation=state.memo,
            messages=pack_messages(state.messages), trajectory=tuple(state.trajectory),
            files_written=tuple(state.files_written), usage=state.usage, branch=self.branch,
            question=question, reply=reply, approval=state.approval,
            delivery=self.ctx.stream_seq,
        )
        await keep(checkpoint)
        await self.ctx.emit("checkpoint", detail=f"turn {state.turn} ({checkpoint.status})")

    async def _await_approval(self, state: LoopState, held: HeldRun) -> None:
        """A tool call of this turn needs a person's approval: checkpoint the run as waiting
        (the lock is released when this delivery ends), show the request and set its deadline
        (docs/design.md#approvals)."""
        pending = state.approval
        assert pending is not None
        await self._checkpoint(state, held.await_approval)
        asked = [c.name for c in pending.calls if c.call_id in pending.asked]
        await self.ctx.emit("approval_requested", model=pending.model, detail=(
            f"turn {state.turn}: {', '.join(asked)} (approval {pending.approval_id}, "
            f"{self.topology.tools.approval_timeout_s:g} s)"))
        await self._announce(pending, state.turn)
        await self._sync_workspace()

    async def _announce(self, pending: PendingApproval, turn: int) -> None:
        """Publish the approval request of ``pending`` to the person, and its deadline to this
        role (a Control ``approval_timeout`` that waits in the role's stream until
        ``expires_at``). Under fixed keys: a redelivery publishes neither twice."""
        calls = tuple(ApprovalCall(name=c.name, arguments=c.arguments[:APPROVAL_ARGUMENT_CHARS])
                      for c in pending.calls if c.call_id in pending.asked)
        await self.ctx.reply(pending.reply_to.origin, pending.reply_to.build(
            ApprovalRequest, approval_id=pending.approval_id, role=self.role, calls=calls,
            user_id=self.task.request.user_id, expires_at=pending.expires_at, turn=turn),
            key=APPROVAL_KEY)
        await self.ctx.send(self.role, Control(
            session=self.session, action=ControlAction.APPROVAL_TIMEOUT, role=self.role,
            request_id=self.task.request_id, approval_id=pending.approval_id),
            key=DEADLINE_KEY, deadline=True)

    async def _pause(self, state: LoopState, held: HeldRun) -> None:
        """Stuck at the top of the escalation path: ask the person and wait
        (docs/design.md#the-agentic-loop)."""
        question = _question(state)
        await self._checkpoint(state, held.pause, question=question)
        await self.ctx.emit("paused", model=self.path[state.level].name,
                            source=cause_of(state.stuck_reason),
                            detail=f"turn {state.turn}: {state.stuck_reason}; asked the person")
        await self.ctx.reply(self.reply_to.origin, self.reply_to.build(
            Reply, text=question, flow=Flow.SEQUENTIAL, usage=state.usage, role=self.role))
        await self._sync_workspace()

    # ------------------------------------------------------------------ finish

    async def _finish(self, state: LoopState, held: HeldRun, *, aborted: bool) -> None:

        if aborted:
            answer = f"⏹️ Stopped at turn {state.turn} as asked."
            await self.ctx.emit("abort", detail=f"stopped before turn {state.turn + 1}")
        else:
            answer = strip_report(state.last_text) or "I stopped without a final answer."
            answer = await self._second_opinion(state, answer)
        answer, files = self._attach_files(answer)
        answer = cap_answer(answer, self.task.request.max_answer_chars)
        changed = await GitRepo(self.workspace, policy=self.topology.tools).changed_files()
        commit_message = _commit_message(self.task.request.text, changed) if changed else ""
        if commit_message:
            answer += (f"\n\n📝 Commit: {commit_message}\nBranch: `{self.branch}`\n"
                       f"Files: {', '.join(changed)}")
        reply = self.reply_to.build(
            Reply, text=answer, files=files, flow=Flow.SEQUENTIAL, usage=state.usage,
            error=ErrorCode.ABORTED if aborted else None, role=self.role,
            branch=self.branch if changed else "", commit=commit_message,
        )
        await self._checkpoint(state, held.stopped if aborted else held.done, reply=reply)
        await self.ctx.reply(self.reply_to.origin, reply, key=ANSWER_KEY)
        # The evaluation goes out with the answer: a redelivery after a later failure finds the
        # run done and only repeats the answer, so nothing after this may carry the run's
        # outcome (the reflection and the case base depend on it).
        await self.ctx.send("evaluator", self.task.result(
            self.role, ok=not aborted, trajectory=tuple(state.trajectory),
            files_written=tuple(state.files_written), confidence=state.confidence,
            usage=state.usage, duration_ms=(time.perf_counter() - self.started) * 1000,
        ), key=RESULT_KEY)
        await self.agent.memory.remember(self.task.speaker, self.task.said, answer,
                                         request_id=self.reply_to.in_reply_to)
        await self._sync_workspace()

    async def _second_opinion(self, state: LoopState, answer: str) -> str:
        """The answer with a random peer's opinion, when the role gets one (the code reviewer
        with ``peer_review``)."""
        peer_opinion = self.agent.peer_opinion
        if peer_opinion is None:
            return answer
        level = self.path[state.level]
        request = self.task.request
        opinion = await peer_opinion(self.ctx, request.text, request.max_tokens, level.tier,
                                     level.name, answer)
        if opinion is None:
            return answer
        state.usage = state.usage + opinion[1]
        return f"{answer}\n\n{opinion[0]}"

    async def _sync_workspace(self) -> None:
        if self.agent.artifacts is None:
            return
        try:
            report = await sync_to_store(self.agent.artifacts, self.workspace)
        except SwitchboardError as exc:
            await self.ctx.emit("sync_failed", detail=str(exc)[:500])
            return
        await self.ctx.emit("workspace_synced", detail=f"{report.uploaded} uploaded, "
                            f"{report.skipped} unchanged, {report.bytes} bytes")

    def _attach_files(self, answer: str) -> tuple[str, tuple[FileBlob, ...]]:
        """Replace each ``<<path>>`` marker by a note and attach the file
        (docs/design.md#workspaces-and-artifacts)."""
        files: list[FileBlob] = []

        def _swap(match: re.Match[str]) -> str:
            rel = match.group(1).strip()
            try:
                path = self.workspace.resolve(rel)
            except ToolError as exc:
                return f"(cannot attach {rel}: {exc})"
            if not path.is_file():
                return f"(cannot attach {rel}: no such file in the workspace)"
            if path.stat().st_size > MAX_FILE_BYTES:
                return f"(cannot attach {rel}: larger than {MAX_FILE_BYTES // 2**20} MiB)"
            files.append(FileBlob(name=rel, data=path.read_bytes()))
            return f"📎 {rel}"

        return _MARKER.sub(_swap, answer), tuple(files)


def _state_from(checkpoint: Checkpoint) -> LoopState:
    return LoopState(
        level=checkpoint.level, messages=unpack_messages(checkpoint.messages),
        turn=checkpoint.turn, confidence=checkpoint.confidence, memo=checkpoint.escalation,
        trajectory=list(checkpoint.trajectory), files_written=list(checkpoint.files_written),
        usage=checkpoint.usage, approval=checkpoint.approval,
        last_text=checkpoint.approval.text if checkpoint.approval is not None else "",
    )


def _question(state: LoopState) -> str:
    """The model's own question when it asked one, else a plain one with the reason."""
    text = strip_report(state.last_text)
    asked = [line.strip() for line in text.splitlines() if line.strip().endswith("?")]
    ask = asked[-1] if asked else "Could you clarify what you need, or give me a hint?"
    return (f"❓ I'm stuck ({state.stuck_reason}) and already on the strongest model. {ask}\n"
            "Answer in this thread and I will continue from where I stopped.")


def _commit_message(task: str, changed: list[str]) -> str:
    first = " ".join(task.split())[:60].rstrip(" .")
    return f"{first} ({len(changed)} file{'s' if len(changed) != 1 else ''})"
