"""Strict answer parsing: thinking text, Final Answer, fences, trailing prose, truncation, garbage."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tools.medgemma.errors import ModelError
from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.parsing import answer_text, extract_json, strip_thinking, validate

T = "test-task"


def test_thinking_is_removed() -> None:
    text, note = strip_thinking("<unused94>thought\nthe left lung is clear<unused95>Final answer text")
    assert text == "Final answer text"
    assert note == "thinking text removed"
    text, note = strip_thinking("a<unused94>x<unused95>b<unused94>y<unused95>c")
    assert text == "abc"
    assert strip_thinking("no thoughts here") == ("no thoughts here", None)


def test_unterminated_thought_leaves_no_answer() -> None:
    text, note = strip_thinking("<unused94>thought I wonder whether the")
    assert text == ""
    assert note is not None
    assert "never ended" in note
    with pytest.raises(ModelOutputError, match="still thinking") as info:
        answer_text("<unused94>thought I wonder whether the", T)
    assert info.value.raw_text == "<unused94>thought I wonder whether the"


def test_lone_end_marker_ends_a_thought_from_the_start() -> None:
    assert strip_thinking("thought stuff<unused95>answer")[0] == "answer"


def test_final_answer_label_and_reasoning_before_it_are_dropped() -> None:
    answer = answer_text("The heart is normal.\nFinal Answer: yes", T)
    assert answer.text == "yes"
    assert "text before 'Final Answer:' dropped" in answer.notes


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        ('{"a": 1}', {"a": 1}, None),
        ('```json\n{"a": 1}\n```', {"a": 1}, None),
        ("```\n[1, 2]\n```\nThese are the values.", [1, 2], None),
        ('Here you go: {"a": [1, {"b": "x]"}]} Hope this helps {', {"a": [1, {"b": "x]"}]}, "text after"),
        ('Final Answer: ```json [{"a": 1},] ```', [{"a": 1}], "trailing comma"),
        ('{"a": "line one\nline two"}', {"a": "line one\nline two"}, None),
        ('{"a": "say \\"hi\\" }"}', {"a": 'say "hi" }'}, None),
        ('<unused94>thought {"wrong": 1}<unused95>{"right": 2}', {"right": 2}, "thinking"),
    ],
)
def test_json_is_found(raw: str, expected: object, note: str | None) -> None:
    parsed = extract_json(raw, T)
    assert parsed.value == expected
    if note is not None:
        assert any(note in n for n in parsed.notes), parsed.notes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"findings": ["a", "b"', {"findings": ["a", "b"]}),
        ('{"findings": ["a", "b",', {"findings": ["a", "b"]}),
        ('```json\n[{"x": 1}, {"y": true}, ', [{"x": 1}, {"y": True}]),
        ('{"a": {"b": null', {"a": {"b": None}}),
        ('{"a": [', {"a": []}),
        ('{"a": 1, "b": {', {"a": 1, "b": {}}),
    ],
)
def test_truncated_json_is_closed_when_unambiguous(raw: str, expected: object) -> None:
    parsed = extract_json(raw, T)
    assert parsed.value == expected
    assert any("truncated" in n for n in parsed.notes)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"findings": ["a", "nodule in the right up', "inside a string"),
        ('{"value": 12', "inside a number"),
        ('{"ok": tru', "inside a number or word"),
        ('{"a": 1, "b"', "after a key"),
        ('{"a": 1, "b":', "after a key and colon"),
        ('{"a": 1, "ke', "inside a key"),
        ("The lungs are clear.", "no JSON"),
        ("{'a': 1}", "double-quoted key"),
        ('{"a": 1 "b": 2}', "expected ','"),
        ('{"a": yes}', "invalid JSON"),
        ("[1, 2}", "unexpected '}'"),
        ("", "empty"),
        ("<unused94>thought only thinking<unused95>", "empty"),
    ],
)
def test_garbage_is_an_error_that_keeps_the_raw_text(raw: str, reason: str) -> None:
    with pytest.raises(ModelOutputError, match=reason) as info:
        extract_json(raw, T)
    assert info.value.raw_text == raw
    assert info.value.task == T
    assert isinstance(info.value, ModelError)


def test_schema_mismatch_names_the_field_not_the_answer() -> None:
    class Schema(BaseModel):
        impression: str
        count: int

    raw = '{"impression": "secret words", "count": "many"}'
    with pytest.raises(ModelOutputError) as info:
        validate(Schema, extract_json(raw, T).value, task=T, raw_text=raw)
    assert "count" in str(info.value)
    assert "secret words" not in str(info.value)
    assert info.value.raw_text == raw
