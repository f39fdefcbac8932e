"""``GET /metrics``: Switchboard in the Prometheus text format (prometheus-client), for one
scrape of the API process (docs/http-api.md#metrics).

Three sources:

- this API process's own HTTP requests (``switchboard_http_requests_total``), counted by
  ``Metrics.middleware``;
- the execution events of the whole deployment, followed from the API's start by an ordered
  consumer of ``<PREFIX>_EVENTS`` (new events only): requests routed, answers by outcome,
  model calls, tokens and cost, retries and dead letters. Every API replica counts every
  event, so with several replicas scrape one, or aggregate with ``max``, not ``sum``;
- at each scrape, every role's durable consumer (lag, held, redelivered, replicas ready) and
  the dead letters stored per role, read from JetStream (``runtime.consumers``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from protocol import ExecutionEvent, Subjects, event_decoder
from runtime.consumers import RoleConsumer

_log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of ``/metrics`` (the text exposition format prometheus-client writes)."""


class _Scrape(Collector):
    """The gauges read at each scrape: ``update`` sets them, ``collect`` reports them."""

    def __init__(self) -> None:
        self.consumers: list[RoleConsumer] = []
        self.dead_letters: dict[str, int] = {}

    def update(self, consumers: Iterable[RoleConsumer], dead_letters: dict[str, int]) -> None:
        self.consumers, self.dead_letters = list(consumers), dict(dead_letters)

    def collect(self) -> Iterator[Metric]:
        gauges = [
            ("switchboard_consumer_pending_messages", "Tasks of the role stored and not yet "
             "delivered to any replica (consumer lag), messages", "num_pending"),
            ("switchboard_consumer_ack_pending_messages", "Tasks of the role delivered and not "
             "yet acknowledged (being worked on), messages", "num_ack_pending"),
            ("switchboard_consumer_redelivered_messages", "Tasks of the role held and "
             "delivered more than once, messages", "num_redelivered"),
            ("switchboard_role_replicas_ready", "Pull requests waiting on the role's consumer: "
             "replicas with a free slot (an idle replica keeps at least one open)",
             "num_waiting"),
        ]
        for name, text, field in gauges:
            family = GaugeMetricFamily(name, text, labels=["role"])
            for c in self.consumers:
                family.add_metric([c.role], float(getattr(c, field)))
            yield family
        ready = GaugeMetricFamily("switchboard_role_ready", "1 when some replica of the role "
                                  "asks for work, else 0 (/readyz)", labels=["role"])
        up = GaugeMetricFamily("switchboard_consumer_up", "1 when the role's consumer could "
                               "be read, else 0 (the role never started)", labels=["role"])
        for c in self.consumers:
            ready.add_metric([c.role], 1.0 if c.ready else 0.0)
            up.add_metric([c.role], 0.0 if c.error else 1.0)
        yield ready
        yield up
        stored = GaugeMetricFamily("switchboard_dead_letters_stored", "Dead letters kept in "
                                   "the DLQ stream, by role, messages", labels=["role"])
        for role, count in sorted(self.dead_letters.items()):
            stored.add_metric([role], float(count))
        yield stored


class Metrics:
    """The API's Prometheus registry (one per ``ApiApp``, never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "switchboard_http_requests", "HTTP requests this API process answered",
            ["method", "route", "code"], registry=r)
        self.requests = Counter(
            "switchboard_requests", "Requests the router classified, by flow", ["flow"],
            registry=r)
        self.answers = Counter(
            "switchboard_runs", "Requests answered, by flow and outcome: answered, silent (the "
            "router chose not to answer) or the reply's error code", ["flow", "outcome"],
            registry=r)
        self.model_calls = Counter(
            "switchboard_model_calls", "Model calls that answered", ["model", "role"],
            registry=r)
        self.model_errors = Counter(
            "switchboard_model_errors", "Model calls that failed", ["model", "role"],
            registry=r)
        self.model_tokens = Counter(
            "switchboard_model_tokens", "Model tokens, by kind (prompt, completion)",
            ["model", "role", "kind"], registry=r)
        self.model_cost = Counter(
            "switchboard_model_cost_usd", "Model cost in US dollars, as litellm prices it",
            ["model", "role"], registry=r)
        self.retries = Counter(
            "switchboard_retries", "Deliveries that failed and were handed back for a retry",
            ["role"], registry=r)
        self.dead_lettered = Counter(
            "switchboard_dead_lettered", "Tasks set aside in the dead-letter queue", ["role"],
            registry=r)
        self._scrape = _Scrape()
        r.register(self._scrape)

    def count(self, event: ExecutionEvent) -> None:
        """Count one execution event (kinds other than those below are ignored)."""
        match event.kind:
            case "classified":
                self.requests.labels(event.flow or "unknown").inc()
            case "answered":
                outcome = event.detail or "answered"
                self.answers.labels(event.flow or "unknown", outcome[:40]).inc()
            case "model_call":
                self.model_calls.labels(event.model, event.actor).inc()
                self.model_tokens.labels(event.model, event.actor, "prompt").inc(
                    max(0, event.prompt_tokens))
                self.model_tokens.labels(event.model, event.actor, "completion").inc(
                    max(0, event.completion_tokens))
                self.model_cost.labels(event.model, event.actor).inc(max(0.0, event.cost_usd))
            case "model_error":
                self.model_errors.labels(event.model, event.actor).inc()
            case "retry":
                self.retries.labels(event.actor).inc()
            case "dead_letter":
                self.dead_lettered.labels(event.actor).inc()

    def render(self, consumers: Iterable[RoleConsumer], dead_letters: dict[str, int]) -> bytes:
        """The exposition text with the consumers and dead letters just read."""
        self._scrape.update(consumers, dead_letters)
        return generate_latest(self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Counts every request by method, route (its pattern, ``/v1/runs/{run_id}``; ``other``
        when no route matched) and status code."""
        code = 500
        try:
            response: web.StreamResponse = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "other"
            self.http_requests.labels(request.method, route, str(code)).inc()


class EventCounter:
    """Follows the deployment's execution events from now on and counts them into
    ``metrics`` (an ordered consumer of ``<PREFIX>_EVENTS``, recreated by nats-py after a
    gap)."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, metrics: Metrics) -> None:
        self._js, self._subjects, self._metrics = js, subjects, metrics
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        """Start following.

        Raises:
            nats.errors.Error: JetStream refused the consumer (the caller translates it).
        """
        self._sub = await self._js.subscribe(
            self._subjects.events_all, cb=self._on, ordered_consumer=True,
            stream=self._subjects.events_stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))

    async def _on(self, msg: Msg) -> None:
        try:
            event = event_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        self._metrics.count(event)

    async def stop(self) -> None:
        """Stop following (idempotent)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
