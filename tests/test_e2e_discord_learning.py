"""Feedback and the learned starting tier through Discord: the
genuine discord.py bot on the local stand-in, `switchboard up` behind it (every actor its own
process, a real nats-server, the offline model). What is asserted is our own record: the
cases in the case stream (their outcome and start tier) and the session's stored memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from discord_standin import DiscordStandIn
from discord_standin.fixtures import discord_standin  # noqa: F401 - fixture
from discord_system import SLOW_TIER_2, TASK, containing, discord_system, wait_until_tracked
from session_events import read_session_events
from waiting import until

from protocol import Case, SessionState, Subjects, case_decoder, session_decoder

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SUBJECTS = Subjects()


async def _case(url: str, case_id: str) -> Case | None:
    """The stored case of request ``case_id`` (None: no case)."""
    nc = await nats.connect(url)
    try:
        raw = await nc.jetstream().get_last_msg(SUBJECTS.cases_stream, SUBJECTS.case(case_id),
                                                direct=True)
        return case_decoder.decode(raw.data) if raw.data else None
    except nats.js.errors.NotFoundError:
        return None
    finally:
        await nc.close()


async def _session(url: str, session: str) -> SessionState:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(SUBJECTS.sessions_bucket)
        return session_decoder.decode((await kv.get(session)).value or b"")
    finally:
        await nc.close()


async def _tracked(url: str, message: dict[str, Any]) -> None:
    """Wait until the gateway kept what ``message`` is (written through to its messages
    bucket after it noted it in memory): from then on reactions on it are controls."""
    async def kept() -> bool:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value(SUBJECTS.messages_bucket)
            await kv.get(f"m.{message['id']}")
            return True
        except nats.js.errors.KeyNotFoundError:
            return False
        finally:
            await nc.close()

    await until(kept, bool, within_s=30, what=f"the gateway tracks message {message['id']}")


async def _stored(url: str, request: dict[str, Any]) -> Case:
    case = await until(lambda: _case(url, request["id"]), lambda c: c is not None,
                       within_s=120, what=f"the case of {request['content'][-60:]!r}")
    assert case is not None
    return case


async def test_feedback_lands_on_the_case_of_the_answer_it_rated(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with discord_system(nats_url, tmp_path, s) as system:
        url, alice = system.nats_url, s.alice["id"]
        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        session = f"discord-{thread['id']}"
        assert (await _stored(url, task)).outcome == "succeeded"
        status = s.bot_messages(thread["id"])[0]  # "Starting work…": 👍 / 👎 rate the run

        hello = await s.post_user_message(thread["id"], alice, "hello")
        answers = await s.wait_for(lambda: containing(s, thread["id"], "SB_MODEL"),
                                   timeout=60, what="the answer to hello")
        answer = answers[0]
        await _tracked(url, answer)
        await s.add_user_reaction(thread["id"], answer["id"], alice, "👎")
        state = await until(lambda: _session(url, session),
                            lambda st: len(st.reflections) == 2, within_s=60,
                            what="the 👎 on hello reflected on")
        case = await _case(url, task["id"])
        assert case is not None and case.outcome == "succeeded", "hello's 👎 is not the run's"
        assert state.votes == {f"{hello['id']} {alice}": -20}  # counted on hello's request

        await _tracked(url, status)
        await s.add_user_reaction(thread["id"], status["id"], alice, "👎")
        failed = await until(lambda: _case(url, task["id"]),
                             lambda c: c is not None and c.outcome == "failed", within_s=60,
                             what="the run's case marked failed by the 👎 on the run")
        assert failed is not None and failed.feedback == -1
        state = await until(lambda: _session(url, session),
                            lambda st: len(st.reflections) == 3, within_s=60,
                            what="the reflection on the run's 👎")
        assert state.reflections[-1].task == TASK  # the rated request, not the last one


async def test_one_thumbs_down_raises_one_run_and_the_start_comes_back_down(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with discord_system(nats_url, tmp_path, s, cases={"learn_tier": True}) as system:
        url, alice = system.nats_url, s.alice["id"]
        first = await s.post_user_message(
            s.channel_id, alice, "write a python function that reverses a list and test it")
        assert (await _stored(url, first)).final_tier == 2  # python_coder's tier

        rated = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(rated["id"]), timeout=60,
                                  what="a thread for the work")
        assert (await _stored(url, rated)).start_tier == 2
        [commit] = await s.wait_for(lambda: containing(s, thread["id"], "👍 to merge"),
                                    timeout=60, what="the commit message")
        await wait_until_tracked(s, commit)
        await s.add_user_reaction(thread["id"], commit["id"], alice, "👎")
        await until(lambda: _case(url, rated["id"]),
                    lambda c: c is not None and c.outcome == "failed", within_s=60,
                    what="the 👎 (deleting the branch) fails the run's case")

        async def run_in_thread(text: str) -> Case:
            asked = await s.post_user_message(thread["id"], alice, text, mention_bot=False)
            return await _stored(url, asked)

        # One 👎, one tier: the failed case and the session's low confidence are one 👎.
        after = await run_in_thread(
            "write a python function that checks whether a string is a palindrome and test it")
        assert after.start_tier == 3
        # That run answered: the 👎 is spent, and similar runs succeeded at tier 2.
        assert (await run_in_thread(
            "write a python function that reverses the words of a string and test it"
        )).start_tier == 2
        fresh = await s.post_user_message(
            s.channel_id, alice,
            "write a python function that counts the vowels in a string and test it")
        assert (await _stored(url, fresh)).start_tier == 2
        chosen = [e for e in await read_session_events(url, f"discord-{fresh['id']}")
                  if e.kind == "tier_chosen"]
        assert chosen and chosen[-1].source == "case", chosen


async def test_a_stopped_run_is_not_a_case(
        nats_url: str, tmp_path: Path, discord_standin: DiscordStandIn) -> None:  # noqa: F811
    s = discord_standin
    async with discord_system(nats_url, tmp_path, s, tiers=SLOW_TIER_2) as system:
        alice = s.alice["id"]
        task = await s.post_user_message(s.channel_id, alice, TASK)
        thread = await s.wait_for(lambda: s.threads_from(task["id"]), timeout=60,
                                  what="a thread for the work")
        [status] = await s.wait_for(lambda: containing(s, thread["id"], "Turn 1/"),
                                    timeout=60, what="the status message at turn 1")
        await s.add_user_reaction(thread["id"], status["id"], alice, "🛑")
        await s.wait_for(lambda: containing(s, thread["id"], "Stopped at turn"), timeout=60,
                         what="the run stopped at the next turn")
        session = f"discord-{thread['id']}"
        await until(lambda: _session(system.nats_url, session),
                    lambda st: len(st.reflections) == 1, within_s=60,
                    what="the stopped run reflected on")
        assert await _case(system.nats_url, task["id"]) is None
