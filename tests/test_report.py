"""parse_report / strip_report / parse_json_object: the structured parts of model answers."""

from __future__ import annotations

import pytest

from modelcall import Report, parse_json_object, parse_report, strip_report


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Done.\n\nConfidence: 85\nStatus: done", Report(85, "done")),
        ("x\n**Confidence:** 70%\n**Status:** Continue", Report(70, "continue")),
        ("x\n- confidence = 40\n- STATUS: stuck.", Report(40, "stuck")),
        ("`Confidence: 12`\n`Status: done`", Report(12, "done")),
        ("Confidence: 250\nStatus: done", Report(100, "done")),
        ("no report at all", Report(None, None)),
        ("Confidence: 30\nStatus: continue\n...\nConfidence: 90\nStatus: done", Report(90, "done")),
        ("Status: maybe", Report(None, None)),
    ],
)
def test_parse_report(text: str, expected: Report) -> None:
    assert parse_report(text) == expected


def test_report_words_inside_prose_are_not_lines() -> None:
    assert parse_report("My confidence: 80 percent sure, the status: done soon") == Report()


def test_strip_report_keeps_the_answer() -> None:
    text = "Here is <<a.py>>.\n\nIt works.\n\n**Confidence:** 90\nStatus: done\n"
    assert strip_report(text) == "Here is <<a.py>>.\n\nIt works."


def test_strip_report_without_report_is_identity() -> None:
    assert strip_report("  just text  ") == "just text"


def test_parse_json_object_fenced_bare_and_missing() -> None:
    assert parse_json_object('Sure:\n```json\n{"a": 1}\n```\nbye') == {"a": 1}
    assert parse_json_object('prefix {"b": [1, 2]} suffix') == {"b": [1, 2]}
    assert parse_json_object("no json here") is None
    assert parse_json_object("[1, 2]") is None
