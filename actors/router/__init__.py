"""The router: every decision of whether to answer, which flow, role, tier and models.

Public API:

- ``route_message``: rules → case base → model → keyword rules, for one message;
- ``choose_tier``, ``models_for``, ``escalation_levels``, ``start_level``, ``Level``: tiers and
  the models of each, in fallback order; ``bound_tier``: a tier within a request's rule
  bounds, which every model call of the request keeps to;
- ``CaseBase`` (JetStream), ``CaseIndex``, ``learned_tier``, ``case_lines``: the case base;
- ``keyword_route``: the keyword fallback (also what the offline model answers with);
- ``Route``, ``TierChoice``: decisions as values, with what decided them and why.
"""

from actors.router._casebase import CaseBase
from actors.router._cases import CaseIndex, Similar, case_lines, learned_tier, needed_tier
from actors.router._keywords import BRANCH_TRIGGERS, complexity_of, keyword_route
from actors.router._model import (
    AMBIENT_RULE,
    SCHEMA,
    UnparsableAnswerError,
    parse_answer,
    response_format_for,
)
from actors.router._route import AskModel, route_message
from actors.router._tiers import (
    Level,
    bound_tier,
    brainstorm_models,
    choose_tier,
    escalation_levels,
    models_for,
    start_level,
    tier_of,
)
from actors.router._types import Route, TierChoice

__all__ = [
    "AMBIENT_RULE",
    "BRANCH_TRIGGERS",
    "SCHEMA",
    "AskModel",
    "CaseBase",
    "CaseIndex",
    "Level",
    "Route",
    "Similar",
    "TierChoice",
    "UnparsableAnswerError",
    "bound_tier",
    "brainstorm_models",
    "case_lines",
    "choose_tier",
    "complexity_of",
    "escalation_levels",
    "keyword_route",
    "learned_tier",
    "models_for",
    "needed_tier",
    "parse_answer",
    "response_format_for",
    "route_message",
    "start_level",
    "tier_of",
]
