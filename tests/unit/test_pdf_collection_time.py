"""The collection time printed with the collection date: US, European, cumulative column headers."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from agent.testbed.cohort.labpdf import (
    cumulative_truth,
    make_report,
    render_cumulative,
    render_hospital,
    render_panel,
)
from agent.testbed.cohort.labpdf.make import Dialect
from tools.labs.pdf import extract_labs
from tools.labs.pdf.drawing import write_pdf
from tools.labs.pdf.values import parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07:45", time(7, 45)),
        ("7:05:30", time(7, 5, 30)),
        ("7:45 PM", time(19, 45)),
        ("12:10 a.m.", time(0, 10)),
        ("12:10 pm", time(12, 10)),
        ("24:00", None),
        ("13:00 PM", None),
        ("7.45", None),
        ("", None),
    ],
)
def test_parse_time(text: str, expected: time | None) -> None:
    assert parse_time(text) == expected


def table(collected: str) -> list[tuple[float, float, str]]:
    return [
        (40, 60, collected),
        (40, 100, "Test"), (200, 100, "Result"), (300, 100, "Units"),
        (40, 115, "Potassium"), (200, 115, "4.1"), (300, 115, "mmol/L"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("printed", "day", "at"),
    [
        ("Collected: 03/04/2024 07:45", date(2024, 3, 4), time(7, 45)),
        ("Collected: 04.03.2024 07:45", date(2024, 3, 4), time(7, 45)),
        ("Date collected: 2024-03-04, 7:45 PM", date(2024, 3, 4), time(19, 45)),
        ("Collected on 03/04/2024 at 06:05", date(2024, 3, 4), time(6, 5)),
        ("Collected: 03/04/2024", date(2024, 3, 4), None),
        ("Collected: 03/04/2024 Reported: 03/05/2024 10:00", date(2024, 3, 4), None),
    ],
)
def test_collection_time_printed_with_the_date(printed: str, day: date, at: time | None) -> None:
    (row,) = extract_labs(write_pdf([table(printed)])).results
    assert (row.effective, row.effective_time) == (day, at)


def test_cli_json_prints_the_datetime_when_the_time_is_known() -> None:
    (timed,) = extract_labs(write_pdf([table("Collected: 03/04/2024 07:45")])).results
    (dated,) = extract_labs(write_pdf([table("Collected: 03/04/2024")])).results
    assert timed.to_json()["effective"] == "2024-03-04T07:45:00"
    assert dated.to_json()["effective"] == "2024-03-04"


@pytest.mark.parametrize("dialect", [Dialect.US, Dialect.SI_COMMA])
def test_single_reports_carry_the_printed_collection_minute(dialect: Dialect) -> None:
    collected = datetime(2024, 2, 11, 16, 37)
    report = make_report("p-time", collected, {"potassium": 4.4, "sodium": 139.0}, 3, dialect=dialect)
    for render in (render_hospital, render_panel):
        found = extract_labs(render(report)).results
        assert found
        assert {(r.effective, r.effective_time) for r in found} == {(collected.date(), collected.time())}


@pytest.mark.parametrize("dialect", [Dialect.US, Dialect.SI_COMMA])
def test_cumulative_columns_each_carry_their_own_time(dialect: Dialect) -> None:
    draws = [
        make_report(
            "p-cum", datetime(2023, 1, 5, 8, 10), {"potassium": 4.0, "sodium": 140.0}, 1, dialect=dialect
        ),
        make_report(
            "p-cum", datetime(2023, 1, 5, 22, 55), {"potassium": 5.8, "sodium": 137.0}, 2, dialect=dialect
        ),
        make_report(
            "p-cum", datetime(2023, 6, 1, 7, 0), {"potassium": 4.2, "sodium": 141.0}, 3, dialect=dialect
        ),
    ]
    found = extract_labs(render_cumulative(draws)).results
    truth = cumulative_truth(draws)
    got = sorted((r.name, r.effective, r.effective_time, r.value) for r in found)
    want = sorted(
        (t.name, t.collected.date(), t.collected.time(), t.value)
        for t in truth.results
        if t.collected is not None
    )
    assert got == want
    # Two draws on one day stay apart: only the time tells them from each other.
    assert len({(r.effective, r.effective_time) for r in found}) == 3
