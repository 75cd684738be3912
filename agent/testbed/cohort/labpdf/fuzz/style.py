"""How one fuzzed document prints: every rendering choice, drawn from a seed (pure).

A ``FuzzStyle`` is the whole difference between two fuzzed renderings of the same kind of
truth: arrangement, fonts, sizes, spacing, column order and optional columns, separators,
number, date and unit spellings, flag marks, page breaks and noise. ``families`` names the
choices a reader can get wrong, so that recall can be counted per family.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "Arrangement",
    "Column",
    "DateStyle",
    "FlagStyle",
    "FuzzStyle",
    "Noise",
    "Separator",
    "draw_style",
]


class Arrangement(StrEnum):
    TABLE = "table"  # one table, a row per result
    RUN_IN = "run-in"  # "Glucose 92 mg/dL (70-99)" lines
    SIDE_BY_SIDE = "side-by-side"  # two panels next to each other on a page
    CUMULATIVE = "cumulative"  # a column per collection date


class Column(StrEnum):
    NAME = "name"
    RESULT = "result"
    FLAG = "flag"
    UNIT = "unit"
    RANGE = "range"
    PREVIOUS = "previous"  # a prior result without its date: not a result to write
    METHOD = "method"
    COMMENT = "comment"


class Separator(StrEnum):
    WHITESPACE = "whitespace"
    RULED = "ruled"  # a rule under every row and between columns
    LEADER_DOTS = "leader-dots"  # "Glucose ........ 92"
    COLON = "colon"  # "Glucose:"


class DateStyle(StrEnum):
    US = "us"  # 03/04/2024
    ISO = "iso"  # 2024-03-04
    DOTTED = "dotted"  # 04.03.2024
    TEXT = "text"  # 04-Mar-2024


class FlagStyle(StrEnum):
    LETTERS = "letters"  # H / L
    CRITICAL = "critical"  # H / L, HH / LL far outside the range
    STAR = "star"  # * for any abnormal value
    ARROWS = "arrows"  # up / down arrows
    BOLD = "bold"  # no mark: the value in bold


class Noise(StrEnum):
    ADDRESS = "address"  # lab address, phone, fax, CLIA number
    IDENTIFIERS = "identifiers"  # DOB, accession number, ordering physician
    LOGO_DRAWING = "logo-drawing"
    LOGO_IMAGE = "logo-image"
    SIGNATURE = "signature"  # a drawn squiggle and "electronically signed by"
    COMMENT = "comment"  # a paragraph with numbers in it
    PAGE_NUMBERS = "page-numbers"
    FOOTER = "footer"  # printed-at stamp, confidentiality line


FONTS: Final = (("helv", "hebo"), ("tiro", "tibo"), ("cour", "cobo"))
_OPTIONAL: Final = (Column.FLAG, Column.RANGE, Column.PREVIOUS, Column.METHOD, Column.COMMENT)


@dataclass(frozen=True, slots=True)
class FuzzStyle:
    arrangement: Arrangement
    font: str
    bold_font: str
    size: float  # body text size in points
    line_gap: float  # row pitch as a multiple of ``size``
    columns: tuple[Column, ...]  # print order (tables); NAME first
    separator: Separator
    decimal_comma: bool
    thousands: bool  # counts printed per microlitre with thousands separators ("7,200 /uL")
    date_style: DateStyle
    time_12h: bool  # "7:45 AM" instead of "07:45"
    time_beside: bool  # cumulative: time beside the date, not under it
    flag_style: FlagStyle
    flag_column: bool  # the flag in its own column (else after the value)
    alt_units: bool  # other spellings of the same unit ("mg/dl", "x10E3/uL")
    qualifiers: bool  # qualified names ("PSA, total", "TSH, 3rd generation")
    wrap_names: bool  # long names wrapped over two lines
    spaced_ranges: bool  # "70 - 99" instead of "70-99"
    page_height: float
    repeat_headers: bool  # column headers again on continuation pages
    dates: int  # cumulative: number of date columns
    noise: tuple[Noise, ...]
    unreadable: int  # rows whose value the renderer makes unreadable
    stacked_headers: bool  # two-word column titles on two lines ("Reference" over "Range")
    shaded_rows: bool  # every other row on a grey band
    indent_names: bool  # test names indented under their panel heading

    @property
    def prints_range(self) -> bool:
        """Whether reference ranges are on the page (run-in lines and grids always print them)."""
        return Column.RANGE in self.columns or self.arrangement in (
            Arrangement.RUN_IN,
            Arrangement.CUMULATIVE,
        )

    @property
    def families(self) -> tuple[str, ...]:
        """The choices of this style a reader may fail on, as "kind:value" labels."""
        out = [
            f"arrangement:{self.arrangement}",
            f"font:{self.font}",
            f"separator:{self.separator}",
            f"numbers:{'comma' if self.decimal_comma else 'point'}",
            f"dates:{self.date_style}",
        ]
        optional = sorted(
            c.value for c in self.columns if c in (Column.PREVIOUS, Column.METHOD, Column.COMMENT)
        )
        out += [f"column:{c}" for c in optional]
        if (
            self.arrangement in (Arrangement.TABLE, Arrangement.SIDE_BY_SIDE)
            and self.columns[1] is not Column.RESULT
        ):
            out.append("column-order:result-not-second")
        if self.time_12h:
            out.append("time:12h")
        if self.arrangement is Arrangement.CUMULATIVE:
            out.append(f"cumulative-time:{'beside' if self.time_beside else 'under'}")
        tables = (Arrangement.TABLE, Arrangement.SIDE_BY_SIDE)
        if self.arrangement in tables and self.stacked_headers:
            out.append("header:two-line")
        if self.arrangement in tables and self.shaded_rows:
            out.append("rows:shaded")
        if self.indent_names and self.arrangement is not Arrangement.CUMULATIVE:
            out.append("names:indented")
        if Column.RANGE not in self.columns and self.arrangement in tables:
            out.append("column:no-range")
        return tuple(out)


def draw_style(rng: random.Random) -> FuzzStyle:
    """One style: every choice drawn from ``rng``."""
    arrangement = rng.choice(list(Arrangement))
    font, bold_font = rng.choice(FONTS)
    optional = [c for c in _OPTIONAL if rng.random() < (0.8 if c is Column.RANGE else 0.3)]
    if arrangement is Arrangement.SIDE_BY_SIDE:  # half a page wide: no room for extras
        optional = [c for c in optional if c in (Column.FLAG, Column.RANGE)]
    flag_style = rng.choice(list(FlagStyle))
    if flag_style is FlagStyle.BOLD and Column.RANGE not in optional:
        optional.append(Column.RANGE)  # bold says "abnormal"; the range says which way
    others = [Column.UNIT, *optional]  # every lab prints units; the LOINC code depends on them
    rng.shuffle(others)
    columns = [Column.NAME, *others]
    columns.insert(1 if rng.random() < 0.7 else rng.randint(1, len(columns)), Column.RESULT)
    separator = rng.choice(list(Separator))
    comma = rng.random() < 0.35
    date_style = rng.choice(list(DateStyle))
    if comma and date_style is DateStyle.US:
        date_style = DateStyle.DOTTED
    return FuzzStyle(
        arrangement=arrangement,
        font=font,
        bold_font=bold_font,
        size=rng.choice((7.5, 8.0, 8.5, 9.0, 9.5, 10.0)),
        line_gap=rng.uniform(1.25, 1.9),
        columns=tuple(columns),
        separator=separator,
        decimal_comma=comma,
        thousands=not comma and rng.random() < 0.4,
        date_style=date_style,
        time_12h=not comma and rng.random() < 0.3,
        time_beside=rng.random() < 0.5,
        flag_style=flag_style,
        flag_column=Column.FLAG in columns,
        alt_units=rng.random() < 0.5,
        qualifiers=rng.random() < 0.5,
        wrap_names=rng.random() < 0.4,
        spaced_ranges=rng.random() < 0.4,
        page_height=rng.choice((842.0, 792.0, 600.0, 480.0, 420.0)),
        repeat_headers=rng.random() < 0.6,
        dates=rng.randint(2, 5),
        noise=tuple(n for n in Noise if rng.random() < 0.6),
        unreadable=rng.choice((0, 0, 1, 2)),
        stacked_headers=rng.random() < 0.3,
        shaded_rows=rng.random() < 0.25,
        indent_names=rng.random() < 0.3,
    )
