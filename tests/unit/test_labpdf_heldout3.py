"""What the third held-out set (tests/data/lab_reports_public: interpbr, labiq, localhealth,
medfusion) showed the reader lacked, each as a minimal PDF built here with pymupdf.

- The report's only date is its report date ("Report Date:"), a same-day generation stamp in the
  footer: the rows take it, with a warning (``rows.report_only_date``, one rule with revision 5's
  bare "Date:").
- Flag words set off by stars ("*** HIGH ***", "** LOW **"); "*** CRITICAL ***" with no side -> A.
"""

from __future__ import annotations

from datetime import date

from test_labpdf_families import read, table

from tools.labs.pdf.values import parse_flag
from tools.medgemma.tasks.lab_extraction import LabFlag

_WARNING = "dated by the report date: no collection date printed"
_ROWS = [
    *table(160, (40, "Test"), (200, "Result"), (280, "Unit"), (340, "Reference Range")),
    *table(175, (40, "Hemoglobin"), (200, "8.9"), (280, "g/dL"), (340, "13.0 - 17.0")),
]

# -- the report's only date --------------------------------------------------------------------------


def test_the_report_date_dates_the_rows_when_it_is_the_only_date_with_a_warning() -> None:
    page = [
        (40, 60, "Patient Name:"),
        (140, 60, "Test Patient"),
        (300, 60, "Report Date:"),
        (380, 60, "2026-04-30"),
        (40, 75, "Date of Birth:"),
        (140, 75, "1985-07-14"),
        *_ROWS,
        (40, 400, "Interpret with care. Report generated: 2026-04-30 09:47 UTC"),
    ]
    got = read(page)
    assert [(r.effective, r.effective_time) for r in got.results] == [(date(2026, 4, 30), None)]
    assert _WARNING in got.warnings
    for label in ("Reported:", "Date of report:", "Issued on:", "Date:"):
        got = read([(300, 60, label), (380, 60, "2026-04-30"), *_ROWS])
        assert [r.effective for r in got.results] == [date(2026, 4, 30)], label
        assert _WARNING in got.warnings


def test_a_generation_stamp_on_another_day_or_alone_dates_nothing() -> None:
    other_day = [
        (300, 60, "Report Date:"),
        (380, 60, "2026-04-30"),
        *_ROWS,
        (40, 400, "Report generated: 2026-05-02 09:47 UTC"),
    ]
    got = read(other_day)
    assert [r.effective for r in got.results] == [None]
    assert _WARNING not in got.warnings
    alone = read([*_ROWS, (40, 400, "Report generated: 2026-05-02 09:47 UTC")])
    assert [r.effective for r in alone.results] == [None]
    # a collection date wins, and no warning
    collected = read([(300, 60, "Collected: 2026-04-28"), (300, 75, "Reported: 2026-04-30"), *_ROWS])
    assert [r.effective for r in collected.results] == [date(2026, 4, 28)]
    assert _WARNING not in collected.warnings


# -- flags -------------------------------------------------------------------------------------------


def test_starred_flag_words() -> None:
    assert parse_flag("*** HIGH ***") is LabFlag.HIGH
    assert parse_flag("** LOW **") is LabFlag.LOW
    assert parse_flag("*** CRITICAL ***") is LabFlag.ABNORMAL  # no side printed: none guessed
    assert parse_flag("*") is LabFlag.ABNORMAL
    assert parse_flag("*** SEE NOTE ***") is None
    columns = (40, 200, 260, 320, 440)
    printed = [
        ("Parameter", "Result", "Units", "Reference Range", "Flag"),
        ("WBC Count", "95,000", "/µL", "4,000 - 11,000", "*** HIGH ***"),
        ("Hemoglobin", "7.8", "g/dL", "13.5 - 17.5", "** LOW **"),
        ("Blast Percentage", "72", "%", "0 - 5", "*** CRITICAL ***"),
    ]
    page = [
        item
        for i, texts in enumerate(printed)
        for item in table(100 + 13 * i, *zip(columns, texts, strict=True))
    ]
    assert [(r.name, r.flag) for r in read(page).results] == [
        ("WBC Count", LabFlag.HIGH),
        ("Hemoglobin", LabFlag.LOW),
        ("Blast Percentage", LabFlag.ABNORMAL),
    ]
