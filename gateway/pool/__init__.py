"""The bot pool: bot configurations in JetStream KV, watched and applied live
(docs/design.md#gateways)."""

from gateway.pool._pool import BotPool
from gateway.pool._service import default_bot, open_services, run_gateway
from gateway.pool._store import BotStatus, BotStore

__all__ = ["BotPool", "BotStatus", "BotStore", "default_bot", "open_services", "run_gateway"]
