"""The gateway's admission rules (``gateway/discord/_intake.py``): one request in flight per
conversation, at most ``max_in_flight`` across them, a bounded line with positions, refusals
beyond it, stale requests let go. The flood through discord.py is in test_discord_flood.py."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, cast

import discord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import eventually

from gateway.discord._intake import Intake, Pending
from protocol import ChatMessage


def _pending(session: str, n: int) -> Pending:
    request = ChatMessage(message_id=f"{session}-{n}", session=session, origin="test",
                          user_id="u", text=f"request {n}", sent_at=time.time())
    return Pending(request, cast(discord.Message, None))


class _Gateway:
    """What the intake tells the outside: requests sent, people told they wait or are
    refused."""

    def __init__(self, **options: Any) -> None:
        self.sent: list[str] = []
        self.queued: list[str] = []
        self.busy: list[tuple[str, int | None]] = []
        self.refuse: set[str] = set()
        self.intake = Intake(self.dispatch, self.notify_queued, self.notify_busy,
                             debounce_s=0, **{"stale_s": 60.0, **options})

    async def dispatch(self, pending: Pending) -> bool:
        self.sent.append(pending.request.message_id)
        return pending.request.message_id not in self.refuse

    async def notify_queued(self, pending: Pending) -> None:
        self.queued.append(pending.request.message_id)

    async def notify_busy(self, pending: Pending, position: int | None) -> None:
        self.busy.append((pending.request.message_id, position))

    async def submit(self, session: str, n: int = 0) -> None:
        await self.intake.submit(_pending(session, n))

    async def settled(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


async def test_over_the_bound_people_wait_in_line_and_beyond_it_are_refused() -> None:
    g = _Gateway(max_in_flight=2, max_waiting=3)
    for s in "abcdef":
        await g.submit(s)
    await g.settled()
    assert g.sent == ["a-0", "b-0"]
    assert g.busy == [("c-0", 1), ("d-0", 2), ("e-0", 3), ("f-0", None)]
    assert (g.intake.in_flight, g.intake.waiting) == (2, 3)

    g.intake.finish("b-0")
    await g.settled()
    assert g.sent[2:] == ["c-0"] and g.intake.waiting == 2
    await g.submit("g")  # room in the line again: at its end
    assert g.busy[-1] == ("g-0", 3)
    for request in ("a-0", "c-0", "d-0", "e-0", "g-0"):
        g.intake.finish(request)
        await g.settled()
    assert g.sent == ["a-0", "b-0", "c-0", "d-0", "e-0", "g-0"]
    assert (g.intake.in_flight, g.intake.waiting) == (0, 0)


async def test_a_conversation_never_has_two_in_flight_even_from_the_line() -> None:
    g = _Gateway(max_in_flight=1, max_waiting=10)
    await g.submit("a", 0)
    await g.submit("b", 0)  # waits in line
    await g.submit("b", 1)  # waits for b-0, not in the line beside it
    await g.settled()
    assert (g.sent, g.busy, g.queued) == (["a-0"], [("b-0", 1)], ["b-1"])
    g.intake.finish("a-0")
    await g.settled()
    assert g.sent == ["a-0", "b-0"]
    g.intake.finish("b-0")
    await g.settled()
    assert g.sent == ["a-0", "b-0", "b-1"]


async def test_a_conversations_next_request_goes_before_the_line() -> None:
    g = _Gateway(max_in_flight=1, max_waiting=10)
    await g.submit("a", 0)
    await g.submit("a", 1)  # waits for a-0
    await g.submit("b", 0)  # waits in line
    g.intake.finish("a-0")
    await g.settled()
    assert g.sent == ["a-0", "a-1"]
    g.intake.finish("a-1")
    await g.settled()
    assert g.sent == ["a-0", "a-1", "b-0"]


async def test_the_conversation_queues_count_toward_the_bound() -> None:
    g = _Gateway(max_in_flight=5, max_waiting=2)
    for n in range(4):
        await g.submit("a", n)
    assert (g.sent, g.queued, g.busy) == (["a-0"], ["a-1", "a-2"], [("a-3", None)])


async def test_a_request_not_sent_frees_its_slot() -> None:
    g = _Gateway(max_in_flight=1, max_waiting=10)
    g.refuse.add("a-0")  # the limits refused it, or the bridge was down
    await g.submit("a")
    await g.submit("b")
    await g.settled()
    assert g.sent == ["a-0", "b-0"] and g.busy == []


async def test_a_stale_request_lets_the_line_move_without_an_answer() -> None:
    g = _Gateway(max_in_flight=1, max_waiting=10, stale_s=0.3)
    await g.submit("a")
    await g.submit("b")
    assert g.sent == ["a-0"] and g.busy == [("b-0", 1)]
    await eventually(lambda: g.sent == ["a-0", "b-0"], within_s=5,
                     what="the line moves once a-0 is stale")
    assert g.intake.in_flight == 1


async def test_unbounded_by_default_and_close_empties_the_line() -> None:
    g = _Gateway()
    for s in "abc":
        await g.submit(s)
    assert g.sent == ["a-0", "b-0", "c-0"] and g.busy == []
    bounded = _Gateway(max_in_flight=1)
    await bounded.submit("a")
    await bounded.submit("b")
    await bounded.intake.close()
    assert bounded.intake.waiting == 0


async def test_a_stale_request_lets_its_conversations_next_request_go() -> None:
    g = _Gateway(stale_s=0.3)
    await g.submit("a", 0)
    await g.submit("a", 1)  # waits for a-0, whose answer never comes
    assert g.sent == ["a-0"] and g.queued == ["a-1"]
    await eventually(lambda: g.sent == ["a-0", "a-1"], within_s=5,
                     what="a-1 goes out once a-0 is stale, with no other message")
    assert g.intake.busy("a") and g.intake.waiting == 0


async def test_a_thread_is_held_by_its_request_until_the_answer() -> None:
    g = _Gateway()
    await g.submit("channel")
    g.intake.hold("thread", "channel-0")
    await g.submit("thread")  # a message in the thread opened for channel-0
    assert g.sent == ["channel-0"] and g.queued == ["thread-0"]
    g.intake.finish("channel-0")
    await g.settled()
    assert g.sent == ["channel-0", "thread-0"]
    g.intake.hold("other", "channel-0")  # too late: channel-0 was answered
    assert not g.intake.busy("other")


_SESSIONS = "abcde"
_OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(_SESSIONS)),
    st.tuples(st.just("answer"), st.integers(min_value=0, max_value=20)),
), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_OPERATIONS, max_in_flight=st.integers(min_value=0, max_value=3),
       max_waiting=st.integers(min_value=0, max_value=4))
def test_the_rules_hold_for_any_order_of_messages_and_answers(
        operations: list[tuple[str, Any]], max_in_flight: int, max_waiting: int) -> None:
    """Whatever arrives in whatever order: never more in flight or waiting than the bounds,
    never two in flight for one conversation, a conversation's requests go out in the order
    they came, and once every answer is in, each request went out exactly once or its person
    was told it was refused."""

    async def run() -> None:
        g = _Gateway(max_in_flight=max_in_flight, max_waiting=max_waiting)
        submitted: list[str] = []
        answered: list[str] = []
        counts = collections.Counter[str]()

        def check() -> None:
            open_ = [r for r in g.sent if r not in answered]
            assert not max_in_flight or len(open_) <= max_in_flight
            assert g.intake.waiting <= max_waiting
            sessions = [r.split("-")[0] for r in open_]
            assert len(sessions) == len(set(sessions)), f"two in flight: {open_}"

        for op, arg in operations:
            if op == "submit":
                request = f"{arg}-{counts[arg]}"
                counts[arg] += 1
                submitted.append(request)
                await g.intake.submit(_pending(arg, counts[arg] - 1))
            else:
                open_ = [r for r in g.sent if r not in answered]
                if open_:
                    answered.append(open_[arg % len(open_)])
                    g.intake.finish(answered[-1])
            await g.settled()
            check()
        while open_ := [r for r in g.sent if r not in answered]:  # every answer comes
            answered.append(open_[0])
            g.intake.finish(open_[0])
            await g.settled()
            check()
        refused = [r for r, position in g.busy if position is None]
        assert sorted(g.sent + refused) == sorted(submitted), "each sent once or refused"
        assert g.intake.waiting == 0 and g.intake.in_flight == 0
        for s in _SESSIONS:
            mine = [r for r in g.sent if r.startswith(f"{s}-")]
            assert mine == sorted(mine, key=lambda r: int(r.split("-")[1])), "in order"

    asyncio.run(run())
