"""NATS connection and JetStream provisioning: streams, the sessions bucket, durable consumers.

Stream layout (docs/design.md#reliability-and-scale; names from ``protocol.Subjects``):

- one work-queue stream per actor role (``SB_TASK_<ROLE>``): a task is removed once acked;
- ``SB_OUTBOX`` (1 h), ``SB_EVENTS`` (7 days, 1 GiB), ``SB_CONTROL`` (1 day), ``SB_DLQ``
  (30 days): limits retention;
- ``SB_CASES``: the case base, one message per case subject, at most ``cases.max_cases``
  (the oldest discarded);
- KV bucket ``SB_SESSIONS`` with direct get (26 % faster gets, docs/measurements.md).

Every stream and the bucket keep ``topology.stream_replicas`` copies: 1 on one server, 3 on a
NATS cluster (R3, docs/design.md#reliability-and-scale).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

import natsauth as security
from core.config import ActorSpec, Settings, Topology
from core.errors import BrokerError, NotRunningError
from protocol import Subjects

_log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
API_TIMEOUT_S = 10.0
PROVISION_TIMEOUT_S = 30.0
"""How long provisioning may take in all, waiting out a cluster that is still forming."""
FORMING_ERR_CODES = frozenset({10005, 10008, 10202})
"""JetStream API errors of a cluster still forming or changing, waited out while
provisioning: "no suitable peers for placement" (JSClusterNoPeersErrF, 400: the meta leader
does not yet know enough peers for R3), "JetStream system temporarily unavailable"
(JSClusterNotAvailErr, 503) and "cluster member change is in progress"
(JSClusterServerMemberChangeInflightErr, 400); nats-server
``server/jetstream_errors_generated.go``. Seen in CI: a stream of a fresh 3-node cluster
refused with 10005 although its JetStream already answered."""
FORMING_RETRY_MAX_S = 1.0
DUPLICATE_WINDOW_S = 120.0
"""JetStream de-duplication window for task subjects (the server default, 2 minutes)."""
MIN_SERVER_VERSION = (2, 11)
"""The oldest nats-server Switchboard runs on: the run lock's per-message TTL (``Nats-TTL``,
``allow_msg_ttl``) came in 2.11 (ADR-43, nats-io/nats-architecture-and-design)."""


def resolve_nats_url(settings: Settings, override: str | None = None) -> str:
    """The NATS URL to use: ``--nats-url``, ``NATS_URL``, the URL the embedded server wrote
    under the data directory, else ``nats://127.0.0.1:<SB_NATS_PORT>``."""
    if override:
        return override
    if settings.nats_url:
        return settings.nats_url
    url_file = Path(settings.data_dir) / "nats.url"
    if url_file.is_file():
        text = url_file.read_text(encoding="utf-8").strip()
        if text:
            return text
    return f"nats://127.0.0.1:{settings.nats_port}"


async def connect(
    url: str,
    *,
    name: str,
    settings: Settings | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
    reconnect: bool = True,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS.

    Args:
        url: server URL(s), comma-separated (``nats://``, ``tls://``).
        name: connection name shown by the server's ``/connz`` (``classifier/0``, ...).
        settings: credentials (``NATS_USER`` / ``NATS_PASSWORD``, ``NATS_CREDS``,
            ``NATS_NKEY_SEED``) and TLS (``NATS_TLS_CA``, ``NATS_TLS_CERT``, ``NATS_TLS_KEY``):
            ``natsauth.client_options``.
        timeout_s: give up after this many seconds.
        reconnect: keep reconnecting forever after a broker restart (actors) or fail fast
            (command-line tools).
        reconnected_cb: called after each reconnect (pull consumers re-pull then).

    Raises:
        TLSError: no TLS session (unknown CA, wrong host, TLS asked for and not offered).
        AuthError: the server refused the credentials.
        BrokerError: the server cannot be reached within ``timeout_s``, or it is older than
            ``MIN_SERVER_VERSION``.
        ConfigError: a credentials or TLS file is unusable.
    """
    options: dict[str, object] = {
        "servers": [u.strip() for u in url.split(",")],
        "name": name,
        "connect_timeout": timeout_s,
        "allow_reconnect": reconnect,
        "max_reconnect_attempts": -1 if reconnect else 0,
        "reconnect_time_wait": 0.5,
    }
    if settings is not None:
        options.update(security.client_options(settings))
        if security.wants_tls(url, settings):
            security.quiet_tls_close()
    errors = security.ErrorLog(name)
    options["error_cb"] = errors.callback
    if reconnected_cb is not None:
        options["reconnected_cb"] = reconnected_cb
    try:
        async with asyncio.timeout(timeout_s + 1):
            nc = await nats.connect(**options)  # type: ignore[arg-type]
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise security.connect_error(url, exc, errors.last, settings) from exc
    security.watch_refusals(nc, errors)
    if settings is not None:
        try:
            security.check_tls(nc, url, settings)
        except BrokerError:
            await nc.close()
            raise
    version = nc.connected_server_version
    if (version.major, version.minor) < MIN_SERVER_VERSION:
        await nc.close()
        want = ".".join(map(str, MIN_SERVER_VERSION))
        msg = (f"the NATS server at {security.redact(url)} is version {version}: Switchboard "
               f"needs {want} or newer (per-message TTL of the run lock)")
        raise BrokerError(msg)
    return nc


def _task_stream(subjects: Subjects, role: str, replicas: int) -> StreamConfig:
    return StreamConfig(
        num_replicas=replicas,
        name=subjects.task_stream(role),
        subjects=[subjects.task(role)],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
    )


def _shared_streams(subjects: Subjects, replicas: int, max_cases: int = 2000
                    ) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.cases_stream, subjects=[subjects.cases_all],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
            max_msgs_per_subject=1, max_msgs=max_cases, discard=DiscardPolicy.OLD,
            allow_direct=True, duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.outbox_stream, subjects=[subjects.outbox_all],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
            max_age=3600.0, duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.events_stream, subjects=[subjects.events_all],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
            max_age=7 * 86400.0, max_bytes=1 << 30, duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.control_stream, subjects=[subjects.control_all],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
            max_age=86400.0, duplicate_window=DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=subjects.dead_letter_stream, subjects=[subjects.dead_letter_all],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, num_replicas=replicas,
            max_age=30 * 86400.0, duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to ``config`` when a field we set differs.

    Reading first (``STREAM.INFO``) lets an identity allowed to open streams but not to
    create them (``switchboard nats-config``) start on a provisioned server.
    """
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # JSStreamNameExistErr
                raise
            # Created meanwhile with another configuration: bring it to ours.
            await js.update_stream(config)
        return
    current = info.config.as_dict()
    if any(current.get(key) != value for key, value in config.as_dict().items()):
        await js.update_stream(config)


async def _while_forming(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``await call()``, again after a short pause while JetStream answers with one of
    ``FORMING_ERR_CODES`` (bounded by the caller's timeout). A request that is not answered
    is not retried: a server that drops it for permissions is told apart by its owner."""
    delay = 0.1
    while True:
        try:
            return await call()
        except nats.js.errors.APIError as exc:
            if exc.err_code not in FORMING_ERR_CODES:
                raise
            _log.info("JetStream is not ready for %s (%s): trying again in %.1f s", what,
                      exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, FORMING_RETRY_MAX_S)


async def provision(js: JetStreamContext, topology: Topology, roles: Iterable[str]) -> None:
    """Create (or update) the streams of ``roles``, the shared streams and the sessions bucket.

    Idempotent: every process calls it for what it uses, so ``switchboard actor ROLE`` works on
    a fresh server too. A cluster that is still forming is waited out (``FORMING_ERR_CODES``),
    up to ``PROVISION_TIMEOUT_S`` in all.

    Raises:
        PermissionDeniedError: this identity may not create or change a stream that is
            missing or differs (run ``switchboard up`` with the ``cli`` identity first).
        BrokerError: JetStream is not enabled or an API call fails.
    """
    subjects = topology.subjects
    try:
        async with asyncio.timeout(PROVISION_TIMEOUT_S):
            replicas = topology.stream_replicas
            configs = [*_shared_streams(subjects, replicas, topology.cases.max_cases),
                       *(_task_stream(subjects, role, replicas) for role in roles)]
            for config in configs:
                await _while_forming(functools.partial(_ensure_stream, js, config),
                                     f"stream {config.name}")
            for bucket in (subjects.sessions_bucket, subjects.runs_bucket,
                           subjects.checkpoints_bucket, subjects.users_bucket):
                await _while_forming(functools.partial(kv_bucket, js, bucket,
                                                       replicas=replicas), f"bucket {bucket}")
    except TimeoutError as exc:
        refused = security.refusal(js)
        if refused is not None:
            raise refused from exc
        msg = (f"JetStream did not answer within {PROVISION_TIMEOUT_S:.0f} s while provisioning "
               f"streams")
        raise BrokerError(msg) from exc
    except nats.js.errors.ServiceUnavailableError as exc:
        msg = "JetStream is not enabled on this NATS server (start it with -js)"
        raise BrokerError(msg) from exc
    except nats.errors.Error as exc:
        msg = f"provisioning JetStream failed: {exc}"
        raise BrokerError(msg) from exc


async def kv_bucket(js: JetStreamContext, name: str, *, replicas: int = 1) -> KeyValue:
    """The KV bucket ``name``, created when missing: file storage, history 1, direct get, and
    per-key TTLs allowed (run locks expire that way)."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(
            bucket=name, history=1, storage=StorageType.FILE, direct=True, replicas=replicas,
        )
        return await js.create_key_value(config)


async def sessions_bucket(js: JetStreamContext, subjects: Subjects, *, replicas: int = 1
                          ) -> KeyValue:
    """The sessions KV bucket, created when missing (``replicas`` copies in a cluster)."""
    return await kv_bucket(js, subjects.sessions_bucket, replicas=replicas)


async def ensure_consumer(
    js: JetStreamContext, subjects: Subjects, role: str, spec: ActorSpec
) -> tuple[str, str]:
    """Create or update the durable pull consumer every replica of ``role`` shares.

    ``max_deliver`` is one more than ``spec.max_deliveries`` so the runtime itself sees the
    delivery that exceeds the bound and dead-letters it (a crash loop included).

    Returns:
        ``(stream, durable)`` names.

    Raises:
        PermissionDeniedError: this identity may not create the consumer (not ``role``'s).
        BrokerError: JetStream failed or did not answer.
    """
    stream, durable = subjects.task_stream(role), subjects.durable(role)
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliveries + 1,
        max_ack_pending=10_000,
        max_waiting=512,
        filter_subject=subjects.task(role),
    )
    try:
        async with asyncio.timeout(API_TIMEOUT_S):
            await _while_forming(functools.partial(js.add_consumer, stream, config),
                                 f"consumer {durable}")
    except TimeoutError as exc:
        refused = security.refusal(js, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}")
        if refused is not None:
            raise refused from exc
        msg = f"JetStream did not answer within {API_TIMEOUT_S:.0f} s creating consumer {durable}"
        raise BrokerError(msg) from exc
    except nats.errors.Error as exc:
        msg = f"cannot create consumer {durable} on {stream}: {exc}"
        raise BrokerError(msg) from exc
    return stream, durable


async def check_running(js: JetStreamContext, subjects: Subjects) -> None:
    """Raise ``NotRunningError`` unless the classifier's stream exists on this server."""
    try:
        async with asyncio.timeout(API_TIMEOUT_S):
            await js.stream_info(subjects.task_stream("classifier"))
    except nats.js.errors.NotFoundError as exc:
        msg = "Switchboard is not running on this NATS server (no classifier stream)"
        raise NotRunningError(msg) from exc
    except (TimeoutError, nats.errors.Error) as exc:
        msg = f"JetStream did not answer: {exc or type(exc).__name__}"
        raise NotRunningError(msg) from exc
