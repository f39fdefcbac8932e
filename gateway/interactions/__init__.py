"""The Discord Interactions HTTP endpoint: signed requests, PING → PONG, deferred answers
delivered through interaction webhooks (docs/design.md#gateways)."""

from gateway.interactions._run import parse_listen, run_interactions
from gateway.interactions._server import InteractionsEndpoint
from gateway.interactions._verify import load_public_key, verify
from gateway.interactions._webhook import InteractionWebhooks

__all__ = ["InteractionWebhooks", "InteractionsEndpoint", "load_public_key", "parse_listen",
           "run_interactions", "verify"]
