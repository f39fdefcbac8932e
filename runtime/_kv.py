"""A KV bucket read and written on the hot path with as little client work as the protocol
allows: a direct get and a compare-and-set publish, each a request on one reply inbox shared
by the process, settled through a dict entry (``Requests``).

nats-py's ``KeyValue.get`` and ``update`` go through ``Client.request``: a future and an
``asyncio.wait_for`` per call, and for a get a ``JetStreamManager.get_msg`` that decodes the
answer into an ``Entry`` (about 60 µs of CPU a get, 50 a put, measured under load on this
machine: ``bench/README.md#one-requests-cpu``). An actor's answer reads and writes two keys
(its session, the person's memory), so that work is on every request.

The protocol (ADR-8 "JetStream based Key-Value Stores" and ADR-31 "JetStream Direct Get",
nats-io/nats-architecture-and-design):

- bucket ``B`` is the stream ``KV_B``; key ``k`` is the subject ``$KV.B.k``;
- a read is a request to ``$JS.API.DIRECT.GET.KV_B`` with ``{"last_by_subj": "$KV.B.k"}``;
  the answer is the stored message with ``Nats-Sequence`` (the revision) among its headers,
  ``KV-Operation: DEL`` or ``PURGE`` for a deleted key, or a ``404`` status for a key never
  written; a ``503`` status means no server answers for the stream (yet);
- a compare-and-set is a publish to ``$KV.B.k`` with ``Nats-Expected-Last-Subject-Sequence:
  <revision>`` (``0``: the key must never have been written), answered by a PubAck
  (``{"stream": ..., "seq": <new revision>}``) or an error whose ``err_code`` is ``10071``
  when the revision was not the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.errors import BrokerError

WRONG_LAST_SEQUENCE = 10071
"""JetStream's ``err_code`` for a publish whose expected last subject sequence was not the
last (``JSStreamWrongLastSequenceErrF`` in nats-server's ``errors.json``)."""


class _Unserved(BrokerError):
    """No server answers for the bucket's stream (yet): a ``503`` status."""


class _PubAck(msgspec.Struct):
    seq: int = 0
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_encode = msgspec.json.encode


class Requests:
    """Requests whose answers arrive on one reply inbox (``<inbox>.<token>``) of ``nc``.

    Args:
        nc: a connected client.
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._counter = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe the reply inbox."""
        inbox = self._nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await self._nc.subscribe(inbox + ".*", cb=self._on_answer)

    async def stop(self) -> None:
        """Unsubscribe; requests still waiting fail with ``BrokerError``."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(BrokerError("the connection's requests are stopping"))
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()

    async def request(self, subject: str, payload: bytes, headers: dict[str, str] | None,
                      *, timeout_s: float) -> Msg:
        """Publish with a reply subject and wait for the one answer.

        Raises:
            BrokerError: no answer within ``timeout_s`` seconds, or the publish failed.
        """
        if self._sub is None:
            msg = "Requests.start was not called"
            raise RuntimeError(msg)
        token = str(next(self._counter))
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token,
                                   headers=headers)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError as exc:
            msg = f"{subject} did not answer within {timeout_s:g} s"
            raise BrokerError(msg) from exc
        except nats.errors.Error as exc:
            msg = f"request to {subject} failed: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        finally:
            self._waiting.pop(token, None)

    async def _on_answer(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if future is not None and not future.done():
            future.set_result(msg)


@dataclass(frozen=True, slots=True)
class Bucket:
    """The KV bucket ``name``, read by direct get and written by compare-and-set over
    ``requests`` (the module docstring has the protocol). The bucket must allow direct gets
    (``runtime.bus.kv_bucket`` makes them so).

    ``runtime.read_entry`` and ``runtime.compare_and_set`` take a Bucket where they take a
    nats-py ``KeyValue``.
    """

    requests: Requests
    name: str

    async def get(self, key: str, *, timeout_s: float) -> tuple[bytes | None, int | None]:
        """The value and revision of ``key``: ``(None, None)`` for a key never written,
        ``(None, revision)`` for a deleted one (a compare-and-set then starts from the
        delete marker's revision).

        Raises:
            _Unserved: no server answers for the bucket (yet).
            BrokerError: no answer within ``timeout_s`` seconds, or an error status.
        """
        payload = _encode({"last_by_subj": f"$KV.{self.name}.{key}"})
        answer = await self.requests.request(f"$JS.API.DIRECT.GET.KV_{self.name}", payload,
                                             None, timeout_s=timeout_s)
        headers = answer.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None, None
        if status == "503":
            msg = f"no server answers for bucket {self.name}"
            raise _Unserved(msg)
        if status is not None or "Nats-Sequence" not in headers:
            msg = (f"bucket {self.name} answered status {status} reading {key} "
                   f"{headers.get('Description', '')}".rstrip())
            raise BrokerError(msg)
        revision = int(headers["Nats-Sequence"])
        if headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None, revision
        return answer.data or None, revision

    async def put_if(self, key: str, value: bytes, last: int | None, *,
                     timeout_s: float) -> int | None:
        """Store ``value`` under ``key`` if ``last`` is still its revision (None: if it was
        never written); the new revision, or None when another writer came first.

        Raises:
            BrokerError: no answer within ``timeout_s`` seconds, or the server refused it
                for another reason (``_Unserved``: no stream stores the bucket now).
        """
        headers = {"Nats-Expected-Last-Subject-Sequence": str(last or 0)}
        answer = await self.requests.request(f"$KV.{self.name}.{key}", value, headers,
                                             timeout_s=timeout_s)
        status = answer.headers.get("Status") if answer.headers else None
        if status is not None and not answer.data:
            error_type = _Unserved if status == "503" else BrokerError
            msg = f"bucket {self.name} answered status {status} writing {key}"
            raise error_type(msg)
        try:
            ack = _ack_decoder.decode(answer.data)
        except msgspec.DecodeError as exc:
            msg = f"bucket {self.name}: an answer that is not a PubAck writing {key}"
            raise BrokerError(msg) from exc
        if ack.error is None:
            return ack.seq
        if ack.error.get("err_code") == WRONG_LAST_SEQUENCE:
            return None
        msg = f"bucket {self.name} refused writing {key}: {ack.error}"
        raise BrokerError(msg)
