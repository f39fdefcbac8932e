"""The classifier: should Switchboard respond, and then which flow, role and complexity.

Deterministic keyword rules, no model call: a classification costs microseconds and the same
message always takes the same route. BRANCH trigger phrases are SPEC.md §1.3's list plus seed
003's ("multiple solutions", "different ways", "explore options").
"""

from __future__ import annotations

import re

from actors.config import Topology
from actors.runtime import Actor, MessageContext, handler
from protocol import (
    AGENT_ROLES,
    ChatMessage,
    Classification,
    Complexity,
    Flow,
    Progress,
    Reply,
    TaskType,
    TurnRequest,
)

BRANCH_TRIGGERS: tuple[str, ...] = (
    "different approaches", "pros and cons", "brainstorm", "compare approaches", "tradeoffs",
    "trade-offs", "trade offs", "which approach", "multiple solutions", "different ways",
    "explore options",
)

# (task type, role, words) in priority order: the first rule with a matching word wins.
_RULES: tuple[tuple[TaskType, str, tuple[str, ...]], ...] = (
    (TaskType.REVIEW, "code_reviewer", ("review", "code review", "critique my code")),
    (TaskType.DEVOPS, "devops_engineer", (
        "docker", "kubernetes", "k8s", "terraform", "helm", "ci/cd", "pipeline", "deploy",
        "nginx", "ansible", "github actions",
    )),
    (TaskType.DATABASE, "dba", (
        "sql", "database", "postgres", "mysql", "sqlite", "query", "index", "schema",
        "migration", "table",
    )),
    (TaskType.ARCHITECTURE, "architect", (
        "architecture", "architect", "system design", "design a system", "microservice",
        "scalab",
    )),
    (TaskType.DOCS, "documentation_writer", (
        "readme", "documentation", "docstring", "document ", "write docs", "tutorial",
    )),
    (TaskType.COMMAND, "command_executor", (
        "run ", "execute", "kubectl", "bash", "shell command", "terminal", "ls ",
    )),
    (TaskType.CODING, "js_ts_coder", (
        "javascript", "typescript", "node.js", "nodejs", "react", " js ", " ts ", "npm",
        "deno", "vue",
    )),
    (TaskType.CODING, "python_coder", (
        "python", "function", "script", "class ", "code", "implement", "refactor", "bug",
        "fix ", "test", "program", "algorithm", "regex", "parse",
    )),
    (TaskType.RESEARCH, "researcher", (
        "research", "search", "find out", "look up", "compare", "investigate",
    )),
)

_ACTION = re.compile(
    r"\b(write|create|build|implement|make|generate|refactor|fix|add|set up|setup|deploy|"
    r"run|execute|migrate|convert|scaffold|debug)\b",
    re.IGNORECASE,
)
_QUESTION = re.compile(r"^\s*(what|why|how|when|who|which|is|are|can|does|do|explain)\b|\?\s*$",
                       re.IGNORECASE)
_SOCIAL = re.compile(
    r"^\s*(hi|hello|hey|yo|thanks|thank you|good (morning|evening|night)|how are you|"
    r"sup|gm|ok|okay|cool|nice|bye)\b",
    re.IGNORECASE,
)
_COMPLEX = re.compile(
    r"\b(entire|whole|full|complete|production|system|multiple|several|end[- ]to[- ]end|"
    r"framework|migrate|architecture|refactor the)\b",
    re.IGNORECASE,
)
_NO_CONTENT = re.compile(r"^[\W_]*$")


def should_respond(message: ChatMessage) -> tuple[bool, str]:
    """Whether the message asks for anything: empty or punctuation-only messages do not."""
    text = message.text.strip()
    if not text and not message.attachments:
        return False, "empty message"
    if _NO_CONTENT.match(text) and not message.attachments:
        return False, "no words in the message"
    return True, ""


def complexity_of(text: str) -> Complexity:
    words = len(text.split())
    if _COMPLEX.search(text) or words > 80:
        return Complexity.COMPLEX
    if words <= 12:
        return Complexity.SIMPLE
    return Complexity.MEDIUM


def classify(message: ChatMessage, topology: Topology) -> Classification:
    """Classify ``message`` (pure; see the module docstring for the rules)."""
    respond, reason = should_respond(message)
    if not respond:
        return Classification(request=message, respond=False, reason=reason)
    text = message.text
    lowered = f" {text.lower()} "
    if message.breakglass and message.user_id in topology.breakglass.allowed_users:
        return Classification(
            request=message, respond=True, flow=Flow.BREAKGLASS, task_type=TaskType.QUESTION,
            role=topology.breakglass.role, complexity=Complexity.COMPLEX,
            reason="breakglass: direct to the top model",
        )
    trigger = next((t for t in BRANCH_TRIGGERS if t in lowered), None)
    if trigger:
        return Classification(
            request=message, respond=True, flow=Flow.BRANCH, task_type=TaskType.BRAINSTORM,
            role="architect", complexity=Complexity.MEDIUM, reason=f"branch trigger {trigger!r}",
        )
    complexity = complexity_of(text)
    for task_type, role, words in _RULES:
        word = next((w for w in words if w in lowered), None)
        if word is None:
            continue
        if _ACTION.search(text):
            return Classification(
                request=message, respond=True, flow=Flow.SEQUENTIAL, task_type=task_type,
                role=role, complexity=complexity, reason=f"action on {word.strip()!r}",
            )
        return Classification(
            request=message, respond=True, flow=Flow.SIMPLE, task_type=TaskType.QUESTION,
            role=role, complexity=Complexity.SIMPLE, reason=f"question about {word.strip()!r}",
        )
    # General chat goes to the bot's own profile when it has one (its "agent profile").
    role = message.profile if message.profile in AGENT_ROLES else "researcher"
    if _SOCIAL.match(text):
        return Classification(request=message, respond=True, flow=Flow.SIMPLE,
                              task_type=TaskType.SOCIAL, role=role, reason="social")
    task_type = TaskType.QUESTION if _QUESTION.search(text) else TaskType.SOCIAL
    return Classification(request=message, respond=True, flow=Flow.SIMPLE, task_type=task_type,
                          role=role, reason="general chat")


class Classifier(Actor):
    """Routes each ChatMessage: SIMPLE and BREAKGLASS to a role actor, SEQUENTIAL to the
    planner, BRANCH to the brainstorm actor; a message needing no answer gets an empty Reply."""

    role = "classifier"

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        if await self._resume_paused(message, ctx):
            return
        verdict = classify(message, self.topology)
        await ctx.emit("classified", step="chat_message",
                       detail=f"{verdict.flow} {verdict.role} {verdict.complexity}: "
                              f"{verdict.reason}" if verdict.respond else verdict.reason)
        if not verdict.respond:
            await ctx.reply(message.origin, Reply(
                session=message.session, origin=message.origin, in_reply_to=message.message_id,
                text="",
            ))
            return
        await ctx.reply(message.origin, Progress(
            session=message.session, origin=message.origin, in_reply_to=message.message_id,
            stage="classified", flow=verdict.flow,
            text=f"{verdict.flow} · {verdict.role} · {verdict.complexity}",
        ))
        match verdict.flow:
            case Flow.SEQUENTIAL:
                await ctx.send("planner", verdict)
            case Flow.BRANCH:
                await ctx.send("brainstorm", verdict)
            case Flow.BREAKGLASS:
                await ctx.send(verdict.role, TurnRequest(classification=verdict, tier=4))
            case _:
                await ctx.send(verdict.role, TurnRequest(classification=verdict, tier=1))

    async def _resume_paused(self, message: ChatMessage, ctx: MessageContext) -> bool:
        """A message in a session whose run paused on a clarifying question is the answer:
        send it to that run (SPEC.md §3) instead of classifying it afresh."""
        from actors.runs import CheckpointStore

        checkpoint = await CheckpointStore(self.services.checkpoints).load(message.session)
        if checkpoint is None or checkpoint.status != "paused":
            return False
        paused = checkpoint.request
        await ctx.emit("classified", step="chat_message",
                       detail=f"answer to the paused run of {paused.classification.role}")
        await ctx.reply(message.origin, Progress(
            session=message.session, origin=message.origin, in_reply_to=message.message_id,
            stage="classified", flow=Flow.SEQUENTIAL, text="Resuming with your answer…",
        ))
        await ctx.send(paused.classification.role, TurnRequest(
            classification=paused.classification, plan=paused.plan, memory=paused.memory,
            tier=paused.tier, max_turns=paused.max_turns, answer=message,
        ))
        return True
