"""Pure rules of the Reflexion path: memory windows, evaluator scores, plans, consolidation."""

from __future__ import annotations

from actors.brainstorm import parse_approaches
from actors.consolidator import consolidate
from actors.evaluator import score
from actors.memory import (
    INSIGHT_LIMIT,
    REFLECTION_WINDOW,
    add_reflection,
    append_exchange,
    memory_text,
)
from actors.planner import parse_plan
from actors.reflector import count_vote, parse_reflection, rated_exchange
from protocol import (
    Approach,
    BrainstormProposal,
    Control,
    ControlAction,
    Reflection,
    ReplyTo,
    RequestFacts,
    Scores,
    SessionState,
    StepDigest,
    TaskType,
    ToolCall,
    ToolResult,
    ToolUse,
    TurnResult,
)


def _reflection(i: int, insight: str, overall: int = 60) -> Reflection:
    return Reflection(session="s-1", what_worked="w", what_failed="f", root_cause="r",
                      strategy_change=f"change {i}", key_insight=insight,
                      scores=Scores(task_completion=overall, code_quality=overall,
                                    efficiency=overall))


def test_memory_keeps_the_last_5_reflections_and_the_top_20_insights() -> None:
    state = SessionState(session="s-1")
    for i in range(30):
        add_reflection(state, _reflection(i, f"insight number {i}", overall=i), "summary")
    assert len(state.reflections) == REFLECTION_WINDOW == 5
    assert [r.strategy_change for r in state.reflections] == [f"change {i}" for i in range(25, 30)]
    assert len(state.insights) == INSIGHT_LIMIT == 20
    assert state.insights[0].text == "insight number 29"  # ranked by score
    assert state.runs == 30


def test_a_repeated_insight_is_merged_and_ranked_up() -> None:
    state = SessionState(session="s-1")
    add_reflection(state, _reflection(1, "Run the tests first", overall=50), "")
    add_reflection(state, _reflection(2, "something else", overall=62), "")
    add_reflection(state, _reflection(3, "run the tests FIRST!", overall=60), "")
    assert len(state.insights) == 2
    top = state.insights[0]
    assert top.text == "Run the tests first" and top.seen == 2 and top.score == 65


def test_memory_text_is_empty_for_a_new_session_and_lists_lessons_after() -> None:
    state = SessionState(session="s-1")
    assert memory_text(state) == ""
    add_reflection(state, _reflection(1, "write the test first"), "3 turns")
    text = memory_text(state)
    assert "change 1" in text and "write the test first" in text and "3 turns" in text


def test_history_keeps_the_window() -> None:
    state = SessionState(session="s-1")
    for i in range(15):
        append_exchange(state, f"q{i}", f"a{i}", user_id="u", window=10)
    assert len(state.history) == 10
    assert state.history[-1].text == "a14" and state.history[0].text == "q10"


def _result(steps: list[StepDigest], files: tuple[str, ...], max_turns: int = 10
            ) -> TurnResult:
    return TurnResult(reply_to=ReplyTo(session="s-1", origin="o", in_reply_to="1"),
                      request_id="1", role="python_coder",
                      request=RequestFacts(text="t", task_type=TaskType.CODING),
                      max_turns=max_turns, turns=len(steps),
                      trajectory=tuple(steps), files_written=files)


def _run(command: str, code: int) -> ToolUse:
    call = ToolCall(call_id="c", name="run_command", arguments=f'{{"command": "{command}"}}')
    return ToolUse.of(call, ToolResult(call_id="c", name="run_command", is_error=code != 0,
                                       content=f"$ {command}\nexit code: {code}\nok"))


def test_a_tested_successful_run_scores_higher_than_a_failing_one() -> None:
    ok_run, bad_run = _run("python -m pytest -q", 0), _run("python -m pytest -q", 1)
    good = _result([StepDigest(turn=1, model="m", status="done", tools=(ok_run,),
                               confidence=90)], ("a.py", "test_a.py"))
    bad = _result([StepDigest(turn=i, model="m", status="continue", tools=(bad_run,),
                              confidence=20) for i in range(1, 11)], ())
    (g, g_notes), (b, b_notes) = score(good), score(bad)
    assert g.task_completion == 100 and "tests passed" in g_notes
    assert b.task_completion == 0 and "hit max turns" in b_notes
    assert g.code_quality > b.code_quality and g.efficiency > b.efficiency
    assert all(0 <= v <= 100 for v in (b.task_completion, b.code_quality, b.efficiency))


def test_plans_are_parsed_from_numbered_or_bulleted_lines() -> None:
    assert parse_plan("Plan:\n1. write\n2) test\n- report\nnoise") == ("write", "test", "report")
    assert parse_plan("just do it") == ("just do it",)


def test_reflections_and_approaches_are_parsed_from_model_text() -> None:
    answer = parse_reflection('```json\n{"what_worked": "a", "key_insight": "k"}\n```')
    assert answer is not None and answer.key_insight == "k"
    assert parse_reflection("no json here") is None
    parsed = parse_approaches('{"approaches": [{"title": "Cache aside", "summary": "s"}]}')
    assert parsed[0].title == "Cache aside"
    assert parse_approaches("# Use a CDN\nIt is fast.")[0].title == "Use a CDN"


def test_consolidation_merges_shared_approaches_first_and_keeps_at_most_3() -> None:
    a = BrainstormProposal(model="m1", approaches=(
        Approach(title="Cache aside with Redis", summary="s", pros=("fast",)),
        Approach(title="Write-through cache", summary="s"),
        Approach(title="CDN edge caching", summary="s"),
    ))
    b = BrainstormProposal(model="m2", approaches=(
        Approach(title="Redis cache aside", summary="longer summary", cons=("stale",)),
        Approach(title="Materialized views", summary="s"),
    ))
    options = consolidate((a, b))
    assert len(options) == 3
    assert options[0].title == "Cache aside with Redis"  # proposed by both models
    assert options[0].pros == ("fast",) and options[0].cons == ("stale",)
    assert options[0].summary == "longer summary"
    assert len({o.title for o in options}) == 3


def test_a_persons_vote_on_an_answer_counts_once_and_a_changed_vote_replaces_it() -> None:
    state = SessionState(session="s-1")

    def vote(value: int, request: str = "r1", user: str = "alice") -> bool:
        return count_vote(state, Control(session="s-1", action=ControlAction.FEEDBACK,
                                         value=value, user_id=user, request_id=request))

    assert vote(-20) and state.confidence == 30
    assert not vote(-20) and state.confidence == 30  # the 👎 on its commit, or again
    assert vote(+15) and state.confidence == 65  # changed: -20 taken back, +15
    assert vote(-20, user="carol") and state.confidence == 45
    assert vote(-20, request="r2") and state.confidence == 25


def test_a_thumbs_down_reflects_on_the_exchange_it_rated() -> None:
    state = SessionState(session="s-1")
    append_exchange(state, "write a parser", "Done: parser.py", user_id="u", window=10,
                    request_id="r1")
    append_exchange(state, "hello", "Hi!", user_id="u", window=10, request_id="r2")
    assert rated_exchange(state, "r1") == ("write a parser", "Done: parser.py")
    assert rated_exchange(state, "gone") == ("", "")
    assert rated_exchange(state, "") == ("hello", "Hi!")  # a control without a request id
