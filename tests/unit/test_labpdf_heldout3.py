"""What the third held-out set (tests/data/lab_reports_public: interpbr, labiq, localhealth,
medfusion) showed the reader lacked, each as a minimal PDF built here with pymupdf.

- The report's only date is its report date ("Report Date:"), a same-day generation stamp in the
  footer: the rows take it, with a warning (``rows.report_only_date``, one rule with revision 5's
  bare "Date:").
- Flag words set off by stars ("*** HIGH ***", "** LOW **"); "*** CRITICAL ***" with no side -> A.
- A flag letter printed between result and unit in whitespace-aligned lines ("112   H mg/dL");
  named LDL equations ("LDL Chol Calc (NIH)") as calculated LDL; eGFR's "mL/min/1.73".
"""

from __future__ import annotations

from datetime import date

from test_labpdf_families import read, rows, table

from tools.labs.loinc_catalog import resolve
from tools.labs.pdf.rows import _flag_beside_unit
from tools.labs.pdf.values import parse_flag
from tools.labs.units import is_known_unit, normalize_unit
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


# -- whitespace-aligned lines: a flag between result and unit, calculated LDL, eGFR's unit -------------


def test_a_flag_letter_between_result_and_unit_is_the_flag() -> None:
    page = [
        *table(100, (40, "TEST"), (200, "RESULT"), (252, "UNITS"), (330, "REFERENCE")),
        *table(115, (40, "LDL Chol Calc (NIH)"), (214, "112"), (241, "H mg/dL"), (330, "0-99")),
        *table(128, (40, "Vitamin D, 25-Hydroxy"), (209, "28.4"), (241, "L ng/mL"), (330, "30.0-100.0")),
        *table(141, (40, "eGFR"), (220, "98"), (252, "mL/min/1.73"), (330, ">59")),
        *table(154, (40, "Glucose"), (220, "92"), (252, "mg/dL"), (330, "70-99")),
    ]
    got = read(page)
    assert rows(got) == [
        ("LDL Chol Calc (NIH)", 112.0, "mg/dL", "H", 0.0, 99.0),
        ("Vitamin D, 25-Hydroxy", 28.4, "ng/mL", "L", 30.0, 100.0),
        ("eGFR", 98.0, "mL/min/{1.73_m2}", None, 59.0, None),
        ("Glucose", 92.0, "mg/dL", None, 70.0, 99.0),
    ]
    assert [r.loinc for r in got.results] == ["13457-7", "62292-8", "69405-9", "2345-7"]


def test_a_units_cell_is_split_only_into_a_known_flag_word_and_a_known_unit() -> None:
    assert _flag_beside_unit("H mg/dL") == (LabFlag.HIGH, "mg/dL")
    assert _flag_beside_unit("mg/dL L") == (LabFlag.LOW, "mg/dL")
    assert _flag_beside_unit("H foo/bar") is None  # no unit we know
    assert _flag_beside_unit("HX mg/dL") is None  # no flag token
    assert _flag_beside_unit("mg/dL") is None
    assert _flag_beside_unit("↑ mg/dL") is None  # arrows are read by the arrow rule (not a word)


def test_named_ldl_equations_are_the_calculated_ldl_term() -> None:
    names = ("LDL Chol Calc (NIH)", "LDL Friedewald", "LDL-C Martin-Hopkins", "LDL Cholesterol (Sampson)")
    for name in names:
        assert resolve(name, unit="mg/dL").loinc == "13457-7", name
    assert resolve("LDL Chol", unit="mg/dL").loinc == "2089-1"
    assert normalize_unit("mL/min/1.73") == "mL/min/{1.73_m2}"
    assert not is_known_unit("foo/bar")
