"""The execution events of one session, read back from the events stream (shared by the
end-to-end tests): ``analytics.trace_view.session_events``, which ``switchboard trace`` reads
with, on a connection of its own."""

from __future__ import annotations

import nats

from analytics.trace_view import session_events
from protocol import ExecutionEvent, Subjects


async def read_session_events(url: str, session: str, prefix: str = "sb") -> list[ExecutionEvent]:
    """Every event of ``session`` the events stream holds now, oldest first.

    Raises:
        TimeoutError: the stored events did not all arrive in time.
    """
    nc = await nats.connect(url)
    try:
        return await session_events(nc, Subjects(prefix), session)
    finally:
        await nc.close()
