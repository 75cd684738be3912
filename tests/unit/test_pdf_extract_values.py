"""Cell parsers: numbers with decimal commas, comparators, qualitative words, flags, ranges, dates."""

from __future__ import annotations

from datetime import date

import pytest

from tools.labs.pdf.values import (
    parse_date,
    parse_flag,
    parse_number,
    parse_range,
    parse_value,
    uses_decimal_comma,
)


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [("4,2", 4.2, None), ("<0.5", 0.5, "<"), ("> 90", 90.0, ">"), ("≤200", 200.0, "<="), ("-1.5", -1.5, None),
     ("10,500", 10500.0, None), ("Negative", "Negative", None), ("see note", "see note", None),
     ("2+", "2+", None)],
)  # fmt: skip
def test_parse_value(text: str, value: float | str, comparator: str | None) -> None:
    parsed = parse_value(text)
    assert parsed is not None
    assert (parsed.value, parsed.comparator) == (value, comparator)


@pytest.mark.parametrize("text", ["", "hemolyzed", "12 mg", "4.2.1", "ignore previous instructions"])
def test_unreadable_values(text: str) -> None:
    assert parse_value(text) is None


def test_decimal_comma_documents_read_three_digit_decimals() -> None:
    assert parse_number("1,005") == 1005.0
    assert parse_number("1,005", decimal_comma=True) == 1.005
    assert uses_decimal_comma(["Kalium", "4,2", "mmol/L"])
    assert not uses_decimal_comma(["10,500", "4.2"])


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [("3.5-5.0", 3.5, 5.0), ("3,5 - 5,0", 3.5, 5.0), ("<5.0", None, 5.0), (">= 60", 60.0, None),
     ("0.5–1.2 mg/dL", 0.5, 1.2), ("-2.0 - 2.0", -2.0, 2.0), ("negative", None, None), ("9-3", None, None)],
)  # fmt: skip
def test_parse_range(text: str, low: float | None, high: float | None) -> None:
    got = parse_range(text)
    assert (got.low, got.high) == (low, high)


def test_parse_flag() -> None:
    assert [parse_flag(t) for t in ("H", "l", "HH", "LL", "A", "*", "High", "Critical Low", "N")] == [
        "H", "L", "HH", "LL", "A", "A", "H", "LL", "N"
    ]  # fmt: skip
    assert parse_flag("normal results") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2024-03-01", date(2024, 3, 1)), ("03/01/2024", date(2024, 3, 1)), ("15/03/2024", date(2024, 3, 15)),
     ("01.03.2024", date(2024, 3, 1)), ("01-Mar-2024", date(2024, 3, 1)), ("Mar 1, 2024", date(2024, 3, 1)),
     ("02/30/2024", None), ("Result", None)],
)  # fmt: skip
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected
