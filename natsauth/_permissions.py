"""What each NATS identity may publish and subscribe to: one per actor role, the gateway, the
HTTP API and the CLI, derived from the names in ``protocol.Subjects`` and the message flow below.

Subjects of the JetStream API used here (docs.nats.io, "JetStream wire API reference"; nats-py
2.16 ``nats/js/manager.py``, ``client.py``, ``kv.py``, ``object_store.py``):

- ``$JS.API.STREAM.INFO.<stream>``: open a stream, a KV bucket (``KV_<bucket>``) or an object
  store (``OBJ_<bucket>``); ``STREAM.CREATE`` / ``UPDATE``: provision it;
- ``$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>``, ``CONSUMER.INFO``: a durable
  consumer; ``CONSUMER.CREATE.<stream>[.<name>[.<filter>]]``: an ordered (ephemeral) one;
- ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``: a pull request;
- ``$JS.ACK.<stream>.<durable>.>``: ack, nak, term, in-progress of a delivery;
  ``$JS.FC.<stream>.>``: flow-control answers of a push (ordered) consumer;
- ``$JS.API.DIRECT.GET.<stream>.>``, ``STREAM.MSG.GET.<stream>``: read one stored message;
- ``$KV.<bucket>.<key>``: a KV put or delete; ``$O.<bucket>.>``: object chunks and metadata.

Reading a stream needs one of the consumer or get subjects of that stream, so an identity
given none for a stream cannot read it; ``STREAM.INFO`` (the configuration and counts) is
allowed on every stream the runtime opens at start, and ``STREAM.NAMES`` (names only) to the
users of the object store, whose nats-py ``get`` looks its stream up that way. Replies come
to the identity's own inbox prefix (``_INBOX.<token>``, ``inbox_prefix``), so no identity
can read another's replies — among them the messages a pull request brings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol import AGENT_ROLES, Subjects

GATEWAY, API, CLI = "gateway", "api", "cli"
"""The identities that are not actor roles."""

INBOX_TOKEN_CHARS = 16
"""Characters of the public key (after its ``U``) in an identity's inbox prefix: 80 bits."""


def inbox_prefix(public_key: str) -> str:
    """The inbox prefix of the identity whose public nkey is ``public_key`` (``U...``):
    ``_INBOX.<16 characters of the key>``; nats-py's ``inbox_prefix`` option. The client
    derives it from its seed, the server configuration from the same key."""
    return f"_INBOX.{public_key[1:1 + INBOX_TOKEN_CHARS]}"


def sends_to(role: str) -> tuple[str, ...]:
    """The roles whose task subjects ``role`` publishes to (``MessageContext.send`` in each
    actor module): the classifier to the planner, the brainstorm and any agent role (SIMPLE,
    BREAKGLASS, a paused run's answer); the planner to the agent roles; an agent role to the
    evaluator and the reflector (a 👎's reflection) and to itself (an approval's deadline,
    docs/design.md#approvals); the evaluator to the reflector; the brainstorm to the
    consolidator."""
    if role == "classifier":
        return ("planner", "brainstorm", *AGENT_ROLES)
    if role == "planner":
        return AGENT_ROLES
    if role in AGENT_ROLES:
        return ("evaluator", "reflector", role)
    return {"evaluator": ("reflector",), "brainstorm": ("consolidator",)}.get(role, ())


CASE_READERS = frozenset({"classifier", "planner", "reflector"})
"""Roles that follow the case base (``actors.modeled.CaseModelActor``)."""
CASE_WRITERS = frozenset({"reflector"})
"""Roles that store cases."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects one identity may publish to and subscribe to (NATS wildcards ``*`` and ``>``);
    everything else is refused by the server."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def _unique(subjects: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(subjects))


def _info(stream: str) -> str:
    return f"$JS.API.STREAM.INFO.{stream}"


def _read_stream(stream: str) -> list[str]:
    """Follow ``stream`` with an ordered consumer and get single messages from it."""
    return [f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.*", f"$JS.API.CONSUMER.DELETE.{stream}.*",
            f"$JS.FC.{stream}.>",
            f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.STREAM.MSG.GET.{stream}"]


def _kv(bucket: str, *, create: bool = False) -> list[str]:
    """Read, write and watch the KV bucket ``bucket`` (and create it when ``create``)."""
    stream = f"KV_{bucket}"
    created = [f"$JS.API.STREAM.CREATE.{stream}"] if create else []
    return [_info(stream), f"$KV.{bucket}.>", *_read_stream(stream), *created]


def _object_store(bucket: str) -> list[str]:
    """Read, write, watch and delete objects of ``bucket`` (a purge removes an object's
    chunks). nats-py's ``ObjectStore.get`` finds its stream by subject (``STREAM.NAMES``,
    which lists stream names, never messages)."""
    stream = f"OBJ_{bucket}"
    return [_info(stream), f"$O.{bucket}.>", *_read_stream(stream),
            f"$JS.API.STREAM.PURGE.{stream}", "$JS.API.STREAM.NAMES"]


def _opened_at_start(subjects: Subjects, roles: Iterable[str]) -> list[str]:
    """``STREAM.INFO`` of everything an actor process opens at start (``runtime.bus.provision``
    and the runtime's buckets): every task stream, the shared streams, the state buckets."""
    streams = [subjects.task_stream(r) for r in roles]
    streams += [subjects.cases_stream, subjects.outbox_stream, subjects.events_stream,
                subjects.control_stream, subjects.dead_letter_stream]
    return [_info(s) for s in streams]


def _shared_state(subjects: Subjects) -> list[str]:
    """The buckets every actor role opens and may write: sessions, run locks, checkpoints,
    per-user memory, artifacts and their index."""
    buckets = (subjects.sessions_bucket, subjects.runs_bucket, subjects.checkpoints_bucket,
               subjects.users_bucket, subjects.artifacts_index_bucket)
    return [s for b in buckets for s in _kv(b)] + _object_store(subjects.artifacts_bucket)


def role_permissions(subjects: Subjects, roles: Iterable[str], role: str, inbox: str
                     ) -> Permissions:
    """What the actor ``role`` may do: consume its own task stream through its durable
    consumer, publish to the task subjects of ``sends_to(role)``, to any outbox, its own
    events and dead letters, use the shared state buckets, follow (and for the reflector
    write) the case base, read the control stream (agent roles: the abort flag).

    Args:
        subjects: the deployment's names.
        roles: every actor role of the topology.
        role: the identity's role.
        inbox: its inbox prefix (``inbox_prefix``).
    """
    stream, durable = subjects.task_stream(role), subjects.durable(role)
    publish = [
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
        f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
        *_opened_at_start(subjects, roles),
        *(subjects.task(target) for target in sends_to(role)),
        subjects.outbox_all,
        f"{subjects.prefix}.event.{role}.>",
        subjects.dead_letter(role),
        *_shared_state(subjects),
    ]
    if role in CASE_READERS:
        publish += _read_stream(subjects.cases_stream)
    if role in CASE_WRITERS:
        publish.append(subjects.cases_all)
    if role in AGENT_ROLES:
        publish.append(f"$JS.API.STREAM.MSG.GET.{subjects.control_stream}")
    return Permissions(_unique(publish), (f"{inbox}.>",))


def gateway_permissions(subjects: Subjects, inbox: str) -> Permissions:
    """What a gateway (Discord bots, the Interactions endpoint) may do:
    send people's messages to the classifier and their controls (abort on the control
    stream, feedback and deletion to the reflector, merge / discard to an agent role); read
    its outboxes through durable consumers on the outbox stream; use its buckets (bots,
    limits, messages: created when missing), the sessions, run and user buckets, the
    artifacts; publish its own events."""
    outbox = subjects.outbox_stream
    publish = [
        subjects.task("classifier"), subjects.task("reflector"),
        *(subjects.task(role) for role in AGENT_ROLES),
        subjects.control_all,
        _info(subjects.task_stream("classifier")), _info(outbox),
        f"$JS.API.CONSUMER.DURABLE.CREATE.{outbox}.*", f"$JS.API.CONSUMER.CREATE.{outbox}.>",
        f"$JS.API.CONSUMER.INFO.{outbox}.*", f"$JS.API.CONSUMER.MSG.NEXT.{outbox}.*",
        f"$JS.ACK.{outbox}.>",
        f"{subjects.prefix}.event.{GATEWAY}.>",
        *(s for b in (subjects.bots_bucket, subjects.limits_bucket, subjects.messages_bucket)
          for s in _kv(b, create=True)),
        *_shared_state(subjects),
    ]
    return Permissions(_unique(publish), (f"{inbox}.>",))


API_OUTBOX_DURABLE = f"gateway-{API}"
"""The API's outbox consumer (``api._outbox.durable_name`` of its origin, ``api``)."""


def api_permissions(subjects: Subjects, roles: Iterable[str], inbox: str) -> Permissions:
    """What the HTTP API (``api/``) may do: send requests to the classifier, aborts to the
    control stream and approval decisions to the agent roles; read its outbox through its
    durable consumer, and replay its outbox and a session's events to an SSE client (ordered
    consumers); read every role's consumer state (``/healthz``, ``/readyz``, ``/metrics``);
    keep its runs (``API_RUNS`` bucket) and files (``API_FILES`` object store), created when
    missing; read checkpoints (a paused run's question) and the artifacts; read, remove and
    replay dead letters (``/v1/dead-letters``: a replay publishes to the task subject of any
    role); publish its own execution events (webhook deliveries)."""
    outbox, durable = subjects.outbox_stream, API_OUTBOX_DURABLE
    dlq = subjects.dead_letter_stream
    roles = tuple(roles)
    publish = [
        subjects.task("classifier"), subjects.control_all,
        *(subjects.task(role) for role in AGENT_ROLES),
        _info(subjects.task_stream("classifier")), _info(outbox), _info(subjects.events_stream),
        f"$JS.API.CONSUMER.DURABLE.CREATE.{outbox}.{durable}",
        f"$JS.API.CONSUMER.INFO.{outbox}.{durable}",
        f"$JS.API.CONSUMER.MSG.NEXT.{outbox}.{durable}", f"$JS.ACK.{outbox}.{durable}.>",
        *_read_stream(outbox), *_read_stream(subjects.events_stream),
        *(f"$JS.API.CONSUMER.INFO.{subjects.task_stream(r)}.{subjects.durable(r)}"
          for r in roles),
        *_kv(subjects.api_runs_bucket, create=True),
        *_object_store(subjects.api_files_bucket),
        f"$JS.API.STREAM.CREATE.OBJ_{subjects.api_files_bucket}",
        *_kv(subjects.checkpoints_bucket), *_kv(subjects.artifacts_index_bucket),
        *_object_store(subjects.artifacts_bucket),
        _info(dlq), *_read_stream(dlq), f"$JS.API.STREAM.MSG.DELETE.{dlq}",
        *(subjects.task(r) for r in roles),
        f"{subjects.prefix}.event.{API}.>",
    ]
    return Permissions(_unique(publish), (f"{inbox}.>",))


def cli_permissions(subjects: Subjects, inbox: str) -> Permissions:
    """What the operator's command line may do: the whole JetStream API of the account
    (``switchboard up`` provisions every stream, bucket and consumer; ``events tail``,
    ``trace`` and ``bots`` read and write them), talk like a gateway (``switchboard chat``
    reads its outbox through an ordered consumer, ``gateway.bridge``), and nothing else."""
    publish = [
        "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>",
        subjects.task("classifier"), subjects.task("reflector"),
        *(subjects.task(role) for role in AGENT_ROLES),
        subjects.control_all,
    ]
    return Permissions(_unique(publish), (f"{inbox}.>", subjects.outbox_all))


def permissions(subjects: Subjects, roles: Iterable[str], identity: str, inbox: str
                ) -> Permissions:
    """The permissions of ``identity``: an actor role, ``gateway``, ``api`` or ``cli``.

    Raises:
        ValueError: ``identity`` is none of these.
    """
    roles = tuple(roles)
    if identity in roles:
        return role_permissions(subjects, roles, identity, inbox)
    if identity == GATEWAY:
        return gateway_permissions(subjects, inbox)
    if identity == API:
        return api_permissions(subjects, roles, inbox)
    if identity == CLI:
        return cli_permissions(subjects, inbox)
    msg = f"unknown identity {identity!r}: an actor role, {GATEWAY}, {API} or {CLI}"
    raise ValueError(msg)
