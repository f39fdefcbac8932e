"""The offline model: a model provider that answers deterministically, in-process, with no key
and no network, so the whole system runs on a fresh machine; every reply says it is offline.

It plays each part of the system plausibly from the prompts it is given (``_script``: the
router's decision through the keyword rules, plans, tool calls that write and test small
programs from a recipe book, ``_recipes``, reflections), and is registered as a provider by
``topology.yaml`` (``providers: {offline: offline_model:OfflineLLM}``). ``_model`` serves calls
in-process; ``_litellm`` is litellm's custom-provider version of it.
"""

from offline_model._model import OfflineLLM

__all__ = ["OfflineLLM"]
