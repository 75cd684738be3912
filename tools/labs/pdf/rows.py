"""Result rows of one page -> grounded results (pure).

Two readings share the page. Under a header row (``layout.find_tables``) words are read by
column: a row is a result when its test cell is filled and a result (or dated) cell holds a
number, a comparator and a number, or a known qualitative word. Every other line is read from its
own words (``inline.segments``): "Glucose ..... 96 mg/dL 70-99", "Glucose: 96 mg/dL (70-99)",
headerless whitespace tables, panels side by side. Such a line is a result only when its name is
a known test, or, for a name we do not know, when a number and a unit follow it and nothing else
does (no prose, no second number); demographic labels (DOB, phone, MRN, page) never are.

The value's bbox is the union of the value's own words, so the text inside it is exactly
``value_text``. Rows whose name is a known test but whose result cannot be read are reported
as unparsed with their box, never guessed. Flags come only from the row itself: a flag column or
word, an arrow, or a bold value on a page that prints other values in a regular face.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, time
from typing import Final

from tools.labs.loinc_catalog import Resolution, resolve
from tools.labs.pdf.inline import Segment, segments
from tools.labs.pdf.layout import Role, Table, cells, find_tables, fit_columns, group_lines, line_text
from tools.labs.pdf.model import BBox, ExtractedLab, UnparsedRow, Word, union_bbox
from tools.labs.pdf.names import UNREADABLE, clean_name, continues, is_heading, is_leader, is_note, readable
from tools.labs.pdf.tail import Tail, is_unit, parsed_reference, read_tail, split_glued_unit
from tools.labs.pdf.values import (
    ParsedRange,
    ParsedValue,
    parse_date,
    parse_flag,
    parse_range,
    parse_time,
    parse_value,
    split_glued_flag,
)
from tools.labs.units import is_known_unit, normalize_unit
from tools.medgemma.tasks.lab_extraction import LabFlag

__all__ = ["PageContext", "PageOutcome", "collection_date", "extract_page", "report_only_date"]

_DATE: Final = (
    r"(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{4}|\d{1,2}[- ][A-Za-z]{3}[a-z]*[- ,]+\d{4}"
    r"|[A-Za-z]{3}[a-z]*\.? \d{1,2},? \d{4})"
)
# The time, when printed right after the collection date: "03/04/2024 07:45", "04.03.2024, 07:45 Uhr".
_TIME: Final = (
    r"(?:[,;]?\s*(?:at\s+|um\s+)?"
    r"(\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?(?![A-Za-z]))?)(?![\d:]))?"
)
# Labels that date the specimen: collection, sample, specimen, examination, test. Not a report's
# date (reported, printed, generated): it can fall days after the blood was drawn.
_COLLECTED_RE: Final = re.compile(
    r"(?:\bdate of examination|\bexamination date|\bdate of exam\b|\bexam date|\bdate of test(?:ing)?\b"
    r"|\btest date|\bdate of (?:sample|specimen)|date collected|collection date|collected on|collected"
    r"|date of collection|specimen collected"
    r"|sample date|drawn|specimen date|coll\.|collection|entnahme(?:datum)?|abnahme(?:datum)?"
    r"|probenentnahme|prélèvement|prelevement|date of service|service date)\s*[:\-]?\s*" + _DATE + _TIME,
    re.IGNORECASE,
)
# Labels that head a number and a unit without being a test (demographics, page furniture).
_NOT_TESTS: Final = frozenset(
    {"dob", "birth", "born", "age", "phone", "tel", "telephone", "fax", "mobile", "mrn", "accession", "page",
     "room", "bed", "zip", "postcode", "npi", "account", "acct", "patient", "height", "weight", "bmi",
     "pulse", "bp", "temperature", "geburtsdatum", "alter", "seite", "heart rate",
     "blood pressure", "respiratory rate", "spo2", "bpm", "systolic", "diastolic", "pregnancies",
     "thickness", "skinfold", "circumference", "waist"}
)  # fmt: skip
# Units of a body measurement (a length, a mass, a pressure, a rate), never of a lab result.
_BODY_UNITS: Final = frozenset(
    {"mm", "cm", "m", "in", "inch", "inches", "ft", "kg", "lb", "lbs", "mmhg", "mm[hg]", "bpm", "kg/m2",
     "kg/m²", "kg/m^2", "/min", "breaths/min", "beats/min"}
)  # fmt: skip
# More words that head a number and a unit outside any table without naming a test.
_NOT_FREE_NAMES: Final = _NOT_TESTS | frozenset(
    {"id", "acc", "order", "report", "sample", "specimen", "ward", "no", "number", "nr", "date", "time",
     "fasting", "volume", "temp", "collected", "received", "reported", "printed", "tube", "vial", "barcode",
     "ref", "lot", "heart", "respiratory", "gewicht", "größe"}
)  # fmt: skip
# A units cell that names the kind of result, not a unit ("INR 1.1 ratio").
_NO_UNIT_WORDS: Final = frozenset({"ratio"})
# Words of a sentence, not of a test name ("Glucose above 126 mg/dL is ...").
_PROSE_WORDS: Final = frozenset(
    {"if", "is", "are", "was", "were", "be", "been", "may", "should", "please", "than", "when", "the",
     "this", "that", "to", "for", "by", "at", "on", "above", "below", "over", "under", "within", "repeat",
     "call", "called", "reported", "recommended", "consider", "between", "values", "levels", "or", "higher",
     "lower", "indicates", "indicate", "suggests", "suggest", "consistent", "risk", "target", "goal", "with",
     "and", "in", "of", "patients", "diagnosis"}
)  # fmt: skip
_MAX_UNKNOWN_NAME_WORDS: Final = 6
# A name on the next line continues the name above only this close below it (line heights).
_WRAP_GAP: Final = 0.8


@dataclass
class PageContext:
    """What carries from one page to the next: the collection date and time, the last tables."""

    effective: date | None = None
    effective_time: time | None = None  # printed with the collection date, naive wall-clock
    tables: list[Table] = field(default_factory=list)
    panel: str | None = None
    # The document prints "4,2": every comma is a decimal comma; None: it prints both styles.
    decimal_comma: bool | None = False


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


_DATE_RE: Final = re.compile(_DATE)
# Labels of a date that is not the report's: the patient's birth (and an age printed with it).
_BIRTH_RE: Final = re.compile(r"\b(?:dob|d\.o\.b|birth|born|age|geburtsdatum)\b", re.IGNORECASE)
_BARE_DATE_RE: Final = re.compile(r"^date$", re.IGNORECASE)
# The report's (issue) date: "Report Date", "Reported", "Date of report", "Issued on".
_REPORT_DATE_RE: Final = re.compile(
    r"^(?:report(?:ed)?\s+date|date\s+(?:of\s+)?report(?:ed)?|reported(?:\s+on)?|report\s+issued(?:\s+on)?"
    r"|issue\s+date|date\s+of\s+issue|issued(?:\s+on)?)$",
    re.IGNORECASE,
)
# A generation stamp, often a footer's last words: "... Report generated: 2026-04-30 09:47 UTC".
_GENERATED_RE: Final = re.compile(
    r"(?:^|\s)(?:report\s+)?(?:generated|printed|created)(?:\s+(?:on|at))?$", re.IGNORECASE
)
_COLLECTION_TIME_RE: Final = re.compile(
    r"^(?:collection\s+time|time\s+of\s+collection|time\s+collected|collected\s+at|draw(?:n)?\s+time"
    r"|time\s+drawn|sample\s+time|specimen\s+time)$",
    re.IGNORECASE,
)
# Within a cell, fields run together with a bar or a semicolon: "ID: KF-2025 | Date: 2025-11-15".
_FIELD_SEP_RE: Final = re.compile(r"[|;]")
# What ends a label: its colon, dash or slash ("Report Date:").
_LABEL_END_RE: Final = re.compile(r"[\s:\-\u2010-\u2015/]*$")


def _label(before: str, earlier: list[list[Word]]) -> str:
    """The label of a value: the cell's words before it, else the cells before (a colon left alone
    where a gloss was dropped is skipped), without the colon, dash or slash that end a label
    ("Report Date:" -> "Report Date")."""
    text = _FIELD_SEP_RE.split(before)[-1].strip()
    for cell in reversed(earlier):
        if _LABEL_END_RE.fullmatch(text):
            text = f"{_FIELD_SEP_RE.split(line_text(cell))[-1]} {text}"
    return _LABEL_END_RE.sub("", text).strip()


def report_only_date(pages: list[list[Word]]) -> tuple[date, time | None] | None:
    """The date of service when the document's only date is the report's own, else None.

    One rule (decided 2026-12-04, revision 6; it replaces revision 5's two): when the document's
    only date, birth dates aside (DOB, Date of Birth, Age lines), is printed under a bare
    "Date"/"Date:" label or a report/issue-date label ("Report Date", "Reported", "Date of
    report", "Issued"), the rows take it as their date. A generation stamp ("Report generated:
    2026-04-30 09:47 UTC", "Printed:") may stand beside it only when it falls on the same calendar
    day (the set of dates then still holds one date); on its own it dates nothing. Why: FHIR's
    effective[x] is the physiologically relevant time; where the page does not say when the blood
    was drawn, the only date it prints is the best it says, and the reader warns that it was used
    (``reader``: "dated by the report date: no collection date printed") so that the AI-labelled
    write-back can be reviewed. Any other dated label (collected, received...), an unlabelled
    date, or two different dates: None, and ``collection_date`` (a collection label) alone dates
    the rows. A printed collection time ("Collection Time: 07:30 AM") goes with that date. Pure:
    ``pages`` is each page's words.
    """
    dates: set[date] = set()
    kinds: set[str] = set()
    times: set[time] = set()
    for words in pages:
        for line in group_lines(readable(words)):
            parts = cells(line)
            for i, cell in enumerate(parts):
                text = line_text(cell)
                for m in _DATE_RE.finditer(text):
                    found = parse_date(m.group(1))
                    if found is None:
                        continue
                    label = _label(text[: m.start()], parts[:i])
                    if _BIRTH_RE.search(label):
                        continue
                    dates.add(found)
                    if _BARE_DATE_RE.match(label) or _REPORT_DATE_RE.match(label):
                        kinds.add("report")
                    elif _GENERATED_RE.search(label):
                        kinds.add("generated")
                    else:
                        kinds.add("other")
                at = parse_time(text)
                if at is not None and _COLLECTION_TIME_RE.match(_label("", parts[:i])):
                    times.add(at)
    if len(dates) != 1 or "report" not in kinds or not kinds <= {"report", "generated"}:
        return None
    return next(iter(dates)), next(iter(times)) if len(times) == 1 else None


@dataclass
class _Row:
    """The last name read in a run of lines: wrapped-name lines join it (see ``names.continues``)."""

    name: str
    x0: float
    bottom: float
    height: float
    results: list[int] = field(default_factory=list)  # indices into PageOutcome.results
    panel: str | None = None  # the panel in force before this line (a name-only line may not be one)
    full: bool = False  # a row with cells beside its name (read or not), not a name alone

    def near(self, line: list[Word]) -> bool:
        first = line[0]
        return (
            first.y0 - self.bottom < _WRAP_GAP * self.height
            and first.x0 >= self.x0 - 0.5 * self.height
            and first.x0 < self.x0 + 6 * self.height
        )


def extract_page(
    words: list[Word], page: int, width: float, height: float, context: PageContext
) -> PageOutcome:
    """Results printed on one page; ``context`` is updated for the next page."""
    outcome = PageOutcome()
    words = readable(words)  # no word that is not readable text (names.readable)
    lines = group_lines(words)
    collected = collection_date(lines)
    if collected is not None:
        context.effective, context.effective_time = collected
    found = find_tables(lines, width, height)
    read: set[int] = set()  # ids of words a table (or its header) accounts for
    if found:
        tables = [t for _, t in found]
        context.tables = [t for t in tables if t.bottom > height]  # open at the page's end
        for index, table in found:
            read |= {id(w) for w in lines[index] if table.left <= w.xc < table.right}
            if index > 0 and table.top - lines[index - 1][-1].y1 < 2 * lines[index][0].height:
                # a stacked line above the header (dates, or the first words of column names)
                above = lines[index - 1]
                close = (
                    min(w.y0 for w in lines[index]) - max(w.y1 for w in above) < 0.6 * lines[index][0].height
                )
                if close or all(parse_date(line_text(c)) is not None for c in cells(above)):
                    read |= {id(w) for w in above if table.left <= w.xc < table.right}
    else:
        # A continuation page that does not repeat the header: the last page's columns hold.
        tables = [Table(t.columns, t.left, t.right, -1.0, height + 1, t.implicit) for t in context.tables]
        context.panel = context.panel if tables else None
    for table in sorted(tables, key=lambda t: (t.left, t.top)):
        region = [w for w in words if table.left <= w.xc < table.right]
        panel = _panel_above(region, table) if found else context.panel
        body = [w for w in region if table.top < (w.y0 + w.y1) / 2 < table.bottom]
        body_lines = group_lines(body)
        table = fit_columns(table, body_lines)
        last: _Row | None = None
        for line in body_lines:
            before = (len(outcome.results), len(outcome.unparsed))
            panel, last, taken = _read_row(line, table, page, panel, last, context, outcome)
            if not found and taken and (len(outcome.results), len(outcome.unparsed)) == before:
                taken = _keep_columns(line, page, context)
            if taken:
                read |= {id(w) for w in line}
        context.panel = panel
    free = [w for w in words if id(w) not in read]
    if free:
        _read_free(group_lines(free), page, context, outcome)
    _bold_flags(words, outcome)
    return outcome


def _keep_columns(line: list[Word], page: int, context: PageContext) -> bool:
    """On a page without a header, whether a line stays read by the last page's columns.

    A line those columns make nothing of (no result, no row they could not read) but whose own
    words make a result ("Glucose: 182 mg/dL" on a page laid out anew) is read from its words
    instead. A row the columns found empty ("Triglycerides   [blank]   < 150") stays theirs: its
    range is no value.
    """
    trial = PageOutcome()
    _read_free([line], page, replace(context), trial)  # a trial: the context stays as it is
    return not trial.results


def _panel_above(region: list[Word], table: Table) -> str | None:
    above = [w for w in region if table.top - 60 < (w.y0 + w.y1) / 2 <= table.top]
    lines = group_lines(above)
    # The header line itself ends at table.top; the heading, if any, is the line before it.
    for line in reversed(lines[:-1]):
        text = line_text(line)
        if len(cells(line)) == 1 and is_heading(text):
            return text.rstrip(":").strip()
        break
    return None


def _resolve(name: str, unit: str | None, panel: str | None) -> tuple[Resolution, str | None]:
    """The name's resolution and the unit to record (a unitless test's UCUM annotation, for INR)."""
    resolution = resolve(name, unit=unit, panel=panel)
    if unit is None and resolution.entry is not None and (resolution.entry.unit or "").startswith("{"):
        unit = resolution.entry.unit
    return resolution, unit


def _refines(first: str, second: str, unit: str | None) -> bool:
    """``first`` is a known test and ``first second`` another one of the same specimen."""
    alone = resolve(first, unit=unit).entry
    joined = resolve(f"{first} {second}", unit=unit).entry
    return (
        alone is not None
        and joined is not None
        and joined.loinc != alone.loinc
        and joined.specimen == alone.specimen
    )


def _known(resolution: Resolution) -> bool:
    return resolution.entry is not None or resolution.reason in ("ambiguous", "no code for unit")


def _joins(
    first: str,
    second: str,
    *,
    first_has_values: bool = False,
    second_has_values: bool = False,
    unit: str | None = None,
) -> bool:
    """Whether ``second`` (the next line's name) completes the name ``first`` on the line above.

    Printed evidence (``names.continues``), or the names themselves: ``first`` alone is no test
    we know and the two together are one ("Carbon" over "Dioxide, Total", "C-Reactive" over
    "Protein"). Where the values stand on the second line, its name must be no test alone
    either: a heading ("Urinalysis") stands over a full name ("pH, Urine"). An upper-case line
    is a heading, not half a name.

    Where the values stand on the first line, that line is a result, not a heading, and a known
    test there may still be half a name: the second line completes it when the two together
    name another test of the same specimen ("LDL" over "Cholesterol (calc)": 13457-7, not
    2089-1; "Hemoglobin" over "A1c"). The same specimen, because a section heading under a
    result ("Urine" under "Protein") would otherwise move the result to another specimen; and
    not an upper-case second line, which is the next panel's heading.
    """
    if continues(first, second):
        return True
    if first_has_values and not second.isupper() and _refines(first, second, unit):
        return True
    if first.isupper() or second.isupper() or resolve(first, unit=unit).entry is not None:
        return False
    if second_has_values and _known(resolve(second)):
        return False
    return resolve(f"{first} {second}", unit=unit).entry is not None


def _rename(outcome: PageOutcome, row: _Row, name: str) -> None:
    """Give the results of ``row`` the name its wrapped second line completes."""
    for i in row.results:
        old = outcome.results[i]
        resolution, _ = _resolve(name, old.unit, old.panel)
        outcome.results[i] = old.model_copy(
            update={"name": name, "loinc": resolution.loinc, "name_status": resolution.reason}
        )
    row.name = name


def _read_row(
    line: list[Word],
    table: Table,
    page: int,
    panel: str | None,
    last: _Row | None,
    context: PageContext,
    outcome: PageOutcome,
) -> tuple[str | None, _Row | None, bool]:
    """Read one line under a header: the panel in force after it, the row it read, and whether the
    line was a row of this table at all (else it is read as free text)."""
    line = [w for w in line if not is_leader(w)]
    if not line:
        return panel, last, True
    text = line_text(line)
    if is_note(text):
        return panel, None, True
    by_col: dict[int, list[Word]] = {}
    for w in line:
        col = table.column_of(w)
        if col is not None:
            by_col.setdefault(col, []).append(w)
    roles = {i: c.role for i, c in enumerate(table.columns)}
    name_cols = [i for i, r in roles.items() if r is Role.NAME]
    for cell in cells(line):
        cols = {table.column_of(w) for w in cell}
        if len(cols) < 2:
            continue
        first = table.column_of(cell[0])
        if first in name_cols and not any(
            c is not None and roles[c] in (Role.RESULT, Role.DATE) for c in cols
        ):
            # A long name reaching under the units or range header ("Sedimentation Rate (ESR)").
            for w in cell[1:]:
                col = table.column_of(w)
                if col is not None and col != first:
                    by_col[col].remove(w)
                    if not by_col[col]:
                        del by_col[col]
                    by_col[first].append(w)
            by_col[first].sort(key=lambda w: w.x0)
            continue
        return panel, None, False  # one phrase running across a column edge: prose, not a row
    name_words = by_col.get(name_cols[0], []) if name_cols else []
    if not name_words:
        return panel, None, False
    implicit_tail: Tail | None = None
    if table.implicit:
        # No header named the columns: the name is the first phrase, units and ranges by shape.
        name_cells = cells(name_words)
        name_words = name_cells[0]
        implicit_tail = read_tail([w for c in name_cells[1:] for w in c], decimal_comma=context.decimal_comma)
    name = clean_name(name_words)
    if not name:
        return panel, None, False
    height = max(w.height for w in line)
    bottom = max(w.y1 for w in line)
    name_only = (
        set(by_col) == {name_cols[0]}
        if implicit_tail is None
        else len(by_col) == 1 and not implicit_tail.unit_words
    )
    if name_only:
        # A name alone: the second line of the name above, or a panel heading / a name's first line.
        if (
            last is not None
            and last.full
            and last.near(line)
            and _joins(
                last.name,
                name,
                first_has_values=True,
                unit=outcome.results[last.results[0]].unit if last.results else None,
            )
        ):
            _rename(outcome, last, f"{last.name} {name}")
            return panel, None, True
        heading = name if is_heading(name) else None
        # Not a heading ("Glucose ..... 88 mg/dL" under another page's columns): read it as free text.
        return heading or panel, _Row(name, line[0].x0, bottom, height, panel=panel), heading is not None
    pending = last if last is not None and not last.full and last.near(line) else None
    if pending is not None and _joins(pending.name, name, second_has_values=True):
        name = f"{pending.name} {name}"
        panel = pending.panel  # the line above was the name's start, not a heading
    unit_words = _cell(by_col, roles, Role.UNIT)
    ref_words = _cell(by_col, roles, Role.REFERENCE)
    flag_words = _cell(by_col, roles, Role.FLAG)
    unit_text = line_text(unit_words) if unit_words else None
    if unit_text is not None and unit_text.strip().lower() in _NO_UNIT_WORDS:
        unit_text = None  # INR "ratio": no printed unit, so INR gets its annotation {INR} (_resolve)
    if unit_text is not None and UNREADABLE in unit_text:
        # "×10■/µL": a unit with a character that is not readable text is no unit we can name.
        outcome.warnings.append(f"page {page}: unit {unit_text!r} for {name!r} not readable")
        unit_text = None
    unit_flag = None
    if unit_text and (m := _ARROW_ON_UNIT_RE.match(unit_text)):
        unit_flag = parse_flag(m.group(1) or m.group(4))  # "↓mg/dL": the arrow printed on the unit
        unit_text = m.group(2) or m.group(3)
    elif unit_text and (beside := _flag_beside_unit(unit_text)) is not None:
        unit_flag, unit_text = beside  # "112   H mg/dL": the flag letter between result and unit
    ref_text = line_text(ref_words) if ref_words else None
    if implicit_tail is not None:
        unit_text = unit_text or implicit_tail.unit_text
        ref_text = ref_text or implicit_tail.reference_text
    unit = normalize_unit(unit_text)
    ref = parse_range(ref_text, decimal_comma=context.decimal_comma) if ref_text else None
    column_flag = None
    if flag_words:
        column_flag = parse_flag(line_text(flag_words))
        if column_flag is None:
            outcome.warnings.append(
                f"page {page}: flag {line_text(flag_words)!r} for {name!r} not recognised"
            )
    else:
        # A note or comment column that holds only a flag word ("Low", "Slightly High").
        for i, role in roles.items():
            if role is Role.OTHER and by_col.get(i) and column_flag is None:
                column_flag = parse_flag(line_text(by_col[i]))
    resolution, unit = _resolve(name, unit, panel)
    value_cols = [i for i, r in roles.items() if r in (Role.RESULT, Role.DATE)]
    row = _Row(name, line[0].x0, bottom, height, full=True)
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
        elif len(value_words) > 1 and parse_flag(value_words[0].text) is not None:
            flag = flag or parse_flag(value_words[0].text)  # an arrow before the value: "↑ 5.9"
            value_words = value_words[1:]
        value_text = line_text(value_words)
        parsed = _cell_value(value_text, context.decimal_comma)
        cell_unit = None
        if parsed is None and (split := _value_with_unit(value_words, context.decimal_comma)) is not None:
            value_words, cell_unit, parsed = split  # "11.2 g/dL", "6.6%": no units column
            value_text = line_text(value_words)
        if (
            parsed is None
            and (pair := _two_results(value_words, ref_text, context.decimal_comma)) is not None
        ):
            # "50,9 % 3.548 /µL" under "40,0 a 80,0 % | 1.800 a 7.800 /µL": a percent and a count.
            for part_words, part_unit, part_value, part_ref in pair:
                part_resolution, part_unit_code = _resolve(name, normalize_unit(part_unit), panel)
                if part_resolution.entry is None:
                    # "Leucócitos 100 %": the differential's total, no term for this test in this unit
                    outcome.unparsed.append(_unparsed(page, line, "no term for this test in this unit"))
                    continue
                part_range = parse_range(part_ref, decimal_comma=context.decimal_comma) if part_ref else None
                row.results.append(len(outcome.results))
                outcome.results.append(
                    _result(
                        name,
                        part_resolution,
                        part_value,
                        part_words,
                        part_unit_code,
                        part_ref,
                        part_range,
                        flag=flag,
                        on=on,
                        at=at,
                        panel=panel,
                        page=page,
                    )
                )
            continue
        if parsed is None:
            if _known(resolution) or _GARBLED_NUMBER_RE.match(value_text):
                outcome.unparsed.append(_unparsed(page, line, "result not readable"))
            continue
        value, glued = parsed
        flag = flag or glued or unit_flag
        if cell_unit is not None and unit is None:
            unit = normalize_unit(cell_unit)
            resolution, unit = _resolve(name, unit, panel)
        if not _known(resolution) and (_not_a_test(name) or _body_unit(unit or cell_unit)):
            continue  # vital signs, measurements, demographics in the same table (BMI, heart rate)
        row.results.append(len(outcome.results))
        outcome.results.append(
            _result(
                name,
                resolution,
                value,
                value_words,
                unit,
                ref_text,
                ref,
                flag=flag,
                on=on,
                at=at,
                panel=panel,
                page=page,
            )
        )
    if not any_value and resolution.entry is not None:
        outcome.unparsed.append(_unparsed(page, line, "no result printed"))
    return panel, row, True


def _result(
    name: str,
    resolution: Resolution,
    value: ParsedValue,
    words: list[Word],
    unit: str | None,
    ref_text: str | None,
    ref: ParsedRange | None,
    *,
    flag: LabFlag | None,
    on: date | None,
    at: time | None,
    panel: str | None,
    page: int,
) -> ExtractedLab:
    """One result read from a table row: the value printed by ``words``, grounded by their box."""
    return ExtractedLab(
        name=name,
        loinc=resolution.loinc,
        name_status=resolution.reason,
        value=value.value,
        value_text=line_text(words),
        unit=unit,
        comparator=value.comparator,
        reference_low=ref.low if ref else None,
        reference_high=ref.high if ref else None,
        reference_text=ref_text,
        flag=flag,
        effective=on,
        effective_time=at if on is not None else None,
        panel=panel,
        page=page,
        bbox=union_bbox(words),
    )


def _two_results(
    words: list[Word], ref_text: str | None, decimal_comma: bool | None
) -> list[tuple[list[Word], str, ParsedValue, str | None]] | None:
    """A result cell holding two results, each a number and its unit ("50,9 % 3.548 /µL"), the
    two units different: each result's words (the number), unit, value and reference (the range
    cell cut at its bar, "40,0 a 80,0 % | 1.800 a 7.800 /µL"; no range when it is not cut in two).
    ``None`` for any other cell."""
    found: list[tuple[list[Word], str, ParsedValue]] = []
    start = 0
    for end in range(1, len(words) + 1):
        if end - start < 2:
            continue
        number, unit = words[start : start + 1], "".join(w.text for w in words[start + 1 : end])
        value = parse_value(number[0].text, decimal_comma=decimal_comma)
        if value is not None and value.numeric and is_unit(unit) and is_known_unit(unit):
            found.append((number, unit, value))
            start = end
    if start != len(words) or len(found) != 2 or normalize_unit(found[0][1]) == normalize_unit(found[1][1]):
        return None
    refs: list[str | None] = [None, None]
    if ref_text is not None:
        cut = [p.strip() for p in ref_text.split("|")]
        if len(cut) == 2 and all(cut):
            refs = [cut[0], cut[1]]
    return [(w, u, v, r) for (w, u, v), r in zip(found, refs, strict=True)]


def _flag_beside_unit(text: str) -> tuple[LabFlag, str] | None:
    """A units cell holding a flag word and a unit ("H mg/dL", "mg/dL L"): the flag and the unit.

    Only when the flag stands alone as a word, is a known flag token (``values.parse_flag``), and
    the rest is a known unit; anything else stays the units cell as printed.
    """
    parts = text.split()
    if len(parts) < 2:
        return None
    for flag_text, rest in ((parts[0], parts[1:]), (parts[-1], parts[:-1])):
        flag = parse_flag(flag_text)
        unit = " ".join(rest)
        if flag is not None and flag_text.isalpha() and is_unit(unit) and is_known_unit(unit):
            return flag, unit
    return None


def _cell_value(text: str, decimal_comma: bool | None) -> tuple[ParsedValue, LabFlag | None] | None:
    """A result cell's value, and the flag glued to it ("5.9↑"), if any."""
    parsed = parse_value(text, decimal_comma=decimal_comma)
    if parsed is not None:
        return parsed, None
    glued = split_glued_flag(text.strip())
    if glued is None:
        return None
    parsed = parse_value(glued[0], decimal_comma=decimal_comma)
    return (parsed, glued[1]) if parsed is not None and parsed.numeric else None


# A result cell that was a number ("##.#", "1O.5", "4,#"): a result row, whatever its name.
_GARBLED_NUMBER_RE: Final = re.compile(r"^[<>]?(?=.*[\d#])[\d#Oo]+(?:[.,][\d#Oo]+)?$")
_ARROW_ON_UNIT_RE: Final = re.compile(r"^(?:(↑↑|↓↓|↑|↓)\s*(\S.*)|(.*?\S)\s*(↑↑|↓↓|↑|↓))$")


def _value_with_unit(
    words: list[Word], decimal_comma: bool | None
) -> tuple[list[Word], str, tuple[ParsedValue, LabFlag | None]] | None:
    """A result cell that prints its unit too ("11.2 g/dL", "7.5 x10³/µL", "6.6%"): the value's
    words, the unit, the value. A unit glued to the number keeps the whole word as the value's."""
    for k in range(1, len(words)):
        parsed = _cell_value(line_text(words[:k]), decimal_comma)
        rest = "".join(w.text for w in words[k:])
        if parsed is not None and parsed[0].numeric and is_unit(rest):
            return words[:k], rest, parsed
    glued = split_glued_unit(words[0].text)
    if glued is not None:
        parsed = _cell_value(glued[0], decimal_comma)
        if parsed is not None and parsed[0].numeric:
            unit = glued[1] + "".join(w.text for w in words[1:])
            if len(words) == 1 or is_unit(unit):
                return words[:1] if len(words) == 1 else words, unit, parsed
    return None


def _not_a_test(name: str, words: frozenset[str] = _NOT_TESTS) -> bool:
    """A vital sign or a demographic label (BMI, heart rate, DOB), not a lab test."""
    text = " ".join(name.lower().replace(",", " ").replace(":", " ").split())
    return bool(set(text.split()) & words) or any(" " in w and w in text for w in words)


def _body_unit(unit: str | None) -> bool:
    """A unit of a body measurement ("35 mm" of skin, "91 kg", "148/92 mmHg"), not of a lab test."""
    return unit is not None and unit.strip().lower() in _BODY_UNITS


def _unparsed(page: int, words: list[Word], reason: str) -> UnparsedRow:
    return UnparsedRow(page=page, text=line_text(words), reason=reason, bbox=_bbox(words))


def _bbox(words: list[Word]) -> BBox:
    return union_bbox(words)


def _cell(by_col: dict[int, list[Word]], roles: dict[int, Role], role: Role) -> list[Word]:
    for i, r in roles.items():
        if r is role:
            return by_col.get(i, [])
    return []


@dataclass
class _Heading:
    text: str
    x0: float
    y: float


def _read_free(lines: list[list[Word]], page: int, context: PageContext, outcome: PageOutcome) -> None:
    """Lines outside any header's table, each read from its own words (``inline.segments``)."""
    headings: list[_Heading] = []
    last_rows: list[_Row] = []  # the previous line's segments (results or names alone)
    read: list[tuple[int, Segment]] = []  # results written here, with the segment each came from
    for line in lines:
        if is_note(line_text(line)):
            last_rows = []
            continue
        parts = segments(line, decimal_comma=context.decimal_comma)
        if not parts:
            last_rows = []
            continue
        height = max(w.height for w in line)
        bottom = max(w.y1 for w in line)
        rows: list[_Row] = []
        for i, part in enumerate(parts):
            if part.value is None:
                _list_if_unread(part, parts[i + 1] if i + 1 < len(parts) else None, line, page, outcome)
        if all(p.value is None for p in parts):
            for part in parts:
                rows.append(_name_only(part, line, page, headings, last_rows, outcome, height, bottom))
            last_rows = rows
            continue
        previous: Segment | None = None
        for part in parts:
            if part.value is None:
                rows.append(_Row(part.name, part.name_words[0].x0, bottom, height))
                previous = part
                continue
            row = _free_result(part, previous, page, headings, last_rows, context, outcome, height, bottom)
            if row is not None:
                rows.append(row)
                if row.results:
                    read.append((row.results[0], part))
            previous = part
        last_rows = rows
    _drop_ranges_in_blank_cells(read, page, outcome)
    if headings:
        context.panel = headings[-1].text  # the heading a continuation page's first rows stand under


def _drop_ranges_in_blank_cells(read: list[tuple[int, Segment]], page: int, outcome: PageOutcome) -> None:
    """A bound ("<5.0") standing where the other rows print their range, in a row with no range
    of its own, is that row's range under a blank value, not a censored value: not read, listed.

    Decided by alignment: its left edge meets the ranges of two or more other rows and the
    values of none.
    """
    ranges = [part.tail.reference_words[0].x0 for _, part in read if part.tail.reference_words]
    drop: set[int] = set()
    for index, part in read:
        lab = outcome.results[index]
        if lab.comparator is None or part.tail.reference_words:
            continue
        x0, x1 = part.value_words[0].x0, part.value_words[-1].x1
        at_ranges = sum(1 for r in ranges if abs(r - x0) < 2.0)
        at_values = sum(
            1
            for i, other in read
            if i != index
            and (abs(other.value_words[0].x0 - x0) < 2.0 or abs(other.value_words[-1].x1 - x1) < 2.0)
        )
        if at_ranges >= 2 and at_values == 0:
            drop.add(index)
            outcome.unparsed.append(_unparsed(page, part.words, "no result printed"))
    if drop:
        outcome.results[:] = [r for i, r in enumerate(outcome.results) if i not in drop]


def _list_if_unread(
    part: Segment, after: Segment | None, line: list[Word], page: int, outcome: PageOutcome
) -> None:
    """A known test's name without a value, where the line goes on as a result row would: "Potassium:
    hemolyzed" (a label and words that are no value), "Platelets ..... 10*3/uL (150-400)" (units and
    range, no value): listed as unparsed with the row's box."""
    if not _known(resolve(part.name)):
        return
    end = part.words[-1].x1
    stop = after.words[0].x0 if after is not None else float("inf")
    rest = [w for w in line if end < w.x0 and w.x1 <= stop and not is_leader(w)]
    if part.colon and after is not None:
        outcome.unparsed.append(_unparsed(page, [*part.words, *rest, *after.words], "result not readable"))
        return
    tail = read_tail(rest, decimal_comma=False)
    if rest and (tail.unit_words or tail.reference_words) and not tail.other:
        outcome.unparsed.append(_unparsed(page, [*part.words, *rest], "no result printed"))


def _name_only(
    part: Segment,
    line: list[Word],
    page: int,
    headings: list[_Heading],
    last_rows: list[_Row],
    outcome: PageOutcome,
    height: float,
    bottom: float,
) -> _Row:
    """A segment without a value: a wrapped name's second line, a heading, or a name's first line."""
    x0 = part.name_words[0].x0
    line_part = [w for w in line if x0 - 0.1 <= w.x0 and w.x1 <= part.words[-1].x1 + 0.1]
    for above in last_rows:
        unit = outcome.results[above.results[0]].unit if above.results else None
        if (
            above.full
            and above.near(line_part)
            and _joins(above.name, part.name, first_has_values=True, unit=unit)
        ):
            _rename(outcome, above, f"{above.name} {part.name}")
            return _Row(part.name, x0, bottom, height)
    if is_heading(part.name) and not part.colon and not part.name[:1].islower():
        headings.append(_Heading(part.name.rstrip(":").strip(), x0, part.name_words[0].y0))
    return _Row(part.name, x0, bottom, height)


def _panel_at(headings: list[_Heading], x0: float, y: float, fallback: str | None) -> str | None:
    """The heading above a row printed at ``x0``: of the headings left of it, the nearest column."""
    above = [h for h in headings if h.y < y and h.x0 <= x0 + 12]
    if not above:
        return fallback
    lane = max(h.x0 for h in above)
    return max((h for h in above if h.x0 >= lane - 12), key=lambda h: h.y).text


def _free_result(
    part: Segment,
    previous: Segment | None,
    page: int,
    headings: list[_Heading],
    last_rows: list[_Row],
    context: PageContext,
    outcome: PageOutcome,
    height: float,
    bottom: float,
) -> _Row | None:
    """A segment with a value: a result when its name and what follows make one (module doc)."""
    assert part.value is not None
    x0 = part.name_words[0].x0
    name = part.name
    pending = next(
        (
            r
            for r in last_rows
            if not r.full and r.near([part.name_words[0]]) and _joins(r.name, name, second_has_values=True)
        ),
        None,
    )
    if pending is not None:
        name = f"{pending.name} {name}"
        # the line above was this name's first line, not a heading
        headings[:] = [
            h for h in headings if not (h.text == pending.name.rstrip(":").strip() and h.x0 == pending.x0)
        ]
        x0 = pending.x0
    if not name or is_note(name):
        return None
    tail = part.tail
    unit_text = tail.unit_text
    unit = normalize_unit(unit_text)
    panel = _panel_at(headings, x0, part.name_words[0].y0, context.panel if not headings else None)
    resolution, unit = _resolve(name, unit, panel)
    if not _known(resolution):
        if not _unknown_name_is_a_test(name, part, previous, tail):
            return None
    elif _is_sentence(tail):
        return None  # "Hemoglobin A1c 6.5 % or higher indicates diabetes": a comment, not a row
    elif tail.numbers:
        outcome.unparsed.append(_unparsed(page, part.words, "two numbers where one result is printed"))
        return _Row(name, x0, bottom, height, full=True)
    low, high = parsed_reference(tail, decimal_comma=context.decimal_comma)
    row = _Row(name, x0, bottom, height, results=[len(outcome.results)], full=True)
    outcome.results.append(
        ExtractedLab(
            name=name,
            loinc=resolution.loinc,
            name_status=resolution.reason,
            value=part.value.value,
            value_text=part.value_text,
            unit=unit,
            comparator=part.value.comparator,
            reference_low=low,
            reference_high=high,
            reference_text=tail.reference_text,
            flag=part.flag or tail.flag,
            effective=context.effective,
            effective_time=context.effective_time if context.effective is not None else None,
            panel=panel,
            page=page,
            bbox=union_bbox(part.value_words),
        )
    )
    return row


def _is_sentence(tail: Tail) -> bool:
    """Words after a value that read as a sentence, not a method or a comment word."""
    words = [w.text.lower().strip(".,;:()") for w in tail.other]
    return len(words) >= 2 and (bool(set(words) & _PROSE_WORDS) or tail.other[-1].text.endswith("."))


def _unknown_name_is_a_test(name: str, part: Segment, previous: Segment | None, tail: Tail) -> bool:
    """A name we do not know reads as a test only with a number, a unit, and nothing else beside."""
    assert part.value is not None
    words = name.lower().replace(",", " ").replace(":", " ").split()
    return (
        part.value.numeric
        and tail.unit_text is not None
        and is_unit(tail.unit_text)
        and not _body_unit(tail.unit_text)
        and not tail.numbers
        and not tail.other
        and name[:1].isalpha()
        and len(words) <= _MAX_UNKNOWN_NAME_WORDS
        and not (set(words) & _PROSE_WORDS)
        and not _not_a_test(name, _NOT_FREE_NAMES)
        and not (previous is not None and previous.value is None)  # "Glucose   fasting  96": unclear
    )


def _bold_flags(words: list[Word], outcome: PageOutcome) -> None:
    """Bold values on a page that prints other values in a regular face: the lab's abnormal mark.

    The direction comes from the printed range (above it H, below it L); without one, A.
    """
    if not any(w.bold for w in words):
        return
    by_top: dict[int, list[Word]] = {}
    for w in words:
        by_top.setdefault(int(w.y0), []).append(w)
    bold: list[bool] = []
    for lab in outcome.results:
        x0, y0, x1, y1 = lab.bbox
        inside = [
            w
            for key in range(int(y0) - 1, int(y0) + 2)
            for w in by_top.get(key, ())
            if w.x0 >= x0 - 0.01 and w.x1 <= x1 + 0.01 and w.y0 >= y0 - 0.01 and w.y1 <= y1 + 0.01
        ]
        bold.append(bool(inside) and all(w.bold for w in inside))
    if all(bold) or not any(bold):
        return
    for i, lab in enumerate(outcome.results):
        if not bold[i] or lab.flag is not None:
            continue
        flag = LabFlag.ABNORMAL
        if isinstance(lab.value, float) and lab.comparator is None:
            if lab.reference_high is not None and lab.value > lab.reference_high:
                flag = LabFlag.HIGH
            elif lab.reference_low is not None and lab.value < lab.reference_low:
                flag = LabFlag.LOW
        outcome.results[i] = lab.model_copy(update={"flag": flag})
