"""What is printed after a value on a row without column headers: flag, unit, range (pure).

Each word is classified by its shape alone: a flag (H, L, HH, LL, A, ``*``, arrows), a unit
(``mg/dL``, ``x10^9 /L``, ``%``, ``fL``), a reference range (``70-99``, ``3,5 - 5,1``, ``(<200)``,
``Ref: 70-99``), another number (the row then holds two values: not read), or another word.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Final

from tools.labs.pdf.model import Word
from tools.labs.pdf.values import QUALITATIVE_WORDS, parse_flag, parse_number, parse_range
from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = [
    "Tail",
    "is_range_label",
    "is_unit",
    "parsed_reference",
    "read_tail",
    "reference_span",
    "split_glued_unit",
]

_NUM: Final = r"[+-]?\d+(?:[.,]\d+)*"
# A whole reference range, nothing else: "70-99", "( 3,5 - 5,1 )", "<200", "[> 60]", "0.5 to 1.2".
_RANGE_ONLY_RE: Final = re.compile(
    rf"^[(\[]?\s*(?:{_NUM}\s*(?:-|–|—|to|bis|\.\.)\s*{_NUM}|(?:<=|>=|=<|=>|<|>|≤|≥)\s*{_NUM})\s*[)\]]?$",
    re.IGNORECASE,
)
# A qualitative reference in brackets: "(negative)", "[not detected]".
_TEXT_RANGE_RE: Final = re.compile(r"^[(\[]\s*([a-z][a-z \-]{1,24})\s*[)\]]$", re.IGNORECASE)
# Short forms of qualitative references, beside QUALITATIVE_WORDS: "(neg)", "[nil]".
_TEXT_RANGE_WORDS: Final = QUALITATIVE_WORDS | frozenset({"neg", "pos", "nil", "nr", "undetected"})


def _is_text_range(text: str) -> bool:
    """A qualitative reference in brackets ("(negative)", "[not detected]"), not a comment in
    brackets ("(Pre-diabetic range)", "(fasting)") that is no reference at all."""
    m = _TEXT_RANGE_RE.match(text)
    return m is not None and " ".join(m.group(1).lower().split()) in _TEXT_RANGE_WORDS


_RANGE_LABELS: Final = frozenset(
    {"ref", "ref.", "ref:", "ref.:", "reference", "reference:", "range", "range:", "ref range:",
     "normal:", "norm:", "nv:", "rr:", "ref. range:", "reference range:", "normal range:"}
)  # fmt: skip
# Units without a slash that labs print alone; with a slash the shape decides.
_BARE_UNITS: Final = frozenset(
    {"%", "‰", "fl", "pg", "s", "sec", "secs", "seconds", "ratio", "index", "u", "iu", "mm", "mmhg",
     "mm[hg]", "{ratio}", "titer", "min", "g", "mg", "ug", "ng", "mosm", "pct"}
)  # fmt: skip
_SLASH_UNIT_RE: Final = re.compile(
    r"^(?:[x×]?\s*10\s*(?:\^|\*|e|E)?\s*[\d¹²³⁴⁵⁶⁷⁸⁹⁰]{1,2}|[a-zA-Zµμ%\[\]{}]{1,10}|\d{0,3})"
    r"/[a-zA-Zµμ\[\]{}]{1,8}(?:\d)?(?:/[\w.\[\]{}^*]{1,12})?$"
)
_EGFR_RE: Final = re.compile(
    r"^ml/min(?:/(?:1\.73\s*)?m(?:2|²|\^2)?|/1\.73(?:_m2|m2|\s*m²)?)?$", re.IGNORECASE
)
_NOT_UNITS: Final = frozenset({"and/or", "w/o", "c/o", "n/a", "s/p", "h/o", "y/o", "i/o"})
_MAX_UNIT_WORDS: Final = 3


def is_unit(text: str) -> bool:
    """Whether ``text`` has the shape of a unit ("mg/dL", "10^3/uL", "x10E9/L", "%", "fL")."""
    t = text.strip()
    if not t or t.lower() in _NOT_UNITS or len(t) > 24:
        return False
    if t.lower() in _BARE_UNITS:
        return True
    if _EGFR_RE.match(t):
        return True  # eGFR: "mL/min/1.73m2", "mL/min/1.73 m²"
    return bool(_SLASH_UNIT_RE.match(t)) and any(c.isalpha() for c in t.split("/")[-1])


_GLUED_UNIT_RE: Final = re.compile(r"^((?:<=|>=|<|>|≤|≥)?\d[\d.,]*)(%|[a-zA-Zµμ/].*)$")


def split_glued_unit(text: str) -> tuple[str, str] | None:
    """``"6.8%"`` -> ``("6.8", "%")``, ``"11.2g/dL"`` -> ``("11.2", "g/dL")``: a number with a unit
    glued on; ``None`` when what follows the number is no unit ("2nd", "3x")."""
    m = _GLUED_UNIT_RE.match(text)
    return (m.group(1), m.group(2)) if m and is_unit(m.group(2)) else None


_ARROW_GLUED_RE: Final = re.compile(r"^(?:(↑↑|↓↓|↑|↓)(\S+)|(\S+?)(↑↑|↓↓|↑|↓))$")


def _unglued(word: Word) -> list[Word]:
    """An arrow printed against the next word ("↓g/L", "↓[5.0", "g/L↑") as two words."""
    m = _ARROW_GLUED_RE.match(word.text)
    if m is None or parse_flag(word.text) is not None:
        return [word]
    parts = [m.group(1), m.group(2)] if m.group(1) else [m.group(3), m.group(4)]
    return [Word(word.x0, word.y0, word.x1, word.y1, p, bold=word.bold, conf=word.conf) for p in parts]


@dataclass
class Tail:
    flag: LabFlag | None = None
    flag_words: list[Word] = field(default_factory=list)
    unit_words: list[Word] = field(default_factory=list)
    reference_words: list[Word] = field(default_factory=list)
    numbers: list[Word] = field(default_factory=list)  # numbers that are neither range nor unit
    other: list[Word] = field(default_factory=list)  # words of no known shape (a method, a comment)

    @property
    def unit_text(self) -> str | None:
        return "".join(w.text for w in self.unit_words) if self.unit_words else None

    @property
    def reference_text(self) -> str | None:
        words = [w for w in self.reference_words if w.text.lower() not in _RANGE_LABELS]
        text = " ".join(w.text for w in words)
        if text[:1] in "([" and text[-1:] in ")]":
            text = text[1:-1].strip()  # "(3.5-5.1)" prints the range 3.5-5.1
        return text or None


def is_range_label(text: str) -> bool:
    """ "Ref:", "Reference range:", "Normal:": a word that announces a reference range."""
    return text.lower() in _RANGE_LABELS


def reference_span(words: list[Word], start: int) -> int:
    """How many words from ``start`` form one reference range (0 when they form none)."""
    at = start
    labelled = at < len(words) and words[at].text.lower() in _RANGE_LABELS
    if labelled:
        at += 1
    for k in range(min(5, len(words) - at), 0, -1):
        text = " ".join(w.text for w in words[at : at + k])
        if _RANGE_ONLY_RE.match(text) or _is_text_range(text):
            return at - start + k
        if labelled and k <= 2 and text.lower() in QUALITATIVE_WORDS:
            return at - start + k  # "Ref: negative"
    return 0


# A comment in brackets that opens with a flag word: "(Low)", "(High – possible diabetes)".
_COMMENT_SPLIT_RE: Final = re.compile(r"\s+[–—-]\s+|[,;:]\s*")


def _comment_flag(words: list[Word], start: int) -> tuple[LabFlag, int] | None:
    """A bracketed comment from ``start`` that names a side ("(Low)", "(Deficient)", "(High –
    possible diabetes)", "(Normal)"): its flag and how many words it spans; ``None`` otherwise."""
    if not words[start].text.startswith(("(", "[")):
        return None
    for end in range(start, min(start + 8, len(words))):
        if words[end].text.endswith((")", "]")):
            inner = " ".join(w.text for w in words[start : end + 1])[1:-1].strip()
            first = _COMMENT_SPLIT_RE.split(inner, maxsplit=1)[0]
            flag = parse_flag(first)
            return (flag, end - start + 1) if flag is not None else None
    return None


def read_tail(words: list[Word], *, decimal_comma: bool | None) -> Tail:
    """Classify the words after a value, left to right."""
    tail = Tail()
    words = [part for w in words for part in _unglued(w)]
    i = 0
    while i < len(words):
        text = words[i].text
        commented = _comment_flag(words, i) if not tail.flag_words else None
        if commented is not None:
            tail.flag, tail.flag_words = commented[0], words[i : i + commented[1]]
            i += commented[1]
            continue
        span = reference_span(words, i)
        if span and not tail.reference_words:
            tail.reference_words = words[i : i + span]
            i += span
            continue
        flag = parse_flag(text)
        if flag is not None and not tail.flag_words:
            tail.flag, tail.flag_words = flag, [words[i]]
            i += 1
            continue
        unit_span = _unit_span(words, i)
        if unit_span and not tail.unit_words:
            tail.unit_words = words[i : i + unit_span]
            i += unit_span
            continue
        if parse_number(text.strip("()[]"), decimal_comma=decimal_comma) is not None:
            tail.numbers.append(words[i])
        else:
            tail.other.append(words[i])
        i += 1
    return tail


def _unit_span(words: list[Word], start: int) -> int:
    """The most words from ``start`` (up to three, touching) that together spell a unit."""
    for k in range(min(_MAX_UNIT_WORDS, len(words) - start), 0, -1):
        chunk = words[start : start + k]
        if k > 1 and (
            any(b.x0 - a.x1 > 1.2 * a.height for a, b in itertools.pairwise(chunk))
            or any(c in w.text for w in chunk for c in "()[]")
        ):
            continue
        if is_unit("".join(w.text for w in chunk)):
            return k
    return 0


def parsed_reference(tail: Tail, *, decimal_comma: bool | None) -> tuple[float | None, float | None]:
    text = tail.reference_text
    if text is None:
        return None, None
    found = parse_range(text, decimal_comma=decimal_comma)
    return found.low, found.high
