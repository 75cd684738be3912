"""Pages without a text layer (scans) read through Tesseract OCR, grounded like text-layer values.

A scanned page is rendered in greyscale at ``OCR_DPI`` and given to the ``tesseract`` command
(Debian's ``tesseract-ocr``, English data) for its TSV output: every word with its pixel box and
its confidence. The boxes are mapped back to PDF points (origin top-left, as pymupdf's words)
and the words go through the same row reading as a text layer (``rows.extract_page``).

Why the command and not pymupdf's ``get_textpage_ocr``: both run the same Tesseract (about the
same time a page), but pymupdf's OCR text page drops the confidences, and the confidence is what
decides whether a value may be written.

A value read by OCR is kept (``ExtractedLab.ocr`` names the engine) only when every token of its
row, and of its printed collection date, has a confidence of at least ``MIN_CONFIDENCE``, and
nothing else makes it doubtful (``doubt``: a flag that does not fit value and range, as a lost
decimal point or a dropped flag letter leaves; an unknown unit, none, or an unreadable range);
any other result row goes to ``unparsed``
and the page stays in ``needs_model``, so that a configured model reads it for review as before.
A page where OCR wrote nothing, or Tesseract is missing or fails, stays in ``needs_model`` too
(the warning says why). Where a model is configured, ``model_pages.extract_with_model`` keeps an
OCR value only where the model reads the same.

Tesseract takes about a CPU-second a page, so the reading is written as steps
(``scanned_page_steps``): the steps render the page (pymupdf, on the thread that opened the
document) and yield an ``OcrRequest``; the driver runs Tesseract (``run_ocr``: no pymupdf, so a
worker thread may run it) and sends the words back. ``run_steps`` drives them in the caller's
thread; ``run_steps_async`` on the OCR threads, so that an event loop (a job's other patients, the
service's other requests) runs on while Tesseract reads.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar

import numpy as np
import pymupdf

from tools.labs.loinc_catalog import CATALOG
from tools.labs.pdf.denoise import median3x3
from tools.labs.pdf.layout import group_lines, line_text
from tools.labs.pdf.model import ExtractedLab, UnparsedRow, Word, union_bbox
from tools.labs.pdf.rendering import render_dpi
from tools.labs.pdf.rows import PageContext, extract_page
from tools.labs.pdf.values import parse_date, uses_decimal_comma
from tools.labs.units import dimension_of
from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = [
    "MIN_CONFIDENCE",
    "OCR_DPI",
    "PAGE_SEGMENTATION",
    "OcrEngine",
    "OcrRead",
    "OcrRequest",
    "OcrSteps",
    "ScannedPage",
    "doubt",
    "find_tesseract",
    "flag_mismatch",
    "gate_by_confidence",
    "parse_tsv",
    "read_scanned_page",
    "render_for_ocr",
    "run_ocr",
    "run_steps",
    "run_steps_async",
    "scanned_page_steps",
]

OCR_DPI: Final = 300  # Tesseract is trained on text of about this resolution
# The lowest word confidence (0..1) a written value's row and date may hold. Measured on scans of
# the own-layout corpus (seeds 1 and 2: 28 reports x 110/150/200 dpi with skew, noise and JPEG;
# 3,684 printed results), with ``doubt`` applied: at 0.85, 202 values written, every one right in
# value, unit, flag, range and date (seed 2, held out while choosing: 92 of 92); at 0.80, 1 wrong
# in 364 ("135" read "35" at 0.80); without ``doubt`` at 0.85, 2 wrong in 277. Recall on these
# noisy scans is low (5.5 %: the rest is listed for review); a clean 300 dpi scan reads in full.
MIN_CONFIDENCE: Final = 0.85
# Tesseract's page segmentation mode 6, "a single uniform block of text": its default (3, automatic)
# dropped whole columns of a results table (every value, while names and units were read), and
# the sparse-text modes (11, 12) dropped one-letter flags ("H"). Lines of a block keep every cell.
PAGE_SEGMENTATION: Final = "6"
_TIMEOUT_S: Final = 120.0  # one page; a page that takes longer is left to the model
_TESSDATA_DIRS: Final = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata")
_LANGUAGE: Final = "eng"
# The TSV columns Tesseract prints: level 5 rows are words.
_WORD_LEVEL: Final = "5"
_COLUMNS: Final = 12
# Table rules, underlines and specks read as text ("—", "_—", "|", ":", "."): no lab result is
# printed as these alone, and they would split header cells and rows.
_RULE_RE: Final = re.compile(r"^[-—–_|:;.,'\"`~©®¢°]+$")


@dataclass(frozen=True, slots=True)
class OcrEngine:
    """The ``tesseract`` command found on this machine, and the version it reports."""

    path: str
    version: str

    @property
    def label(self) -> str:
        """What the written values say read them: ``tesseract 5.3.0`` (in their identifiers too)."""
        return f"tesseract {self.version}"


@dataclass
class ScannedPage:
    """What OCR gave for one page: results to write, rows for review, and whether the model should read it."""

    results: list[ExtractedLab] = field(default_factory=list)
    unparsed: list[UnparsedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    needs_model: bool = True


@functools.cache
def find_tesseract() -> OcrEngine | None:
    """Tesseract with its English data, or None (then scanned pages are left to the model)."""
    path = shutil.which("tesseract")
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
        listed = subprocess.run(
            [path, "--list-langs"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (done.stdout or done.stderr).splitlines()[:1]
    if done.returncode != 0 or not first or _LANGUAGE not in listed.stdout.split():
        return None
    parts = first[0].split()
    return OcrEngine(path=path, version=parts[1] if len(parts) > 1 else "unknown")


def parse_tsv(tsv: str, scale_x: float, scale_y: float) -> list[Word]:
    """Tesseract's TSV words as ``Word``s: pixel boxes times the scale (points per pixel), conf 0..1.

    Words that are only rule or speck characters are dropped.
    """
    words: list[Word] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < _COLUMNS or cols[0] != _WORD_LEVEL:
            continue
        text = cols[11].strip()
        if not text or _RULE_RE.match(text):
            continue
        left, top, width, height = (int(c) for c in cols[6:10])
        words.append(
            Word(
                left * scale_x,
                top * scale_y,
                (left + width) * scale_x,
                (top + height) * scale_y,
                text,
                conf=max(0.0, float(cols[10])) / 100,
            )
        )
    return words


@dataclass(frozen=True, slots=True)
class OcrRequest:
    """One scanned page's pixels for Tesseract: 8-bit grey, ``width`` x ``height`` at ``dpi``."""

    engine: OcrEngine
    number: int  # the page's number, for the warning when OCR fails
    gray: bytes
    width: int
    height: int
    dpi: int
    scale_x: float  # points per pixel, to map Tesseract's boxes back onto the page
    scale_y: float


# What OCR gave for a page: its words, or the warning that says why there are none.
OcrRead = list[Word] | str
_T = TypeVar("_T")
# Steps that yield pages to OCR, are sent what OCR read, and return a ``_T``.
OcrSteps = Generator[OcrRequest, OcrRead, _T]


def render_for_ocr(page: Any, number: int, engine: OcrEngine, dpi: int = OCR_DPI) -> OcrRequest:
    """The page's pixels at ``dpi`` (lower for a giant page). pymupdf: call it on the thread that
    opened the document."""
    rect = page.rect
    used = render_dpi(rect.width, rect.height, dpi)
    pix = page.get_pixmap(dpi=used, colorspace=pymupdf.csGRAY, alpha=False)
    return OcrRequest(
        engine=engine,
        number=number,
        gray=pix.samples,
        width=pix.width,
        height=pix.height,
        dpi=used,
        scale_x=rect.width / pix.width,
        scale_y=rect.height / pix.height,
    )


def ocr_words(request: OcrRequest) -> list[Word]:
    """The words Tesseract reads in the request's pixels.

    Raises ``OSError`` or ``subprocess.TimeoutExpired`` when Tesseract cannot run or hangs, and
    ``subprocess.CalledProcessError`` when it fails.
    """
    # A 3x3 median removes the scanner's dust and sensor noise that Tesseract reads as specks
    # (more words at >= 0.9 confidence on the noisy scans of the corpus) and keeps strokes.
    pixels = np.frombuffer(request.gray, dtype=np.uint8).reshape(request.height, request.width)
    # Binary PGM: uncompressed, so no encoding costs more than Tesseract's read.
    image = b"P5\n%d %d\n255\n" % (request.width, request.height) + median3x3(pixels).tobytes()
    done = subprocess.run(
        [
            request.engine.path,
            "stdin",
            "stdout",
            "--dpi",
            str(request.dpi),
            "--psm",
            PAGE_SEGMENTATION,
            "-l",
            _LANGUAGE,
            "tsv",
        ],
        input=image,
        capture_output=True,
        timeout=_TIMEOUT_S,
        check=True,
        env=_environment(),
    )
    return parse_tsv(done.stdout.decode("utf-8", "replace"), request.scale_x, request.scale_y)


def run_ocr(request: OcrRequest) -> OcrRead:
    """``ocr_words``, or the page's warning when Tesseract hangs, fails or cannot run. Touches no
    pymupdf object, so any thread may run it."""
    number = request.number
    try:
        return ocr_words(request)
    except subprocess.TimeoutExpired:
        return f"page {number}: OCR took over {_TIMEOUT_S:.0f} s and was stopped"
    except subprocess.CalledProcessError as exc:
        return f"page {number}: OCR failed (tesseract exit status {exc.returncode})"
    except OSError as exc:
        return f"page {number}: OCR could not run ({exc.strerror or type(exc).__name__})"


def run_steps(steps: OcrSteps[_T]) -> _T:
    """Drive ``steps`` to their result, running each OCR in this thread."""
    try:
        request = next(steps)
        while True:
            request = steps.send(run_ocr(request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@functools.cache
def _ocr_threads() -> ThreadPoolExecutor:
    # One Tesseract a core: more would only take turns (each runs one OpenMP thread).
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="chartagent-ocr")


async def run_steps_async(steps: OcrSteps[_T]) -> _T:
    """Drive ``steps`` to their result on this event loop, each OCR on the OCR threads (the loop
    runs on meanwhile). Cancelled, the steps are closed (their document too)."""
    loop = asyncio.get_running_loop()
    try:
        request = next(steps)
        while True:
            read = await loop.run_in_executor(_ocr_threads(), run_ocr, request)
            request = steps.send(read)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Tesseract's OpenMP threads gain little on one page and fight over shared cores.
    env.setdefault("OMP_THREAD_LIMIT", "1")
    if "TESSDATA_PREFIX" not in env:
        for folder in _TESSDATA_DIRS:
            if os.path.isdir(folder):
                env["TESSDATA_PREFIX"] = folder
                break
    return env


def _row_of(lab: ExtractedLab, lines: list[list[Word]]) -> list[Word]:
    """The line holding ``lab``'s value words (the row the value was read from)."""
    x0, y0, x1, y1 = lab.bbox
    for line in lines:
        if any(
            w.x0 >= x0 - 0.01 and w.x1 <= x1 + 0.01 and w.y0 >= y0 - 0.01 and w.y1 <= y1 + 0.01 for w in line
        ):
            return line
    return []


def _date_words(on: date, lines: list[list[Word]]) -> list[Word]:
    """The words ``on`` can have been read from (one to three words: "03/04/2024", "Mar 4, 2024"),
    each with the time printed right after it, on every line that prints it."""
    found: list[Word] = []
    for line in lines:
        for i in range(len(line)):
            for n in (1, 2, 3):
                text = line_text(line[i : i + n])
                if i + n <= len(line) and on in (parse_date(text), parse_date(text, day_first=True)):
                    found += line[i : i + n]
                    if i + n < len(line) and _TIME_RE.match(line[i + n].text):
                        found.append(line[i + n])
                    break
    return found


def _lowest(words: list[Word]) -> float:
    return min((w.conf if w.conf is not None else 1.0 for w in words), default=0.0)


# The units the catalog knows (UCUM), and each code's default unit.
_KNOWN_UNITS: Final = frozenset(
    {e.unit for e in CATALOG if e.unit}
    | {u for e in CATALOG for u in e.units}
    | {u for e in CATALOG for u, _ in e.alt_units}
)
_DEFAULT_UNITS: Final = {e.loinc: e.unit for e in CATALOG}
_TIME_RE: Final = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_ABOVE: Final = frozenset({LabFlag.HIGH, LabFlag.CRITICAL_HIGH, LabFlag.ABNORMAL})
_BELOW: Final = frozenset({LabFlag.LOW, LabFlag.CRITICAL_LOW, LabFlag.ABNORMAL})


def flag_mismatch(lab: ExtractedLab) -> str | None:
    """Why the printed flag does not fit the value and range as read, or None (pure).

    OCR's typical misreadings give themselves away here: a lost decimal point ("42" for "4.2")
    puts the value far outside its range with no flag, and a dropped or misread flag letter leaves
    an out-of-range value unflagged (or an in-range one flagged). A row without a numeric value or
    without a printed range cannot be checked and passes.
    """
    if not isinstance(lab.value, float) or lab.comparator is not None:
        return None
    low, high, flag = lab.reference_low, lab.reference_high, lab.flag
    if low is None and high is None:
        return None
    if high is not None and lab.value > high and flag not in _ABOVE:
        return "the value is above its reference range, not flagged"
    if low is not None and lab.value < low and flag not in _BELOW:
        return "the value is below its reference range, not flagged"
    within = (low is None or lab.value >= low) and (high is None or lab.value <= high)
    if within and flag is not None and flag not in (LabFlag.NORMAL, LabFlag.ABNORMAL):
        return f"the value is flagged {flag.value} within its reference range"
    return None


def doubt(lab: ExtractedLab) -> str | None:
    """Why an OCR reading of ``lab`` is doubtful although every token read with confidence, or None.

    Beside ``flag_mismatch``: a unit no catalog entry or unit table knows ("pe" for "pg",
    "x10412/L" for a superscript), a numeric test read without its unit (the unit ran into
    another column), a printed range that does not parse ("98 107": the dash was lost), and a
    number with no printed range at all (nothing to catch a lost decimal point).
    """
    if isinstance(lab.value, float):
        entry_unit = _DEFAULT_UNITS.get(lab.loinc or "")
        if lab.unit is None and entry_unit is not None and not entry_unit.startswith("{"):
            return "no unit was read"
        if lab.reference_text and lab.reference_low is None and lab.reference_high is None:
            return "its reference range is not readable"
        if lab.reference_low is None and lab.reference_high is None:
            # OCR can drop a decimal point at full confidence ("4.1" read as "41"); a printed
            # range is what `flag_mismatch` checks the value against. Without one: review.
            return "no printed reference range to check the value against"
    if lab.unit is not None and lab.unit not in _KNOWN_UNITS and dimension_of(lab.unit) is None:
        return f"the unit {lab.unit!r} is not a known unit"
    return flag_mismatch(lab)


def gate_by_confidence(
    results: list[ExtractedLab],
    words: list[Word],
    page: int,
    engine: OcrEngine,
    *,
    min_confidence: float = MIN_CONFIDENCE,
) -> tuple[list[ExtractedLab], list[UnparsedRow]]:
    """The results whose row (and printed date) OCR read with confidence ``min_confidence`` or more
    and that nothing else makes doubtful (``doubt``), marked as OCR readings; the others as rows for
    review, with the reason (pure)."""
    lines = group_lines(words)
    kept: list[ExtractedLab] = []
    review: list[UnparsedRow] = []
    for lab in results:
        row = _row_of(lab, lines)
        support = list(row)
        if lab.effective is not None:
            support += _date_words(lab.effective, lines)
        lowest = _lowest(support) if row else 0.0
        mismatch = doubt(lab)
        if lowest >= min_confidence and mismatch is None:
            kept.append(lab.model_copy(update={"ocr": engine.label}))
            continue
        if lowest < min_confidence:
            reason = f"OCR confidence {lowest:.2f} below {min_confidence:.2f}: for review"
        else:
            reason = f"read by OCR, {mismatch}: for review"
        review.append(
            UnparsedRow(
                page=page,
                text=line_text(row) or lab.value_text,
                reason=reason,
                bbox=union_bbox(row) if row else lab.bbox,
            )
        )
    return kept, review


def scanned_page_steps(page: Any, number: int, context: PageContext) -> OcrSteps[ScannedPage]:
    """One page without a text layer, through OCR; ``needs_model`` unless every result row was
    written. Yields the page's ``OcrRequest`` (none when Tesseract is not installed)."""
    engine = find_tesseract()
    if engine is None:
        return ScannedPage(
            warnings=[
                f"page {number}: not read by OCR: tesseract with English data is not installed "
                "(apt-get install tesseract-ocr tesseract-ocr-eng)"
            ]
        )
    words = yield render_for_ocr(page, number, engine)
    if isinstance(words, str):
        return ScannedPage(warnings=[words])
    if not context.decimal_comma and uses_decimal_comma([w.text for w in words]):
        context.decimal_comma = True  # a scanned document shows its decimal commas only to OCR
    outcome = extract_page(words, number, page.rect.width, page.rect.height, context)
    kept, review = gate_by_confidence(outcome.results, words, number, engine)
    scanned = ScannedPage(
        results=kept,
        unparsed=[*outcome.unparsed, *review],
        warnings=[*outcome.warnings],
        needs_model=not kept or bool(review or outcome.unparsed),
    )
    if kept:
        scanned.warnings.append(
            f"page {number} has no text layer: {len(kept)} value(s) read by {engine.label}"
        )
    return scanned


def read_scanned_page(page: Any, number: int, context: PageContext) -> ScannedPage:
    """``scanned_page_steps`` with Tesseract run in this thread."""
    return run_steps(scanned_page_steps(page, number, context))
