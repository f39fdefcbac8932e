"""Deductive routing rules (``topology.yaml`` ``rules:``; docs/design.md#routing).

A rule has conditions (``when``) and actions (``then``); it matches when every condition it
names matches (a list matches any of its values; ``text`` is a regular expression searched
in the message, ``bot`` matches the answering bot's name — ``switchboard bots``' name,
``default`` for ``DISCORD_TOKEN`` — or its gateway origin, ``discord-<bot user id>``;
``channel`` matches the channel or, in a thread, its parent channel).
Rules are checked in file order, before any model is asked:

- rules without a ``flow`` condition run first, on the message alone;
- rules with a ``flow`` condition run once the flow is known (from a rule, a case, the model
  or the keyword fallback).

Actions: ``refuse`` ends the request with its message (the first refusing rule wins);
``require_breakglass`` refuses anyone not in ``breakglass.allowed_users``; ``flow`` and
``role`` force the route (the first rule that forces each wins); ``tier_min`` / ``tier_max``
floor and cap every model tier of the request (the strictest bounds win). BREAKGLASS is a
permission, never a rule's or a model's choice: no rule can force that flow.

Example::

    rules:
      - name: docs-bot-writes-docs
        when: {bot: [docs]}
        then: {role: documentation_writer}
      - name: no-production-changes
        when: {text: "(?i)\\bprod(uction)?\\b", flow: [sequential]}
        then: {require_breakglass: true}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol import AGENT_ROLES, ChatMessage, Flow, TaskType


class RuleWhen(BaseModel):
    """A rule's conditions; an empty condition matches everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: tuple[str, ...] = ()
    """Person ids (Discord user ids; ``terminal:<name>`` for the terminal chat)."""
    guild: tuple[str, ...] = ()
    channel: tuple[str, ...] = ()
    bot: tuple[str, ...] = ()
    text: str | None = None
    """A Python regular expression searched in the message text."""
    flow: tuple[Flow, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _scalars_to_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if k != "text" and isinstance(v, str | int) else v
                    for k, v in value.items()}
        return value

    @field_validator("user", "guild", "channel", "bot", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list | tuple) else value

    @field_validator("text")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                msg = f"text: {value!r} is not a valid regular expression: {exc}"
                raise ValueError(msg) from exc
        return value


class RuleThen(BaseModel):
    """A rule's actions (at least one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: Flow | None = None
    role: str | None = None
    task_type: TaskType | None = None
    tier_min: int | None = Field(default=None, ge=1, le=4)
    tier_max: int | None = Field(default=None, ge=1, le=4)
    refuse: str | None = None
    """The message the person is told; the request goes no further."""
    require_breakglass: bool = False

    @field_validator("flow")
    @classmethod
    def _not_breakglass(cls, value: Flow | None) -> Flow | None:
        if value is Flow.BREAKGLASS:
            msg = ("flow: breakglass is a permission (breakglass.allowed_users), not a route a "
                   "rule can force; use require_breakglass")
            raise ValueError(msg)
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and value not in AGENT_ROLES:
            msg = f"role: unknown agent role {value!r}; roles: {', '.join(AGENT_ROLES)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _some_action(self) -> RuleThen:
        if not self.model_fields_set - {"require_breakglass"} and not self.require_breakglass:
            msg = ("a rule needs at least one action: flow, role, task_type, tier_min, "
                   "tier_max, refuse or require_breakglass")
            raise ValueError(msg)
        if self.tier_min and self.tier_max and self.tier_min > self.tier_max:
            msg = f"tier_min {self.tier_min} is above tier_max {self.tier_max}"
            raise ValueError(msg)
        return self


class RuleSpec(BaseModel):
    """One rule of ``topology.yaml`` ``rules:`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    when: RuleWhen = RuleWhen()
    then: RuleThen

    def matches(self, chat: ChatMessage, flow: Flow | None) -> bool:
        """Whether every condition holds for ``chat`` (``flow``: the route, when known)."""
        w = self.when
        if w.flow and (flow is None or flow not in w.flow):
            return False
        if w.user and chat.user_id not in w.user:
            return False
        if w.guild and chat.guild_id not in w.guild:
            return False
        if w.channel and not _named(w.channel, chat.channel_id, chat.parent_channel_id):
            return False
        if w.bot and not _named(w.bot, chat.bot_name, chat.bot, chat.origin):
            return False
        return w.text is None or re.search(w.text, chat.text) is not None


def _named(wanted: tuple[str, ...], *values: str) -> bool:
    """Whether any non-empty ``values`` is one of ``wanted``."""
    return any(value and value in wanted for value in values)


def check_rule_names(rules: list[RuleSpec]) -> list[RuleSpec]:
    """``rules`` when their names are unique.

    Raises:
        ValueError: two rules share a name (events name the rule that decided).
    """
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            msg = f"two rules are named {rule.name!r}: names must be unique"
            raise ValueError(msg)
        seen.add(rule.name)
    return rules


@dataclass(slots=True)
class RuleVerdict:
    """What the matching rules decided. ``names`` lists every rule that matched, in order."""

    names: list[str] = field(default_factory=list)
    refusal: str = ""
    refused_by: str = ""
    flow: Flow | None = None
    role: str | None = None
    task_type: TaskType | None = None
    forced_by: str = ""
    """The rule that forced the flow or role (the first one)."""
    tier_min: int = 0
    tier_max: int = 0

    def merge(self, other: RuleVerdict) -> RuleVerdict:
        """This verdict with a later phase's verdict added (earlier decisions win, bounds
        tighten)."""
        caps = [cap for cap in (self.tier_max, other.tier_max) if cap]
        cap = min(caps) if caps else 0
        floor = max(self.tier_min, other.tier_min)
        return RuleVerdict(
            names=self.names + other.names,
            refusal=self.refusal or other.refusal,
            refused_by=self.refused_by or other.refused_by,
            flow=self.flow or other.flow, role=self.role or other.role,
            task_type=self.task_type or other.task_type,
            forced_by=self.forced_by or other.forced_by,
            tier_min=min(floor, cap) if cap else floor,  # the cap wins, as in ``evaluate``
            tier_max=cap,
        )


def evaluate(rules: list[RuleSpec], chat: ChatMessage, *, flow: Flow | None,
             breakglass_users: tuple[str, ...]) -> RuleVerdict:
    """Apply the rules of one phase (rules in the module docstring).

    Args:
        rules: the topology's rules, in file order.
        chat: the person's message.
        flow: None for the first phase (rules without a ``flow`` condition); the chosen flow
            for the second (rules with one).
        breakglass_users: who may pass a ``require_breakglass`` rule.
    """
    verdict = RuleVerdict()
    for rule in rules:
        if bool(rule.when.flow) != (flow is not None) or not rule.matches(chat, flow):
            continue
        verdict.names.append(rule.name)
        then = rule.then
        if not verdict.refusal:
            if then.refuse:
                verdict.refusal, verdict.refused_by = then.refuse, rule.name
            elif then.require_breakglass and chat.user_id not in breakglass_users:
                verdict.refusal = ("This request needs a BREAKGLASS user (rule "
                                   f"{rule.name!r}); ask an operator to allow you.")
                verdict.refused_by = rule.name
        if then.flow and verdict.flow is None:
            verdict.flow, verdict.forced_by = then.flow, verdict.forced_by or rule.name
        if then.role and verdict.role is None:
            verdict.role, verdict.forced_by = then.role, verdict.forced_by or rule.name
        if then.task_type and verdict.task_type is None:
            verdict.task_type = then.task_type
        if then.tier_min:
            verdict.tier_min = max(verdict.tier_min, then.tier_min)
        if then.tier_max:
            verdict.tier_max = min(verdict.tier_max or 4, then.tier_max)
    if verdict.tier_max and verdict.tier_min > verdict.tier_max:
        verdict.tier_min = verdict.tier_max  # the cap wins: it is the operator's cost limit
    return verdict
