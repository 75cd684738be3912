"""One layout family per test (issue 13), each a minimal PDF built here with pymupdf.

Each test asserts the exact values, units, flags, ranges and dates read, and that nothing else
was read; the negatives at the end print what must never be read as a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time
from typing import Any

import pymupdf
import pytest

from tools.labs.pdf import LabPdfExtraction, extract_labs

# (x, y, text) in Helvetica, or (x, y, text, font): "hebo" bold, "china-s" for arrows (built in).
Text = tuple[float, float, str] | tuple[float, float, str, str]
_pymupdf: Any = pymupdf


def make_pdf(*pages: Sequence[Text], size: float = 9.0) -> bytes:
    doc = _pymupdf.open()
    for placed in pages:
        page = doc.new_page(width=595, height=842)
        for item in placed:
            x, y, text = item[0], item[1], item[2]
            font = item[3] if len(item) == 4 else "helv"
            page.insert_text((x, y), text, fontsize=size, fontname=font)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def read(*pages: Sequence[Text]) -> LabPdfExtraction:
    """Extract, and check every value's bbox holds exactly its printed text."""
    pdf = make_pdf(*pages)
    got = extract_labs(pdf)
    doc: Any = _pymupdf.open(stream=pdf, filetype="pdf")
    for r in got.results:
        assert doc[r.page - 1].get_textbox(_pymupdf.Rect(r.bbox)).strip() == r.value_text, r
    return got


Row = tuple[str, float | str, str | None, str | None, float | None, float | None]


def rows(got: LabPdfExtraction) -> list[Row]:
    """(name, value, unit, flag, reference low, reference high) of every result, in order."""
    return [
        (r.name, r.value, r.unit, r.flag.value if r.flag else None, r.reference_low, r.reference_high)
        for r in got.results
    ]


def table(y: float, *cells: tuple[float, str]) -> list[Text]:
    return [(x, y, text) for x, text in cells if text]


# -- tables aligned by whitespace ------------------------------------------------------------------


def test_unruled_table_with_header_in_any_column_order() -> None:
    page = [
        (40, 60, "Collected: 03/15/2024 08:30"),
        *table(100, (40, "Units"), (110, "Analyte"), (260, "Ref. Range"), (360, "Flag"), (400, "Result")),
        *table(115, (40, "mmol/L"), (110, "Sodium"), (260, "136-145"), (400, "141")),
        *table(128, (40, "mmol/L"), (110, "Potassium"), (260, "3.5-5.1"), (360, "H"), (400, "5.9")),
    ]
    got = read(page)
    assert rows(got) == [
        ("Sodium", 141.0, "mmol/L", None, 136.0, 145.0),
        ("Potassium", 5.9, "mmol/L", "H", 3.5, 5.1),
    ]
    assert {(r.effective, r.effective_time) for r in got.results} == {(date(2024, 3, 15), time(8, 30))}
    assert not got.unparsed


def test_ruled_table_reads_the_same_as_unruled() -> None:
    pdf_pages = [
        [
            *table(100, (40, "Test"), (200, "Result"), (280, "Units"), (360, "Reference Range")),
            *table(115, (40, "Glucose"), (200, "104"), (280, "mg/dL"), (360, "70-99")),
        ]
    ]
    doc: Any = _pymupdf.open(stream=make_pdf(*pdf_pages), filetype="pdf")
    page = doc[0]
    for y in (90, 104, 119):
        page.draw_line((35, y), (500, y))
    for x in (35, 195, 275, 355, 500):
        page.draw_line((x, 90), (x, 119))
    got = extract_labs(doc.tobytes())
    assert rows(got) == [("Glucose", 104.0, "mg/dL", None, 70.0, 99.0)]


def test_headerless_table_found_by_whitespace() -> None:
    page = [
        (40, 60, "Date collected: 2024-04-02"),
        *table(100, (40, "Sodium"), (200, "134"), (250, "L"), (280, "mmol/L"), (360, "136-145")),
        *table(113, (40, "Creatinine"), (200, "0.85"), (280, "mg/dL"), (360, "0.60-1.20")),
        *table(126, (40, "Nitrite"), (200, "negative"), (360, "negative")),
    ]
    got = read(page)
    assert rows(got) == [
        ("Sodium", 134.0, "mmol/L", "L", 136.0, 145.0),
        ("Creatinine", 0.85, "mg/dL", None, 0.6, 1.2),
        ("Nitrite", "negative", None, None, None, None),
    ]
    assert {r.effective for r in got.results} == {date(2024, 4, 2)}


def test_optional_columns_method_comment_and_previous_result_without_date() -> None:
    header = table(
        100, (40, "Test"), (150, "Result"), (200, "Previous"), (250, "Units"), (310, "Range"),
        (370, "Method"), (430, "Comment"),
    )  # fmt: skip
    body = table(
        115,
        (40, "Glucose"),
        (150, "182"),
        (200, "95"),
        (250, "mg/dL"),
        (310, "70-99"),
        (370, "Hexokinase"),
        (430, "fasting"),
    ) + table(128, (40, "Potassium"), (150, "4.1"), (200, "6.2"), (250, "mmol/L"), (310, "3.5-5.1"))
    got = read(header + body)
    assert rows(got) == [
        ("Glucose", 182.0, "mg/dL", None, 70.0, 99.0),
        ("Potassium", 4.1, "mmol/L", None, 3.5, 5.1),
    ]


def test_previous_result_with_its_date_is_read_under_that_date() -> None:
    header = table(
        100, (40, "Test"), (150, "Result"), (220, "Previous (01/10/2024)"), (330, "Units"), (390, "Range")
    )
    body = table(115, (40, "Hemoglobin"), (150, "13.1"), (220, "14.0"), (330, "g/dL"), (390, "13.5-17.5"))
    got = read([(40, 60, "Collected: 03/15/2024"), *header, *body])
    assert [(r.name, r.value, r.effective) for r in got.results] == [
        ("Hemoglobin", 13.1, date(2024, 3, 15)),
        ("Hemoglobin", 14.0, date(2024, 1, 10)),
    ]


# -- names joined to values ------------------------------------------------------------------------


def test_leader_dots() -> None:
    page = [
        (40, 100, "Glucose ..................... 96 mg/dL 70-99"),
        (40, 113, "Urea Nitrogen (BUN) ......... 14 mg/dL 7-20"),
        (40, 126, "Calcium.................. 10.7 H mg/dL 8.6-10.3"),
    ]
    assert rows(read(page)) == [
        ("Glucose", 96.0, "mg/dL", None, 70.0, 99.0),
        ("Urea Nitrogen (BUN)", 14.0, "mg/dL", None, 7.0, 20.0),
        ("Calcium", 10.7, "mg/dL", "H", 8.6, 10.3),
    ]


def test_colon_joined_names() -> None:
    page = [
        (40, 100, "Glucose: 96 mg/dL (70-99)"),
        (40, 113, "Potassium: 5.9 mmol/L (3.5-5.1) H"),
        (40, 126, "Nitrite: negative"),
    ]
    got = read(page)
    assert rows(got) == [
        ("Glucose", 96.0, "mg/dL", None, 70.0, 99.0),
        ("Potassium", 5.9, "mmol/L", "H", 3.5, 5.1),
        ("Nitrite", "negative", None, None, None, None),
    ]
    assert got.results[0].reference_text == "70-99"


def test_run_in_lines_name_value_unit_range() -> None:
    page = [
        (40, 100, "Hemoglobin 11.2 g/dL (13.5-17.5) L"),
        (40, 113, "Platelet Count 245,000 /uL (150,000-400,000)"),
        (40, 126, "TSH 2.1 mIU/L 0.4-4.0"),
    ]
    assert rows(read(page)) == [
        ("Hemoglobin", 11.2, "g/dL", "L", 13.5, 17.5),
        ("Platelet Count", 245000.0, "/uL", None, 150000.0, 400000.0),
        ("TSH", 2.1, "m[IU]/L", None, 0.4, 4.0),
    ]


# -- page structure --------------------------------------------------------------------------------


def test_panels_side_by_side_without_headers() -> None:
    page = [
        (40, 100, "CHEMISTRY"), (320, 100, "HEMATOLOGY"),
        *table(113, (40, "Sodium"), (150, "140"), (190, "mmol/L"), (250, "136-145"),
               (320, "Hemoglobin"), (430, "14.1"), (470, "g/dL"), (520, "13.5-17.5")),
        *table(126, (40, "Potassium"), (150, "4.1"), (190, "mmol/L"), (250, "3.5-5.1"),
               (320, "WBC"), (430, "12.5"), (455, "H"), (470, "10*3/uL"), (520, "4.0-11.0")),
    ]  # fmt: skip
    got = read(page)
    assert sorted(rows(got)) == [
        ("Hemoglobin", 14.1, "g/dL", None, 13.5, 17.5),
        ("Potassium", 4.1, "mmol/L", None, 3.5, 5.1),
        ("Sodium", 140.0, "mmol/L", None, 136.0, 145.0),
        ("WBC", 12.5, "10*3/uL", "H", 4.0, 11.0),
    ]
    panels = {r.name: r.panel for r in got.results}
    assert panels == {
        "Sodium": "CHEMISTRY",
        "Potassium": "CHEMISTRY",
        "Hemoglobin": "HEMATOLOGY",
        "WBC": "HEMATOLOGY",
    }


def test_panels_side_by_side_with_headers() -> None:
    left = table(100, (30, "Test"), (150, "Result"), (200, "Units"), (245, "Range"))
    right = [(x + 280, y, t) for x, y, t in (c[:3] for c in left)]
    body = table(115, (30, "Sodium"), (150, "140"), (200, "mmol/L"), (245, "136-145"),
                 (310, "Platelets"), (430, "250"), (480, "K/uL"), (525, "150-400"))  # fmt: skip
    assert sorted(rows(read([*left, *right, *body]))) == [
        ("Platelets", 250.0, "10*3/uL", None, 150.0, 400.0),
        ("Sodium", 140.0, "mmol/L", None, 136.0, 145.0),
    ]


def test_results_continue_across_pages_with_repeated_or_missing_headers() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (300, "Units"))
    page1 = [(40, 60, "Collected: 2024-04-02"), *header]
    page1 += table(115, (40, "Sodium"), (200, "140"), (300, "mmol/L"))
    page2 = [*header, *table(115, (40, "Potassium"), (200, "4.4"), (300, "mmol/L"))]
    page3 = table(115, (40, "Chloride"), (200, "101"), (300, "mmol/L"))  # no header
    page4 = [(40, 60, "Glucose .......... 88 mg/dL"), (40, 73, "Calcium .......... 9.1 mg/dL")]
    got = read(page1, page2, page3, page4)
    assert [(r.name, r.value, r.page, r.effective) for r in got.results] == [
        ("Sodium", 140.0, 1, date(2024, 4, 2)),
        ("Potassium", 4.4, 2, date(2024, 4, 2)),
        ("Chloride", 101.0, 3, date(2024, 4, 2)),
        ("Glucose", 88.0, 4, date(2024, 4, 2)),
        ("Calcium", 9.1, 4, date(2024, 4, 2)),
    ]


@pytest.mark.parametrize("beside", [True, False])
def test_cumulative_report_with_three_date_columns(beside: bool) -> None:
    dates = ("01/05/2024", "02/09/2024", "03/11/2024")
    times = ("08:30", "07:10", "14:05")
    header = table(100, (40, "Test"), (150, "Units"))
    for i, (d, t) in enumerate(zip(dates, times, strict=True)):
        x = 230 + 90 * i
        header += [(x, 100, f"{d} {t}")] if beside else [(x, 90, d), (x, 100, t)]
    body = table(115, (40, "Creatinine"), (150, "mg/dL"), (230, "0.9"), (320, "1.4 H"), (410, "1.1"))
    body += table(128, (40, "Sodium"), (150, "mmol/L"), (230, "139"), (410, "141"))
    got = read(header + body)
    assert [(r.name, r.value, r.flag, r.effective, r.effective_time) for r in got.results] == [
        ("Creatinine", 0.9, None, date(2024, 1, 5), time(8, 30)),
        ("Creatinine", 1.4, "H", date(2024, 2, 9), time(7, 10)),
        ("Creatinine", 1.1, None, date(2024, 3, 11), time(14, 5)),
        ("Sodium", 139.0, None, date(2024, 1, 5), time(8, 30)),
        ("Sodium", 141.0, None, date(2024, 3, 11), time(14, 5)),
    ]


def test_cumulative_dates_without_named_columns() -> None:
    header = [(250, 90, "05.01.2024"), (330, 90, "09.02.2024"), (250, 100, "08:30"), (330, 100, "07:10")]
    body = table(115, (40, "Kreatinin"), (130, "mg/dl"), (180, "0,6 - 1,2"), (250, "0,9"), (330, "1,4"))
    body += table(128, (40, "Natrium"), (130, "mmol/l"), (180, "136 - 145"), (250, "139"), (330, "141"))
    got = read(header + body)
    found = [(r.name, r.value, r.unit, r.reference_low, r.effective, r.effective_time) for r in got.results]
    assert found == [
        ("Kreatinin", 0.9, "mg/dL", 0.6, date(2024, 1, 5), time(8, 30)),
        ("Kreatinin", 1.4, "mg/dL", 0.6, date(2024, 2, 9), time(7, 10)),
        ("Natrium", 139.0, "mmol/L", 136.0, date(2024, 1, 5), time(8, 30)),
        ("Natrium", 141.0, "mmol/L", 136.0, date(2024, 2, 9), time(7, 10)),
    ]


# -- names -----------------------------------------------------------------------------------------


def test_names_wrapped_over_two_lines() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Units"), (330, "Range"))
    body = [
        *table(115, (40, "Carbon Dioxide,"), (200, "28"), (260, "mmol/L"), (330, "22-29")),
        (40, 126, "Total"),
        *table(141, (40, "Hemoglobin A1c"), (200, "6.1"), (260, "%"), (330, "4.0-5.6")),
        (40, 152, "(NGSP)"),
        (40, 167, "Alanine"),
        *table(178, (40, "aminotransferase"), (200, "33"), (260, "U/L"), (330, "7-56")),
    ]
    got = read(header + body)
    assert [(r.name, r.value, r.loinc) for r in got.results] == [
        ("Carbon Dioxide, Total", 28.0, "2028-9"),
        ("Hemoglobin A1c (NGSP)", 6.1, got.results[1].loinc),
        ("Alanine aminotransferase", 33.0, "1742-6"),
    ]
    assert got.results[1].name_status in ("matched", "unknown")
    assert not got.unparsed


def test_names_wrapped_without_a_header() -> None:
    page = [
        *table(100, (40, "Carbon Dioxide,"), (200, "28"), (240, "mmol/L"), (300, "22-29")),
        (40, 111, "Total"),
        *table(126, (40, "Sodium"), (200, "140"), (240, "mmol/L"), (300, "136-145")),
    ]
    found = [(r.name, r.value) for r in read(page).results]
    assert found == [("Carbon Dioxide, Total", 28.0), ("Sodium", 140.0)]


def test_qualifiers_in_names() -> None:
    page = [
        (40, 100, "PSA, total ........ 1.2 ng/mL 0.0-4.0"),
        (40, 113, "TSH, 3rd generation ........ 2.31 uIU/mL 0.45-4.50"),
        (40, 126, "Hemoglobin A1c (NGSP) ........ 5.4 % 4.0-5.6"),
    ]
    got = read(page)
    assert [(r.name, r.value, r.unit) for r in got.results] == [
        ("PSA, total", 1.2, "ng/mL"),
        ("TSH, 3rd generation", 2.31, "u[IU]/mL"),
        ("Hemoglobin A1c (NGSP)", 5.4, "%"),
    ]
    assert [r.loinc for r in got.results[:2]] == ["2857-1", "3016-3"]


# -- numbers and dates -----------------------------------------------------------------------------


def test_thousands_separators_in_a_decimal_point_document() -> None:
    page = [
        (40, 100, "Platelets: 245,000 /uL (150,000-400,000)"),
        (40, 113, "WBC: 7,850 /uL (4,000-11,000)"),
        (40, 126, "Creatinine: 0.85 mg/dL (0.60-1.20)"),
    ]
    assert [(r.name, r.value, r.unit, r.reference_high) for r in read(page).results] == [
        ("Platelets", 245000.0, "/uL", 400000.0),
        ("WBC", 7850.0, "/uL", 11000.0),
        ("Creatinine", 0.85, "mg/dL", 1.2),
    ]


def test_european_numbers_and_dates() -> None:
    header = table(100, (40, "Untersuchung"), (180, "Ergebnis"), (250, "Einheit"), (320, "Referenzbereich"))
    body = [
        *table(115, (40, "Kalium"), (180, "4,2"), (250, "mmol/l"), (320, "3,5 - 5,1")),
        *table(128, (40, "Thrombozyten"), (180, "245.000"), (250, "/µl"), (320, "150.000 - 400.000")),
        *table(141, (40, "Spez. Gewicht"), (180, "1,020"), (320, "1,005 - 1,030")),
    ]
    got = read([(40, 60, "Entnahme: 04.03.2024 07:45"), *header, *body])
    assert [(r.name, r.value, r.reference_low, r.reference_high) for r in got.results] == [
        ("Kalium", 4.2, 3.5, 5.1),
        ("Thrombozyten", 245000.0, 150000.0, 400000.0),
        ("Spez. Gewicht", 1.02, 1.005, 1.03),
    ]
    assert {(r.effective, r.effective_time) for r in got.results} == {(date(2024, 3, 4), time(7, 45))}


# -- flags -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("printed", "flag"), [("H", "H"), ("L", "L"), ("HH", "HH"), ("LL", "LL"), ("A", "A"), ("*", "A")]
)
def test_flag_letters_without_a_header(printed: str, flag: str) -> None:
    page = table(100, (40, "Potassium"), (200, "6.8"), (235, printed), (260, "mmol/L"), (320, "3.5-5.1"))
    assert rows(read(page)) == [("Potassium", 6.8, "mmol/L", flag, 3.5, 5.1)]


def test_arrows() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Units"), (330, "Range"))
    body = [
        *table(115, (40, "Potassium"), (260, "mmol/L"), (330, "3.5-5.1")), (200, 115, "5.9↑", "china-s"),
        *table(128, (40, "Sodium"), (260, "mmol/L"), (330, "136-145")), (200, 128, "↓ 131", "china-s"),
    ]  # fmt: skip
    free = [(40, 200, "Glucose: ", "helv"), (90, 200, "182 ↑↑ mg/dL 70-99", "china-s")]
    got = read([*header, *body], free)
    assert rows(got) == [
        ("Potassium", 5.9, "mmol/L", "H", 3.5, 5.1),
        ("Sodium", 131.0, "mmol/L", "L", 136.0, 145.0),
        ("Glucose", 182.0, "mg/dL", "HH", 70.0, 99.0),
    ]
    assert got.results[0].value_text == "5.9↑"  # the bbox holds the arrow glued to the value


def test_bold_values_are_flagged_where_others_are_regular() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Units"), (330, "Range"))
    body: list[Text] = [
        (40, 115, "Potassium"), (200, 115, "5.9", "hebo"), (260, 115, "mmol/L"), (330, 115, "3.5-5.1"),
        (40, 128, "Sodium"), (200, 128, "131", "hebo"), (260, 128, "mmol/L"), (330, 128, "136-145"),
        (40, 141, "Chloride"), (200, 141, "101"), (260, 141, "mmol/L"), (330, 141, "98-107"),
        (40, 154, "Nitrite"), (200, 154, "positive", "hebo"), (330, 154, "negative"),
    ]  # fmt: skip
    got = read([(40, 80, "CHEMISTRY", "hebo"), *header, *body])
    assert [(r.name, r.flag.value if r.flag else None) for r in got.results] == [
        ("Potassium", "H"),
        ("Sodium", "L"),
        ("Chloride", None),
        ("Nitrite", "A"),
    ]


def test_all_bold_values_carry_no_flag() -> None:
    body = [(40, 100, "Sodium", "hebo"), (200, 100, "140", "hebo"), (260, 100, "mmol/L", "hebo")]
    body += [(40, 113, "Potassium", "hebo"), (200, 113, "4.1", "hebo"), (260, 113, "mmol/L", "hebo")]
    assert [r.flag for r in read(body).results] == [None, None]


# -- what is never a result ------------------------------------------------------------------------


def test_demographics_phone_numbers_footers_and_notes_are_not_results() -> None:
    page = [
        (40, 40, "Patient: DOE, JANE   DOB: 04/12/1961   Age: 62 years   Sex: F"),
        (40, 52, "MRN: 00123456   Accession: A24-118822   Phone: (555) 123-4567"),
        (40, 64, "Ordering physician: Dr. Smith   Tel 555 0100   Fax: 555 0101"),
        (40, 76, "221B Baker Street, Suite 400, Springfield 02110"),
        (40, 88, "Collected: 03/15/2024 08:30   Room 12 Bed 3"),
        *table(110, (40, "Sodium"), (200, "140"), (240, "mmol/L"), (300, "136-145")),
        (40, 125, "* Potassium may be falsely elevated in hemolyzed samples (6.1 mmol/L seen)."),
        (40, 138, "Note: glucose above 126 mg/dL on two occasions suggests diabetes."),
        (40, 151, "Values above 5.0 mmol/L should be repeated within 24 hours."),
        (40, 800, "Page 1 of 2   Printed 03/16/2024 10:00   Report ID: LR20572265"),
        (40, 812, "Height 170 cm   Weight 70 kg   BMI 24.2 kg/m2"),
    ]
    got = read(page)
    assert rows(got) == [("Sodium", 140.0, "mmol/L", None, 136.0, 145.0)]
    assert not got.unparsed


def test_a_previous_result_column_is_never_the_result() -> None:
    header = table(100, (40, "Test"), (150, "Prior Result"), (230, "Current"), (300, "Units"))
    body = table(115, (40, "Sodium"), (150, "128"), (230, "140"), (300, "mmol/L"))
    body += table(128, (40, "Potassium"), (150, "6.2"), (300, "mmol/L"))  # only a previous value
    got = read(header + body)
    assert [(r.name, r.value) for r in got.results] == [("Sodium", 140.0)]
    assert [(u.reason, u.page) for u in got.unparsed] == [("no result printed", 1)]
    assert got.unparsed[0].bbox is not None


def test_two_numbers_after_a_known_name_are_reported_not_guessed() -> None:
    got = read([(40, 100, "Potassium   4.1   6.2   mmol/L")])
    assert got.results == ()
    (row,) = got.unparsed
    assert (row.reason, row.page) == ("two numbers where one result is printed", 1)
    assert row.bbox is not None
    assert row.bbox[0] == pytest.approx(40.0)


def test_a_known_test_with_an_unreadable_value_is_reported_with_its_box() -> None:
    got = read([(40, 100, "Potassium: hemolyzed, see comment")])
    assert got.results == ()
    assert [(u.reason, u.page) for u in got.unparsed] == [("result not readable", 1)]
    assert got.unparsed[0].bbox is not None


def test_a_blank_value_on_a_page_without_header_does_not_take_the_range() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Reference"), (360, "Units"))
    page1 = [*header, *table(115, (40, "LDL"), (200, "95"), (260, "< 100"), (360, "mg/dl"))]
    page2 = table(100, (40, "Triglycerides"), (260, "< 150"), (360, "mg/dl"))  # value left blank
    got = read(page1, page2)
    assert [(r.name, r.value, r.page) for r in got.results] == [("LDL", 95.0, 1)]
    assert [(u.reason, u.page) for u in got.unparsed] == [("no result printed", 2)]


def test_known_name_with_units_and_range_but_no_value_is_listed() -> None:
    got = read(
        [(40, 100, "Platelets .......     10*3/uL  (150 - 400)"), (40, 113, "Sodium ...... 140 mmol/L")]
    )
    assert [(r.name, r.value) for r in got.results] == [("Sodium", 140.0)]
    assert [(u.reason, u.page) for u in got.unparsed] == [("no result printed", 1)]


def test_sentences_that_quote_a_known_test_are_not_results() -> None:
    page = [
        (40, 100, "Interpretation:"),
        (40, 113, "Hemoglobin A1c 6.5 % or higher indicates diabetes."),
        (40, 126, "LDL Cholesterol goal < 100 mg/dL for patients at high risk."),
        (40, 139, "Glucose 126 mg/dL and above on two occasions is consistent with diabetes."),
        (40, 160, "Sodium ........ 139 mmol/L 136-145"),
    ]
    got = read(page)
    assert rows(got) == [("Sodium", 139.0, "mmol/L", None, 136.0, 145.0)]
    assert not got.unparsed


def test_a_stray_comma_number_does_not_turn_a_decimal_point_document() -> None:
    page = [
        (40, 60, "Suite 4,2 - Building B"),  # one number that reads only with a decimal comma
        (40, 100, "Platelets: 245,000 /uL (150,000-400,000)"),
        (40, 113, "Creatinine: 0.85 mg/dL (0.60-1.20)"),
        (40, 126, "Potassium: 4.1 mmol/L (3.5-5.1)"),
    ]
    assert [(r.name, r.value) for r in read(page).results] == [
        ("Platelets", 245000.0),
        ("Creatinine", 0.85),
        ("Potassium", 4.1),
    ]


def test_a_document_printing_both_decimal_marks_leaves_ambiguous_numbers_unread() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Units"))
    body = [
        *table(115, (40, "Potassium"), (200, "4,1"), (260, "mmol/L")),
        *table(128, (40, "Sodium"), (200, "139,5"), (260, "mmol/L")),
        *table(141, (40, "Creatinine"), (200, "0.85"), (260, "mg/dL")),
        *table(154, (40, "Calcium"), (200, "9.4"), (260, "mg/dL")),
        *table(167, (40, "Specific Gravity"), (200, "1,020")),  # 1.020 or one thousand and twenty?
    ]
    got = read(header + body)
    assert [(r.name, r.value) for r in got.results] == [
        ("Potassium", 4.1),
        ("Sodium", 139.5),
        ("Creatinine", 0.85),
        ("Calcium", 9.4),
    ]
    assert [u.reason for u in got.unparsed] == ["result not readable"]


def test_a_bound_in_the_range_column_of_a_blank_row_is_not_a_censored_value() -> None:
    page = [
        *table(100, (40, "Folate"), (150, "5.0"), (220, ">3.9"), (300, "ng/mL")),
        *table(113, (40, "Troponin I"), (150, "<0.01"), (220, "<0.04"), (300, "ng/mL")),
        *table(126, (40, "C-Reactive Protein"), (220, "<5.0"), (300, "mg/L")),  # value left blank
        *table(139, (40, "Ferritin"), (150, "96"), (220, "24-336"), (300, "ng/mL")),
    ]
    got = read(page)
    assert [(r.name, r.value, r.comparator) for r in got.results] == [
        ("Folate", 5.0, None),
        ("Troponin I", 0.01, "<"),
        ("Ferritin", 96.0, None),
    ]
    assert [u.reason for u in got.unparsed] == ["no result printed"]


def test_column_names_printed_over_two_lines() -> None:
    header: list[Text] = [(150, 90, "Your"), (210, 90, "Reference")]
    header += table(100, (40, "Analyte"), (150, "Value"), (210, "Interval"), (300, "Units"))
    body = table(115, (40, "Glucose"), (150, "104"), (210, "70 - 99"), (300, "mg/dL"))
    got = read(header + body)
    assert rows(got) == [("Glucose", 104.0, "mg/dL", None, 70.0, 99.0)]
    assert got.results[0].reference_text == "70 - 99"


# -- label/value reports with comments in words (issue 13, held-out failure modes) ------------------


def test_a_bracketed_comment_naming_a_side_is_the_flag_not_a_reference() -> None:
    page = [
        (40, 100, "Hemoglobin: 11.2 g/dL (Low)"),
        (40, 113, "Vitamin D: 15 ng/mL (Deficient)"),
        (40, 126, "Cholesterol: 240 mg/dL (High)"),
        (40, 139, "Creatinine: 1.1 mg/dL (Normal)"),
        (40, 152, "Glucose: 142 mg/dL (High - possible diabetes)"),
    ]
    got = read(page)
    assert rows(got) == [
        ("Hemoglobin", 11.2, "g/dL", "L", None, None),
        ("Vitamin D", 15.0, "ng/mL", "L", None, None),
        ("Cholesterol", 240.0, "mg/dL", "H", None, None),
        ("Creatinine", 1.1, "mg/dL", "N", None, None),
        ("Glucose", 142.0, "mg/dL", "H", None, None),
    ]
    assert all(r.reference_text is None for r in got.results)


def test_a_bracketed_comment_naming_no_side_is_neither_flag_nor_reference() -> None:
    page = [
        (40, 100, "Nitrite: positive (negative)"),  # a qualitative reference stays one
        (40, 113, "Glucose: 96 mg/dL (fasting)"),
        (40, 126, "Cholesterol: 180 mg/dL (Lowered since March)"),  # names no side
    ]
    got = read(page)
    assert rows(got) == [
        ("Nitrite", "positive", None, None, None, None),
        ("Glucose", 96.0, "mg/dL", None, None, None),
        ("Cholesterol", 180.0, "mg/dL", None, None, None),
    ]
    assert [r.reference_text for r in got.results] == ["negative", None, None]


def test_two_columns_of_labels_and_values_with_unit_glued_and_a_comment() -> None:
    page = [
        (40, 60, "Date of Examination:"),
        (250, 60, "2025-08-05"),
        (40, 100, "HbA1c:"),
        (250, 100, "6.8% (Pre-diabetic range)"),
        (40, 113, "Triglycerides:"),
        (250, 113, "210 mg/dL (High)"),
    ]
    got = read(page)
    assert rows(got) == [
        ("HbA1c", 6.8, "%", None, None, None),
        ("Triglycerides", 210.0, "mg/dL", "H", None, None),
    ]
    assert [r.value_text for r in got.results] == ["6.8%", "210"]
    assert {r.effective for r in got.results} == {date(2025, 8, 5)}
    assert all(r.reference_text is None for r in got.results)


@pytest.mark.parametrize(
    ("label", "effective"),
    [
        ("Date of Test", date(2025, 8, 5)),
        ("Test Date", date(2025, 8, 5)),
        ("Date of Sample", date(2025, 8, 5)),
        # the report's only date dates the rows, with a warning (revision 6, rows.report_only_date)
        ("Report Date", date(2025, 8, 5)),
        ("Printed", None),  # a generation stamp alone dates nothing
        ("Latest date", None),
    ],
)
def test_which_dates_date_the_specimen(label: str, effective: date | None) -> None:
    got = read([(40, 60, f"{label}: 2025-08-05"), (40, 100, "Glucose: 96 mg/dL")])
    assert [(r.name, r.effective) for r in got.results] == [("Glucose", effective)]


def test_body_measurements_in_a_list_of_lab_lines_are_not_results() -> None:
    page = [
        (40, 100, "Fasting Blood Sugar: 118 mg/dL"),
        (40, 113, "Blood Pressure: 72/80 mmHg"),
        (40, 126, "BMI: 33.6"),
        (40, 139, "Insulin: 30 uIU/mL"),
        (40, 152, "Skin Thickness: 35 mm"),
        (40, 165, "Pregnancies: 6"),
        (40, 178, "Waist: 94 cm"),
        (40, 191, "Body mass: 91 kg"),
    ]
    got = read(page)
    assert [(r.name, r.value, r.unit) for r in got.results] == [
        ("Fasting Blood Sugar", 118.0, "mg/dL"),
        ("Insulin", 30.0, "u[IU]/mL"),
    ]


def test_body_measurements_in_a_table_are_not_results_but_a_lab_in_mm_per_hour_is() -> None:
    header = table(100, (40, "Test"), (200, "Result"), (260, "Units"))
    body = [
        *table(115, (40, "Skinfold"), (200, "35"), (260, "mm")),
        *table(128, (40, "Mid-arm"), (200, "31"), (260, "cm")),
        *table(141, (40, "ESR"), (200, "12"), (260, "mm/hr")),
        *table(154, (40, "Potassium"), (200, "4.1"), (260, "mmol/L")),
    ]
    got = read(header + body)
    assert [(r.name, r.value) for r in got.results] == [("ESR", 12.0), ("Potassium", 4.1)]
