"""Which actor class serves which role."""

from __future__ import annotations

from core.config import actor_kind
from runtime import Actor


def actor_class(role: str) -> type[Actor]:
    """The actor class for ``role`` (imports only that actor's module).

    Raises:
        ConfigError: ``role`` is not an actor of the topology.
    """
    kind = actor_kind(role)
    if kind == "agent":
        from actors.agent import agent_class

        return agent_class(role)
    if kind == "classifier":
        from actors.classifier import Classifier

        return Classifier
    if kind == "planner":
        from actors.planner import Planner

        return Planner
    if kind == "evaluator":
        from actors.evaluator import Evaluator

        return Evaluator
    if kind == "reflector":
        from actors.reflector import Reflector

        return Reflector
    if kind == "brainstorm":
        from actors.brainstorm import Brainstorm

        return Brainstorm
    from actors.consolidator import Consolidator

    return Consolidator
