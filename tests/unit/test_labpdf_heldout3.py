"""What the third held-out set (tests/data/lab_reports_public: interpbr, labiq, localhealth,
medfusion) showed the reader lacked, each as a minimal PDF built here with pymupdf.

- The report's only date is its report date ("Report Date:"), a same-day generation stamp in the
  footer: the rows take it, with a warning (``rows.report_only_date``, one rule with revision 5's
  bare "Date:").
- Flag words set off by stars ("*** HIGH ***", "** LOW **"); "*** CRITICAL ***" with no side -> A.
- A flag letter printed between result and unit in whitespace-aligned lines ("112   H mg/dL");
  named LDL equations ("LDL Chol Calc (NIH)") as calculated LDL; eGFR's "mL/min/1.73".
- A Portuguese blood count: Portuguese/Spanish column headers, "13,0 a 17,0" ranges, value and
  unit in one cell, dot thousands in a decimal-comma document, Portuguese names, and a
  differential cell holding a percent and an absolute count (two results).
"""

from __future__ import annotations

from datetime import date

from test_labpdf_families import read, rows, table

from tools.labs.loinc_catalog import resolve
from tools.labs.pdf.model import Word
from tools.labs.pdf.rows import _flag_beside_unit, _two_results
from tools.labs.pdf.values import parse_flag, parse_range
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


# -- Portuguese and Spanish: headers, "a" ranges, value and unit in one cell, two results in a cell ------


def test_a_portuguese_blood_count_reads_like_an_english_one() -> None:
    page = [
        *table(100, (40, "Parâmetro"), (200, "RESULTADO"), (340, "INTERVALO DE REFERÊNCIA")),
        *table(115, (40, "Hemoglobina"), (200, "14,6 g/dL"), (340, "13,0 a 17,0 g/dL")),
        *table(128, (40, "VCM"), (200, "96,2 fL"), (340, "83,0 a 101,0 fL")),
        *table(141, (40, "Leucócitos"), (200, "100 % 6.970 /µL"), (340, "100 % | 4.000 a 10.000 /µL")),
        *table(
            154, (40, "Neutrófilos"), (200, "50,9 % 3.548 /µL"), (340, "40,0 a 80,0 % | 1.800 a 7.800 /µL")
        ),
        *table(167, (40, "Contagem de plaquetas"), (200, "282.000 /µL"), (340, "150.000 a 450.000 /µL")),
    ]
    got = read(page)
    assert rows(got) == [
        ("Hemoglobina", 14.6, "g/dL", None, 13.0, 17.0),
        ("VCM", 96.2, "fL", None, 83.0, 101.0),
        ("Leucócitos", 6970.0, "/uL", None, 4000.0, 10000.0),
        ("Neutrófilos", 50.9, "%", None, 40.0, 80.0),
        ("Neutrófilos", 3548.0, "/uL", None, 1800.0, 7800.0),
        ("Contagem de plaquetas", 282000.0, "/uL", None, 150000.0, 450000.0),
    ]
    assert [r.loinc for r in got.results] == ["718-7", "787-2", "6690-2", "770-8", "751-8", "777-3"]
    assert [r.value_text for r in got.results] == ["14,6", "96,2", "6.970", "50,9", "3.548", "282.000"]
    assert [r.reference_text for r in got.results][3:5] == ["40,0 a 80,0 %", "1.800 a 7.800 /µL"]
    # the leukocytes' "100 %" (the differential's total) has no term: listed, never written
    assert [(u.page, u.reason) for u in got.unparsed] == [(1, "no term for this test in this unit")]


def _bounds(text: str, *, decimal_comma: bool | None = False) -> tuple[float | None, float | None]:
    found = parse_range(text, decimal_comma=decimal_comma)
    return found.low, found.high


def test_ranges_with_a_word_between_the_bounds() -> None:
    assert _bounds("13,0 a 17,0 g/dL", decimal_comma=True) == (13.0, 17.0)
    assert _bounds("1,0 à 6,0 %", decimal_comma=True) == (1.0, 6.0)
    assert _bounds("1 hasta 5") == (1.0, 5.0)
    assert _bounds("3,5 bis 5,0", decimal_comma=True) == (3.5, 5.0)
    assert _bounds("13a17") == (None, None)  # no blanks: not a range


def test_a_cell_is_two_results_only_as_two_numbers_with_two_different_units() -> None:
    def words(*texts: str) -> list[Word]:
        return [Word(10.0 * i, 0, 10.0 * i + 8, 9, t) for i, t in enumerate(texts)]

    assert _two_results(words("50,9", "%", "3.548", "/µL"), None, True) is not None
    assert _two_results(words("50,9", "%", "3.548", "%"), None, True) is None  # same unit twice
    assert _two_results(words("50,9", "%", "3.548"), None, True) is None  # a number without a unit
    assert _two_results(words("50,9", "%", "see", "note"), None, True) is None
