"""Result rows read from a line's own words, where no header names the columns (pure).

A line is cut into segments, each ``name [unit] value [flag] [unit] [range] [flag]``:

* the name is the words before the first value; a dot leader ("Glucose ....... 96") or a colon
  ("Glucose: 96") ends it, and then a value must follow at once;
* a value is a number (with a comparator, or a flag glued on: "5.9↑"), or a qualitative word where
  a gap, leader or colon sets it off from the name ("Nitrite    negative");
* what follows is read by shape (``tools.labs.pdf.tail``) until a wide gap opens a new name: a
  second panel printed beside the first ("Sodium 140 mmol/L     Hemoglobin 14.1 g/dL").

Segments without a value come back as names only (panel headings, wrapped names, labels).
Whether a segment is a result is the caller's decision (``rows``): this module only parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from tools.labs.pdf.model import Word
from tools.labs.pdf.names import clean_name, is_leader, strip_leaders
from tools.labs.pdf.tail import Tail, is_range_label, is_unit, read_tail, split_glued_unit
from tools.labs.pdf.values import ParsedValue, parse_flag, parse_value, split_glued_flag
from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = ["Segment", "segments"]

_COMPARATOR_WORDS: Final = frozenset({"<", ">", "<=", ">=", "≤", "≥", "=<", "=>"})
_MAX_QUALITATIVE_WORDS: Final = 3
_MAX_NAME_WORDS: Final = 8
# A gap wider than this many line heights separates cells (as ``layout.cells`` does).
_CELL_GAP: Final = 0.5


@dataclass
class Segment:
    """One name and what follows it on a line."""

    words: list[Word]  # every word of the segment, leaders excluded
    name_words: list[Word]
    name: str
    colon: bool = False  # the name ended with a colon (a label: "DOB:", "Glucose:")
    value_words: list[Word] = field(default_factory=list)
    value: ParsedValue | None = None
    flag: LabFlag | None = None  # glued to the value ("5.9↑")
    tail: Tail = field(default_factory=Tail)
    starts_cell: bool = True  # a gap (or the line's start) precedes the name

    @property
    def value_text(self) -> str:
        return " ".join(w.text for w in self.value_words)


@dataclass
class _Token:
    word: Word
    gap_before: bool  # a cell gap, a leader or a colon before it
    colon_after: bool  # the word ends with a colon


def _tokens(line: list[Word]) -> list[_Token]:
    out: list[_Token] = []
    height = max(w.height for w in line)
    boundary = True
    prev: Word | None = None
    for w in line:
        if is_leader(w) or w.text == ":":
            boundary = True
            continue
        text = w.text
        leader_glued = strip_leaders(text) != text
        if leader_glued:
            text = strip_leaders(text)
            w = Word(w.x0, w.y0, w.x1, w.y1, text, bold=w.bold, conf=w.conf)  # a name word: no grounding
        gap = prev is not None and w.x0 - prev.x1 > _CELL_GAP * height
        colon = text.endswith(":") and len(text) > 1
        out.append(_Token(w, boundary or gap, colon))
        boundary = leader_glued
        prev = w
    return out


def _value_at(
    tokens: list[_Token], i: int, *, free: bool, decimal_comma: bool | None
) -> tuple[int, ParsedValue, LabFlag | None] | None:
    """The value starting at token ``i``: (words, parsed, glued flag); qualitative only if ``free``."""
    text = tokens[i].word.text
    if text in _COMPARATOR_WORDS and i + 1 < len(tokens):
        parsed = parse_value(text + tokens[i + 1].word.text, decimal_comma=decimal_comma)
        if parsed is not None and parsed.numeric:
            return 2, parsed, None
    parsed = parse_value(text, decimal_comma=decimal_comma)
    if parsed is not None and parsed.numeric:
        return 1, parsed, None
    glued = split_glued_flag(text)
    if glued is not None:
        parsed = parse_value(glued[0], decimal_comma=decimal_comma)
        if parsed is not None and parsed.numeric:
            return 1, parsed, glued[1]
    if not free:
        return None
    for k in range(min(_MAX_QUALITATIVE_WORDS, len(tokens) - i), 0, -1):
        if any(t.gap_before for t in tokens[i + 1 : i + k]):
            continue
        phrase = " ".join(t.word.text for t in tokens[i : i + k])
        parsed = parse_value(phrase, decimal_comma=decimal_comma)
        if parsed is not None and not parsed.numeric:
            return k, parsed, None
    return None


def _starts_name(token: _Token) -> bool:
    text = token.word.text
    return (text[:1].isalpha() or text[:1] == "(") and not is_unit(text) and parse_flag(text) is None


def segments(line: list[Word], *, decimal_comma: bool | None) -> list[Segment]:
    """The line cut into name-led segments, left to right (see the module doc)."""
    tokens = _tokens(line)
    out: list[Segment] = []
    i = 0
    while i < len(tokens):
        if not _starts_name(tokens[i]):
            i += 1  # a stray number or symbol outside any name: nothing to read from it
            continue
        start = i
        j = i
        colon = False
        while j < len(tokens) and j - start < _MAX_NAME_WORDS:
            if j > start and (
                tokens[j].gap_before
                or is_range_label(tokens[j].word.text)
                or _value_at(tokens, j, free=False, decimal_comma=decimal_comma)
            ):
                break
            colon = tokens[j].colon_after
            j += 1
            if colon:
                break
        name_words = [t.word for t in tokens[start:j]]
        segment = Segment(
            words=list(name_words),
            name_words=name_words,
            name=clean_name(name_words),
            colon=colon,
            starts_cell=tokens[start].gap_before,
        )
        out.append(segment)
        k = j
        if k < len(tokens) and not colon and tokens[k].gap_before and _is_unit_token(tokens[k]):
            # A unit column printed before the value: "Sodium   mmol/L   140".
            unit_at = k
            found = (
                _value_at(tokens, k + 1, free=True, decimal_comma=decimal_comma)
                if k + 1 < len(tokens)
                else None
            )
            if found is not None:
                segment.tail.unit_words = [tokens[unit_at].word]
                segment.words.append(tokens[unit_at].word)
                k += 1
        found = None
        if k < len(tokens):
            free = colon or tokens[k].gap_before
            found = _value_at(tokens, k, free=free, decimal_comma=decimal_comma)
            glued_unit = split_glued_unit(tokens[k].word.text) if found is None and free else None
            if glued_unit is not None and not segment.tail.unit_words:
                # "HbA1c:   6.8%": the word is the value's (as a table cell's, rows._value_with_unit);
                # its unit goes to the tail as a word of its own over the same box.
                parsed = parse_value(glued_unit[0], decimal_comma=decimal_comma)
                if parsed is not None and parsed.numeric:
                    found = (1, parsed, None)
                    segment.tail.unit_words = [replace(tokens[k].word, text=glued_unit[1])]
        if (
            found is None
            and not colon
            and (k == len(tokens) or tokens[k].word.text[:1] in "([<>" or is_range_label(tokens[k].word.text))
        ):
            # "Nitrite positive [negative]": a qualitative word closing the name run.
            k, found = _closing_word(tokens, start, j, decimal_comma)
            if found is not None:
                segment.name_words = [t.word for t in tokens[start:k]]
                segment.name = clean_name(segment.name_words)
                segment.words = list(segment.name_words)
        if found is None:
            i = k if k > start else start + 1
            continue
        size, parsed, glued = found
        segment.value_words = [t.word for t in tokens[k : k + size]]
        segment.value, segment.flag = parsed, glued
        segment.words += segment.value_words
        end = k + size
        while end < len(tokens) and not (tokens[end].gap_before and _opens_name(tokens, end)):
            end += 1
        tail_words = [t.word for t in tokens[k + size : end]]
        unit_before = segment.tail.unit_words
        segment.tail = read_tail(tail_words, decimal_comma=decimal_comma)
        if unit_before:
            if segment.tail.unit_words:
                segment.tail.other += segment.tail.unit_words  # two units: the second is no unit of ours
            segment.tail.unit_words = unit_before
        segment.words += tail_words
        i = end
    return out


def _closing_word(
    tokens: list[_Token], start: int, end: int, decimal_comma: bool | None
) -> tuple[int, tuple[int, ParsedValue, LabFlag | None] | None]:
    """Where a qualitative value ends the name run ``tokens[start:end]``, and that value: only a
    flag or a bracketed reference ("[negative]", "(neg)") may follow it in the run."""
    for at in range(start + 1, end):
        found = _value_at(tokens, at, free=True, decimal_comma=decimal_comma)
        if found is None:
            continue
        rest = tokens[at + found[0] : end]
        if len(rest) <= 2 and all(parse_flag(t.word.text) or t.word.text[:1] in "([" for t in rest):
            return at, found
    return end, None


def _is_unit_token(token: _Token) -> bool:
    return is_unit(token.word.text)


def _opens_name(tokens: list[_Token], i: int) -> bool:
    """Whether the token after a gap opens the next segment (a name), not more of this row's tail."""
    token = tokens[i]
    if not _starts_name(token) or is_range_label(token.word.text):
        return False
    if token.word.text.startswith("("):
        return False  # "(3.5-5.1)", "(negative)": a range in brackets
    # A word followed, within its cell, by a value is a name; a lone word is a comment or method.
    j = i + 1
    while j < len(tokens) and not tokens[j].gap_before:
        j += 1
    return j > i + 1 or (j < len(tokens)) or token.word.text.endswith(":")
