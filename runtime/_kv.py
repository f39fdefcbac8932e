"""A KV bucket read and written on the hot path with as little client work as the protocol
allows: a direct get and a compare-and-set publish, each asked on the reply inbox of the
process's ``Publisher`` and settled through a dict entry (``Publisher.ask``).

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

from dataclasses import dataclass

import msgspec

from core.errors import BrokerError
from runtime._publish import Publisher

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


@dataclass(frozen=True, slots=True)
class Bucket:
    """The KV bucket ``name``, read by direct get and written by compare-and-set through
    ``publisher`` (the module docstring has the protocol). The bucket must allow direct gets
    (``runtime.bus.kv_bucket`` makes them so).

    ``runtime.read_entry`` and ``runtime.compare_and_set`` take a Bucket where they take a
    nats-py ``KeyValue``.
    """

    publisher: Publisher
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
        answer = await self.publisher.ask(f"$JS.API.DIRECT.GET.KV_{self.name}", payload,
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
        answer = await self.publisher.ask(f"$KV.{self.name}.{key}", value, headers,
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
