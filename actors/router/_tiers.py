"""Which tier a request starts at and which models serve a tier (pure).

Starting tier, each step overriding the one before (its ``source`` in the event):

1. ``role``: the role's ``tier`` in ``topology.yaml`` (SIMPLE answers: tier 1; BREAKGLASS:
   tier 4, and nothing below changes it);
2. ``task_type``: ``task_tiers`` of the request's task type;
3. ``case``: what similar past runs needed (``actors.router._cases.learned_tier``);
4. ``session``: the tier a person chose for the session with ``/model``;
5. ``feedback``: one tier higher when the session's confidence is below
   ``feedback.low_confidence`` (a 👎 on its last answer; docs/design.md#feedback-and-confidence),
   unless the tier was
   learned from the case that 👎 failed (``TierChoice.counts_feedback``: one 👎, one tier);
6. ``rule``: the rules' ``tier_min`` / ``tier_max`` bound the result.

The rules' bounds hold for every model call of a request, not only its starting tier: the
router's own call (``bound_tier``), the planner's and the reflector's (``models_for``), the
escalation path (``escalation_levels``) and BRANCH's brainstormers (``brainstorm_models``).

Models of a tier, in the order they are tried (a later one answers when an earlier one fails
with an error another model can fix: ``core.errors.ModelError.fallback_helps``): the bot's
override for the tier, the role's own model for the tier (``role_models``), then the tier's models
as listed. ``SB_MODEL`` replaces them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.router._types import TierChoice
from core.config import ModelSpec, Topology
from protocol import Flow, TaskType

TOP_TIER = 4


@dataclass(frozen=True, slots=True)
class Level:
    """One step of the escalation path: a tier and its models in fallback order."""

    tier: int
    models: tuple[ModelSpec, ...]

    @property
    def name(self) -> str:
        """The first model's name (the one normally answering)."""
        return self.models[0].name


def _clamp(tier: int, low: int = 1, high: int = TOP_TIER) -> int:
    return max(low, min(high, tier))


def bound_tier(tier: int, tier_min: int = 0, tier_max: int = 0) -> int:
    """``tier`` within the rules' bounds of a request (``tier_min`` / ``tier_max``, 0: none)
    and within 1-4; the cap wins over the floor (it is the operator's cost limit)."""
    high = tier_max or TOP_TIER
    return _clamp(tier, min(tier_min or 1, high), high)


def models_for(topology: Topology, tier: int, *, role: str = "",
               overrides: dict[str, str] | None = None, tier_min: int = 0,
               tier_max: int = 0) -> tuple[ModelSpec, ...]:
    """The models of ``tier`` in fallback order (module docstring); ``tier`` is first brought
    within the request's rule bounds ``tier_min`` / ``tier_max`` (``bound_tier``)."""
    if topology.pinned_model is not None:
        return (topology.pinned_model,)
    tier = bound_tier(tier, tier_min, tier_max)
    ordered: list[ModelSpec] = []
    override = (overrides or {}).get(str(tier))
    if override:
        ordered.append(topology.find_model(override))
    own = topology.role_models.get(role, {}).get(tier)
    if own:
        ordered.append(topology.find_model(own))
    ordered += topology.tiers[tier]
    unique: dict[str, ModelSpec] = {}
    for spec in ordered:
        unique.setdefault(spec.name, spec)
    return tuple(unique.values())


def tier_of(topology: Topology, name: str, default: int = 1) -> int:
    """The first tier that lists model ``name`` (``default`` when none does)."""
    for tier in sorted(topology.tiers):
        if any(m.name == name for m in topology.tiers[tier]):
            return tier
    return default


def escalation_levels(topology: Topology, *, role: str = "",
                      overrides: dict[str, str] | None = None, tier_min: int = 0,
                      tier_max: int = 0) -> list[Level]:
    """The escalation path (docs/design.md#the-agentic-loop), each level with its fallback models.

    ``escalation:`` in ``topology.yaml`` names the models in order: a tier's first model
    stands for its tier's models in fallback order (``models_for``), another model goes first
    with its tier's models behind it; without ``escalation`` the path is tiers 1-4. Levels outside
    ``tier_min``..``tier_max`` (0: unbounded) are left out; when that leaves none, the path is
    the models of the tier within the bounds nearest to the path (``bound_tier``). With
    ``SB_MODEL`` the path is that one model.
    """
    if topology.pinned_model is not None:
        return [Level(1, (topology.pinned_model,))]
    levels: list[Level] = []
    if topology.escalation:
        for position, name in enumerate(topology.escalation):
            tier = tier_of(topology, name, default=_clamp(position + 1))
            models = models_for(topology, tier, role=role, overrides=overrides)
            if name != topology.tiers[tier][0].name:  # not the tier's own first model
                first = topology.find_model(name)
                models = (first, *(m for m in models if m.name != first.name))
            levels.append(Level(tier, models))
    else:
        levels = [Level(t, models_for(topology, t, role=role, overrides=overrides))
                  for t in range(1, TOP_TIER + 1)]
    bounded = [level for level in levels
               if bound_tier(level.tier, tier_min, tier_max) == level.tier]
    if bounded:
        return bounded
    nearest = bound_tier(levels[0].tier, tier_min, tier_max)
    return [Level(nearest, models_for(topology, nearest, role=role, overrides=overrides))]


def start_level(levels: list[Level], tier: int) -> int:
    """Index of the first level at ``tier`` or above (the last level when none is)."""
    return next((i for i, level in enumerate(levels) if level.tier >= tier), len(levels) - 1)


def choose_tier(topology: Topology, *, role: str, flow: Flow, task_type: TaskType,
                learned: TierChoice | None = None, session_tier: int = 0,
                session_confidence: int = 50, tier_min: int = 0, tier_max: int = 0
                ) -> TierChoice:
    """The starting tier of a request (module docstring).

    Args:
        topology: tiers, ``task_tiers``, ``feedback.low_confidence``, the role's tier.
        role: the agent role that answers.
        flow: the request's flow.
        task_type: the request's task type.
        learned: what similar cases taught (SEQUENTIAL runs), or None.
        session_tier: the session's ``/model`` tier (0: none).
        session_confidence: the session's stored confidence (10-100).
        tier_min: the rules' floor (0: none).
        tier_max: the rules' cap (0: none).
    """
    if flow is Flow.BREAKGLASS:
        return TierChoice(TOP_TIER, "breakglass", "BREAKGLASS goes to the top tier")
    if flow is Flow.SEQUENTIAL:
        choice = TierChoice(topology.actor(role).tier, "role", f"{role}'s tier")
    else:
        choice = TierChoice(1, "role", f"{flow} answers start at tier 1")
    if task_type in topology.task_tiers:
        choice = TierChoice(topology.task_tiers[task_type], "task_type",
                            f"task_tiers[{task_type}]")
    if learned is not None and flow is Flow.SEQUENTIAL:
        choice = learned
    if session_tier:
        choice = TierChoice(_clamp(session_tier), "session", "the tier chosen with /model")
    if session_confidence < topology.feedback.low_confidence and not choice.counts_feedback:
        raised = _clamp(choice.tier + 1)
        choice = TierChoice(raised, "feedback",
                            f"confidence {session_confidence} < "
                            f"{topology.feedback.low_confidence} after a 👎: one tier above "
                            f"{choice.tier} ({choice.source})")
    bounded = bound_tier(choice.tier, tier_min, tier_max)
    if bounded != choice.tier:
        choice = TierChoice(bounded, "rule", f"rules bound tiers to {tier_min or 1}-"
                                             f"{tier_max or TOP_TIER} (was {choice.tier}, "
                                             f"{choice.source})")
    return choice


def brainstorm_models(topology: Topology, *, overrides: dict[str, str] | None = None,
                      tier_min: int = 0, tier_max: int = 0) -> list[tuple[ModelSpec, ...]]:
    """The models that brainstorm in parallel (BRANCH, docs/design.md#flows), each with the other
    models of its tier as fallbacks: ``brainstorm_models`` of ``topology.yaml``, else the
    first model of tiers 2 and 3.

    A brainstormer whose tier is outside the request's rule bounds (``tier_min`` /
    ``tier_max``, 0: none) is replaced by the models of the nearest tier within them, a
    model the other brainstormers do not start with first."""
    if topology.pinned_model is not None:
        return [(topology.pinned_model,), (topology.pinned_model,)]
    wanted = [(name, tier_of(topology, name, default=2)) for name in topology.brainstorm_models]
    chosen: list[tuple[ModelSpec, ...]] = []
    for name, tier in wanted or [("", 2), ("", 3)]:
        bounded = bound_tier(tier, tier_min, tier_max)
        models = models_for(topology, bounded, overrides=overrides)
        if bounded != tier:
            used = {m[0].name for m in chosen}
            models = (*(m for m in models if m.name not in used),
                      *(m for m in models if m.name in used))
        elif name:
            first = topology.find_model(name)
            models = (first, *(m for m in models if m.name != first.name))
        chosen.append(models)
    return chosen
