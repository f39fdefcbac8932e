"""What one model call used: tokens (the provider's count, else counted locally) and cost in US
dollars by litellm's bundled price map, on every path of ``modelcall._client``."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from core.config import ModelSpec
from modelcall import _providers
from modelcall._errors import provider_of
from modelcall._reply import Fold
from protocol import Usage

_log = logging.getLogger(__name__)

LOCAL_SERVER_PROVIDERS = frozenset({"ollama", "ollama_chat"})
"""Providers whose model information litellm reads from the model's own server with a
blocking HTTP call (``POST /api/show``, ``litellm/llms/ollama/common_utils.py``) for a model
its map does not know: with litellm 1.97, 5 on a model's first call and 2 on every later
one (the Responses-API bridge check, twice, then the cost and logging of the answer).
``modelcall._client._map_local_model`` puts each such model in litellm's map once per
process, so litellm asks once. Their models run locally, so cost nothing, and take a JSON
schema as ``format`` (Ollama 0.5 and later: https://ollama.com/blog/structured-outputs;
litellm maps a ``json_schema`` ``response_format`` onto it)."""


def usage_of(litellm: ModuleType, spec: ModelSpec, messages: list[dict[str, Any]],
             fold: Fold) -> Usage:
    """Tokens from the answer's usage (the stream's usage chunk, or the one answer's), else
    counted locally; cost where litellm knows the model's price."""
    if fold.usage is not None:
        prompt = int(fold.usage.get("prompt_tokens") or 0)
        completion = int(fold.usage.get("completion_tokens") or 0)
    else:
        prompt, completion = _count_tokens(litellm, spec.name, messages, fold.text)
    return Usage(model=spec.name, prompt_tokens=prompt, completion_tokens=completion,
                 cost_usd=cost(litellm, spec.name, prompt, completion), calls=1)


def _count_tokens(litellm: ModuleType, model: str, messages: list[dict[str, Any]],
                  text: str) -> tuple[int, int]:
    try:
        return (int(litellm.token_counter(model=model, messages=messages)),
                int(litellm.token_counter(model=model, text=text)) if text else 0)
    except Exception:  # a tokenizer problem must not fail the call
        _log.debug("token_counter failed for %s; estimating", model, exc_info=True)
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        return chars // 4 + 1, len(text) // 4


def cost(litellm: ModuleType, model: str, prompt: int, completion: int) -> float:
    """US dollars for the tokens, by litellm's bundled price map (``litellm.get_model_info``,
    per-token input and output prices, looked up once per model); 0.0 for unpriced models and
    local ones (``LOCAL_SERVER_PROVIDERS``)."""
    input_price, output_price = _prices(litellm, model)
    return input_price * prompt + output_price * completion


_price_cache: dict[str, tuple[float, float]] = {}


def _prices(litellm: ModuleType, model: str) -> tuple[float, float]:
    if model not in _price_cache:
        prices = (0.0, 0.0)
        provider = provider_of(model)
        if provider not in _providers.registered and provider not in LOCAL_SERVER_PROVIDERS:
            try:
                info = litellm.get_model_info(model=model)
                prices = (float(info.get("input_cost_per_token") or 0.0),
                          float(info.get("output_cost_per_token") or 0.0))
            except Exception:  # litellm raises many kinds for unpriced models
                _log.debug("no price for %s", model)
        _price_cache[model] = prices
    return _price_cache[model]
