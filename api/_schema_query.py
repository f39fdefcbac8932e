"""The bodies of the run and session queries (``GET /v1/runs``, ``GET /v1/sessions/...``), as
msgspec structs: also what the runs index keeps per run (``api._index``)."""

from __future__ import annotations

import msgspec

from api._schema import RunStatus


class RunSummary(msgspec.Struct, kw_only=True):
    """One run in a list: who asked (``user``) in which ``session``, where it is
    (``status``), how it was answered (``flow``, ``role``: None until the classifier chose),
    its ``tags``, and when it was submitted (``created_at``, Unix seconds). The whole run:
    ``GET /v1/runs/{run_id}``."""

    run_id: str
    session: str
    user: str
    status: RunStatus
    flow: str | None = None
    role: str | None = None
    tags: list[str] = []
    created_at: float
    client: str | None = None
    """The name of the API key that submitted it (None: from before keys)."""


class RunPage(msgspec.Struct, kw_only=True):
    """A page of runs, newest first; ``next_cursor`` fetches the next one (pass it as
    ``cursor=`` with the same filters), None on the last page."""

    runs: list[RunSummary]
    next_cursor: str | None = None


class SessionView(msgspec.Struct, kw_only=True):
    """``GET /v1/sessions/{session}``: the run it works on (``active``, None when idle), the
    runs waiting for it in order (``queued``), whether a new run would wait (``busy``), and
    its newest run (``last``: its status is the session's last status)."""

    session: str
    busy: bool
    active: str | None = None
    queued: list[str] = []
    last: RunSummary | None = None
