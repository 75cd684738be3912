"""Reading a model answer strictly (pure): thinking text, `Final Answer:`, code fences, JSON.

What is tolerated, each recorded as a note on the result so an audit sees it:
- MedGemma's thinking, `<unused94>thought ... <unused95>`, is removed. An unterminated thought
  (the answer ran out of tokens while thinking) leaves no answer: an error.
- Reasoning before the last `Final Answer:` is dropped; the label itself is removed.
- The JSON may sit in a code fence (```json ... ```), or start after a short lead-in; text after
  the JSON ends is ignored.
- Commas right before a closing bracket are removed.
- A truncated JSON (the answer stopped mid-way) is closed only when that is unambiguous: the text
  ends after a complete value (a closed string or bracket, true, false, null), a comma, or an
  opening bracket. Ending inside a string, a number (digits may be missing) or a word, after a key,
  or after a colon is an error: the cut-off value cannot be known.

Everything else (no JSON, broken syntax, single quotes, a schema mismatch) is a `ModelOutputError`
carrying the raw text. Nothing here guesses content.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tools.medgemma.tasks.errors import ModelOutputError

THOUGHT_START = "<unused94>"
THOUGHT_END = "<unused95>"

_FINAL_ANSWER = re.compile(r"final\s+answer\s*:", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?")
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "+-.")
# Words no continuation can change; a number at the very end might have lost digits.
_COMPLETE_WORDS = frozenset({"true", "false", "null"})
_UNTERMINATED = "thinking text removed; the thought never ended"

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Answer:
    """The answer text once thinking and the `Final Answer:` label are gone, with what was removed."""

    text: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class JsonAnswer:
    value: Any
    notes: tuple[str, ...]


def strip_thinking(text: str) -> tuple[str, str | None]:
    """The text without MedGemma's thinking; the second item is a note when something was removed.

    `<unused94>...<unused95>` blocks are cut out; a thought that never ends takes the rest of the
    text with it. A lone `<unused95>` (a server that dropped the opening marker) ends a thought that
    began at the start of the text.
    """
    removed = unterminated = False
    if THOUGHT_END in text and (
        THOUGHT_START not in text or text.index(THOUGHT_END) < text.index(THOUGHT_START)
    ):
        text = text[text.index(THOUGHT_END) + len(THOUGHT_END) :]
        removed = True
    kept: list[str] = []
    while THOUGHT_START in text:
        before, _, after = text.partition(THOUGHT_START)
        kept.append(before)
        removed = True
        if THOUGHT_END not in after:
            text, unterminated = "", True
            break
        text = after.split(THOUGHT_END, 1)[1]
    kept.append(text)
    if unterminated:
        return "".join(kept), _UNTERMINATED
    return "".join(kept), "thinking text removed" if removed else None


def answer_text(raw_text: str, task: str) -> Answer:
    """Thinking and reasoning before the last `Final Answer:` removed; an empty answer is an error."""
    text, note = strip_thinking(raw_text)
    notes = [note] if note else []
    matches = list(_FINAL_ANSWER.finditer(text))
    if matches:
        if text[: matches[-1].start()].strip():
            notes.append("text before 'Final Answer:' dropped")
        text = text[matches[-1].end() :]
    text = text.strip()
    if not text:
        reason = (
            "the answer ended while the model was still thinking (raise max_new_tokens)"
            if note == _UNTERMINATED
            else "the answer is empty"
        )
        raise ModelOutputError(task, reason, raw_text)
    return Answer(text=text, notes=tuple(notes))


def unfence(text: str) -> tuple[str, str | None]:
    """The content of the first code fence (to its closing fence, or to the end when unclosed)."""
    match = _FENCE.search(text)
    if match is None:
        return text, None
    body = text[match.end() :]
    end = body.find("```")
    if end < 0:
        return body, "code fence never closed"
    return body[:end], None


def extract_json(raw_text: str, task: str) -> JsonAnswer:
    """The first JSON object or array of the answer, under the rules in the module docstring."""
    answer = answer_text(raw_text, task)
    notes = list(answer.notes)
    body, fence_note = unfence(answer.text)
    if fence_note:
        notes.append(fence_note)
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if not starts:
        raise ModelOutputError(task, "no JSON object or array in the answer", raw_text)
    start = min(starts)
    if body[:start].strip():
        notes.append("text before the JSON ignored")
    scan = _scan(body, start)
    if scan.error is not None:
        raise ModelOutputError(task, scan.error, raw_text)
    if scan.end < len(body) and body[scan.end :].strip():
        notes.append("text after the JSON ignored")
    notes.extend(scan.notes)
    try:
        value = json.loads(scan.text, strict=False)
    except json.JSONDecodeError as exc:
        raise ModelOutputError(task, f"invalid JSON: {exc.msg} at column {exc.colno}", raw_text) from exc
    return JsonAnswer(value=value, notes=tuple(notes))


def validate(model: type[Model], data: Any, *, task: str, raw_text: str) -> Model:
    """`model.model_validate(data)`, a schema mismatch being a ModelOutputError that names the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ModelOutputError(task, f"does not fit the expected schema: {describe(exc)}", raw_text) from exc


def describe(exc: ValidationError, limit: int = 3) -> str:
    """The first few validation errors as `field.path: message`."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class _Expect(Enum):
    VALUE = auto()  # in an array after a comma, or in an object after a colon
    VALUE_OR_CLOSE = auto()  # just after '['
    KEY = auto()  # in an object after a comma
    KEY_OR_CLOSE = auto()  # just after '{'
    COLON = auto()
    AFTER_VALUE = auto()  # ',' or the closing bracket


@dataclass
class _Scan:
    text: str = ""
    end: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None


def _scan(body: str, start: int) -> _Scan:
    """Walk one JSON value from `start`: its end, commas before closers removed, a truncation closed."""
    out: list[str] = []
    stack: list[str] = []
    expect = _Expect.VALUE
    last_comma: int | None = None  # index in `out` of a comma not yet followed by anything
    dropped_commas = 0
    i = start
    n = len(body)
    while i < n:
        ch = body[i]
        if ch in " \t\r\n":
            out.append(ch)
            i += 1
            continue
        if ch in "}]":
            want = "{" if ch == "}" else "["
            if not stack or stack[-1] != want:
                return _Scan(error=f"unexpected '{ch}' at character {i - start + 1} of the JSON")
            if expect in (_Expect.VALUE, _Expect.KEY) and last_comma is not None:
                out[last_comma] = ""
                dropped_commas += 1
            elif expect in (_Expect.VALUE, _Expect.COLON, _Expect.KEY):
                return _Scan(error=f"'{ch}' where a value or key was due, at character {i - start + 1}")
            stack.pop()
            out.append(ch)
            i += 1
            last_comma = None
            expect = _Expect.AFTER_VALUE
            if not stack:
                notes = (f"{dropped_commas} trailing comma(s) removed",) if dropped_commas else ()
                return _Scan(text="".join(out), end=i, notes=notes)
            continue
        if expect is _Expect.AFTER_VALUE:
            if ch != ",":
                return _Scan(
                    error=f"expected ',' or a closing bracket at character {i - start + 1}, got {ch!r}"
                )
            last_comma = len(out)
            out.append(ch)
            expect = _Expect.KEY if stack[-1] == "{" else _Expect.VALUE
            i += 1
            continue
        if expect is _Expect.COLON:
            if ch != ":":
                return _Scan(error=f"expected ':' after a key at character {i - start + 1}, got {ch!r}")
            out.append(ch)
            expect = _Expect.VALUE
            i += 1
            continue
        last_comma = None
        if expect in (_Expect.KEY, _Expect.KEY_OR_CLOSE):
            if ch != '"':
                return _Scan(error=f"expected a double-quoted key at character {i - start + 1}, got {ch!r}")
            end = _string_end(body, i)
            if end is None:
                return _Scan(error="the answer stops inside a key (truncated)")
            out.append(body[i:end])
            i = end
            expect = _Expect.COLON
            continue
        # A value.
        if ch in "{[":
            stack.append(ch)
            out.append(ch)
            i += 1
            expect = _Expect.KEY_OR_CLOSE if ch == "{" else _Expect.VALUE_OR_CLOSE
            continue
        if ch == '"':
            end = _string_end(body, i)
            if end is None:
                return _Scan(error="the answer stops inside a string (truncated); its value cannot be known")
        elif ch in _WORD_CHARS:
            end = i
            while end < n and body[end] in _WORD_CHARS:
                end += 1
            if end == n and body[i:end] not in _COMPLETE_WORDS:
                return _Scan(
                    error="the answer stops inside a number or word (truncated); it cannot be completed"
                )
        else:
            return _Scan(error=f"unexpected {ch!r} at character {i - start + 1} of the JSON")
        out.append(body[i:end])
        i = end
        expect = _Expect.AFTER_VALUE
    scan = _close_truncated(out, stack, expect, last_comma, dropped_commas)
    scan.end = n
    return scan


def _close_truncated(
    out: list[str], stack: list[str], expect: _Expect, last_comma: int | None, dropped_commas: int
) -> _Scan:
    if expect is _Expect.COLON:
        return _Scan(error="the answer stops after a key (truncated); its value cannot be known")
    if expect is _Expect.VALUE and last_comma is None:
        return _Scan(error="the answer stops after a key and colon (truncated); its value cannot be known")
    if last_comma is not None:
        out[last_comma] = ""
    closers = "".join("}" if b == "{" else "]" for b in reversed(stack))
    text = "".join(out).rstrip() + closers
    notes = [f"truncated answer: closed {len(stack)} open bracket(s) after the last complete value"]
    if dropped_commas:
        notes.insert(0, f"{dropped_commas} trailing comma(s) removed")
    return _Scan(text=text, notes=tuple(notes))


def _string_end(body: str, i: int) -> int | None:
    """Index just past the string starting at body[i] == '"', or None when it never closes."""
    j = i + 1
    n = len(body)
    while j < n:
        c = body[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j + 1
        j += 1
    return None


__all__ = [
    "THOUGHT_END",
    "THOUGHT_START",
    "Answer",
    "JsonAnswer",
    "answer_text",
    "describe",
    "extract_json",
    "strip_thinking",
    "unfence",
    "validate",
]
