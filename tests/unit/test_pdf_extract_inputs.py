"""Bad and unusual PDFs: encrypted, corrupt, empty, blank, scanned pages, too many pages."""

from __future__ import annotations

import time
from pathlib import Path

import pymupdf
import pytest

from tools.labs.pdf import (
    PdfCorruptError,
    PdfEmptyError,
    PdfEncryptedError,
    PdfTooLargeError,
    extract_labs,
)
from tools.labs.pdf.drawing import write_pdf

TABLE = [
    (40, 100, "Test"), (200, 100, "Result"), (300, 100, "Units"),
    (40, 115, "Sodium"), (200, 115, "140"), (300, 115, "mmol/L"),
]  # fmt: skip

# A hand-written PDF whose page tree holds no page (pymupdf refuses to write one).
ZERO_PAGES = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def test_encrypted_pdf_names_the_file_and_asks_for_a_password(tmp_path: Path) -> None:
    path = tmp_path / "locked-report.pdf"
    path.write_bytes(write_pdf([TABLE], password="s3cret"))
    with pytest.raises(PdfEncryptedError, match=r"locked-report\.pdf.*password"):
        extract_labs(path)


@pytest.mark.parametrize("data", [b"not a pdf at all", b"%PDF-1.7\n" + b"\x00garbage" * 20])
def test_corrupt_pdf(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)
    with pytest.raises((PdfCorruptError, PdfEmptyError), match=r"broken\.pdf"):
        extract_labs(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PdfCorruptError, match="no such file"):
        extract_labs(tmp_path / "nope.pdf")


def test_zero_byte_file_zero_pages_and_blank_pages_are_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(PdfEmptyError, match="0 bytes"):
        extract_labs(empty)
    with pytest.raises((PdfEmptyError, PdfCorruptError)):
        extract_labs(ZERO_PAGES)
    with pytest.raises(PdfEmptyError, match="no page has text"):
        extract_labs(write_pdf([[], []]))


def test_page_without_text_layer_is_listed_for_the_model() -> None:
    got = extract_labs(write_pdf([TABLE, []], image_pages=[1]))
    assert got.needs_model == (2,)
    assert [r.name for r in got.results] == ["Sodium"]
    assert got.partial
    assert any("page 2 has no text layer" in w for w in got.warnings)


@pytest.mark.parametrize("width", [2.0, 0.1])
def test_a_page_of_drawings_only_is_read_as_a_scan_and_a_white_one_is_blank(width: float) -> None:
    """Text drawn as outlines (here a line, down to a 0.1 pt hairline) needs reading; a page
    painted only white has nothing on it."""
    doc = pymupdf.open()
    drawn = doc.new_page(width=595, height=842)
    drawn.draw_line((40, 100), (300, 100), color=(0, 0, 0), width=width)
    white = doc.new_page(width=595, height=842)
    white.draw_rect(white.rect, color=None, fill=(1, 1, 1))
    got = extract_labs(doc.tobytes())
    assert got.needs_model == (1,)
    assert any(w == "page 2 is blank" for w in got.warnings)


@pytest.fixture(scope="module")
def five_hundred_pages() -> bytes:
    return write_pdf([TABLE] * 500)


def test_page_limit_is_checked_before_reading_any_page(five_hundred_pages: bytes) -> None:
    pdf = five_hundred_pages
    start = time.perf_counter()
    with pytest.raises(PdfTooLargeError, match=r"500 pages is over the page limit of 200.*--max-pages 500"):
        extract_labs(pdf)
    assert time.perf_counter() - start < 1.0


def test_a_500_page_report_within_a_raised_limit_is_read_in_bounded_time(five_hundred_pages: bytes) -> None:
    pdf = five_hundred_pages
    start = time.perf_counter()
    got = extract_labs(pdf, max_pages=500)
    assert len(got.results) == 500
    assert got.results[-1].page == 500
    assert time.perf_counter() - start < 10.0  # about 1 s on the 2-core CI machine


def test_truncated_pdf_is_read_as_far_as_it_goes_and_reported_damaged() -> None:
    whole = write_pdf([TABLE])
    got = extract_labs(whole[: int(len(whole) * 0.8)])
    assert got.repaired
    assert got.partial
    assert any("damaged" in w for w in got.warnings)


def test_empty_bytes_are_empty() -> None:
    with pytest.raises(PdfEmptyError, match="0 bytes"):
        extract_labs(b"")
