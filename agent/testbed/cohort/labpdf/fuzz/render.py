"""Draw a fuzzed lab report from a seed, recording where every value lands (pure, deterministic).

``fuzz_document(seed)`` draws a ``FuzzStyle``, plans results with ``make_report`` (several draws
for a cumulative report), re-spells them (``printed_row``) and draws them as a table, run-in
lines, two side-by-side panels or a cumulative grid, with page breaks, noise and deliberately
unreadable rows. Each value's box is computed from the font metrics at the moment it is drawn,
so the truth says where a reader must find it.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Final

import numpy as np
import pymupdf
from PIL import Image

from agent.testbed.cohort.labpdf.canvas import finish, new_document
from agent.testbed.cohort.labpdf.catalog import CATALOG
from agent.testbed.cohort.labpdf.fuzz.printed import PrintedRow, decimals_of, format_value, printed_row
from agent.testbed.cohort.labpdf.fuzz.style import (
    Arrangement,
    Column,
    DateStyle,
    FuzzStyle,
    Noise,
    Separator,
    draw_style,
)
from agent.testbed.cohort.labpdf.fuzz.truth import BBox, FuzzTruth, UnreadableTruth, WrittenTruth
from agent.testbed.cohort.labpdf.make import Dialect, make_report, sample_results
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["FuzzedDocument", "fuzz_document"]

_START: Final = datetime(2024, 2, 5, 7, 40)
_MARGIN: Final = 40.0
_INDENT: Final = 8.0  # points a test name is indented under its panel heading
_ARROW_FONT: Final = "china-s"  # the base-14 fonts have no arrows; mupdf's CJK font has
_HEADERS: Final = {
    Column.NAME: ("Test", "Test Name", "Analyte", "Investigation", "Parameter"),
    Column.RESULT: ("Result", "Value", "Your Value", "Current"),
    Column.FLAG: ("Flag", "Abn", "H/L", "Status"),
    Column.UNIT: ("Units", "Unit"),
    Column.RANGE: ("Reference Range", "Ref. Range", "Normal Range", "Reference Interval"),
    Column.PREVIOUS: ("Previous", "Last Result", "Prior"),
    Column.METHOD: ("Method",),
    Column.COMMENT: ("Comment", "Remarks"),
}
_METHODS: Final = ("ISE", "Enzymatic", "Photometry", "Immunoassay", "Calc.", "Flow cytometry")
_COMMENTS: Final = ("", "", "", "fasting", "repeated", "verified")
_COLLECTED_LABELS: Final = (
    "Collected:",
    "Collection Date:",
    "Date Collected:",
    "Specimen Collected:",
    "Date of Collection:",
)
_COMMENT_TEXT: Final = (
    "Comment: fasting specimen received in 2 tubes at the laboratory; results verified by 1 "
    "technologist. Reference intervals revised 01/2024. Call (555) 013-2447 with questions."
)


@dataclass(frozen=True, slots=True)
class FuzzedDocument:
    name: str
    pdf: bytes
    truth: FuzzTruth
    style: FuzzStyle


@dataclass
class _Cell:
    """A row of a table or grid: one ``PrintedRow`` per value column (None: nothing printed)."""

    rows: list[PrintedRow | None]
    panel: str
    previous: str = ""
    method: str = ""
    comment: str = ""

    @property
    def template(self) -> PrintedRow:
        return next(r for r in self.rows if r is not None)


@dataclass
class _Canvas:
    """Pages being drawn and what has been recorded on them."""

    style: FuzzStyle
    rng: random.Random
    width: float
    height: float
    doc: pymupdf.Document = field(default_factory=new_document)
    written: list[WrittenTruth] = field(default_factory=list)
    unreadable: list[UnreadableTruth] = field(default_factory=list)
    garble: dict[int, str] = field(default_factory=dict)  # id(PrintedRow) -> "garbled" | "image"
    index: int = -1  # the page being drawn on (0-based); earlier pages can be drawn on again
    running: str = ""  # a running header printed above the margin of every page after the first

    @property
    def page(self) -> pymupdf.Page:
        return self.doc[self.index]

    @property
    def bottom(self) -> float:
        return self.height - _MARGIN

    def new_page(self) -> None:
        """Move to the next page, creating it unless an earlier flow already did."""
        self.index += 1
        if self.index == self.doc.page_count:
            self.doc.new_page(width=self.width, height=self.height)
            if self.running and self.index > 0:
                self.put(_MARGIN, _MARGIN - 12, self.running, self.style.size - 1)

    def put(self, x: float, y: float, text: str, size: float, font: str | None = None) -> BBox:
        """Draw ``text`` with its baseline at ``y``; the box its words occupy."""
        font = font or self.style.font
        self.page.insert_text((x, y), text, fontname=font, fontsize=size)
        return (x, y - 0.8 * size, x + width(text, size, font), y + 0.25 * size)

    def line(self, x0: float, y0: float, x1: float, y1: float, w: float = 0.5) -> None:
        self.page.draw_line((x0, y0), (x1, y1), color=(0, 0, 0), width=w)

    def value(
        self, row: PrintedRow, x: float, y: float, size: float, effective: datetime, families: tuple[str, ...]
    ) -> float:
        """Draw a value (and the mark after it when the style has no flag column); its right end."""
        kind = self.garble.get(id(row))
        font = self.style.bold_font if row.bold else self.style.font
        if kind == "image":
            box = _value_image(self.page, x, y, row.value_text, size, font)
        else:
            text = _garbled(row.value_text) if kind == "garbled" else row.value_text
            box = self.put(x, y, text, size, font)
        page = self.index + 1
        if kind is not None:
            self.unreadable.append(
                UnreadableTruth(
                    name=row.name,
                    page=page,
                    bbox=box,
                    kind="image" if kind == "image" else "garbled",
                    printed="" if kind == "image" else _garbled(row.value_text),
                    hidden_value=float(row.truth.value or 0.0),
                )
            )
        else:
            self.written.append(_written(row, effective, page, box, families))
        end = box[2]
        if row.mark and not self.style.flag_column:
            end = self.mark(row.mark, end + width(" ", size, font), y, size)
        return end

    def mark(self, mark: str, x: float, y: float, size: float) -> float:
        """Draw a flag mark; where what follows may start. An arrow is drawn with a space after it:
        mupdf starts no new word after a CJK glyph at a gap alone."""
        if mark.isascii():
            return self.put(x, y, mark, size)[2]
        self.put(x, y, mark + " ", size, _ARROW_FONT)
        return x + width(mark, size, _ARROW_FONT) + 0.5 * size


def width(text: str, size: float, font: str) -> float:
    """The advance of ``text``. pymupdf's ``get_text_length`` undercounts strings holding non-ASCII
    characters ("µmol/L") in the base-14 fonts; a ``Font`` measures them right (not the CJK one)."""
    if font == _ARROW_FONT:
        return float(pymupdf.get_text_length(text, fontname=font, fontsize=size))
    arrows = sum(text.count(a) for a in "↑↓")  # drawn in the arrow font (``_Canvas.mark``)
    latin = text.replace("↑", "").replace("↓", "")
    advance = _font(font).text_length(latin, fontsize=size)  # type: ignore[no-untyped-call]
    return float(advance) + arrows * width("↑", size, _ARROW_FONT)


@functools.cache
def _font(name: str) -> pymupdf.Font:
    return pymupdf.Font(name)  # type: ignore[no-untyped-call]


def _garbled(text: str) -> str:
    """A value no reader may guess: a zero read as the letter O, or a digit lost to a smudge."""
    if "0" in text:
        return text.replace("0", "O", 1)
    return "".join("#" if ch.isdigit() else ch for ch in text)


def _value_image(page: pymupdf.Page, x: float, y: float, text: str, size: float, font: str) -> BBox:
    """Draw ``text`` as pixels (no text layer): how some systems paste a value in."""
    w = width(text, size, font) + 2
    scratch = new_document()
    sheet = scratch.new_page(width=w, height=size * 1.3)
    sheet.insert_text((1, size), text, fontname=font, fontsize=size)
    png: bytes = sheet.get_pixmap(dpi=200).tobytes("png")  # type: ignore[no-untyped-call]
    box = (x - 1, y - size, x - 1 + w, y + 0.3 * size)
    page.insert_image(pymupdf.Rect(*box), stream=png)  # type: ignore[no-untyped-call]
    return box


def _written(
    row: PrintedRow, effective: datetime, page: int, box: BBox, families: tuple[str, ...]
) -> WrittenTruth:
    t = row.truth
    value: float | str = t.value if t.value is not None else t.value_text
    return WrittenTruth(
        name=row.name,
        loinc=t.loinc,
        value=value,
        value_text=row.value_text,
        comparator=t.comparator.value if t.comparator else None,
        unit=t.unit or None,
        ucum=t.ucum,
        reference_low=t.reference_low,
        reference_high=t.reference_high,
        reference_text=t.reference_text or None,
        flag=row.flag,
        effective=effective,
        page=page,
        bbox=box,
        families=families + row.families,
    )


def fmt_date(day: date, style: DateStyle) -> str:
    formats = {DateStyle.US: "%m/%d/%Y", DateStyle.ISO: "%Y-%m-%d", DateStyle.DOTTED: "%d.%m.%Y"}
    return day.strftime(formats.get(style, "%d-%b-%Y"))


def fmt_time(at: time, twelve: bool) -> str:
    if not twelve:
        return at.strftime("%H:%M")
    return f"{at.hour % 12 or 12}:{at.minute:02d} {'AM' if at.hour < 12 else 'PM'}"


def _stamp(moment: datetime, style: FuzzStyle) -> str:
    return f"{fmt_date(moment.date(), style.date_style)} {fmt_time(moment.time(), style.time_12h)}"


# --- the document around the results -------------------------------------------------------


def _letterhead(c: _Canvas, report: LabReport, collected: datetime | None) -> float:
    """Lab name, noise, patient block; the y below it."""
    s, size = c.style, c.style.size
    y = _MARGIN + 14
    c.put(_MARGIN, y, report.lab_name, size + 5, s.bold_font)
    if Noise.LOGO_DRAWING in s.noise:
        cx = c.width - _MARGIN - 20
        c.page.draw_circle((cx, _MARGIN + 12), 14, color=(0.1, 0.3, 0.6), fill=(0.7, 0.8, 0.95))
        c.page.draw_rect((cx - 3, _MARGIN + 2, cx + 3, _MARGIN + 22), color=None, fill=(1, 1, 1))
    if Noise.LOGO_IMAGE in s.noise:
        x0 = c.width - _MARGIN - (80 if Noise.LOGO_DRAWING in s.noise else 40)
        c.page.insert_image(pymupdf.Rect(x0, _MARGIN - 4, x0 + 32, _MARGIN + 28), stream=_logo_png(c.rng))  # type: ignore[no-untyped-call]
    if Noise.ADDRESS in s.noise:
        y += size + 4
        c.put(
            _MARGIN, y, "1200 Example Avenue, Springfield  Tel (555) 013-2447  Fax (555) 013-2448", size - 1
        )
        y += size + 2
        c.put(_MARGIN, y, "CLIA 05D0642827   Laboratory Director: M. Placeholder, MD", size - 1)
    y += size + 12
    c.put(_MARGIN, y, "LABORATORY REPORT" if collected else "CUMULATIVE REPORT", size + 2, s.bold_font)
    left = [f"Patient: {report.patient_name}", f"Sex: {report.sex}   MRN: {report.patient_id}"]
    right = []
    if collected is not None:
        right.append(f"{c.rng.choice(_COLLECTED_LABELS)} {_stamp(collected, s)}")
        right.append(f"Received: {_stamp(collected + timedelta(minutes=47), s)}")
    right.append(f"Reported: {_stamp(report.reported, s)}")
    if Noise.IDENTIFIERS in s.noise:
        left.insert(1, f"DOB: {fmt_date(report.birth_date, s.date_style)}   Age: 62 Y")
        left.append("Accession: A24-118273   Ordering physician: Dr. R. Sampleton")
    y += size + 8
    top = y
    for text in left:
        c.put(_MARGIN, y, text, size)
        y += size * 1.4
    y2 = top
    for text in right:
        c.put(c.width / 2 + 20, y2, text, size)
        y2 += size * 1.4
    y = max(y, y2) + 4
    c.line(_MARGIN, y, c.width - _MARGIN, y, 0.8)
    return y + size * 1.8


def _logo_png(rng: random.Random) -> bytes:
    hue = rng.random()
    grid = np.linspace(0, 1, 48, dtype=np.float32)
    r = (np.outer(grid, grid) * 255 * hue).astype(np.uint8)
    g = (np.add.outer(grid, grid) * 120).astype(np.uint8)
    b = np.full((48, 48), 200, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([r, g, b], axis=-1)).save(buffer, format="PNG")
    return buffer.getvalue()


def _closing(c: _Canvas, y: float) -> None:
    """Comment paragraph and signature after the results, then page numbers and footers."""
    s, size = c.style, c.style.size
    if Noise.COMMENT in s.noise:
        y = _paragraph(c, y + size, _COMMENT_TEXT, size - 0.5)
    if Noise.SIGNATURE in s.noise:
        if y + 40 > c.bottom:
            c.new_page()
            y = _MARGIN + 20
        x = _MARGIN + 10
        c.page.draw_bezier(
            (x, y + 20), (x + 20, y - 10), (x + 40, y + 40), (x + 90, y + 8), color=(0, 0, 0.4)
        )
        c.put(_MARGIN, y + 34, "Electronically signed by A. Placeholder, MD, Laboratory Director", size - 1)
    total = c.doc.page_count
    for index in range(total):
        page = c.doc[index]
        foot = c.height - _MARGIN / 2
        if Noise.PAGE_NUMBERS in s.noise:
            text = f"Page {index + 1} of {total}"
            page.insert_text(
                (c.width - _MARGIN - width(text, 7, s.font), foot), text, fontname=s.font, fontsize=7
            )
        if Noise.FOOTER in s.noise:
            page.insert_text(
                (_MARGIN, foot), "CONFIDENTIAL - printed 02/06/2024 10:12", fontname=s.font, fontsize=7
            )


def _paragraph(c: _Canvas, y: float, text: str, size: float) -> float:
    line = ""
    limit = c.width - 2 * _MARGIN
    for word in [*text.split(), ""]:
        candidate = f"{line} {word}".strip()
        if word and width(candidate, size, c.style.font) <= limit:
            line = candidate
            continue
        if y + size > c.bottom:
            c.new_page()
            y = _MARGIN + size
        c.put(_MARGIN, y, line, size)
        y += size * 1.3
        line = word
    return y


# --- tables ----------------------------------------------------------------------------------


def _name_text(c: _Canvas, lines: tuple[str, ...], index: int) -> str:
    text = lines[index]
    if c.style.separator is Separator.COLON and index == len(lines) - 1:
        text += ":"
    return text


@dataclass
class _Table:
    """Column geometry of a table between ``x0`` and ``x1``."""

    columns: tuple[Column, ...]
    xs: list[float]  # left edge of each column
    x1: float
    titles: list[str]
    align_right: bool

    def right(self, i: int) -> float:
        return self.xs[i + 1] if i + 1 < len(self.xs) else self.x1


def _contents(c: _Canvas, cell: _Cell, column: Column) -> list[str]:
    row = cell.template
    if column is Column.NAME:
        return [_name_text(c, row.name_lines, i) for i in range(len(row.name_lines))]
    if column is Column.RESULT:
        mark = f" {row.mark}" if row.mark and not c.style.flag_column else ""
        return [row.value_text + mark]
    return [
        {
            Column.FLAG: row.mark,
            Column.UNIT: row.unit_text,
            Column.RANGE: row.range_text,
            Column.PREVIOUS: cell.previous,
            Column.METHOD: cell.method,
            Column.COMMENT: cell.comment,
        }[column]
    ]


def _layout(
    c: _Canvas, cells: Sequence[_Cell], columns: tuple[Column, ...], x0: float, x1: float, size: float
) -> _Table | None:
    titles = [c.rng.choice(_HEADERS[col]) for col in columns]
    gap = c.rng.uniform(10.0, 26.0)
    widths = []
    for col, title in zip(columns, titles, strict=True):
        texts = [title, *(t for cell in cells for t in _contents(c, cell, col))]
        widths.append(max(width(t, size, c.style.bold_font) for t in texts) + gap)
    if c.style.separator is Separator.LEADER_DOTS:
        widths[0] += 30
    if c.style.indent_names:
        widths[0] += _INDENT
    if sum(widths) > x1 - x0:
        return None
    xs, x = [], x0
    for w in widths:
        xs.append(x)
        x += w
    return _Table(
        columns,
        xs,
        x0 + sum(widths) if c.style.separator is Separator.RULED else x1,
        titles,
        c.rng.random() < 0.3,
    )


def _fit(c: _Canvas, cells: Sequence[_Cell], x0: float, x1: float) -> tuple[_Table, float]:
    """A table that fits between x0 and x1: optional columns dropped, then the font shrunk."""
    columns, size = c.style.columns, c.style.size
    droppable = [Column.COMMENT, Column.METHOD, Column.PREVIOUS]
    while True:
        table = _layout(c, cells, columns, x0, x1, size)
        if table is not None:
            return table, size
        present = [d for d in droppable if d in columns]
        if present:
            columns = tuple(col for col in columns if col is not present[0])
        elif size > 6.0:
            size -= 0.5
        else:
            return _Table(
                columns,
                [x0 + i * (x1 - x0) / len(columns) for i in range(len(columns))],
                x1,
                [col.value for col in columns],
                False,
            ), size


def _draw_header(c: _Canvas, table: _Table, y: float, size: float) -> float:
    if c.style.stacked_headers and any(" " in title for title in table.titles):
        y += 1.1 * size  # room for the titles' first lines
    for x, title in zip(table.xs, table.titles, strict=True):
        words = title.split()
        if c.style.stacked_headers and len(words) > 1:
            c.put(x, y - 1.1 * size, " ".join(words[:-1]), size, c.style.bold_font)
            title = words[-1]
        c.put(x, y, title, size, c.style.bold_font)
    c.line(table.xs[0], y + 0.4 * size, table.x1, y + 0.4 * size, 0.8)
    return y + size * c.style.line_gap + 2


def _draw_cell_row(
    c: _Canvas,
    table: _Table,
    cell: _Cell,
    y: float,
    size: float,
    effective: datetime,
    families: tuple[str, ...],
) -> None:
    row = cell.template
    for i, col in enumerate(table.columns):
        x = table.xs[i]
        if col is Column.NAME:
            x += _INDENT if c.style.indent_names else 0.0
            for k in range(len(row.name_lines)):
                text = _name_text(c, row.name_lines, k)
                end = c.put(x, y + k * size * 1.15, text, size)[2]
                if k == 0 and c.style.separator is Separator.LEADER_DOTS:
                    space = width(" ", size, c.style.font)
                    start = end + (0 if c.rng.random() < 0.5 else space)
                    # The dots stop a gap wider than a space short of the next column: no word joins them.
                    room = table.right(i) - start - max(6.0, 1.5 * space)
                    c.put(start, y, "." * max(3, int(room / width(".", size, c.style.font))), size)
            continue
        if col is Column.RESULT:
            if table.align_right:
                right = table.right(i) - 8
                x = right - width(row.value_text, size, c.style.bold_font if row.bold else c.style.font)
                if row.mark and not c.style.flag_column:
                    x -= width(" " + row.mark, size, c.style.font)
            c.value(row, x, y, size, effective, families)
            continue
        if col is Column.FLAG:
            if row.mark:
                c.mark(row.mark, x, y, size)
            continue
        text = _contents(c, cell, col)[0]
        if text:
            c.put(x, y, text, size)


def _flow_table(
    c: _Canvas,
    cells: Sequence[_Cell],
    y: float,
    x0: float,
    x1: float,
    effective: datetime,
    top_of_page: float,
    headings: bool,
) -> float:
    """Draw ``cells`` as a table from ``y``, over as many pages as needed; the y below it."""
    table, size = _fit(c, cells, x0, x1)
    pitch = size * c.style.line_gap
    base = c.style.families
    y = _draw_header(c, table, y, size)
    segment_top, panel = y - size * 1.8, ""
    families = base
    shade = False
    for cell in cells:
        lines = len(cell.template.name_lines)
        need = pitch + (lines - 1) * size * 1.15 + (pitch if cell.panel != panel and headings else 0)
        if y + need > c.bottom:
            _ruled_verticals(c, table, segment_top, y - pitch + size * 0.4)
            c.new_page()
            y = top_of_page
            if c.style.repeat_headers:
                y = _draw_header(c, table, y, size)
                families = (*base, "page-break:continued-with-header")
            else:
                families = (*base, "page-break:continued-without-header")
            segment_top = y - size * 1.8
        if cell.panel != panel and headings:
            c.put(table.xs[0], y, cell.panel, size, c.style.bold_font)
            y += pitch
        panel = cell.panel
        shade = not shade
        if c.style.shaded_rows and shade:
            below = (lines - 1) * size * 1.15
            top, bottom = y - 0.5 * pitch - 0.3 * size, y + 0.5 * pitch - 0.3 * size + below
            c.page.draw_rect((table.xs[0] - 4, top, table.x1, bottom), color=None, fill=(0.92, 0.92, 0.92))
        _draw_cell_row(c, table, cell, y, size, effective, families)
        y += pitch + (lines - 1) * size * 1.15
        if c.style.separator is Separator.RULED:
            c.line(table.xs[0], y - pitch + size * 0.4, table.x1, y - pitch + size * 0.4, 0.3)
    _ruled_verticals(c, table, segment_top, y - pitch + size * 0.4)
    return y


def _ruled_verticals(c: _Canvas, table: _Table, top: float, bottom: float) -> None:
    if c.style.separator is not Separator.RULED:
        return
    for x in [*table.xs, table.x1]:
        c.line(x - 4, top, x - 4, bottom, 0.3)


# --- arrangements ----------------------------------------------------------------------------


def _cells(c: _Canvas, rows: Sequence[PrintedRow]) -> list[_Cell]:
    out = []
    for row in rows:
        t = row.truth
        previous = row.value_text  # text and censored results: the same as last time
        if t.value is not None and t.comparator is None:
            grouped = "numbers:thousands" in row.families
            places = 0 if grouped else decimals_of(row.value_text)
            factor = c.rng.uniform(0.85, 1.15)
            previous = format_value(float(t.value) * factor, places, c.style.decimal_comma, grouped)
        out.append(_Cell([row], t.panel, previous, c.rng.choice(_METHODS), c.rng.choice(_COMMENTS)))
    return out


def _draw_table(c: _Canvas, rows: Sequence[PrintedRow], report: LabReport) -> float:
    y = _letterhead(c, report, report.collected)
    return _flow_table(
        c,
        _cells(c, rows),
        y,
        _MARGIN,
        c.width - _MARGIN,
        report.collected,
        _MARGIN + 12,
        c.rng.random() < 0.7,
    )


def _draw_side_by_side(c: _Canvas, rows: Sequence[PrintedRow], report: LabReport) -> float:
    y = _letterhead(c, report, report.collected)
    cells = _cells(c, rows)
    half = (len(cells) + 1) // 2
    mid = c.width / 2
    # Each half flows on its own; the right one starts on the left one's first page.
    start = c.index
    y_left = _flow_table(c, cells[:half], y, _MARGIN, mid - 10, report.collected, _MARGIN + 12, True)
    left_end = c.index
    c.index = start
    y_right = _flow_table(
        c, cells[half:], y, mid + 10, c.width - _MARGIN, report.collected, _MARGIN + 12, True
    )
    if c.index < left_end:  # the left half ran longer: carry on below it
        c.index = left_end
        return y_left
    return y_right if c.index > left_end else max(y_left, y_right)


def _draw_run_in(c: _Canvas, rows: Sequence[PrintedRow], report: LabReport) -> float:
    y = _letterhead(c, report, report.collected)
    s, size = c.style, c.style.size
    pitch = size * s.line_gap
    brackets = c.rng.choice((("(", ")"), ("[", "]"), ("Ref: ", "")))
    families = s.families
    panel = ""
    for row in rows:
        if y + 2 * pitch > c.bottom:
            c.new_page()
            y = _MARGIN + 12
            families = (*s.families, "page-break:continued")
        if row.truth.panel != panel:
            y += size * 0.5
            c.put(_MARGIN, y, row.truth.panel, size, s.bold_font)
            y += pitch
            panel = row.truth.panel
        name = row.name + (":" if s.separator is Separator.COLON else "")
        x = _MARGIN + (_INDENT if s.indent_names else 0.0)
        x = c.put(x, y, name, size)[2] + width(" ", size, s.font)
        if s.separator is Separator.LEADER_DOTS:
            x = c.put(x, y, "." * c.rng.randint(4, 14), size)[2] + width(" ", size, s.font)
        x = c.value(row, x, y, size, report.collected, families) + width(" ", size, s.font)
        if row.mark and s.flag_column:
            x = c.mark(row.mark, x, y, size) + width(" ", size, s.font)
        if row.unit_text:
            x = c.put(x, y, row.unit_text, size)[2] + width("  ", size, s.font)
        if row.range_text:
            c.put(x, y, f"{brackets[0]}{row.range_text}{brackets[1]}", size)
        y += pitch
    return y


def _draw_cumulative(
    c: _Canvas, draws: Sequence[LabReport], rows_by_draw: Sequence[Sequence[PrintedRow]]
) -> float:
    s = c.style
    y = _letterhead(c, draws[-1], None)
    keys = list(dict.fromkeys(r.key for rows in rows_by_draw for r in rows))
    grid = [
        _Cell([next((r for r in rows if r.key == key), None) for rows in rows_by_draw], "") for key in keys
    ]
    size = min(s.size, 8.0)
    pitch = size * s.line_gap
    name_w = max(width(line, size, s.font) for cell in grid for line in cell.template.name_lines) + 14
    unit_w = max(width(cell.template.unit_text, size, s.font) for cell in grid) + 12
    range_w = max(width(cell.template.range_text, size, s.font) for cell in grid) + 12
    xs = [_MARGIN, _MARGIN + name_w, _MARGIN + name_w + unit_w]
    first = xs[-1] + range_w
    step = max(
        (
            max(
                (
                    width(f"{r.value_text} {r.mark}", size, s.bold_font)
                    for cell in grid
                    for r in cell.rows
                    if r
                ),
                default=30,
            )
            + 12
        ),
        width(_stamp(draws[0].collected, s), size - 1, s.bold_font) + 10 if s.time_beside else 58.0,
    )
    while first + step * len(draws) > c.width - _MARGIN and size > 6.0:
        size -= 0.5
        step *= 0.94
    dates = [d.collected for d in draws]

    def header(y: float) -> float:
        for x, title in zip(xs, ("Test", "Units", "Ref. range"), strict=True):
            c.put(x, y, title, size, s.bold_font)
        for k, moment in enumerate(dates):
            x = first + k * step
            day, at = fmt_date(moment.date(), s.date_style), fmt_time(moment.time(), s.time_12h)
            if s.time_beside:
                c.put(x, y, f"{day} {at}", size - 1, s.bold_font)
            else:
                c.put(x, y - size, day, size - 1, s.bold_font)
                c.put(x, y, at, size - 1, s.bold_font)
        c.line(_MARGIN, y + 0.4 * size, c.width - _MARGIN, y + 0.4 * size, 0.8)
        return y + pitch + 2

    y = header(y + size)
    families = s.families
    for cell in grid:
        lines = len(cell.template.name_lines)
        if y + pitch * lines > c.bottom:
            c.new_page()
            y = _MARGIN + 12 + size
            if s.repeat_headers:
                y = header(y)
                families = (*s.families, "page-break:continued-with-header")
            else:
                families = (*s.families, "page-break:continued-without-header")
        t = cell.template
        for k, line in enumerate(t.name_lines):
            c.put(xs[0], y + k * size * 1.15, line, size)
        c.put(xs[1], y, t.unit_text, size)
        c.put(xs[2], y, t.range_text, size)
        for k, row in enumerate(cell.rows):
            if row is not None:
                # One unit and range per grid row: every date's truth is what the row prints.
                printed = replace(
                    row,
                    unit_text=t.unit_text,
                    range_text=t.range_text,
                    truth=row.truth.model_copy(update={"unit": t.unit_text, "reference_text": t.range_text}),
                )
                c.value(printed, first + k * step, y, size, dates[k], families)
        y += pitch + (lines - 1) * size * 1.15
    return y


# --- the document ----------------------------------------------------------------------------


def _name_keys(dialect: Dialect) -> dict[str, str]:
    return {a.printed_name(dialect.si): key for key, a in CATALOG.items()}


def _plan(rng: random.Random, seed: int, count: int) -> dict[str, float | str]:
    keys = rng.sample(list(CATALOG), count)
    planned: dict[str, float | str] = dict(sample_results(keys, seed, abnormal_rate=0.3))
    if "crp" in planned and rng.random() < 0.5:
        planned["crp"] = "<0.5"
    if "egfr" in planned and rng.random() < 0.5:
        planned["egfr"] = ">90"
    return planned


def _printed(report: LabReport, style: FuzzStyle, dialect: Dialect, rng: random.Random) -> list[PrintedRow]:
    names = _name_keys(dialect)
    return [printed_row(r, names[r.name], style, rng) for r in report.results]


def _running(report: LabReport, style: FuzzStyle, rng: random.Random) -> str:
    """The running header of continuation pages ("" for none): more dates and numbers to ignore."""
    if rng.random() < 0.3:
        return ""
    dob = (
        f" - DOB {fmt_date(report.birth_date, style.date_style)}" if Noise.IDENTIFIERS in style.noise else ""
    )
    return f"{report.lab_name} - {report.patient_name} - MRN {report.patient_id}{dob} - continued"


def fuzz_document(seed: int) -> FuzzedDocument:
    """One fuzzed report, deterministic for ``seed``: PDF bytes and its exact truth."""
    rng = random.Random(f"labpdf-fuzz:{seed}")
    style = draw_style(rng)
    dialect = (
        Dialect.SI_COMMA if style.decimal_comma else rng.choice((Dialect.US, Dialect.US_LEGACY, Dialect.SI))
    )
    collected = _START + timedelta(days=rng.randrange(0, 600), minutes=5 * rng.randrange(0, 100))
    if style.arrangement is Arrangement.CUMULATIVE:
        style = replace(
            style,
            unreadable=0,
            columns=(Column.NAME, Column.RESULT, Column.UNIT, Column.RANGE),
            flag_column=False,
        )
        planned = _plan(rng, seed, rng.randint(5, 30))
        draws = []
        for k in range(style.dates):
            values = {
                **sample_results(planned, seed * 31 + k, abnormal_rate=0.3),
                **{key: v for key, v in planned.items() if isinstance(v, str)},
            }
            # Not every test at every visit: a few cells stay empty.
            kept = {key: v for key, v in values.items() if rng.random() > 0.1} or values
            when = collected - timedelta(days=35 * (style.dates - 1 - k), minutes=10 * k)
            draws.append(make_report(f"fz-{seed}", when, kept, seed, dialect=dialect))
        c = _Canvas(
            style, rng, 842.0 if style.dates > 3 else 595.0, style.page_height if style.dates <= 3 else 595.0
        )
        c.running = _running(draws[-1], style, rng)
        c.new_page()
        rows_by_draw = [_printed(d, style, dialect, rng) for d in draws]
        y = _draw_cumulative(c, draws, rows_by_draw)
        report = draws[-1]
    else:
        if style.arrangement is Arrangement.RUN_IN:
            style = replace(style, wrap_names=False)
        count = rng.randint(8, 36)
        report = make_report(f"fz-{seed}", collected, _plan(rng, seed, count), seed, dialect=dialect)
        rows = _printed(report, style, dialect, rng)
        wide = style.arrangement is Arrangement.SIDE_BY_SIDE
        c = _Canvas(style, rng, 842.0 if wide else 595.0, 595.0 if wide else style.page_height)
        numeric = [r for r in rows if isinstance(r.truth.value, float) and r.truth.comparator is None]
        for row in rng.sample(numeric, min(style.unreadable, len(numeric))):
            c.garble[id(row)] = rng.choice(("garbled", "image"))
        c.running = _running(report, style, rng)
        c.new_page()
        if style.arrangement is Arrangement.RUN_IN:
            y = _draw_run_in(c, rows, report)
        elif wide:
            y = _draw_side_by_side(c, rows, report)
        else:
            y = _draw_table(c, rows, report)
    _closing(c, y)
    truth = FuzzTruth(
        seed=seed,
        families=style.families,
        page_count=c.doc.page_count,
        results=tuple(c.written),
        unreadable=tuple(c.unreadable),
    )
    pdf = finish(c.doc, f"Fuzzed lab report {seed}", report.reported)
    return FuzzedDocument(f"fuzz-{seed:05d}-{style.arrangement}", pdf, truth, style)
