"""Rows and columns from positioned words (pure).

* Lines: words whose vertical extents overlap by half the smaller height share a baseline.
* Cells: words of a line closer than half the line height belong to one phrase.
* Header rows: a line whose cells name a test column and a result column (or dated columns);
  its cells give each column's role and x position, in whatever order the report prints them.
  A header that names the test column twice is a two-column page: each half is its own table,
  split at the gutter before the second test column. Optional columns (previous result, method,
  comment) are named so that their words are never read as the result; a previous-result column
  whose header prints its date is a dated column of its own. One header cell of no known name
  is tolerated where three or more are known.
* A line of two or more dates and nothing else (times under or beside them) heads a cumulative
  table without named columns: the name column is what lies left of the first date.
* Words are assigned to the column whose interval holds their centre; intervals start halfway
  into the gap before each header cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum
from typing import Final

from tools.labs.pdf.model import Word
from tools.labs.pdf.values import parse_date, parse_time

__all__ = ["Column", "Role", "Table", "cells", "find_tables", "fit_columns", "group_lines", "line_text"]


class Role(StrEnum):
    NAME = "name"
    RESULT = "result"
    FLAG = "flag"
    UNIT = "unit"
    REFERENCE = "reference"
    DATE = "date"  # a cumulative report's result column for one collection date
    PREVIOUS = "previous"  # an earlier result without its date: never read
    OTHER = "other"  # method, comment, specimen, code: never read as a value


_ROLE_WORDS: Final[dict[str, Role]] = {
    **dict.fromkeys(
        ("test", "tests", "test name", "analyte", "component", "investigation", "parameter", "description",
         "examination", "determination", "test description", "lab test", "name", "analysis", "untersuchung",
         "analyse", "analyt", "examen", "parameters", "test(s)", "procedure", "order",
         # Portuguese and Spanish
         "parâmetro", "parametro", "parâmetros", "parametros", "exame", "exames", "análise", "analise",
         "analito", "prueba", "pruebas", "determinación", "determinacion", "estudio"),
        Role.NAME,
    ),
    **dict.fromkeys(
        ("result", "results", "value", "your value", "observed value", "current result", "result value",
         "your result", "patient result", "ergebnis", "wert", "befund", "résultat", "resultat",
         "result(s)", "finding", "measured value", "current", "resultado", "resultados", "valor"),
        Role.RESULT,
    ),
    **dict.fromkeys(
        ("flag", "flags", "abnormal", "abn", "status", "h/l", "indicator", "abn flag", "alert",
         "kennzeichen", "hinweis", "interpretation", "h / l", "out of range"),
        Role.FLAG,
    ),
    **dict.fromkeys(
        ("unit", "units", "uom", "unit of measure", "einheit", "unité", "unit(s)", "unidade", "unidades",
         "unidad"),
        Role.UNIT,
    ),
    **dict.fromkeys(
        ("reference range", "reference interval", "ref range", "ref. range", "normal range", "reference",
         "range", "ref interval", "ref. interval", "normal values", "biological reference interval",
         "standard range", "reference values", "ref", "referenzbereich", "normbereich", "referenz",
         "normalwert", "normalwerte", "referenzwert", "normwert", "valeurs de référence", "ref. values",
         "expected range", "expected", "normal", "limits", "reference limits", "ref. int.", "range (ref)",
         "desirable", "desirable range", "desirable level", "desirable levels",
         "intervalo de referência", "intervalo de referencia", "valores de referência",
         "valores de referencia", "valor de referência", "valor de referencia", "referência",
         "rango de referencia", "valores normales"),
        Role.REFERENCE,
    ),
    **dict.fromkeys(
        ("previous", "previous result", "previous results", "prior", "prior result", "prior results",
         "last result", "last value", "previous value", "prev", "prev.", "prev. result", "earlier result",
         "vorwert", "vorbefund", "history", "historical", "last", "antérieur"),
        Role.PREVIOUS,
    ),
    **dict.fromkeys(
        ("method", "methodology", "comment", "comments", "remark", "remarks", "note", "notes", "specimen",
         "loinc", "code", "performing lab", "lab", "site", "methode", "kommentar", "sample", "material",
         "specimen type", "source", "date", "time", "collected"),
        Role.OTHER,
    ),
}  # fmt: skip
# A previous-result header with its date: "Previous (01/02/2024)", "Vorwert 12.01.2024 08:10".
_PREVIOUS_RE: Final = re.compile(
    r"^(?:previous|prior|last|prev\.?|vorwert|earlier)(?: results?| values?)?\s*[(:]?\s*(.+?)\s*\)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Column:
    role: Role
    start: float  # left edge of the column interval
    on: date | None = None  # for Role.DATE
    at: time | None = None  # for Role.DATE: the collection time printed with the date, if any
    header_x0: float | None = None  # the header cell's left edge (None: no header cell)
    header_x1: float | None = None  # and its right edge


@dataclass(frozen=True, slots=True)
class Table:
    """A header's columns, for words centred between ``top`` and ``bottom`` within ``[left, right)``."""

    columns: tuple[Column, ...]
    left: float
    right: float
    top: float
    bottom: float
    implicit: bool = False  # no header named the columns (a row of dates): units and ranges by shape

    def column_of(self, word: Word) -> int | None:
        if not self.left <= word.xc < self.right:
            return None
        index = None
        for i, col in enumerate(self.columns):
            if word.xc >= col.start:
                index = i
        return 0 if index is None else index


def group_lines(words: list[Word]) -> list[list[Word]]:
    """Words sorted into lines (top to bottom), each line left to right."""
    lines: list[list[Word]] = []
    spans: list[tuple[float, float]] = []
    for w in sorted(words, key=lambda w: ((w.y0 + w.y1) / 2, w.x0)):
        if lines:
            top, bottom = spans[-1]
            overlap = min(bottom, w.y1) - max(top, w.y0)
            if overlap >= 0.5 * min(bottom - top, w.height):
                lines[-1].append(w)
                spans[-1] = (min(top, w.y0), max(bottom, w.y1))
                continue
        lines.append([w])
        spans.append((w.y0, w.y1))
    return [sorted(line, key=lambda w: w.x0) for line in lines]


def cells(line: list[Word]) -> list[list[Word]]:
    """A line's phrases: words separated by less than half the line height."""
    out: list[list[Word]] = []
    height = max(w.height for w in line)
    for w in line:
        if out and w.x0 - out[-1][-1].x1 < 0.5 * height:
            out[-1].append(w)
        else:
            out.append([w])
    return out


def line_text(words: list[Word]) -> str:
    return " ".join(w.text for w in words)


# A right-aligned value may start left of its header; not further than this (points).
_MAX_PULL: Final = 24.0
# A cumulative report's column header: a date, then (on the same or the next line) a time.
_TIME_RE: Final = re.compile(r"\s+(\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?)$", re.IGNORECASE)

_Found = tuple[Role, date | None, time | None]
_MONTH_START_RE: Final = re.compile(r"^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", re.IGNORECASE)


def _role(cell: list[Word]) -> _Found | None:
    text = re.sub(r"\s+", " ", line_text(cell).strip().rstrip(":")).lower()
    if text in _ROLE_WORDS:
        return _ROLE_WORDS[text], None, None
    dated = _dated(text)
    if dated is not None:
        return Role.DATE, *dated
    m = _PREVIOUS_RE.match(text)
    if m:
        dated = _dated(m.group(1).strip("() "))
        if dated is not None:
            return Role.PREVIOUS, *dated  # find_tables makes it a dated column
    return None


def _dated(text: str) -> tuple[date, time | None] | None:
    """A date, with the time printed beside it ("01/05/2024 08:30", "05.01.2024, 08:30")."""
    m = _TIME_RE.search(text)
    on = parse_date((text[: m.start()] if m else text).rstrip(", "))
    if on is None:
        return None
    return on, parse_time(m.group(1)) if m else None


def _only_dates(line: list[Word]) -> bool:
    if not line[0].text[:1].isdigit() and not line[0].text[:1].isalpha():
        return False
    if not any(ch.isdigit() for ch in line[0].text) and not _MONTH_START_RE.match(line[0].text):
        return False  # a date starts with a digit or a month's name: most lines fail here
    found = [_role(c) for c in cells(line)]
    return bool(found) and all(r is not None and r[0] is Role.DATE for r in found)


def _unnamed(groups: list[list[_Cell]] | None) -> int:
    """How many header cells have no known column name (any, when there is no header: 1)."""
    if groups is None:
        return 1
    return sum(1 for group in groups for _, role, _, _ in group if role is Role.OTHER)


def _just_above(upper: list[Word], lower: list[Word]) -> bool:
    height = max(w.height for w in lower)
    return min(w.y0 for w in lower) - max(w.y1 for w in upper) < 0.6 * height


def _only_times(line: list[Word]) -> bool:
    return all(parse_time(line_text(c)) is not None for c in cells(line))


def _stacked_cells(upper: list[Word], lower: list[Word]) -> list[list[Word]]:
    """Header cells of two stacked lines (dates above, names and times below) merged by x overlap."""
    merged = [list(c) for c in cells(lower)]
    for cell in cells(upper):
        x0, x1 = cell[0].x0, cell[-1].x1
        for target in merged:
            if min(x1, target[-1].x1) - max(x0, target[0].x0) > 0:
                target[:0] = cell
                break
        else:
            merged.append(list(cell))
    return sorted(merged, key=lambda c: c[0].x0)


_Cell = tuple[list[Word], Role, date | None, time | None]


def _header_groups(line_cells: list[list[Word]]) -> list[list[_Cell]] | None:
    """The cells split into one group per test column, if they form a header row."""
    found: list[_Cell] = []
    unknown = 0
    for cell in line_cells:
        role = _role(cell)
        if role is None:
            # A header row holds column names; one unknown name (a text cell) among three known.
            if any(ch.isdigit() for ch in line_text(cell)):
                return None
            unknown += 1
            role = (Role.OTHER, None, None)
        elif role[0] is Role.PREVIOUS and role[1] is not None:
            role = (Role.DATE, role[1], role[2])  # the earlier result, read under its own date
        found.append((cell, *role))
    if unknown > 1 or (unknown and len(found) - unknown < 3):
        return None
    # A new group opens at each test column; columns printed before the first test column
    # (a "Result | Test | ..." order) belong to the first group.
    groups: list[list[_Cell]] = [[]]
    for item in found:
        if item[1] is Role.NAME and any(r is Role.NAME for _, r, _, _ in groups[-1]):
            groups.append([])
        groups[-1].append(item)
    for group in groups:
        roles = [r for _, r, _, _ in group]
        if Role.NAME not in roles or not set(roles) & {Role.RESULT, Role.DATE}:
            return None
        single = [r for r in roles if r not in (Role.DATE, Role.OTHER, Role.PREVIOUS)]
        if len(single) != len(set(single)):
            return None  # a role twice in one table: not a header we understand
    return groups


def find_tables(lines: list[list[Word]], page_width: float, page_height: float) -> list[tuple[int, Table]]:
    """Every header row on the page (its line index) with the table it opens."""
    headers: list[tuple[int, list[Table]]] = []
    for index, line in enumerate(lines):
        groups = _header_groups(cells(line))
        implicit = False
        if groups is None and index > 0 and _only_dates(lines[index - 1]):
            stacked = _stacked_cells(lines[index - 1], line)
            groups = _header_groups(stacked)
            if groups is None and _only_times(line):
                groups, implicit = _date_row(stacked, line), True
        elif index > 0 and _unnamed(groups) and _just_above(lines[index - 1], line):
            # Column names over two lines: "Reference" over "Interval", "Your" over "Value".
            two_line = _header_groups(_stacked_cells(lines[index - 1], line))
            if two_line is not None and (groups is None or _unnamed(two_line) < _unnamed(groups)):
                groups = two_line
        if groups is None and _only_dates(line):
            groups, implicit = _date_row(cells(line), line), True
        if groups is None:
            continue
        tables: list[Table] = []
        for g, group in enumerate(groups):
            columns: list[Column] = []
            for c, (cell, role, on, at) in enumerate(group):
                x0 = min(w.x0 for w in cell)
                if c == 0:
                    start = x0
                else:
                    gap = max(0.0, x0 - max(w.x1 for w in group[c - 1][0]))
                    start = x0 - min(gap / 2, _MAX_PULL)
                edges = (None, None) if table_less(cell) else (x0, max(w.x1 for w in cell))
                columns.append(Column(role, start, on, at, *edges))
            left = 0.0 if g == 0 else _gutter(groups[g - 1], group)
            right = page_width + 1 if g == len(groups) - 1 else _gutter(group, groups[g + 1])
            # Rows start below the header's centre line: with tight line spacing the first row's
            # box can overlap the header's box.
            centre = sum((w.y0 + w.y1) / 2 for w in line) / len(line)
            top = centre + 0.4 * max(w.height for w in line)
            tables.append(Table(tuple(columns), left, right, top, page_height + 1, implicit))
        headers.append((index, tables))
    out: list[tuple[int, Table]] = []
    for h, (index, tables) in enumerate(headers):
        for table in tables:
            bottom = page_height + 1
            for later_index, later in headers[h + 1 :]:
                if any(t.left < table.right and table.left < t.right for t in later):
                    bottom = min(w.y0 for w in lines[later_index])
                    break
            out.append(
                (index, Table(table.columns, table.left, table.right, table.top, bottom, table.implicit))
            )
    return out


def _date_row(line_cells: list[list[Word]], line: list[Word]) -> list[list[_Cell]] | None:
    """Two or more dates alone on a line: a cumulative header whose name column is unnamed."""
    dated = [(c, _role(c)) for c in line_cells]
    if len(dated) < 2:
        return None
    first = min(w.x0 for w in line_cells[0])
    anchor = Word(0.0, line[0].y0, min(first, 1.0), line[0].y1, "")  # the unnamed name column
    group: list[_Cell] = [([anchor], Role.NAME, None, None)]
    for cell, found in dated:
        if found is None or found[0] is not Role.DATE:
            return None
        group.append((cell, Role.DATE, found[1], found[2]))
    return [group]


def table_less(cell: list[Word]) -> bool:
    """The unnamed name column of a row of dates (``_date_row``'s anchor)."""
    return len(cell) == 1 and not cell[0].text


def fit_columns(table: Table, lines: list[list[Word]]) -> Table:
    """The table with each column edge moved into the whitespace its rows leave there.

    A header gives each column's place; the rows show where its values really run: numbers
    right-aligned under a short header reach past the midpoint to the next header. An edge that
    cuts through cells of the rows moves to the nearest x (between the two headers) that cuts
    through fewest, so that every cell falls whole into one column.
    """
    row_cells = [(c[0].x0, c[-1].x1) for line in lines for c in cells(line)]
    if not row_cells:
        return table
    columns = list(table.columns)
    for i in range(1, len(columns)):
        col, before = columns[i], columns[i - 1]
        lo = before.header_x1 if before.header_x1 is not None else before.start + 1.0
        hi = col.header_x0 if col.header_x0 is not None else col.start
        if hi <= lo:
            continue

        def crossings(x: float) -> int:
            return sum(1 for x0, x1 in row_cells if x0 < x < x1)

        here = crossings(col.start)
        if here == 0:
            continue
        candidates = [x1 + 0.01 for _, x1 in row_cells if lo <= x1 < hi]
        candidates += [x0 - 0.01 for x0, _ in row_cells if lo < x0 <= hi]
        best = min(candidates, key=lambda x: (crossings(x), abs(x - col.start)), default=None)
        if best is not None and crossings(best) < here:
            columns[i] = Column(col.role, best, col.on, col.at, col.header_x0, col.header_x1)
    return Table(tuple(columns), table.left, table.right, table.top, table.bottom, table.implicit)


def _gutter(left: list[_Cell], right: list[_Cell]) -> float:
    return (max(w.x1 for w in left[-1][0]) + min(w.x0 for w in right[0][0])) / 2
