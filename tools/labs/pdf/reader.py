"""The I/O shell: open a PDF with pymupdf, read each page's words, hand them to the pure core."""

from __future__ import annotations

import itertools
import mmap
import re
from pathlib import Path
from typing import Any, Final

import pymupdf

from tools.file_kinds import PREFIX_BYTES, looks_like
from tools.labs.pdf.content_limits import content_problem
from tools.labs.pdf.errors import (
    PdfCorruptError,
    PdfEmptyError,
    PdfEncryptedError,
    PdfNotPdfError,
    PdfOverLimitError,
    PdfTooLargeError,
)
from tools.labs.pdf.model import ExtractedLab, LabPdfExtraction, UnparsedRow, Word, union_bbox
from tools.labs.pdf.names import UNREADABLE
from tools.labs.pdf.ocr import OcrSteps, run_steps, run_steps_async, scanned_page_steps
from tools.labs.pdf.rows import PageContext, extract_page, report_only_date
from tools.labs.pdf.stream_limits import MAX_STREAM_BYTES, stream_problem
from tools.labs.pdf.values import number_style

__all__ = [
    "DEFAULT_MAX_PAGES",
    "EXTRACTOR_NAME",
    "EXTRACTOR_REVISION",
    "MAX_PAGE_POINTS",
    "MAX_STREAM_BYTES",
    "check_limits",
    "extract_labs",
    "extract_labs_async",
    "lab_extraction_steps",
    "open_pdf",
    "page_words",
]

_open: Any = pymupdf.open

DEFAULT_MAX_PAGES: Final = 200
# ISO 32000-1 Annex C: a page is at most 14,400 units (200 in) a side. A larger one is not a lab
# report, and rendering it for the model would need gigabytes.
MAX_PAGE_POINTS: Final = 14_400.0
_SIGNATURE: Final = b"%PDF-"  # readers accept it anywhere in the first 1024 bytes
# The extractor's identity in what ChartAgent writes from its results (tools.writeback.lab_results):
# bump the revision whenever a change can alter any extracted row, so that new output gets new
# identifiers instead of hiding behind what an older extractor wrote.
EXTRACTOR_NAME: Final = "chartagent-lab-pdf-extractor"
# 2: collection time printed with the date; 3: rows found without a header (leaders, colons,
# run-in lines, headerless and side-by-side tables), previous-result columns, arrows and bold flags;
# 4: bracketed comments naming a side are flags ("(Low)"), glued "6.8%" on free lines, body
# measurements skipped, examination/test dates as the collection date.
# 5: unreadable characters (picture-font letters, replacement and private-use code points) kept
# out of names, a bare "Date:" as the date of service when it is the report's only date, a
# collection time with no collection date on the report date.
# 6: one rule for the report's only date (a bare "Date:" or a report/issue date, a same-day
# generation stamp beside it) with a warning; starred flag words ("*** HIGH ***"), "critical" as A;
# a flag word between result and unit ("H mg/dL"), named LDL equations, eGFR's "mL/min/1.73";
# Portuguese/Spanish headers and blood-count names, "13,0 a 17,0" ranges, two results in a cell.
# 7: counts per cubic millimetre ("/cumm", "million/mm3", "cells/uL") as per microlitre;
# conjugated and unconjugated bilirubin no longer coded as direct and indirect.
# 8: a result row's known name completed by a name-only line under it when the two name another
# test of the same specimen ("LDL" over "Cholesterol (calc)": 13457-7, no longer 2089-1).
EXTRACTOR_REVISION: Final = "8"
# pymupdf ships no type hints for Document/Page methods: this module is their only user here.
_Doc = Any
_Page = Any
_MIN_TEXT_CHARS: Final = 3  # fewer printable characters than this: the page has no text layer
_MARKS_DPI: Final = 36  # enough for a hairline to leave grey pixels, a letter page in 0.1 Mpx


def open_pdf(source: str | Path | bytes, *, name: str | None = None) -> tuple[_Doc, str]:
    """Open ``source`` (a path or the file's bytes); our errors for encrypted, corrupt, empty files."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    opening: dict[str, Any]
    if isinstance(source, bytes):
        if not source:
            raise PdfEmptyError(label, "the file is empty (0 bytes)")
        _check_signature(source[:PREFIX_BYTES], label)
        opening = {"stream": source}
    else:
        path = Path(source)
        if not path.is_file():
            raise PdfCorruptError(label, "no such file")
        if path.stat().st_size == 0:
            raise PdfEmptyError(label, "the file is empty (0 bytes)")
        try:
            with open(path, "rb") as fp:
                _check_signature(fp.read(PREFIX_BYTES), label)
        except OSError as exc:
            raise PdfCorruptError(label, f"cannot read it: {exc.strerror or type(exc).__name__}") from None
        opening = {"filename": path}
    try:
        doc: _Doc = _open(filetype="pdf", **opening)
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise PdfCorruptError(label, str(exc) or type(exc).__name__) from exc
    if doc.needs_pass:
        doc.close()
        raise PdfEncryptedError(label)
    if doc.page_count == 0:
        doc.close()
        raise PdfEmptyError(label, "the PDF has no pages")
    return doc, label


def _draws_anything(page: _Page) -> bool:
    """Whether a page without text or images shows anything (text drawn as outlines, a chart): a
    coarse greyscale render with any pixel not white. Not ``get_drawings``: that makes a dict of
    every path, gigabytes for a page of millions of tiny paths, where a render stays in bounds."""
    pix = page.get_pixmap(dpi=_MARKS_DPI, colorspace=pymupdf.csGRAY, alpha=False)
    return min(pix.samples, default=255) < 255


def _check_signature(prefix: bytes, label: str) -> None:
    """Another kind of file (a PNG named .pdf) is refused as what it is, before mupdf guesses."""
    if _SIGNATURE not in prefix:
        raise PdfNotPdfError(label, looks_like(prefix))


def check_limits(
    doc: _Doc,
    label: str,
    data: bytes | mmap.mmap | None = None,
    *,
    max_stream_bytes: int = MAX_STREAM_BYTES,
    max_page_points: float = MAX_PAGE_POINTS,
) -> None:
    """Refuse (PdfOverLimitError) a page larger than a PDF page may be, a stream that decodes to
    more than `max_stream_bytes` or an image of more pixels than an image may have, before mupdf
    decodes anything (`stream_limits.stream_problem`: every filter, counted in bounded steps);
    then a page drawing more than `max_stream_bytes` in all, forms drawn inside forms counted as
    often as they are drawn, a form drawing itself, or an inline image over those limits
    (`content_limits.content_problem`). `data`: the file's bytes, read for the streams without a
    call into mupdf per object; an encrypted file (or no `data`) is checked object by object
    through pymupdf, which decrypts.
    """
    for index in range(doc.page_count):
        box = doc[index].mediabox
        if max(box.width, box.height) > max_page_points:
            raise PdfOverLimitError(
                label,
                f"page {index + 1} measures {box.width:.0f} x {box.height:.0f} pt, over the "
                f"{max_page_points:.0f} pt a side a PDF page may measure",
            )
    plain = data if data is not None and not (doc.metadata or {}).get("encryption") else None
    problem = stream_problem(doc, plain, max_stream_bytes=max_stream_bytes)
    if problem is None:
        problem = content_problem(doc, max_stream_bytes=max_stream_bytes)
    if problem is not None:
        raise PdfOverLimitError(label, problem)


def _check_file_limits(doc: _Doc, label: str, source: str | Path | bytes, max_stream_bytes: int) -> None:
    """`check_limits` on the file's bytes: `source` itself, or the file mapped (not read) into memory."""
    if isinstance(source, bytes):
        check_limits(doc, label, source, max_stream_bytes=max_stream_bytes)
        return
    mapped = _map_file(source)
    if mapped is None:  # cannot be mapped (a pipe, a changed file): through pymupdf
        check_limits(doc, label, None, max_stream_bytes=max_stream_bytes)
        return
    with mapped:
        check_limits(doc, label, mapped, max_stream_bytes=max_stream_bytes)


def _map_file(path: str | Path) -> mmap.mmap | None:
    """The file mapped read-only into memory (not read); None where it cannot be mapped."""
    try:
        fp = open(path, "rb")  # noqa: SIM115 - the mapping keeps its own descriptor
    except OSError:
        return None
    with fp:
        try:
            return mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a pipe, an empty file
            return None


_BOLD_FONT_RE: Final = re.compile(r"bold|black|heavy|semibold|demi", re.IGNORECASE)
_BOLD_FLAG: Final = 16  # pymupdf span flag: bold face


# Fonts of pictures, not letters (check marks, squares, arrows): their codes have no Unicode
# meaning, and a text layer without a ToUnicode map for them gives the raw code as a letter.
# ReportLab sets a glyph its font lacks (Arabic in Helvetica) as a ZapfDingbats square, which
# pymupdf returns as "I": "WBC — IIIII IIII" is a name and a gloss that cannot be read.
_DINGBAT_FONT_RE: Final = re.compile(r"dingbat|wingding|webding", re.IGNORECASE)


def _unreadable(char: str, font: str) -> bool:
    """A character that is not readable text: a replacement or private-use code point (no
    Unicode meaning), or a letter or digit drawn in a picture font (the code, not a letter)."""
    code = ord(char)
    return (
        char == UNREADABLE
        or 0xE000 <= code <= 0xF8FF
        or code >= 0xF0000
        or (char.isascii() and char.isalnum() and bool(_DINGBAT_FONT_RE.search(font)))
    )


def _has_unreadable(text: str) -> bool:
    return any(_unreadable(c, "") for c in text)


def _char_words(page: _Page, textpage: Any) -> list[tuple[float, float, float, float, str]]:
    """The page's words built from its characters (as ``get_text("words")`` splits them), each
    unreadable character as U+FFFD. A run of them at a word's start or end is a word of its own
    ("IIIIIIIUnit": a gloss set against the next word), one inside a word stays there ("×10I/µL":
    the word is not readable as a whole)."""
    words: list[tuple[float, float, float, float, str]] = []

    def flush(chars: list[Word]) -> None:
        if not chars:
            return
        marks = [c.text == UNREADABLE for c in chars]
        cuts = [0, len(chars)]
        if not all(marks):
            lead = marks.index(False)
            trail = len(marks) - marks[::-1].index(False)
            cuts = sorted({0, lead, trail, len(chars)})
        for start, end in itertools.pairwise(cuts):
            part = chars[start:end]
            if part:
                words.append((*union_bbox(part), "".join(c.text for c in part)))
        chars.clear()

    for block in page.get_text("rawdict", textpage=textpage)["blocks"]:
        for line in block.get("lines", ()):
            current: list[Word] = []
            for span in line["spans"]:
                for char in span["chars"]:
                    if char["c"].isspace():
                        flush(current)
                    else:
                        text = UNREADABLE if _unreadable(char["c"], span["font"]) else char["c"]
                        x0, y0, x1, y1 = char["bbox"]
                        current.append(Word(x0, y0, x1, y1, text))
            flush(current)
    return words


def page_words(page: _Page) -> list[Word]:
    """The page's words; ``bold`` set only on pages that use a bold font (one more pass there).

    Unreadable characters (``_unreadable``) come as U+FFFD, never as the letters a text layer
    may give for them; pages that have none are read with ``get_text("words")`` alone."""
    fonts = [f[3] or "" for f in page.get_fonts(full=False)]
    bold_page = any(_BOLD_FONT_RE.search(f) for f in fonts)
    textpage = page.get_textpage()
    raw = [w[:5] for w in page.get_text("words", sort=False, textpage=textpage)]
    if any(_DINGBAT_FONT_RE.search(f) for f in fonts) or any(_has_unreadable(w[4]) for w in raw):
        raw = _char_words(page, textpage)
    if not bold_page:
        return [Word(w[0], w[1], w[2], w[3], w[4]) for w in raw]
    bold_spans = [
        span["bbox"]
        for block in page.get_text("dict", textpage=textpage)["blocks"]
        for line in block.get("lines", ())
        for span in line["spans"]
        if span["flags"] & _BOLD_FLAG or _BOLD_FONT_RE.search(span["font"])
    ]
    by_row: dict[int, list[tuple[float, float, float, float]]] = {}  # spans by the rows they cover
    for b in bold_spans:
        for row in range(int(b[1]), int(b[3]) + 1):
            by_row.setdefault(row, []).append(b)
    words: list[Word] = []
    for w in raw:
        xc, yc = (w[0] + w[2]) / 2, (w[1] + w[3]) / 2
        bold = any(b[0] <= xc <= b[2] and b[1] <= yc <= b[3] for b in by_row.get(int(yc), ()))
        words.append(Word(w[0], w[1], w[2], w[3], w[4], bold=bold))
    return words


def extract_labs(
    source: str | Path | bytes,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    name: str | None = None,
    max_stream_bytes: int = MAX_STREAM_BYTES,
) -> LabPdfExtraction:
    """Every lab result in the PDF's text layer, each with its page and bbox (``lab_extraction_steps``,
    scanned pages read by OCR in this thread)."""
    steps = lab_extraction_steps(source, max_pages=max_pages, name=name, max_stream_bytes=max_stream_bytes)
    return run_steps(steps)


async def extract_labs_async(
    source: str | Path | bytes,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    name: str | None = None,
    max_stream_bytes: int = MAX_STREAM_BYTES,
) -> LabPdfExtraction:
    """``extract_labs`` for an event loop: scanned pages are read by OCR on the OCR threads, so the
    loop runs on while Tesseract reads (about a CPU-second a page); the rest runs on the loop."""
    steps = lab_extraction_steps(source, max_pages=max_pages, name=name, max_stream_bytes=max_stream_bytes)
    return await run_steps_async(steps)


def lab_extraction_steps(
    source: str | Path | bytes,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    name: str | None = None,
    max_stream_bytes: int = MAX_STREAM_BYTES,
) -> OcrSteps[LabPdfExtraction]:
    """Every lab result in the PDF's text layer, each with its page and bbox; yields each scanned
    page for OCR (``tools.labs.pdf.ocr``), and is sent what OCR read.

    Pages without a text layer (scans) are listed in ``needs_model``. Raises ``PdfEncryptedError``,
    ``PdfCorruptError``, ``PdfEmptyError`` (no pages, or no text and nothing to scan) and
    ``PdfTooLargeError`` (more than ``max_pages`` pages; checked before any page is read),
    ``PdfNotPdfError`` (another kind of file) and ``PdfOverLimitError`` (``check_limits``: a giant
    page or a stream inflating past ``max_stream_bytes``, also checked before any page is read).
    """
    doc, label = open_pdf(source, name=name)
    try:
        if doc.page_count > max_pages:
            raise PdfTooLargeError(label, doc.page_count, max_pages)
        _check_file_limits(doc, label, source, max_stream_bytes)
        context = PageContext()
        # Decimal commas are a property of the document: "1,005" reads as 1.005 only if
        # another number on some page ("4,2") shows the lab prints decimal commas.
        pages_words = [page_words(doc[i]) for i in range(doc.page_count)]
        context.decimal_comma = number_style([w.text for words in pages_words for w in words])
        # The report's only date, where it dates the rows (rows.report_only_date); a page's
        # collection date (rows.collection_date) replaces it.
        only = report_only_date(pages_words)
        if only is not None:
            context.effective, context.effective_time = only
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
                if page.get_images(full=False) or _draws_anything(page):
                    scanned = yield from scanned_page_steps(page, number, context)
                    results += scanned.results
                    unparsed += scanned.unparsed
                    warnings += scanned.warnings
                    if scanned.needs_model:
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
        if only is not None and any(r.effective == only[0] for r in results):
            # The rows' date is the report's own (rows.report_only_date): say so for review.
            warnings.append("dated by the report date: no collection date printed")
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
