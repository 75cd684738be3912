"""Scanned (image-only) lab-report pages read through Tesseract OCR: grounded values, a confidence
gate that sends doubtful rows to review, the model's agreement, and the fallback without Tesseract.

Each PDF is built here: a text page rendered to pixels and placed as the only content of a new
page (no text layer), as a scanner would give it.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import date
from functools import cache
from typing import Any

import pymupdf
import pytest
from PIL import Image, ImageFilter

from tools.labs.pdf import LabPdfExtraction, extract_labs, ocr
from tools.labs.pdf.model import ExtractedLab, Word
from tools.labs.pdf.model_pages import extract_with_model
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks.lab_extraction import LabFlag

_open: Any = pymupdf.open  # pymupdf ships no type hints
WIDTH, HEIGHT = 612.0, 792.0
PRINTED = {  # name: (value, unit, range)
    "Sodium": ("139", "mmol/L", "136-145"),
    "Potassium": ("4.2", "mmol/L", "3.5-5.1"),
    "Creatinine": ("1.10", "mg/dL", "0.60-1.20"),
    "Glucose": ("98", "mg/dL", "70-99"),
}
COLLECTED = date(2024, 3, 4)


def _lines() -> list[tuple[float, float, str]]:
    lines = [(72.0, 72.0, "Collected: 03/04/2024 07:45")]
    lines += [(72, 100, "Test"), (250, 100, "Result"), (320, 100, "Units"), (400, 100, "Reference Range")]
    for i, (name, (value, unit, ref)) in enumerate(PRINTED.items()):
        y = 118.0 + 16 * i
        lines += [(72, y, name), (250, y, value), (320, y, unit), (400, y, ref)]
    return lines


@cache
def scanned(smudge: str | None = None, dpi: int = 200) -> tuple[bytes, tuple[tuple[Any, ...], ...]]:
    """An image-only PDF of the report (and the words of the page it was rendered from); ``smudge``:
    a printed word blurred as a smudge on paper would."""
    source = _open()
    page = source.new_page(width=WIDTH, height=HEIGHT)
    for x, y, text in _lines():
        page.insert_text((x, y), text, fontsize=11)
    words = tuple(tuple(w[:5]) for w in page.get_text("words"))
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    if smudge is not None:
        x0, y0, x1, y1, _ = next(w for w in words if w[4] == smudge)
        k = dpi / 72
        box = (int((x0 - 1) * k), int((y0 - 1) * k), int((x1 + 1) * k), int((y1 + 1) * k))
        image.paste(image.crop(box).filter(ImageFilter.GaussianBlur(2.0)), box)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    out = _open()
    blank = out.new_page(width=WIDTH, height=HEIGHT)
    blank.insert_image(blank.rect, stream=buffer.getvalue())
    return out.tobytes(), words


@cache
def read(smudge: str | None = None) -> LabPdfExtraction:
    return extract_labs(scanned(smudge)[0])


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_tesseract_is_installed_with_english() -> None:
    engine = ocr.find_tesseract()
    assert engine is not None, "make setup installs tesseract-ocr and tesseract-ocr-eng"
    assert engine.label.startswith("tesseract 5.")


def test_an_image_only_page_is_read_by_ocr_and_every_value_grounded() -> None:
    pdf, words = scanned()
    assert _open(stream=pdf)[0].get_text().strip() == ""  # no text layer at all
    got = read()
    assert len(got.results) >= 3, got.warnings
    for lab in got.results:
        value, unit, ref = PRINTED[lab.name]
        assert (lab.value_text, lab.unit, lab.reference_text) == (value, unit, ref)
        assert lab.effective == COLLECTED
        assert lab.ocr is not None
        assert lab.ocr.startswith("tesseract 5.")
        x0, y0, x1, y1 = lab.bbox
        assert 0 <= x0 < x1 <= WIDTH
        assert 0 <= y0 < y1 <= HEIGHT
        # The box is where the value was printed: it overlaps the printed word and no other.
        hits = [w for w in words if _overlaps(lab.bbox, w[:4])]
        assert [w[4] for w in hits] == [value]
    assert {"Sodium", "Creatinine", "Glucose"} <= {lab.name for lab in got.results}


def test_a_smudged_value_goes_to_review_and_is_not_written() -> None:
    got = read("4.2")
    assert "Potassium" not in {lab.name for lab in got.results}
    (row,) = [u for u in got.unparsed if u.text.startswith("Potassium")]
    # Read at a lower confidence, or as "42": far above its range with no flag (a lost point).
    assert "OCR confidence" in row.reason or "not flagged" in row.reason
    assert row.bbox is not None
    assert _overlaps(row.bbox, (250, 122, 266, 137))
    assert got.needs_model == (1,)  # a configured model reads the page for review
    for lab in got.results:  # what is written is what is printed
        assert lab.value_text == PRINTED[lab.name][0]


def test_without_tesseract_the_page_is_left_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "find_tesseract", lambda: None)
    got = extract_labs(scanned()[0])
    assert got.results == ()
    assert got.needs_model == (1,)
    assert any("tesseract" in w and "not installed" in w for w in got.warnings)


def test_tsv_words_are_scaled_to_points_with_confidences() -> None:
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t1700\t2200\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t100\t200\t50\t20\t96.5\tSodium\n"
        "5\t1\t1\t1\t1\t2\t300\t200\t40\t20\t41.0\t139\n"
        "5\t1\t1\t1\t1\t3\t400\t200\t90\t4\t12.0\t—_\n"  # a table rule read as text
        "5\t1\t1\t1\t1\t4\t500\t200\t30\t20\t95.0\t \n"
    )
    got = ocr.parse_tsv(tsv, 0.5, 0.25)
    assert got == [
        Word(50.0, 50.0, 75.0, 55.0, "Sodium", conf=0.965),
        Word(150.0, 50.0, 170.0, 55.0, "139", conf=0.41),
    ]


def _words(rows: list[list[tuple[str, float]]]) -> list[Word]:
    out = []
    for r, row in enumerate(rows):
        x = 40.0
        for text, conf in row:
            out.append(Word(x, 100 + 20 * r, x + 40, 110 + 20 * r, text, conf=conf))
            x += 100
    return out


def _lab(name: str, words: list[Word], value: str, *, printed_range: bool = True) -> ExtractedLab:
    w = next(w for w in words if w.text == value)
    return ExtractedLab(
        name=name,
        loinc=None,
        name_status="unknown",
        value=float(value),
        value_text=value,
        unit=None,
        reference_low=0.0 if printed_range else None,
        reference_high=1000.0 if printed_range else None,
        effective=COLLECTED,
        page=1,
        bbox=(w.x0, w.y0, w.x1, w.y1),
    )


def test_the_gate_needs_every_token_of_the_row_and_of_the_date_line() -> None:
    engine = ocr.OcrEngine(path="/usr/bin/tesseract", version="5.3.0")
    words = _words(
        [
            [("Collected:", 0.97), ("03/04/2024", 0.96)],
            [("Sodium", 0.97), ("139", 0.96), ("mmol/L", 0.95)],
            [("Potassium", 0.97), ("42", 0.87), ("mmol/L", 0.95)],
            [("Glucose", 0.97), ("98", 0.99), ("mg/dL", 0.40)],
        ]
    )
    labs = [_lab("Sodium", words, "139"), _lab("Potassium", words, "42"), _lab("Glucose", words, "98")]
    kept, review = ocr.gate_by_confidence(labs, words, 1, engine, min_confidence=0.9)
    assert [(k.name, k.ocr) for k in kept] == [("Sodium", "tesseract 5.3.0")]
    assert [r.text for r in review] == ["Potassium 42 mmol/L", "Glucose 98 mg/dL"]
    assert "0.87" in review[0].reason
    assert "0.40" in review[1].reason
    # A doubtful collection date makes every value of the page doubtful.
    dim = [Word(w.x0, w.y0, w.x1, w.y1, w.text, conf=0.5) if w.text == "03/04/2024" else w for w in words]
    kept, review = ocr.gate_by_confidence(labs[:1], dim, 1, engine, min_confidence=0.9)
    assert kept == []
    assert "0.50" in review[0].reason


def test_an_ocr_number_without_a_printed_range_goes_to_review_however_confident() -> None:
    # "4.1" read as "41" at full confidence: only a printed range (or flag) could catch it.
    engine = ocr.OcrEngine(path="/usr/bin/tesseract", version="5.3.0")
    words = _words(
        [[("Collected:", 0.97), ("03/04/2024", 0.96)], [("Monocytes", 0.97), ("41", 0.99), ("%", 0.95)]]
    )
    kept, review = ocr.gate_by_confidence(
        [_lab("Monocytes", words, "41", printed_range=False)], words, 1, engine
    )
    assert kept == []
    assert "no printed reference range" in review[0].reason


def _answer(*results: dict[str, object]) -> str:
    return "```json\n" + json.dumps({"results": list(results)}) + "\n```"


def test_with_a_model_an_ocr_value_is_written_only_where_the_model_reads_the_same() -> None:
    pdf, _ = scanned()
    backend = ScriptedBackend(
        [
            _answer(
                {"name": "Sodium", "value": 139, "unit": "mmol/L"},
                {"name": "Creatinine", "value": 1.1, "unit": "mg/dL"},
                {"name": "Glucose", "value": 96, "unit": "mg/dL"},  # the model reads another value
            )
        ]
    )
    got = asyncio.run(extract_with_model(pdf, backend, dpi=50))
    assert len(backend.requests) == 1  # the OCR page went to the model
    assert {lab.name for lab in got.text.results} == {"Sodium", "Creatinine"}
    assert all(lab.ocr for lab in got.text.results)
    glucose = [u for u in got.text.unparsed if u.text.startswith("Glucose")]
    assert glucose
    assert "not confirmed by the model" in glucose[0].reason
    assert 1 in got.text.needs_model
    statuses = {r.name: r.status for r in got.model_results}
    assert statuses == {"Sodium": "agrees", "Creatinine": "agrees", "Glucose": "disagrees"}


def test_with_an_unreadable_model_answer_no_ocr_value_is_written() -> None:
    got = asyncio.run(extract_with_model(scanned()[0], ScriptedBackend(["I cannot read this"]), dpi=50))
    assert got.text.results == ()
    assert {u.text.split()[0] for u in got.text.unparsed} >= {"Sodium", "Creatinine", "Glucose"}


def _ranged(
    value: float, flag: LabFlag | None, low: float | None = 3.5, high: float | None = 5.1
) -> ExtractedLab:
    return ExtractedLab(
        name="Potassium", loinc="2823-3", name_status="matched", value=value, value_text=f"{value:g}",
        unit="mmol/L", reference_low=low, reference_high=high, flag=flag, page=1, bbox=(0, 0, 1, 1),
    )  # fmt: skip


def test_a_flag_that_does_not_fit_value_and_range_sends_an_ocr_value_to_review() -> None:
    assert ocr.flag_mismatch(_ranged(4.2, None)) is None
    assert ocr.flag_mismatch(_ranged(5.9, LabFlag.HIGH)) is None
    assert ocr.flag_mismatch(_ranged(2.9, LabFlag.CRITICAL_LOW)) is None
    assert (
        ocr.flag_mismatch(_ranged(42.0, None)) == "the value is above its reference range, not flagged"
    )  # "4.2" lost its point
    assert ocr.flag_mismatch(_ranged(5.9, None)) == "the value is above its reference range, not flagged"
    assert (
        ocr.flag_mismatch(_ranged(3.1, LabFlag.HIGH)) == "the value is below its reference range, not flagged"
    )
    assert ocr.flag_mismatch(_ranged(4.2, LabFlag.LOW)) == "the value is flagged L within its reference range"
    assert ocr.flag_mismatch(_ranged(250.0, None, low=None, high=None)) is None  # no range: nothing to check
    assert ocr.flag_mismatch(_ranged(250.0, None, low=None, high=200)) is not None
    engine = ocr.OcrEngine(path="/usr/bin/tesseract", version="5.3.0")
    lab = _ranged(42.0, None)
    words = [Word(0, 0, 1, 1, "Potassium", conf=0.97), Word(0, 0, 1, 1, "42", conf=0.97)]
    kept, review = ocr.gate_by_confidence([lab], words, 1, engine)
    assert kept == []
    assert "not flagged" in review[0].reason


def test_an_unknown_unit_a_missing_unit_or_an_unreadable_range_make_an_ocr_value_doubtful() -> None:
    good = _ranged(4.2, None)
    assert ocr.doubt(good) is None
    assert ocr.doubt(good.model_copy(update={"unit": "pe"})) == "the unit 'pe' is not a known unit"
    assert ocr.doubt(good.model_copy(update={"unit": None})) == "no unit was read"
    unreadable = good.model_copy(
        update={"reference_low": None, "reference_high": None, "reference_text": "3.5 5.1"}
    )
    assert ocr.doubt(unreadable) == "its reference range is not readable"
    inr = good.model_copy(
        update={"loinc": "6301-6", "unit": None, "reference_low": 0.8, "reference_high": 1.1}
    )
    assert ocr.doubt(inr.model_copy(update={"value": 1.0})) is None  # unitless by definition
