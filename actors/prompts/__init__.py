"""Prompt templates: one chain-of-thought system prompt per agent role, and the planner's,
reflector's and brainstormer's.

Templates are ``<name>.txt`` files beside this module, with ``$name`` placeholders
(``string.Template``). The first line of each is ``You are Switchboard's <purpose>.``, which
the offline model reads (``offline_model``).

Placeholders: agent roles ``$plan``, ``$memory``; ``planner`` ``$memory``, ``$history``;
``reflector`` ``$task``, ``$trajectory``, ``$scores``; ``brainstorm`` none; ``router``
``$respond_rule``, ``$task_types``, ``$roles``, ``$history``; the planner also ``$cases``.
"""

from __future__ import annotations

import functools
import logging
import string
from importlib import resources
from types import MappingProxyType

from core.errors import ConfigError
from protocol import AGENT_ROLES

_log = logging.getLogger(__name__)

ROLE_TEMPLATES: MappingProxyType[str, str] = MappingProxyType({role: role for role in AGENT_ROLES})
"""Agent role → template name (each role has its own ``<role>.txt``)."""

TEMPLATES: tuple[str, ...] = (*AGENT_ROLES, "planner", "reflector", "brainstorm", "router")
"""Every template name."""


@functools.cache
def _template(name: str) -> string.Template:
    if not name.isidentifier():
        msg = f"invalid prompt template name {name!r}"
        raise ConfigError(msg)
    try:
        text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        msg = f"no prompt template {name!r}; known: {', '.join(TEMPLATES)}"
        raise ConfigError(msg) from exc
    return string.Template(text)


def render(name: str, **values: str) -> str:
    """The template ``name`` with its ``$placeholders`` replaced.

    Args:
        name: a template name (``python_coder``, ``planner``, ... see ``TEMPLATES``).
        **values: a string for every placeholder of the template; extra values are ignored.
            Pass ``""`` for an empty section.

    Raises:
        ConfigError: the template does not exist, or a placeholder has no value.
    """
    template = _template(name)
    try:
        return template.substitute(values)
    except KeyError as exc:
        msg = f"prompt template {name!r} needs a value for ${exc.args[0]}"
        raise ConfigError(msg) from exc
    except ValueError as exc:
        msg = f"prompt template {name!r} is malformed: {exc}"
        raise ConfigError(msg) from exc
