"""What the second held-out set (tests/data/lab_reports_public: medbios, patreport, labagent)
showed the reader lacked, each as a minimal PDF built here with pymupdf.

- Glyphs a font could not draw: ReportLab sets them as ZapfDingbats squares, which the text
  layer gives back as letters ("WBC — IIIII IIII"); they are not text (``reader.page_words``,
  ``names.readable``).
- The report's only date under a bare "Date:" label; a collection time with a report date and
  no collection date (``rows.report_only_date``).
- "H ↑" flags, a "Desirable" reference column, units printed "×10³/µL", "mIU/mL", "IU/mL",
  "million/uL"; "Pus Cells" under a urinalysis heading.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, time
from typing import Any

import pymupdf
from test_labpdf_families import Text, read, rows, table

from tools.labs.pdf import extract_labs
from tools.labs.pdf.model import Word
from tools.labs.pdf.names import readable
from tools.labs.pdf.reader import _unreadable, page_words
from tools.labs.pdf.values import parse_date, parse_flag
from tools.labs.units import normalize_unit
from tools.medgemma.tasks.lab_extraction import LabFlag

_pymupdf: Any = pymupdf


def _glossed(*pages: Sequence[Text | tuple[float, float, str, str, float]]) -> bytes:
    """Like ``make_pdf``, but an item may give its own font ("zadb": ZapfDingbats squares as
    ReportLab draws a glyph Helvetica lacks)."""
    doc = _pymupdf.open()
    for placed in pages:
        page = doc.new_page(width=595, height=842)
        for item in placed:
            font = item[3] if len(item) >= 4 else "helv"
            page.insert_text((item[0], item[1]), item[2], fontsize=9, fontname=font)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def _gloss(x: float, y: float, squares: str = "IIIII IIII") -> tuple[float, float, str, str]:
    return (x, y, squares, "zadb")


# -- unreadable text ---------------------------------------------------------------------------------


def test_picture_font_letters_are_not_text_and_leave_names_and_headers() -> None:
    page = [
        (50, 100, "Test /"),
        _gloss(78, 100, "IIIII"),
        (230, 100, "Result /"),
        _gloss(262, 100, "IIIIIII"),
        (300, 100, "Unit /"),
        _gloss(326, 100, "IIIIII"),
        (380, 100, "Reference Range /"),
        _gloss(460, 100, "IIIIII"),
        (500, 100, "Flag /"),
        _gloss(526, 100, "IIIII"),
        (50, 118, "WBC -"),
        _gloss(78, 118),
        (258, 118, "11.8"),
        (320, 118, "x10^3/uL"),
        (400, 118, "4.5 - 11.0"),
        (514, 118, "H"),
        (50, 136, "Anti-TPO -"),
        _gloss(95, 136),
        (257, 136, "142"),
        (320, 136, "IU/mL"),
        (400, 136, "< 35"),
        (514, 136, "H"),
        # "x10" + a square + "/uL": a unit that cannot be read as a whole
        (50, 154, "RBC -"),
        _gloss(78, 154),
        (258, 154, "4.20"),
        (320, 154, "x10"),
        _gloss(333, 154, "I"),
        (340, 154, "/uL"),
        (400, 154, "4.50 - 5.90"),
        (514, 154, "L"),
    ]
    got = extract_labs(_glossed(page))
    assert rows(got) == [
        ("WBC", 11.8, "10*3/uL", "H", 4.5, 11.0),
        ("Anti-TPO", 142.0, "[IU]/mL", "H", None, 35.0),  # unknown name: read under the header
        ("RBC", 4.2, None, "L", 4.5, 5.9),
    ]
    assert [r.loinc for r in got.results] == ["6690-2", None, "789-8"]
    assert any("not readable" in w for w in got.warnings)
    assert not got.unparsed


def test_page_words_mark_unreadable_characters_and_split_a_glued_gloss() -> None:
    page = [(50, 100, "Result /"), _gloss(88, 100, "III"), (101, 100, "Unit")]
    doc: Any = _pymupdf.open(stream=_glossed(page), filetype="pdf")
    texts = [w.text for w in page_words(doc[0])]
    assert texts == ["Result", "/", "\ufffd\ufffd\ufffd", "Unit"]


def test_replacement_and_private_use_characters_are_unreadable() -> None:
    assert _unreadable("\ufffd", "Helvetica")
    assert _unreadable("\ue000", "Helvetica")
    assert _unreadable("I", "ZapfDingbats")
    assert not _unreadable("I", "Helvetica")
    assert not _unreadable("↑", "Symbol")
    words = [Word(0, 0, 10, 9, "WBC"), Word(12, 0, 14, 9, "—"), Word(16, 0, 40, 9, "\ufffd\ufffd")]
    assert [w.text for w in readable(words)] == ["WBC"]
    # a dash that sets off no unreadable gloss stays
    kept = [Word(0, 0, 10, 9, "Vitamin"), Word(12, 0, 14, 9, "-"), Word(16, 0, 30, 9, "D")]
    assert readable(kept) == kept


# -- the report's only date --------------------------------------------------------------------------

_ROWS = [
    *table(160, (40, "Test"), (200, "Result"), (280, "Unit"), (340, "Reference Range")),
    *table(175, (40, "Hemoglobin"), (200, "8.9"), (280, "g/dL"), (340, "13.0 - 17.0")),
]


def test_a_bare_date_label_is_the_date_of_service_when_it_is_the_only_date() -> None:
    for printed in ("March 10, 2026", "10-Mar-2026"):
        page = [
            (40, 60, "Patient ID:"),
            (140, 60, "CGH-2026-04521"),
            (300, 60, "Date:"),
            (380, 60, printed),
            (40, 80, "DOB:"),
            (140, 80, "1980-01-02"),
            *_ROWS,
        ]
        got = read(page)
        assert [(r.effective, r.effective_time) for r in got.results] == [(date(2026, 3, 10), None)]


def test_a_bare_date_label_is_not_read_beside_another_dated_label() -> None:
    page = [
        (300, 60, "Date:"),
        (380, 60, "10-Mar-2026"),
        (300, 80, "Reported:"),
        (380, 80, "12-Mar-2026"),
        *_ROWS,
    ]
    assert [r.effective for r in read(page).results] == [None]
    # the same date under a report label: not a collection date either
    page = [(300, 60, "Date:"), (380, 60, "10-Mar-2026"), (300, 80, "Received:"), (380, 80, "10-Mar-2026")]
    assert [r.effective for r in read([*page, *_ROWS]).results] == [None]


def test_a_collection_time_takes_the_report_date_when_that_is_the_only_date() -> None:
    page = [
        (40, 60, "Report Date:"),
        (160, 60, "2025-11-15"),
        (40, 75, "Collection Time:"),
        (160, 75, "07:30 AM"),
        (40, 90, "Date of Birth:"),
        (160, 90, "1985-04-22 (Age: 40)"),
        *_ROWS,
    ]
    got = read(page, [(40, 40, "Patient: A | ID: KF-1 | Date: 2025-11-15"), *_ROWS])
    assert [(r.page, r.effective, r.effective_time) for r in got.results] == [
        (1, date(2025, 11, 15), time(7, 30)),
        (2, date(2025, 11, 15), time(7, 30)),
    ]
    # a report date without a collection time: the date alone (revision 6, test_labpdf_heldout3)
    alone = read([(40, 60, "Report Date:"), (160, 60, "2025-11-15"), *_ROWS])
    assert [(r.effective, r.effective_time) for r in alone.results] == [(date(2025, 11, 15), None)]


def test_the_date_formats_of_the_held_out_headers_parse() -> None:
    assert parse_date("March 10, 2026") == date(2026, 3, 10)
    assert parse_date("10-Mar-2026") == date(2026, 3, 10)


# -- flags, columns, units ---------------------------------------------------------------------------


def test_a_flag_letter_with_its_arrow() -> None:
    assert parse_flag("H ↑") is LabFlag.HIGH
    assert parse_flag("↓ L") is LabFlag.LOW
    assert parse_flag("H ↓") is None  # they disagree: no flag


def test_a_desirable_column_is_the_reference() -> None:
    page = [
        *table(100, (40, "Test"), (200, "Result"), (280, "Unit"), (340, "Desirable"), (440, "Flag")),
        *table(115, (40, "Non-HDL Cholesterol"), (200, "180"), (280, "mg/dL"), (340, "< 130"), (440, "H")),
    ]
    assert rows(read(page)) == [("Non-HDL Cholesterol", 180.0, "mg/dL", "H", None, 130.0)]


def test_units_as_the_held_out_reports_print_them() -> None:
    assert normalize_unit("×10³/µL") == "10*3/uL"
    assert normalize_unit("mIU/mL") == "m[IU]/mL"
    assert normalize_unit("IU/mL") == "[IU]/mL"
    assert normalize_unit("million/uL") == "10*6/uL"


def test_pus_cells_under_a_urinalysis_heading() -> None:
    page = [
        (40, 80, "URINALYSIS"),
        *table(100, (40, "Test"), (200, "Result"), (280, "Unit"), (340, "Reference Range")),
        *table(115, (40, "Pus Cells"), (200, "2"), (280, "/hpf"), (340, "0 - 5")),
    ]
    got = read(page)
    assert [(r.name, r.loinc, r.unit) for r in got.results] == [("Pus Cells", "5821-4", "/[HPF]")]


def test_a_ratio_in_the_units_column_is_no_unit_and_morning_cortisol_is_coded() -> None:
    page = [
        *table(100, (40, "Test"), (200, "Result"), (280, "Unit"), (340, "Reference Range")),
        *table(115, (40, "INR"), (200, "1.1"), (280, "ratio"), (340, "0.8 - 1.2")),
        *table(130, (40, "Cortisol (Morning)"), (200, "18.5"), (280, "ug/dL"), (340, "6.2 - 19.4")),
    ]
    got = read(page)
    assert [(r.name, r.loinc, r.unit) for r in got.results] == [
        ("INR", "6301-6", "{INR}"),  # as for an INR printed with no unit (rows._resolve)
        ("Cortisol (Morning)", "2143-6", "ug/dL"),
    ]
