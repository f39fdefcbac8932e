"""The execution events of one session, read back from the events stream (shared by the
end-to-end tests)."""

from __future__ import annotations

import asyncio

import nats

from protocol import ExecutionEvent, Subjects, event_decoder


async def read_session_events(url: str, session: str, prefix: str = "sb", *,
                              timeout_s: float = 20.0) -> list[ExecutionEvent]:
    """Every event of ``session`` the events stream holds now, in order: an ordered consumer
    on the session's subjects (``<prefix>.event.*.*.<session>``, ``protocol/README.md``),
    read up to the count the stream reported for them.

    Raises:
        TimeoutError: the events did not arrive within ``timeout_s`` seconds.
    """
    subjects = Subjects(prefix)
    subject = subjects.event(session=session)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.events_stream, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        found: list[ExecutionEvent] = []
        if not total:
            return found
        sub = await js.subscribe(subject, ordered_consumer=True)
        async with asyncio.timeout(timeout_s):
            for _ in range(total):
                event = event_decoder.decode((await sub.next_msg(timeout=timeout_s)).data)
                if event.session == session:  # the token of another session may be the same
                    found.append(event)
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()
