"""Result rows of one page's tables -> grounded results (pure).

A row is a result when its test cell is filled and a result (or dated) cell holds a number,
a comparator and a number, or a known qualitative word. The value's bbox is the union of the
value's own words, so the text inside it is exactly ``value_text``. Rows whose name is a known
test but whose result cannot be read are reported as unparsed, never guessed; rows that are
neither (addresses, page footers, notes) are left alone. Flags come only from the flag column
or a flag word printed in the result cell: no text elsewhere on the page can change them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, time
from typing import Final

from tools.labs.loinc_catalog import resolve
from tools.labs.pdf.layout import Role, Table, cells, find_tables, group_lines, line_text
from tools.labs.pdf.model import ExtractedLab, UnparsedRow, Word, union_bbox
from tools.labs.pdf.values import parse_date, parse_flag, parse_range, parse_time, parse_value
from tools.labs.units import normalize_unit

__all__ = ["PageContext", "PageOutcome", "collection_date", "extract_page"]

_DATE: Final = (
    r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{4}|\d{1,2}[- ][A-Za-z]{3}[a-z]*[- ,]+\d{4}"
    r"|[A-Za-z]{3}[a-z]*\.? \d{1,2},? \d{4})"
)
# The time, when printed right after the collection date: "03/04/2024 07:45", "04.03.2024, 07:45 Uhr".
_TIME: Final = (
    r"(?:[,;]?\s*(?:at\s+|um\s+)?"
    r"(\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?(?![A-Za-z]))?)(?![\d:]))?"
)
_COLLECTED_RE: Final = re.compile(
    r"(?:date collected|collection date|collected on|collected|date of collection|specimen collected"
    r"|sample date|drawn|specimen date|coll\.)\s*[:\-]?\s*" + _DATE + _TIME,
    re.IGNORECASE,
)
_NOTE_STARTS: Final = ("*", "†", "‡", "note", "comment", "footnote", "#")
_MAX_PANEL_WORDS: Final = 6
_LEADER_RE: Final = re.compile(r"\s*\.{3,}\s*$|^\.+$")


@dataclass
class PageContext:
    """What carries from one page to the next: the collection date and time, the last tables."""

    effective: date | None = None
    effective_time: time | None = None  # printed with the collection date, naive wall-clock
    tables: list[Table] = field(default_factory=list)
    panel: str | None = None
    decimal_comma: bool = False  # the document prints "4,2": every comma is a decimal comma


@dataclass
class PageOutcome:
    results: list[ExtractedLab] = field(default_factory=list)
    unparsed: list[UnparsedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def collection_date(lines: list[list[Word]]) -> tuple[date, time | None] | None:
    """The collection date printed on the page, with its time when one follows the date."""
    for line in lines:
        m = _COLLECTED_RE.search(line_text(line))
        if m:
            found = parse_date(m.group(1))
            if found:
                return found, parse_time(m.group(2)) if m.group(2) else None
    return None


def extract_page(
    words: list[Word], page: int, width: float, height: float, context: PageContext
) -> PageOutcome:
    """Results printed on one page; ``context`` is updated for the next page."""
    outcome = PageOutcome()
    lines = group_lines(words)
    collected = collection_date(lines)
    if collected is not None:
        context.effective, context.effective_time = collected
    found = find_tables(lines, width, height)
    if found:
        tables = [t for _, t in found]
        context.tables = tables
    else:
        # A continuation page that does not repeat the header: the last page's columns hold.
        tables = [Table(t.columns, t.left, t.right, -1.0, height + 1) for t in context.tables]
        context.panel = context.panel if tables else None
    for table in sorted(tables, key=lambda t: (t.left, t.top)):
        region = [w for w in words if table.left <= w.xc < table.right]
        panel = _panel_above(region, table) if found else context.panel
        body = [w for w in region if table.top < (w.y0 + w.y1) / 2 < table.bottom]
        for line in group_lines(body):
            panel = _read_row(line, table, page, panel, context, outcome)
        context.panel = panel
    return outcome


def _panel_above(region: list[Word], table: Table) -> str | None:
    above = [w for w in region if table.top - 60 < (w.y0 + w.y1) / 2 <= table.top]
    lines = group_lines(above)
    # The header line itself ends at table.top; the heading, if any, is the line before it.
    for line in reversed(lines[:-1]):
        text = line_text(line)
        if len(cells(line)) == 1 and _is_heading(text):
            return text.rstrip(":").strip()
        break
    return None


def _is_heading(text: str) -> bool:
    return (
        ":" not in text
        and not any(ch.isdigit() for ch in text)
        and len(text.split()) <= _MAX_PANEL_WORDS
        and not text.lower().startswith(_NOTE_STARTS)
    )


def _read_row(
    line: list[Word], table: Table, page: int, panel: str | None, context: PageContext, outcome: PageOutcome
) -> str | None:
    """Read one line; return the panel heading in force after it."""
    line = [w for w in line if not _LEADER_RE.match(w.text)]
    if not line:
        return panel
    text = line_text(line)
    if text.lower().startswith(_NOTE_STARTS):
        return panel
    by_col: dict[int, list[Word]] = {}
    for w in line:
        col = table.column_of(w)
        if col is not None:
            by_col.setdefault(col, []).append(w)
    for cell in cells(line):
        if len({table.column_of(w) for w in cell}) >= 2:
            return panel  # one phrase running across a column edge: prose (a note), not a row
    roles = {i: c.role for i, c in enumerate(table.columns)}
    name_cols = [i for i, r in roles.items() if r is Role.NAME]
    name_words = by_col.get(name_cols[0], []) if name_cols else []
    if not name_words:
        return panel
    name = _clean_name(name_words)
    if not name:
        return panel
    if set(by_col) == {name_cols[0]}:
        return name.rstrip(":").strip() if _is_heading(name) else panel
    unit_words = _cell(by_col, roles, Role.UNIT)
    ref_words = _cell(by_col, roles, Role.REFERENCE)
    flag_words = _cell(by_col, roles, Role.FLAG)
    unit_text = line_text(unit_words) if unit_words else None
    unit = normalize_unit(unit_text)
    ref_text = line_text(ref_words) if ref_words else None
    ref = parse_range(ref_text, decimal_comma=context.decimal_comma) if ref_text else None
    column_flag = None
    if flag_words:
        column_flag = parse_flag(line_text(flag_words))
        if column_flag is None:
            outcome.warnings.append(
                f"page {page}: flag {line_text(flag_words)!r} for {name!r} not recognised"
            )
    resolution = resolve(name, unit=unit, panel=panel)
    if unit is None and resolution.entry is not None and (resolution.entry.unit or "").startswith("{"):
        unit = resolution.entry.unit  # a unitless-by-definition test (INR): its UCUM annotation
    value_cols = [i for i, r in roles.items() if r in (Role.RESULT, Role.DATE)]
    any_value = False
    for col in value_cols:
        # A dated column (cumulative report) carries its own collection time; else the page's.
        on, at = table.columns[col].on, table.columns[col].at
        if on is None:
            on, at = context.effective, context.effective_time
        value_words = by_col.get(col, [])
        if not value_words:
            continue
        any_value = True
        flag = column_flag
        if len(value_words) > 1 and parse_flag(value_words[-1].text) is not None:
            flag = flag or parse_flag(value_words[-1].text)
            value_words = value_words[:-1]
        value_text = line_text(value_words)
        parsed = parse_value(value_text, decimal_comma=context.decimal_comma)
        if parsed is None:
            if resolution.entry is not None:
                outcome.unparsed.append(UnparsedRow(page=page, text=text, reason="result not readable"))
            continue
        outcome.results.append(
            ExtractedLab(
                name=name,
                loinc=resolution.loinc,
                name_status=resolution.reason,
                value=parsed.value,
                value_text=value_text,
                unit=unit,
                comparator=parsed.comparator,
                reference_low=ref.low if ref else None,
                reference_high=ref.high if ref else None,
                reference_text=ref_text,
                flag=flag,
                effective=on,
                effective_time=at if on is not None else None,
                panel=panel,
                page=page,
                bbox=union_bbox(value_words),
            )
        )
    if not any_value and resolution.entry is not None:
        outcome.unparsed.append(UnparsedRow(page=page, text=text, reason="no result printed"))
    return panel


def _clean_name(words: list[Word]) -> str:
    """The test name without dot leaders ("Glucose ........")."""
    text = " ".join(w.text for w in words if not _LEADER_RE.match(w.text))
    return _LEADER_RE.sub("", text).strip()


def _cell(by_col: dict[int, list[Word]], roles: dict[int, Role], role: Role) -> list[Word]:
    for i, r in roles.items():
        if r is role:
            return by_col.get(i, [])
    return []
