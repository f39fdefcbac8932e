"""The route of one message: rules → case base → model → keyword rules (docs/design.md#routing).

1. Rules without a ``flow`` condition (``core.rules``): a refusal ends the request here.
2. BREAKGLASS, when the person asked for it and is allowed (a permission, never a choice).
3. The answer to a paused run (``paused_role``, when the session's SEQUENTIAL run asked this
   person a question): an addressed message is that answer; an ambient one is when the
   model says to respond. The route is then SEQUENTIAL to that role, ``source`` ``resume``,
   and only the rules of step 5 remain.
4. What classifies, the first that can:
   - rules that force both flow and role (for a message addressed to the bot);
   - the case base: a succeeded past run of a near-identical task (word overlap at least
     ``cases.reuse_similarity``) gives its flow, role, task type and complexity;
   - the model (``actors.router._model``), bounded by ``router.timeout_s``;
   - the keyword rules (``actors.router._keywords``) when the model is off, fails, times out
     or answers something unusable — the route's reason says which.
5. Rules that force a flow or role override what classified (the route then names the rule).
6. Rules with a ``flow`` condition run on the chosen flow: a refusal ends the request; their
   tier bounds join the first phase's.

The router's own model call is made at ``router.tier`` within the first phase's tier bounds
(``bound_tier``): the only bounds known before the flow is.

A message addressed to the bot (``ChatMessage.addressed``) is always answered when it has any
content; only ambient messages (the bot's thread or a listening channel, no mention) can be
left unanswered by the model's ``respond: false``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from actors.router._cases import CaseIndex
from actors.router._keywords import complexity_of, keyword_route
from actors.router._model import UnparsableAnswerError, parse_answer, system_prompt
from actors.router._tiers import bound_tier
from actors.router._types import Route
from core.config import Topology
from core.errors import ModelError
from core.rules import RuleVerdict, evaluate
from protocol import AGENT_ROLES, ChatMessage, Complexity, Flow, TaskType

AskModel = Callable[[list[dict[str, Any]], int], Awaitable[str]]
"""Sends the router's chat messages to the router's model at the given tier (1-4) and returns
the answer's text; raises ``ModelError`` (or ``TimeoutError``) when the call fails."""


async def route_message(chat: ChatMessage, topology: Topology, *, ask: AskModel | None,
                        cases: CaseIndex | None = None, history: str = "",
                        paused_role: str = "") -> Route:
    """Decide whether and how to answer ``chat`` (module docstring).

    Args:
        chat: the person's message.
        topology: rules, breakglass users, router and case settings.
        ask: the model call, or None to skip the model (the keyword rules decide).
        cases: the case base index, or None.
        history: the conversation so far, a few lines, for the model.
        paused_role: the role of the session's paused run when its question was this
            person's to answer; "" when there is none.
    """
    allowed = topology.breakglass.allowed_users
    pre = evaluate(topology.rules, chat, flow=None, breakglass_users=allowed)
    if pre.refusal:
        return _refused(pre)
    if chat.breakglass and chat.user_id in allowed:
        return Route(flow=Flow.BREAKGLASS, task_type=TaskType.QUESTION,
                     role=topology.breakglass.role, complexity=Complexity.COMPLEX,
                     reason="breakglass: direct to the top model", source="breakglass")
    if paused_role:
        route = await _resumed(chat, topology, paused_role, pre, ask, history)
    else:
        route = await _classify(chat, topology, pre, ask, cases, history)
    if not route.respond:
        return route
    resuming = route.source == "resume"  # the paused run's role and flow stand
    if not resuming:
        route = _forced(route, pre)
    post = evaluate(topology.rules, chat, flow=route.flow, breakglass_users=allowed)
    if post.refusal:
        return _refused(post)
    if not resuming:
        route = _forced(route, post)
    verdict = pre.merge(post)
    return dataclasses.replace(route, tier_min=verdict.tier_min, tier_max=verdict.tier_max)


def _refused(verdict: RuleVerdict) -> Route:
    return Route(refusal=verdict.refusal, source="rule", decided_by=f"rule:{verdict.refused_by}",
                 reason=f"refused by rule {verdict.refused_by!r}")


def _forced(route: Route, verdict: RuleVerdict) -> Route:
    """``route`` with the flow, role and task type the rules force."""
    if not (verdict.flow or verdict.role or verdict.task_type):
        return route
    changes: dict[str, Any] = {"source": "rule", "decided_by": f"rule:{verdict.forced_by}",
                               "reason": f"rule {verdict.forced_by!r} over {route.who}: "
                                         f"{route.reason}"[:200]}
    if verdict.flow:
        changes["flow"] = verdict.flow
    if verdict.role:
        changes["role"] = verdict.role
    if verdict.task_type:
        changes["task_type"] = verdict.task_type
    if route.flow is Flow.SIMPLE and verdict.flow is Flow.SEQUENTIAL:
        changes["complexity"] = route.complexity
    return dataclasses.replace(route, **changes)


async def _resumed(chat: ChatMessage, topology: Topology, role: str, pre: RuleVerdict,
                   ask: AskModel | None, history: str) -> Route:
    """The answer to the paused run of ``role`` — or, for an ambient message the model leaves
    unanswered, that route (step 3 of the module docstring)."""
    resume = Route(flow=Flow.SEQUENTIAL, role=role, source="resume",
                   reason=f"answer to the paused run of {role}")
    if chat.addressed:
        return resume
    heard = await _classify(chat, topology, pre, ask, None, history)
    return resume if heard.respond else heard


async def _classify(chat: ChatMessage, topology: Topology, pre: RuleVerdict,
                    ask: AskModel | None, cases: CaseIndex | None, history: str) -> Route:
    keywords = keyword_route(chat.text, profile=chat.profile, attachments=bool(chat.attachments))
    if not keywords.respond:
        return keywords  # nothing to answer: no rule, case or model needed
    if pre.flow and pre.role and chat.addressed:
        return Route(flow=pre.flow, role=pre.role,
                     task_type=pre.task_type or keywords.task_type,
                     complexity=complexity_of(chat.text), source="rule",
                     decided_by=f"rule:{pre.forced_by}",
                     reason=f"rule {pre.forced_by!r} sets the flow and role")
    if cases is not None and chat.addressed:
        reused = _from_case(chat, topology, cases)
        if reused is not None:
            return reused
    if ask is None or not topology.router.model:
        return keywords
    try:
        tier = bound_tier(topology.router.tier, pre.tier_min, pre.tier_max)
        async with asyncio.timeout(topology.router.timeout_s):
            answer = await ask(_messages(chat, history), tier)
        route = parse_answer(answer)
    except TimeoutError:
        return _fallback(keywords, f"the model did not answer within "
                                   f"{topology.router.timeout_s:g} s")
    except ModelError as exc:
        return _fallback(keywords, f"the model failed: {exc}")
    except UnparsableAnswerError as exc:
        return _fallback(keywords, f"the model's answer was unusable: {exc}")
    if chat.addressed and not route.respond:
        route = dataclasses.replace(route, respond=True,
                                    reason=f"addressed to the bot; {route.reason}"[:200])
    return route


def _fallback(keywords: Route, why: str) -> Route:
    return dataclasses.replace(keywords, reason=f"{why[:300]}; keywords: {keywords.reason}")


def _from_case(chat: ChatMessage, topology: Topology, cases: CaseIndex) -> Route | None:
    found = cases.similar(chat.text, k=1, min_similarity=topology.cases.reuse_similarity,
                          succeeded_only=True)
    if not found:
        return None
    case = found[0].case
    try:
        task_type, complexity = TaskType(case.task_type), Complexity(case.complexity)
    except ValueError:
        return None
    if case.role not in AGENT_ROLES:
        return None  # a role this deployment no longer has
    return Route(flow=Flow.SEQUENTIAL, task_type=task_type, role=case.role,
                 complexity=complexity, source="case", decided_by=f"case:{case.case_id}",
                 reason=f"a past run of a near-identical task (overlap "
                        f"{found[0].similarity:.2f}) succeeded as {case.role}")


def _messages(chat: ChatMessage, history: str) -> list[dict[str, Any]]:
    text = chat.text
    if chat.attachments:
        text += "\n[attached: " + ", ".join(a.name for a in chat.attachments) + "]"
    return [{"role": "system", "content": system_prompt(addressed=chat.addressed,
                                                        history=history)},
            {"role": "user", "content": text}]
