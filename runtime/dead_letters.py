"""The dead-letter queue (``<PREFIX>_DLQ``, subjects ``<prefix>.dlq.<role>``, kept 30 days):
list, read, replay and discard the tasks the runtime set aside (``runtime._dispatch``).

A dead letter is named by its sequence in the DLQ stream. **Replay** publishes the original
bytes and headers to the original task subject again, as a new message (fresh delivery count;
``Nats-Msg-Id`` ``dlq-replay:<seq>``, so a replay repeated within JetStream's duplicate window
is stored once), then removes the letter. A task of a SEQUENTIAL run goes on from the run's
checkpoint (``actors.run_control.resume_from``: same request, checkpoint still ``running``).
**Discard** removes the letter. A replayed task that fails again is dead-lettered again,
under a new sequence.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from core.errors import BrokerError, DeadLetterError, DeadLetterNotFoundError
from protocol import HEADER_SESSION, DeadLetter, Subjects, dead_letter_decoder

MAX_LIST = 1000
"""Most dead letters one ``list_letters`` returns."""
_DROPPED_HEADERS = frozenset({"Nats-Msg-Id", "Nats-Expected-Stream", "Nats-Expected-Last-Sequence",
                              "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Msg-Id"})
"""Headers of the original publish that must not constrain the replay's."""


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as stored: its DLQ sequence, the session it belongs to ("" unknown),
    when it was stored (Unix seconds) and the ``DeadLetter`` itself."""

    seq: int
    session: str
    stored_at: float
    letter: DeadLetter


@dataclass(frozen=True, slots=True)
class Replayed:
    """A replayed letter: its former DLQ sequence, the task subject it went to and the
    sequence the task stream stored it under."""

    seq: int
    subject: str
    task_seq: int


def _stored(raw: RawStreamMsg) -> StoredLetter:
    try:
        letter = dead_letter_decoder.decode(raw.data or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):
        letter = DeadLetter(actor=(raw.subject or "").rpartition(".")[2], subject="",
                            reason="unreadable dead letter", deliveries=0, data=raw.data or b"",
                            error="MalformedMessageError")
    moment = raw.time if isinstance(raw.time, datetime.datetime) else None
    return StoredLetter(seq=int(raw.seq or 0), session=(raw.headers or {}).get(HEADER_SESSION, ""),
                        stored_at=moment.timestamp() if moment else letter.at, letter=letter)


def _broker_error(what: str, exc: BaseException) -> BrokerError:
    return BrokerError(f"{what}: {type(exc).__name__}: {exc}")


async def list_letters(js: JetStreamContext, subjects: Subjects, *, role: str | None = None,
                       after: int = 0, limit: int = 100) -> list[StoredLetter]:
    """The dead letters of ``role`` (None: every role), oldest first, with a DLQ sequence
    above ``after``; at most ``limit`` (1-``MAX_LIST``).

    Raises:
        ValueError: ``role`` is not a subject token.
        BrokerError: JetStream failed or did not answer.
    """
    subject = subjects.dead_letter(role) if role else subjects.dead_letter_all
    stream = subjects.dead_letter_stream
    found: list[StoredLetter] = []
    seq = after + 1
    while len(found) < max(1, min(limit, MAX_LIST)):
        try:
            raw = await js.get_msg(stream, seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            break  # no further letter
        except nats.errors.Error as exc:
            raise _broker_error("reading the dead letters failed", exc) from exc
        found.append(_stored(raw))
        seq = int(raw.seq or seq) + 1
    return found


async def get_letter(js: JetStreamContext, subjects: Subjects, seq: int) -> StoredLetter:
    """The dead letter stored under DLQ sequence ``seq``.

    Raises:
        DeadLetterNotFoundError: there is none (or the message there is no dead letter).
        BrokerError: JetStream failed or did not answer.
    """
    try:
        raw = await js.get_msg(subjects.dead_letter_stream, seq)
    except nats.js.errors.NotFoundError as exc:
        msg = f"no dead letter #{seq}"
        raise DeadLetterNotFoundError(msg) from exc
    except nats.errors.Error as exc:
        raise _broker_error(f"reading dead letter #{seq} failed", exc) from exc
    if not (raw.subject or "").startswith(subjects.dead_letter_all[:-1]):
        msg = f"no dead letter #{seq}"
        raise DeadLetterNotFoundError(msg)
    return _stored(raw)


async def discard_letter(js: JetStreamContext, subjects: Subjects, seq: int) -> StoredLetter:
    """Remove dead letter ``seq`` for good; returns it as it was.

    Raises:
        DeadLetterNotFoundError: there is none.
        BrokerError: JetStream failed or did not answer.
    """
    stored = await get_letter(js, subjects, seq)
    await _delete(js, subjects, seq)
    return stored


async def replay_letter(js: JetStreamContext, subjects: Subjects, seq: int) -> Replayed:
    """Publish dead letter ``seq``'s task again to its original subject (see the module
    docstring), then remove the letter.

    Raises:
        DeadLetterNotFoundError: there is none.
        DeadLetterError: its original subject is no task subject of this deployment.
        BrokerError: JetStream did not store the task or failed (the letter is kept).
    """
    stored = await get_letter(js, subjects, seq)
    letter = stored.letter
    prefix = subjects.task("x")[:-1]  # "<prefix>.task."
    role = letter.subject.removeprefix(prefix)
    if not letter.subject.startswith(prefix) or not role or "." in role:
        msg = f"dead letter #{seq} came from {letter.subject!r}, not a task subject ({prefix}*)"
        raise DeadLetterError(msg)
    headers = {k: v for k, v in letter.headers.items() if k not in _DROPPED_HEADERS}
    headers["Nats-Msg-Id"] = f"dlq-replay:{seq}"
    try:
        ack = await js.publish(letter.subject, letter.data, headers=headers)
    except nats.errors.Error as exc:
        raise _broker_error(f"replaying dead letter #{seq} failed", exc) from exc
    await _delete(js, subjects, seq)
    return Replayed(seq=seq, subject=letter.subject, task_seq=ack.seq)


async def _delete(js: JetStreamContext, subjects: Subjects, seq: int) -> None:
    try:
        await js.delete_msg(subjects.dead_letter_stream, seq)
    except nats.js.errors.NotFoundError as exc:  # removed meanwhile
        msg = f"no dead letter #{seq}"
        raise DeadLetterNotFoundError(msg) from exc
    except nats.errors.Error as exc:
        raise _broker_error(f"removing dead letter #{seq} failed", exc) from exc


async def count_letters(js: JetStreamContext, subjects: Subjects) -> dict[str, int]:
    """Dead letters stored per role (roles with none are absent).

    Raises:
        BrokerError: JetStream failed or did not answer.
    """
    try:
        info = await js.stream_info(subjects.dead_letter_stream,
                                    subjects_filter=subjects.dead_letter_all)
    except nats.errors.Error as exc:
        raise _broker_error("reading the DLQ stream failed", exc) from exc
    prefix = subjects.dead_letter_all[:-1]
    return {subject.removeprefix(prefix): int(count)
            for subject, count in (info.state.subjects or {}).items()}
