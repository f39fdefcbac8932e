"""Subject, stream, consumer and bucket names: the only place they are spelled."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from protocol._ids import check_token

DEFAULT_PREFIX = "sb"
_UNSAFE = re.compile(r"[^-_=a-zA-Z0-9]")


def _token(value: str) -> str:
    return _UNSAFE.sub("_", value)[:200] or "_"


@functools.lru_cache(maxsize=8192)
def session_token(session: str) -> str:
    """``session`` as one subject token: characters other than ``A-Z a-z 0-9 - _ =`` become
    ``_`` (a ``SessionId`` is unchanged); remembered for the sessions in use."""
    return _token(session)


@dataclass(frozen=True, slots=True)
class Subjects:
    """Names under one prefix, so several deployments can share a NATS server.

    Subjects (``p`` is the prefix)::

        p.task.<role>              work for one actor role (JetStream, work-queue stream per role)
        p.out.<origin>             Progress / Reply / ConsolidatedOptions for one gateway instance
        p.event.<actor>.<kind>.<session>
                                   ExecutionEvent (JetStream, limits retention)
        p.dlq.<role>               DeadLetter
        p.control.<session>        Control: abort (JetStream, limits retention, 1 day)
        p.case.<case id>           Case: the case base, the last value per subject
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_token(self.prefix, "subject prefix")

    @property
    def _upper(self) -> str:
        return self.prefix.upper().replace("-", "_")

    def task(self, role: str) -> str:
        return f"{self.prefix}.task.{check_token(role, 'role')}"

    def task_stream(self, role: str) -> str:
        return f"{self._upper}_TASK_{check_token(role, 'role').upper().replace('-', '_')}"

    def durable(self, role: str) -> str:
        """The durable consumer every replica of ``role`` shares."""
        return f"{self.prefix}-{check_token(role, 'role')}"

    def outbox(self, origin: str) -> str:
        return f"{self.prefix}.out.{check_token(origin, 'origin')}"

    @property
    def outbox_all(self) -> str:
        return f"{self.prefix}.out.>"

    @property
    def outbox_stream(self) -> str:
        return f"{self._upper}_OUTBOX"

    def event(self, actor: str = "*", kind: str = "*", session: str = "*") -> str:
        """``<prefix>.event.<actor>.<kind>.<session>``: where one ExecutionEvent is published
        (every argument given), or a subscription's subject (``*`` for any: the defaults).
        ``session`` is made a valid token (``session_token``), so publishing an event never
        fails on its subject."""
        return self.event_prefix(actor, kind) + (session if session == "*"
                                                  else session_token(session))

    def event_prefix(self, actor: str, kind: str) -> str:
        """``<prefix>.event.<actor>.<kind>.``: ``event`` without the session (a publisher
        keeps it per kind and adds ``session_token(session)``)."""
        actor = actor if actor == "*" else check_token(actor, "actor")
        kind = kind if kind == "*" else check_token(kind, "kind")
        return f"{self.prefix}.event.{actor}.{kind}."

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.event.>"

    @property
    def events_stream(self) -> str:
        return f"{self._upper}_EVENTS"

    def dead_letter(self, role: str) -> str:
        return f"{self.prefix}.dlq.{check_token(role, 'role')}"

    @property
    def dead_letter_all(self) -> str:
        return f"{self.prefix}.dlq.>"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self._upper}_DLQ"

    def control(self, session: str) -> str:
        return f"{self.prefix}.control.{check_token(session, 'session')}"

    @property
    def control_all(self) -> str:
        return f"{self.prefix}.control.>"

    @property
    def control_stream(self) -> str:
        return f"{self._upper}_CONTROL"

    def case(self, case_id: str) -> str:
        """The subject of one case; ``case_id`` is made a valid token (characters other than
        ``A-Z a-z 0-9 - _ =`` become ``_``)."""
        return f"{self.prefix}.case.{_token(case_id)}"

    @property
    def cases_all(self) -> str:
        return f"{self.prefix}.case.*"

    @property
    def cases_stream(self) -> str:
        """The case base: one message per case subject, the oldest evicted beyond its bound."""
        return f"{self._upper}_CASES"

    @property
    def sessions_bucket(self) -> str:
        return f"{self._upper}_SESSIONS"

    @property
    def runs_bucket(self) -> str:
        """Run locks and run state, one key per session (TTL-expired when the holder dies)."""
        return f"{self._upper}_RUNS"

    @property
    def checkpoints_bucket(self) -> str:
        """Checkpoints of SEQUENTIAL runs, one key per session."""
        return f"{self._upper}_CHECKPOINTS"

    @property
    def users_bucket(self) -> str:
        """Per-user memory, one key per bot and user."""
        return f"{self._upper}_USERS"

    @property
    def limits_bucket(self) -> str:
        """Rate-limit windows and daily token counts, shared by every gateway replica."""
        return f"{self._upper}_LIMITS"

    @property
    def bots_bucket(self) -> str:
        """Bot configurations of the gateway's bot pool."""
        return f"{self._upper}_BOTS"

    @property
    def messages_bucket(self) -> str:
        """What each bot message is (status, answer, commit), so reactions still work after a
        gateway restart; keys ``m.<message id>``, kept 30 days."""
        return f"{self._upper}_MESSAGES"

    @property
    def artifacts_index_bucket(self) -> str:
        """Which files each session has in the artifacts bucket, one key per session."""
        return f"{self._upper}_ARTIFACT_INDEX"

    @property
    def artifacts_bucket(self) -> str:
        """The object store of workspaces and attachments (``<session>/<path>`` names)."""
        return f"{self._upper}_ARTIFACTS"

    @property
    def api_runs_bucket(self) -> str:
        """Runs of the HTTP API (``run.<run id>``) and each session's queue of them
        (``queue.<session>``), shared by every API replica."""
        return f"{self._upper}_API_RUNS"

    @property
    def api_files_bucket(self) -> str:
        """The object store of the files each API run answered with (``<run id>/<path>``)."""
        return f"{self._upper}_API_FILES"
