"""What a SEQUENTIAL run (``actors.agent_run``) and its turns (``actors.agent_loop``) use of the
agent role that runs them (docs/design.md#the-agentic-loop): the role's model answer and the
code reviewer's second opinion as callables, its conversation memory, its run control, and its
role, topology and workspace stores as values. The role actor (``actors.agent``) makes one;
the run and the loop never see the actor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors.conversation import Conversation
    from actors.run_control import RunControl
    from artifacts import ArtifactStore
    from core.config import ModelSpec, Topology
    from modelcall import ModelReply
    from protocol import ActorId, Usage
    from runtime import MessageContext


class ModelAnswer(Protocol):
    """The role's answer to a model conversation (``AgentActor.answer_call``)."""

    async def __call__(self, ctx: MessageContext, models: Sequence[ModelSpec],
                       messages: list[dict[str, Any]], *,
                       tools: list[dict[str, Any]] | None = None,
                       on_text: Callable[[str], Awaitable[None]] | None = None,
                       purpose: str = "", max_tokens: int = 0) -> ModelReply:
        """The reply of the role's hosted agent, else of ``models`` in fallback order, to
        ``messages`` (with ``tools``; ``on_text`` awaited with the text so far as it streams;
        ``max_tokens`` a cap on completion tokens, 0: none).

        Raises:
            ModelError: no model answered.
        """
        ...


class PeerOpinion(Protocol):
    """A second opinion on a code review (``AgentActor.peer_opinion``)."""

    async def __call__(self, ctx: MessageContext, request: str, max_tokens: int, tier: int,
                       answered_by: str, review: str) -> tuple[str, Usage] | None:
        """The opinion of another model of ``tier`` on ``review`` (by model ``answered_by``)
        of ``request``, with its usage; None when there is no other model or it failed."""
        ...


@dataclass(frozen=True, slots=True)
class AgentRole:
    """An agent role as its runs see it.

    Attributes:
        replica: the replica that runs (``python_coder/0``): the run lock's holder;
            ``replica.role`` is the role.
        topology: the deployment's topology (escalation path, tool policy).
        answer: the role's model answer.
        memory: the role's conversation memory.
        runs: the run control (lock, checkpoints, abort).
        artifacts: the artifact store (``artifacts.ArtifactStore``; None: there is none).
        workspace_root: the directory of the sessions' workspaces.
        peer_opinion: a second opinion on the role's final answer; None when the role gets
            none (only the code reviewer with ``peer_review`` does).
        hosted: a hosted agent backs the role (``Topology.hosted_agent``): it answers instead
            of the tier's models, and has no stronger model to escalate to.
    """

    replica: ActorId
    topology: Topology
    answer: ModelAnswer
    memory: Conversation
    runs: RunControl
    artifacts: ArtifactStore | None
    workspace_root: Path
    peer_opinion: PeerOpinion | None = None
    hosted: bool = False

    @property
    def name(self) -> str:
        """The role (``python_coder``, ...)."""
        return self.replica.role
