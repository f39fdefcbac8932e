"""The replayed workload of the ``learning`` scenario: 10 kinds of SEQUENTIAL task, each a
family of similar task texts, and the tier each kind needs (pure data, no I/O).

A kind's texts share a template and differ in two or three slots ("... parses a CSV of
*orders* and totals them by *customer*"), so two texts of one kind overlap well above the case
base's ``cases.min_similarity`` (0.3, Jaccard over words: ``actors.router._cases``) while texts
of different kinds share almost no word. Every kind has one ``marker`` word found in all of its
texts and in no other kind's: the simulated model (``bench._sim_model``) recognises a kind by
it and knows the least tier that can do it.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """A family of similar tasks.

    Attributes:
        name: short identifier.
        min_tier: the least model tier (1-4) that solves it; below it the model is stuck.
        marker: a word in every text of this kind and in no other kind's.
        template: the text with ``{0}``, ``{1}``, ... slots.
        slots: the choices of each slot.
    """

    name: str
    min_tier: int
    marker: str
    template: str
    slots: tuple[tuple[str, ...], ...]

    def texts(self) -> list[str]:
        """Every text of the kind (the product of its slots), in a fixed order."""
        return [self.template.format(*choice) for choice in itertools.product(*self.slots)]


KINDS: tuple[Kind, ...] = (
    Kind("csv_totals", 1, "csv",
         "write a python script that parses a CSV of {0} and totals them by {1}",
         (("orders", "invoices", "payments", "refunds", "shipments"),
          ("customer", "vendor", "region", "month"))),
    Kind("rename_photos", 1, "rename",
         "rename every {0} in the {1} folder so the filename starts with its {2}",
         (("jpeg photo", "png screenshot", "raw image", "heic picture"),
          ("downloads", "camera", "desktop"),
          ("capture date", "camera model"))),
    Kind("flask_pagination", 2, "flask",
         "add {0} pagination to the {1} listing endpoint of our flask api",
         (("cursor", "offset", "keyset", "page number"),
          ("users", "articles", "comments", "tickets", "products"))),
    Kind("regex_validator", 2, "regex",
         "build a regex validator for {0} with unit tests covering {1} inputs",
         (("email addresses", "phone numbers", "postal codes", "iban strings", "ipv6 hosts"),
          ("malformed", "unicode", "empty", "overlong"))),
    Kind("race_fix", 3, "race",
         "fix the race condition in the {0} reconnect logic of the {1} client",
         (("websocket", "grpc stream", "mqtt session", "redis pubsub"),
          ("chat", "trading", "telemetry", "notification", "multiplayer"))),
    Kind("library_schema", 3, "schema",
         "design a {0} schema for a {1} lending system with {2} and reservations",
         (("postgres", "mysql", "sqlite"),
          ("library", "tool", "equipment", "bicycle"),
          ("late fines", "waitlists"))),
    Kind("ci_pipeline", 3, "dockerfile",
         "create a dockerfile plus {0} pipeline that builds and publishes the {1} service",
         (("github actions", "gitlab ci", "jenkins", "circleci"),
          ("rust", "golang", "kotlin", "elixir", "haskell"))),
    Kind("raft_proof", 4, "leader",
         "prove that leader election in our {0} consensus module never yields two leaders "
         "during {1}",
         (("raft", "paxos", "zab", "viewstamped"),
          ("network partitions", "clock skew", "rolling restarts", "disk stalls", "gc pauses"))),
    Kind("event_sourcing", 4, "monolith",
         "plan the migration of our {0} monolith to event sourcing with zero downtime and "
         "{1} replay",
         (("billing", "inventory", "booking", "payroll", "logistics"),
          ("idempotent", "ordered", "partitioned", "versioned"))),
    Kind("memory_leak", 4, "leak",
         "track down the memory leak in the {0} extension module that decodes {1} frames",
         (("cython", "rust pyo3", "cffi", "c api"),
          ("h264 video", "opus audio", "protobuf", "avro", "msgpack"))),
)

BY_MARKER = {kind.marker: kind for kind in KINDS}


def workload(tasks: int, seed: int = 7) -> list[tuple[Kind, str]]:
    """``tasks`` (kind, text) pairs, interleaved across kinds (task ``i`` is of kind
    ``i % 10``); each kind's texts are drawn without repetition (seeded) until its family
    is used up, then again."""
    rng = random.Random(seed)
    pools = {kind.name: [] for kind in KINDS}  # type: dict[str, list[str]]
    out = []
    for i in range(tasks):
        kind = KINDS[i % len(KINDS)]
        pool = pools[kind.name]
        if not pool:
            pool.extend(kind.texts())
            rng.shuffle(pool)
        out.append((kind, pool.pop()))
    return out


def kind_of(text: str) -> Kind | None:
    """The kind whose marker word is in ``text`` (None: not a workload task)."""
    from actors.router._cases import words

    found = set(words(text))
    return next((kind for marker, kind in BY_MARKER.items() if marker in found), None)
