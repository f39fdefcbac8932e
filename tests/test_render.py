"""Rendering of outbound messages: splitting under Discord's limit, progress, options, replies."""

from __future__ import annotations

import random

import pytest

from gateway.render import (
    DISCORD_MESSAGE_LIMIT,
    render_options,
    render_progress,
    render_reply,
    split_message,
)
from protocol import Approach, ConsolidatedOptions, ErrorCode, Flow, Progress, Reply


def _fences_balanced(chunk: str) -> bool:
    return chunk.count("```") % 2 == 0


def _code_lines(text: str) -> list[str]:
    """Lines inside code blocks, in order, without the fence lines."""
    inside = False
    out: list[str] = []
    for line in text.split("\n"):
        if line.count("```") % 2 == 1:
            inside = not inside
            continue
        if inside:
            out.append(line)
    return out


def _words(text: str) -> list[str]:
    return [w for w in text.split() if not w.startswith("```")]


def test_short_text_is_one_chunk() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("x" * DISCORD_MESSAGE_LIMIT) == ["x" * DISCORD_MESSAGE_LIMIT]


def test_empty_text_gives_no_chunk() -> None:
    assert split_message("") == []
    assert split_message(" \n\n ") == []


def test_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        split_message("abc", limit=10)


def test_splits_at_paragraphs() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(20)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = split_message(text)
    assert len(chunks) > 1
    assert all(len(c) <= DISCORD_MESSAGE_LIMIT for c in chunks)
    for chunk in chunks:
        assert chunk.startswith("Paragraph ")
        assert chunk.endswith("word")
    assert "\n\n".join(chunks) == text


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"    value_{i} = compute({i})  # step {i}" for i in range(150))
    text = f"Here is the script:\n\n```python\n{code}\n```\n\nThat is all."
    chunks = split_message(text, limit=1000)
    assert len(chunks) >= 4
    for chunk in chunks:
        assert len(chunk) <= 1000
        assert _fences_balanced(chunk), chunk
    for chunk in chunks[1:-1]:
        assert chunk.startswith("```python\n")
        assert chunk.endswith("\n```")
    # Nothing lost or reordered: the code lines come out exactly once, in order.
    assert [line for c in chunks for line in _code_lines(c)] == code.split("\n")
    assert chunks[0].startswith("Here is the script:")
    assert chunks[-1].endswith("That is all.")


def test_prefers_splitting_before_a_code_block() -> None:
    intro = ("Intro line. " * 10).strip()
    code = "\n".join(f"print({i})" for i in range(100))
    text = f"{intro}\n```py\n{code}\n```"
    chunks = split_message(text, limit=len(code) + 20)
    assert chunks[0] == intro
    assert chunks[1] == f"```py\n{code}\n```"


def test_untagged_code_block_is_reopened_untagged() -> None:
    code = "\n".join("x" * 50 for _ in range(60))
    chunks = split_message(f"```\n{code}\n```", limit=500)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.startswith("```\n")
        assert chunk.endswith("\n```")
        assert len(chunk) <= 500


def test_single_long_line_is_hard_split() -> None:
    text = "a" * 4500
    chunks = split_message(text)
    assert [len(c) for c in chunks] == [2000, 2000, 500]
    assert "".join(chunks) == text


def test_long_line_splits_at_a_space() -> None:
    text = " ".join(f"word{i}" for i in range(1000))
    chunks = split_message(text, limit=300)
    assert all(len(c) <= 300 for c in chunks)
    assert _words(" ".join(chunks)) == text.split()


def test_long_line_inside_code_block_keeps_fences() -> None:
    text = "```js\n" + "z" * 3000 + "\n```"
    chunks = split_message(text)
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.startswith("```js\n") and c.endswith("\n```") for c in chunks)
    assert "".join(c.removeprefix("```js\n").removesuffix("\n```") for c in chunks) == "z" * 3000


def test_unicode_is_counted_in_code_points() -> None:
    line = "🙂 héllo wörld ✍️ 漢字テスト " * 20
    text = "\n".join(line.strip() for _ in range(40))
    chunks = split_message(text)
    assert len(chunks) > 1
    assert all(len(c) <= DISCORD_MESSAGE_LIMIT for c in chunks)
    assert "\n".join(chunks) == text


@pytest.mark.parametrize("seed", range(30))
def test_random_markdown_keeps_limits_and_content(seed: int) -> None:
    rng = random.Random(seed)
    parts: list[str] = []
    for _ in range(rng.randint(5, 40)):
        if rng.random() < 0.3:
            lang = rng.choice(["", "python", "ts", "c++"])
            body = "\n".join("c" * rng.randint(0, 120) for _ in range(rng.randint(1, 60)))
            parts.append(f"```{lang}\n{body}\n```")
        else:
            parts.append(" ".join("w" * rng.randint(1, 12) for _ in range(rng.randint(1, 400))))
    text = "\n\n".join(parts)
    limit = rng.choice([200, 500, 2000])
    chunks = split_message(text, limit=limit)
    assert all(0 < len(c) <= limit for c in chunks)
    assert all(_fences_balanced(c) for c in chunks)
    assert [w for c in chunks for w in _words(c)] == _words(text)
    assert [line for c in chunks for line in _code_lines(c) if line] == [
        line for line in _code_lines(text) if line
    ]


def _progress(**fields: object) -> Progress:
    base: dict[str, object] = {"session": "discord-1", "origin": "o", "in_reply_to": "m1"}
    return Progress(**(base | fields))  # type: ignore[arg-type]


def test_first_sequential_progress_says_starting() -> None:
    text = render_progress(_progress(stage="classified", flow=Flow.SEQUENTIAL))
    assert text == "🚀 Starting work… (react 🛑 to stop)"


def test_turn_progress_shows_turn_confidence_model_and_files() -> None:
    p = _progress(
        stage="turn", flow=Flow.SEQUENTIAL, turn=2, max_turns=20, confidence=80,
        model="offline/tier-2", files_read=("a.py",), files_written=("b.py",),
    )
    lines = render_progress(p).split("\n")
    assert lines[0] == "🤔 Turn 2/20 | Confidence: 80% | Model: offline/tier-2"
    assert "📖 Reading: a.py" in lines
    assert "✍️ Writing: b.py" in lines


@pytest.mark.parametrize(
    "stage",
    ["classified", "planning", "planned", "turn", "stream", "brainstorm", "consolidating",
     "retrying", "something-new"],
)
def test_every_stage_renders_within_the_limit(stage: str) -> None:
    text = render_progress(_progress(stage=stage, text="t" * 5000, model="m"))
    assert 0 < len(text) <= DISCORD_MESSAGE_LIMIT


def test_stream_progress_shows_the_answer_so_far() -> None:
    assert render_progress(_progress(stage="stream", text="Hello wor")) == "Hello wor"


def test_options_render_titles_pros_and_cons() -> None:
    options = ConsolidatedOptions(
        session="s", origin="o", in_reply_to="m", question="Which queue?",
        options=(
            Approach(title="NATS", summary="Use JetStream.", pros=("fast",), cons=("new",)),
            Approach(title="Redis", summary="Use streams.", pros=("known",)),
        ),
    )
    text = render_options(options)
    assert "Option 1: NATS" in text
    assert "Option 2: Redis" in text
    assert "Pros:\n- fast" in text
    assert "Cons:\n- new" in text
    assert text.index("Option 1") < text.index("Option 2")


def test_reply_text_and_error_line() -> None:
    ok = Reply(session="s", origin="o", in_reply_to="m", text="42")
    assert render_reply(ok) == "42"
    failed = Reply(session="s", origin="o", in_reply_to="m", text="", error=ErrorCode.TIMEOUT)
    assert render_reply(failed) == "⚠️ Error: the request timed out (timeout)"
    partial = Reply(session="s", origin="o", in_reply_to="m", text="half", error=ErrorCode.ABORTED)
    assert render_reply(partial).startswith("half\n\n⚠️ Error:")
