"""The registered custom model providers (``topology.yaml`` ``providers:``) and the one
import of litellm: the single owner of both. ``_client`` and ``_direct`` ask here whether a
provider is served in-process and for litellm.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Any

from core.errors import ConfigError

_log = logging.getLogger(__name__)

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")

registered: dict[str, str] = {}
"""Registered custom providers: name → ``module:Class`` (keeps registration idempotent)."""
_handlers: dict[str, Any] = {}
"""Registered custom providers: name → handler instance."""




def handler(provider: str) -> Any:
    """The in-process handler of a registered ``provider``, or None."""
    return _handlers.get(provider)


def load_litellm() -> ModuleType:
    """Import litellm once, quietly, with its bundled cost map (no network at import), and
    give it the registered custom providers."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    if not getattr(litellm, "_switchboard_quiet", False):
        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        for name in _LITELLM_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        litellm._switchboard_quiet = True
        for name, made in _handlers.items():
            _give_litellm(litellm, name, made)
    return litellm


def _give_litellm(litellm: Any, name: str, handler: Any) -> None:
    """Put ``handler`` in litellm's ``custom_provider_map`` under ``name`` (replacing an
    earlier entry of that name)."""
    custom = handler if isinstance(handler, litellm.CustomLLM) else handler.litellm_handler()
    current = getattr(litellm, "custom_provider_map", [])
    litellm.custom_provider_map = [
        item for item in current if item["provider"] != name
    ] + [{"provider": name, "custom_handler": custom}]


MOVED_PROVIDERS = {"actors.llm.offline:OfflineLLM": "offline_model:OfflineLLM"}
"""Provider classes that moved, by the name ``topology.yaml`` files written before use."""


def register_providers(providers: dict[str, str]) -> None:
    """Register custom model providers (``topology.yaml`` ``providers:``).

    A provider is a ``litellm.CustomLLM`` subclass, or a class served in-process without
    litellm: an async ``direct`` method (``offline_model.OfflineLLM.direct``) and a
    ``litellm_handler()`` giving its ``CustomLLM`` for ``transport: litellm``. The latter does
    not import litellm until a call needs it.

    Args:
        providers: provider name (the part of a model name before ``/``) → ``module:Class``,
            e.g. ``{"offline": "offline_model:OfflineLLM"}``. Registering the same name
            twice replaces the earlier entry, never duplicates it.

    Raises:
        ConfigError: a target is not ``module:Class``, cannot be imported, or is neither kind
            of provider.
    """
    for name, named in providers.items():
        target = MOVED_PROVIDERS.get(named, named)
        if target != named:
            _log.warning("topology.yaml names the provider %r as %s, which moved: %s (it is "
                         "used; write the new name)", name, named, target)
        if registered.get(name) == target:
            continue
        made = _handlers[name] = _instantiate(name, target)
        if getattr(sys.modules.get("litellm"), "_switchboard_quiet", False):
            _give_litellm(load_litellm(), name, made)
        registered[name] = target
        _log.info("registered model provider %r -> %s", name, target)


def _instantiate(name: str, target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        msg = f"provider {name!r}: {target!r} is not 'module:Class'"
        raise ConfigError(msg)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        msg = f"provider {name!r}: cannot import {target!r}: {exc}"
        raise ConfigError(msg) from exc
    in_process = all(callable(getattr(cls, method, None))
                     for method in ("direct", "litellm_handler"))
    # A CustomLLM subclass's module imported litellm already.
    custom = getattr(sys.modules.get("litellm"), "CustomLLM", None)
    if not isinstance(cls, type) or not (in_process or (custom and issubclass(cls, custom))):
        msg = (f"provider {name!r}: {target!r} is neither a litellm.CustomLLM subclass nor an "
               f"in-process provider (direct and litellm_handler methods)")
        raise ConfigError(msg)
    return cls()
