"""The router's decisions as values: a route (should respond, flow, role, ...) and a tier."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import Complexity, Flow, TaskType

SOURCES = ("rule", "case", "model", "keywords", "breakglass", "resume")
"""What can decide a route: a ``topology.yaml`` rule, a near-identical past case, the model,
the keyword fallback, a BREAKGLASS permission, a paused run's answer."""


@dataclass(frozen=True, slots=True)
class Route:
    """Whether and how to answer one message.

    ``source`` is one of ``SOURCES``; ``decided_by`` adds the rule's name (``rule:<name>``)
    or the case id (``case:<id>``); ``reason`` is one line for people and events;
    ``refusal`` is set when a rule refused the request (the text the person is told).
    """

    respond: bool = True
    flow: Flow = Flow.SIMPLE
    task_type: TaskType = TaskType.SOCIAL
    role: str = "researcher"
    complexity: Complexity = Complexity.SIMPLE
    reason: str = ""
    source: str = "keywords"
    decided_by: str = ""
    refusal: str = ""
    tier_min: int = 0
    tier_max: int = 0

    @property
    def who(self) -> str:
        """``decided_by`` or, without one, ``source``."""
        return self.decided_by or self.source


@dataclass(frozen=True, slots=True)
class TierChoice:
    """The tier a request starts at (1-4), what decided it and why (one line).

    ``counts_feedback``: the tier was learned from cases that include one this session's 👎
    marked failed, so that 👎 already raised it (``choose_tier`` does not raise it again).
    """

    tier: int
    source: str
    reason: str
    counts_feedback: bool = False
