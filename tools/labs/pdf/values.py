"""Parsing of the printed cells of a result row: value, flag, reference range, date (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time
from typing import Final, Literal

from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = [
    "QUALITATIVE_WORDS",
    "Comparator",
    "ParsedRange",
    "ParsedValue",
    "number_style",
    "parse_date",
    "parse_flag",
    "parse_number",
    "parse_range",
    "parse_time",
    "parse_value",
    "split_glued_flag",
    "uses_decimal_comma",
]

Comparator = Literal["<", ">", "<=", ">="]

_COMPARATORS: Final[dict[str, Comparator]] = {
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
    "≤": "<=",
    "≥": ">=",
    "=<": "<=",
    "=>": ">=",
}
# A comma with exactly three digits after it groups thousands ("10,500", "245,000.5"); any other
# comma is a decimal comma ("4,2"). In a document that prints decimal commas a dot groups
# thousands instead ("245.000", "1.234,5").
_NUMBER_RE: Final = re.compile(r"^[+-]?(\d+(?:[.,]\d+)?|\.\d+)$")
_THOUSANDS_RE: Final = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_DOT_THOUSANDS_RE: Final = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+(,\d+)?$")
_VALUE_RE: Final = re.compile(r"^(<=|>=|=<|=>|<|>|≤|≥)?\s*(\S+)$")

QUALITATIVE_WORDS: Final = frozenset(
    {
        "negative", "positive", "trace", "detected", "not detected", "none detected", "reactive",
        "non reactive", "nonreactive", "non-reactive", "see note", "see comment", "see below", "clear",
        "cloudy", "hazy", "turbid", "slightly cloudy", "yellow", "pale yellow", "dark yellow", "amber",
        "straw", "red", "brown", "colorless", "none", "none seen", "few", "rare", "moderate", "many",
        "small", "large", "normal", "abnormal", "present", "absent", "pending", "indeterminate",
        "equivocal", "1+", "2+", "3+", "4+", "+", "++", "+++",
    }
)  # fmt: skip

_FLAG_TOKENS: Final[dict[str, LabFlag]] = {
    "h": LabFlag.HIGH,
    "high": LabFlag.HIGH,
    "hi": LabFlag.HIGH,
    "l": LabFlag.LOW,
    "low": LabFlag.LOW,
    "lo": LabFlag.LOW,
    "hh": LabFlag.CRITICAL_HIGH,
    "h*": LabFlag.CRITICAL_HIGH,
    "critical high": LabFlag.CRITICAL_HIGH,
    "ll": LabFlag.CRITICAL_LOW,
    "l*": LabFlag.CRITICAL_LOW,
    "critical low": LabFlag.CRITICAL_LOW,
    "a": LabFlag.ABNORMAL,
    "abn": LabFlag.ABNORMAL,
    "abnormal": LabFlag.ABNORMAL,
    "*": LabFlag.ABNORMAL,
    "!": LabFlag.ABNORMAL,
    "n": LabFlag.NORMAL,
    "normal": LabFlag.NORMAL,
    "↑": LabFlag.HIGH,
    "↓": LabFlag.LOW,
    "↑↑": LabFlag.CRITICAL_HIGH,
    "↓↓": LabFlag.CRITICAL_LOW,
    "▲": LabFlag.HIGH,
    "▼": LabFlag.LOW,
    "h/l": LabFlag.ABNORMAL,  # "outside the reference range", direction not printed
    "critical": LabFlag.ABNORMAL,  # "*** CRITICAL ***": outside the range, no side printed (never guessed)
    "deficient": LabFlag.LOW,  # "Vitamin D 15 ng/mL (Deficient)": the low side named
    "slightly high": LabFlag.HIGH,
    "mildly high": LabFlag.HIGH,
    "slightly low": LabFlag.LOW,
    "mildly low": LabFlag.LOW,
    "hoch": LabFlag.HIGH,
    "niedrig": LabFlag.LOW,
    "erhöht": LabFlag.HIGH,
    "erniedrigt": LabFlag.LOW,
}
_STARRED_RE: Final = re.compile(r"^\*+\s*([a-z][a-z /]*[a-z])\s*\*+$")
# A flag glued to its value: "5.9↑", "↓3.1", "182H" (letters only after a digit).
_GLUED_AFTER_RE: Final = re.compile(r"^(.*\d)(↑↑|↓↓|↑|↓|▲|▼|HH|LL|H|L)$")
_GLUED_BEFORE_RE: Final = re.compile(r"^(↑↑|↓↓|↑|↓|▲|▼)([<>≤≥]?\d.*)$")


@dataclass(frozen=True, slots=True)
class ParsedValue:
    value: float | str  # a number when the cell is one, else the printed text (qualitative)
    comparator: Comparator | None
    numeric: bool


@dataclass(frozen=True, slots=True)
class ParsedRange:
    low: float | None
    high: float | None


def parse_number(text: str, *, decimal_comma: bool | None = False) -> float | None:
    """``"4,2"`` -> 4.2, ``"10,500"`` -> 10500.0, ``"-1.5"`` -> -1.5; anything else -> ``None``.

    ``decimal_comma``: the document prints decimal commas (see ``number_style``), so
    ``"1,005"`` is 1.005 (a specific gravity), not a thousand and five. ``None``: the document
    prints both styles, so a number that reads either way ("1,005", "245.000") is not read.
    """
    t = text.strip()
    if decimal_comma is None and (_THOUSANDS_RE.match(t) or _DOT_THOUSANDS_RE.match(t)):
        return None
    if decimal_comma is False and _THOUSANDS_RE.match(t):
        return float(t.replace(",", ""))
    if decimal_comma and _DOT_THOUSANDS_RE.match(t):
        return float(t.replace(".", "").replace(",", "."))
    if not _NUMBER_RE.match(t):
        return None
    return float(t.replace(",", "."))


_DECIMAL_COMMA_RE: Final = re.compile(r"^[<>≤≥]?[+-]?\d+,(\d{1,2}|\d{4,})$")


def uses_decimal_comma(tokens: list[str]) -> bool:
    """Whether any number in ``tokens`` can only be read with a decimal comma ("4,2", "0,85")."""
    return any(_DECIMAL_COMMA_RE.match(t) for t in tokens)


_DECIMAL_POINT_RE: Final = re.compile(r"^[<>≤≥]?[+-]?\d+\.(\d{1,2}|\d{4,})$")


def number_style(tokens: list[str]) -> bool | None:
    """The document's decimal mark from the numbers that can be read only one way: ``True``
    for commas ("4,2"), ``False`` for points ("4.2"), ``None`` where both appear more than once
    (then "1,005" or "245.000", which read either way, are not read: ``parse_number``). A single
    stray number of the other style ("mL/min/1.73" in a comma document) does not count.
    """
    comma = sum(1 for t in tokens if _DECIMAL_COMMA_RE.match(t))
    point = sum(1 for t in tokens if _DECIMAL_POINT_RE.match(t))
    if comma >= 2 and point >= 2:
        return None
    return comma > point


def parse_value(text: str, *, decimal_comma: bool | None = False) -> ParsedValue | None:
    """A result cell: number with optional comparator, or a known qualitative word; else ``None``."""
    t = " ".join(text.split())
    if not t:
        return None
    m = _VALUE_RE.match(t)
    if m:
        number = parse_number(m.group(2), decimal_comma=decimal_comma)
        if number is not None:
            comparator = _COMPARATORS[m.group(1)] if m.group(1) else None
            return ParsedValue(number, comparator, numeric=True)
    if t.lower().rstrip(".") in QUALITATIVE_WORDS:
        return ParsedValue(t, None, numeric=False)
    return None


def parse_flag(text: str) -> LabFlag | None:
    """H, L, HH, LL, A, N, ``*``, arrows and their words, bare or in brackets ("(H)");
    ``None`` when the text is no flag we know."""
    t = " ".join(text.lower().split())
    if len(t) > 2 and t[0] + t[-1] in ("()", "[]"):
        t = t[1:-1].strip()
    if (flag := _FLAG_TOKENS.get(t)) is not None:
        return flag
    # A flag word set off by stars on both sides ("*** HIGH ***", "** LOW **"): the word alone
    # (what the stars mean is not printed; they name no side).
    if (m := _STARRED_RE.match(t)) is not None and (flag := _FLAG_TOKENS.get(m.group(1))) is not None:
        return flag
    # A letter with its arrow ("H ↑", "↓ L"): a flag when the two say the same.
    parts = t.split()
    if len(parts) == 2:
        first, second = _FLAG_TOKENS.get(parts[0]), _FLAG_TOKENS.get(parts[1])
        if first is not None and first == second:
            return first
    return None


def split_glued_flag(text: str) -> tuple[str, LabFlag] | None:
    """``"5.9↑"`` -> ``("5.9", H)``, ``"↓3,1"`` -> ``("3,1", L)``; ``None`` when no flag is glued on."""
    m = _GLUED_AFTER_RE.match(text)
    if m and parse_number(m.group(1).lstrip("<>≤≥=").strip(), decimal_comma=True) is not None:
        flag = parse_flag(m.group(2))
        return (m.group(1), flag) if flag else None
    m = _GLUED_BEFORE_RE.match(text)
    if m:
        flag = parse_flag(m.group(1))
        return (m.group(2), flag) if flag else None
    return None


# Two bounds: "3.5-5.0", "3.5 to 5.0", "3,5 bis 5,0"; the Portuguese and Spanish word between two
# numbers ("13,0 a 17,0", "1,0 à 6,0", "1 hasta 5") only with blanks around it.
_RANGE_RE: Final = re.compile(
    r"^[(\[]?\s*(-?\d+(?:[.,]\d+)*)(?:\s*(?:-|–|—|to|bis|\.\.)\s*|\s+(?:a|à|até|hasta)\s+)(-?\d+(?:[.,]\d+)*)%?\s*[)\]]?(?:\s+\S.*)?$",
    re.IGNORECASE,
)
_BOUND_RE: Final = re.compile(r"^[(\[]?\s*(<=|>=|=<|=>|<|>|≤|≥)\s*(\d+(?:[.,]\d+)*)%?\s*[)\]]?(?:\s+\S.*)?$")


def parse_range(text: str, *, decimal_comma: bool | None = False) -> ParsedRange:
    """``"3.5-5.0"``, ``"3,5 - 5,0"``, ``"< 5.0"``, ``">=60"``; a text range ("Negative") -> no bounds."""
    t = " ".join(text.split())
    m = _RANGE_RE.match(t)
    if m:
        low = parse_number(m.group(1), decimal_comma=decimal_comma)
        high = parse_number(m.group(2), decimal_comma=decimal_comma)
        if low is not None and high is not None and low <= high:
            return ParsedRange(low, high)
        return ParsedRange(None, None)
    m = _BOUND_RE.match(t)
    if m:
        bound = parse_number(m.group(2), decimal_comma=decimal_comma)
        if _COMPARATORS[m.group(1)] in ("<", "<="):
            return ParsedRange(None, bound)
        return ParsedRange(bound, None)
    return ParsedRange(None, None)


_MONTHS: Final = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ISO_RE: Final = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
_SLASH_RE: Final = re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$")
_MON_RE: Final = re.compile(r"^(\d{1,2})[- ]([A-Za-z]{3})[a-z]*[- ,]+(\d{4})$")
_MON_FIRST_RE: Final = re.compile(r"^([A-Za-z]{3})[a-z]*\.? (\d{1,2}),? (\d{4})$")


def parse_date(text: str, *, day_first: bool = False) -> date | None:
    """ISO, ``01-Mar-2024``, ``Mar 1, 2024``, ``03/01/2024`` (month first unless ``day_first``).

    A slash date whose first part is above 12 can only be day-first and is read so; a dotted
    date (``01.03.2024``) is day-first, as in the countries that print it.
    """
    ymd = _date_parts(" ".join(text.strip().rstrip(",;").split()), day_first)
    if ymd is None:
        return None
    try:
        return date(*ymd)
    except ValueError:  # no such day (31 April, month 13)
        return None


def _date_parts(t: str, day_first: bool) -> tuple[int, int, int] | None:
    """(year, month, day) as printed in `t`, not yet checked to be a calendar day."""
    if m := _ISO_RE.match(t):
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    if m := _SLASH_RE.match(t):
        a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if day_first or a > 12 or "." in t:
            return year, b, a
        return year, a, b
    if m := _MON_RE.match(t):
        month = _MONTHS.get(m.group(2).lower())
        return (int(m.group(3)), month, int(m.group(1))) if month else None
    if m := _MON_FIRST_RE.match(t):
        month = _MONTHS.get(m.group(1).lower())
        return (int(m.group(3)), month, int(m.group(2))) if month else None
    return None


_TIME_OF_DAY_RE: Final = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([ap])\.?m\.?)?$", re.IGNORECASE)


def parse_time(text: str) -> time | None:
    """``07:45``, ``7:45:30``, ``7:45 PM`` -> a naive wall-clock time as printed; else ``None``."""
    m = _TIME_OF_DAY_RE.match(" ".join(text.strip().split()))
    if not m:
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if m.group(4):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m.group(4).lower() == "p" else 0)
    try:
        return time(hour, minute, second)
    except ValueError:
        return None
