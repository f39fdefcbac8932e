"""The ``tracing`` scenario: what tracing costs an actor per step, off and on.

One actor's hot path (``Dispatcher.deliver`` → ``BenchPlanner``'s handler → ``ctx.send`` →
PubAck → ack and ``handled`` event) runs in a process of its own against an in-process stand-in
of the NATS client that answers each JetStream publish with a PubAck at once, so the figure is
the runtime's own CPU per step, with nothing else on the machine in it. Three variants, each
in its own process (OpenTelemetry's provider is set once per process):

- ``none``: the runtime with its tracing calls replaced by constants (no trace context at
  all): the floor.
- ``off``: as deployed without ``OTEL_EXPORTER_OTLP_ENDPOINT``: an SDK provider without a
  processor; a delivery's trace is two strings (``runtime._tracing``).
- ``on``: spans recorded and exported over OTLP http/protobuf by OpenTelemetry's batch
  processor to a local receiver in the bench process (its thread's CPU counted: it is the
  actor's). Spans the batch processor dropped (its queue holds 2,048) are reported.

Figures: ``cpu_per_step`` (µs, median of ``ROUNDS``) per variant, ``off_over_none`` and
``on_over_off`` (ratios), ``spans_received`` for ``on``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._otlp import otlp_receiver
from bench._store import Figure

SCENARIO = "tracing"
VARIANTS = ("none", "off", "on")
ROUNDS = 5
_log = logging.getLogger("bench.tracing")


class _StubClient:
    """What the dispatcher and the publisher use of ``nats.aio.client.Client``: publishes are
    counted, and a publish that asks for a reply on the publisher's inbox is answered with a
    PubAck by ``answer_pubacks``."""

    def __init__(self) -> None:
        self.published = 0
        self._inbox_cb: Any = None
        self._replies: list[str] = []

    def new_inbox(self) -> str:
        return "_INBOX.bench"

    async def subscribe(self, subject: str, cb: Any = None, **_: Any) -> Any:
        self._inbox_cb = cb
        return self

    async def unsubscribe(self) -> None:
        pass

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        self.published += 1
        if reply:
            self._replies.append(reply)

    async def answer_pubacks(self) -> None:
        from nats.aio.msg import Msg

        replies, self._replies = self._replies, []
        for reply in replies:
            await self._inbox_cb(Msg(_client=self, subject=reply,  # type: ignore[arg-type]
                                     data=b'{"stream":"SB_TASK_EVALUATOR","seq":1}'))


def _without_tracing() -> None:
    """Replace the runtime's tracing calls by constants (the ``none`` variant)."""
    from runtime import _actor, _dispatch
    from runtime._tracing import DeliveryTrace

    constant = DeliveryTrace("", "", None)
    _dispatch.begin_delivery = lambda *_args, **_kw: constant  # type: ignore[attr-defined]
    # The names runtime._actor imported from runtime._tracing, replaced where they are used.
    _actor.current_span_ids = lambda: ("", "")  # type: ignore[attr-defined]
    _actor.start_publish = lambda *_args, **_kw: None  # type: ignore[attr-defined]


async def _steps(steps: int) -> tuple[float, int]:
    """Process CPU seconds of ``steps`` deliveries through the planner's hot path, and the
    publishes made."""
    from nats.aio.msg import Msg

    from bench._runtime_actors import BenchPlanner
    from core.config import Settings, load_topology
    from protocol import ActorId, ChatMessage, Classification, ReplyTo, RequestFacts, encoder
    from runtime import Dispatcher, Services
    from runtime._publish import Publisher

    topology = load_topology()
    nc = _StubClient()
    publisher = Publisher(nc)  # type: ignore[arg-type]
    await publisher.start()
    services = Services(nc=nc, js=None, sessions=None, topology=topology,  # type: ignore[arg-type]
                        settings=Settings(), subjects=topology.subjects, runs=None,  # type: ignore[arg-type]
                        checkpoints=None, users=None, publisher=publisher)  # type: ignore[arg-type]
    dispatcher = Dispatcher(BenchPlanner(services, ActorId("planner", 0)))
    publisher.after_settling(dispatcher.flush_acks)
    chat = ChatMessage(message_id="m" * 24, session="rt-0123456789abcdef", origin="benchrt",
                       user_id="bench", text="hello", sent_at=time.time())
    data = encoder.encode(Classification(reply_to=ReplyTo.of(chat),
                                         request=RequestFacts.of(chat)))
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    messages = [Msg(_client=nc, subject="sb.task.planner",  # type: ignore[arg-type]
                    reply=f"$JS.ACK.SB_TASK_PLANNER.sb-planner.1.{i}.{i}.1700000000000000000.0",
                    data=data, headers={"Nats-Msg-Id": f"classifier:1:planner:{i}",
                                        "traceparent": parent})
                for i in range(1, steps + 1)]
    before = time.process_time()
    for msg in messages:
        dispatcher.deliver(msg, _nothing)
        await asyncio.sleep(0)  # the handler's task runs to its send
        await nc.answer_pubacks()
    used = time.process_time() - before
    await publisher.stop()
    return used, nc.published


def _nothing() -> None:
    pass


def _child(variant: str, steps: int) -> None:
    """Run one variant and print its figures as JSON (``python -m bench._tracing``)."""
    from runtime import setup_tracing, shutdown_tracing

    if variant == "none":
        _without_tracing()
    setup_tracing("switchboard-bench")
    asyncio.run(_steps(max(200, steps // 10)))  # warm-up: caches, first imports
    rounds = [asyncio.run(_steps(steps)) for _ in range(ROUNDS)]
    shutdown_tracing(timeout_s=30.0)
    per_step = [used / steps * 1e6 for used, _ in rounds]
    print(json.dumps({"variant": variant, "cpu_per_step_us": statistics.median(per_step),
                      "rounds_us": per_step, "publishes": rounds[0][1]}))


def run_tracing(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the three variants one after another, each in its own process."""
    steps = 5_000 if quick else 50_000
    results: dict[str, dict[str, Any]] = {}
    with otlp_receiver() as receiver:
        for variant in VARIANTS:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            if variant == "on":
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url
            done = subprocess.run([sys.executable, "-m", "bench._tracing", variant,
                                   "--steps", str(steps)], env=env, capture_output=True,
                                  text=True, timeout=600, check=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            _log.info("tracing %s: %.1f µs per step (rounds %s)", variant,
                      results[variant]["cpu_per_step_us"],
                      " ".join(f"{r:.1f}" for r in results[variant]["rounds_us"]))
        spans_received = len(receiver.received())
    figures = [Figure(scenario=SCENARIO, flow=v, metric="cpu_per_step",
                      value=results[v]["cpu_per_step_us"], unit="µs",
                      params={"steps": steps, "rounds": ROUNDS,
                              "rounds_us": results[v]["rounds_us"]})
               for v in VARIANTS]
    none, off, on = (results[v]["cpu_per_step_us"] for v in VARIANTS)
    # Two spans a step when recorded: the delivery's CONSUMER span, its send's PRODUCER span.
    spans_made = 2 * (steps * ROUNDS + max(200, steps // 10))
    figures += [
        Figure(scenario=SCENARIO, flow="off", metric="off_over_none", value=off / none,
               unit="ratio"),
        Figure(scenario=SCENARIO, flow="on", metric="on_over_off", value=on / off, unit="ratio"),
        Figure(scenario=SCENARIO, flow="on", metric="spans_received", value=spans_received,
               unit="spans", params={"spans_made": spans_made}),
    ]
    _log.info("tracing off ÷ none %.3f, on ÷ off %.2f; spans received %d of %d",
              off / none, on / off, spans_received, spans_made)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._tracing")
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=10_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    _child(args.variant, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
