"""The I/O shell: open a PDF with pymupdf, read each page's words, hand them to the pure core."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pymupdf

from tools.labs.pdf.errors import PdfCorruptError, PdfEmptyError, PdfEncryptedError, PdfTooLargeError
from tools.labs.pdf.model import ExtractedLab, LabPdfExtraction, UnparsedRow, Word
from tools.labs.pdf.rows import PageContext, extract_page
from tools.labs.pdf.values import uses_decimal_comma

__all__ = [
    "DEFAULT_MAX_PAGES",
    "EXTRACTOR_NAME",
    "EXTRACTOR_REVISION",
    "extract_labs",
    "open_pdf",
    "page_words",
]

_open: Any = pymupdf.open

DEFAULT_MAX_PAGES: Final = 200
# The extractor's identity in what ChartAgent writes from its results (tools.writeback.lab_results):
# bump the revision whenever a change can alter any extracted row, so that new output gets new
# identifiers instead of hiding behind what an older extractor wrote.
EXTRACTOR_NAME: Final = "chartagent-lab-pdf-extractor"
EXTRACTOR_REVISION: Final = "2"  # 2: collection time printed with the date
# pymupdf ships no type hints for Document/Page methods: this module is their only user here.
_Doc = Any
_Page = Any
_MIN_TEXT_CHARS: Final = 3  # fewer printable characters than this: the page has no text layer


def open_pdf(source: str | Path | bytes, *, name: str | None = None) -> tuple[_Doc, str]:
    """Open ``source`` (a path or the file's bytes); our errors for encrypted, corrupt, empty files."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if isinstance(source, bytes):
            if not source:
                raise PdfEmptyError(label, "the file is empty (0 bytes)")
            doc: _Doc = _open(stream=source, filetype="pdf")
        else:
            path = Path(source)
            if not path.is_file():
                raise PdfCorruptError(label, "no such file")
            if path.stat().st_size == 0:
                raise PdfEmptyError(label, "the file is empty (0 bytes)")
            doc = _open(path, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        if isinstance(exc, PdfEmptyError | PdfCorruptError):
            raise
        raise PdfCorruptError(label, str(exc) or type(exc).__name__) from exc
    if doc.needs_pass:
        doc.close()
        raise PdfEncryptedError(label)
    if doc.page_count == 0:
        doc.close()
        raise PdfEmptyError(label, "the PDF has no pages")
    return doc, label


def page_words(page: _Page) -> list[Word]:
    return [Word(w[0], w[1], w[2], w[3], w[4]) for w in page.get_text("words", sort=False)]


def extract_labs(
    source: str | Path | bytes, *, max_pages: int = DEFAULT_MAX_PAGES, name: str | None = None
) -> LabPdfExtraction:
    """Every lab result in the PDF's text layer, each with its page and bbox.

    Pages without a text layer (scans) are listed in ``needs_model``. Raises ``PdfEncryptedError``,
    ``PdfCorruptError``, ``PdfEmptyError`` (no pages, or no text and nothing to scan) and
    ``PdfTooLargeError`` (more than ``max_pages`` pages; checked before any page is read).
    """
    doc, label = open_pdf(source, name=name)
    try:
        if doc.page_count > max_pages:
            raise PdfTooLargeError(label, doc.page_count, max_pages)
        context = PageContext()
        # Decimal commas are a property of the document: "1,005" reads as 1.005 only if
        # another number on some page ("4,2") shows the lab prints decimal commas.
        pages_words = [page_words(doc[i]) for i in range(doc.page_count)]
        context.decimal_comma = uses_decimal_comma([w.text for words in pages_words for w in words])
        results: list[ExtractedLab] = []
        unparsed: list[UnparsedRow] = []
        warnings: list[str] = []
        needs_model: list[int] = []
        blank = 0
        for index in range(doc.page_count):
            page = doc[index]
            number = index + 1
            words = pages_words[index]
            if sum(len(w.text) for w in words) < _MIN_TEXT_CHARS:
                if page.get_images(full=False) or page.get_drawings():
                    needs_model.append(number)
                    warnings.append(f"page {number} has no text layer (a scan?): it needs the model")
                else:
                    blank += 1
                    warnings.append(f"page {number} is blank")
                continue
            outcome = extract_page(words, number, page.rect.width, page.rect.height, context)
            results += outcome.results
            unparsed += outcome.unparsed
            warnings += outcome.warnings
        if blank == doc.page_count:
            raise PdfEmptyError(label, "no page has text or an image")
        if not results and not needs_model:
            warnings.append("no lab results found in the text layer")
        for row in unparsed:
            warnings.append(f"page {row.page}: row not read ({row.reason})")
        if doc.is_repaired:
            warnings.append(
                "the file is damaged (truncated?) and was repaired on reading: results may be missing"
            )
        return LabPdfExtraction(
            source=label,
            repaired=bool(doc.is_repaired),
            page_count=doc.page_count,
            results=tuple(results),
            needs_model=tuple(needs_model),
            unparsed=tuple(unparsed),
            warnings=tuple(warnings),
        )
    finally:
        doc.close()
