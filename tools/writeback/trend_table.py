"""The longitudinal report's readable text: the trend table and the report body (pure).

``trend_rows`` turns each ``Trend`` into one ``TrendRow`` of display strings (input order, the
order of ``DiagnosticReport.result``); ``report_xhtml`` renders the ``DiagnosticReport.text``
div (header, narrative, imaging comparisons, table) and ``report_plain_text`` the same content
for the text/plain ``presentedForm``. Numbers, units and dates are formatted as the narrative
formats them (``tools.narrative``), so the table and the prose never disagree.

Column choices: *Change* and *% change* are from the baseline (the median of the earliest
results, as the direction rule uses), not from the previous result, so that the table reads
like the direction beside it. *Latest* carries ``H``/``L`` when it lies above/below the
reference range that the direction used. *From PDF* counts the points transcribed from a PDF
report (``document_refs``), which a reader should check against the document.

All text passes ``tools.text_safety.safe_text`` (control, bidi and format characters, and
everything XML 1.0 forbids, are dropped; names are capped) and is escaped before it enters the
div or the text/plain form: analyte names and units come from source systems.
``check_xhtml_div`` checks the FHIR narrative rules (well-formed XHTML ``div``, the txt-1
element subset, no event attributes, txt-2 content).
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict

from tools.narrative import format_day, format_number, unit_display
from tools.text_safety import safe_text
from tools.trends import Trend

__all__ = [
    "COLUMNS",
    "REPORT_HEADER",
    "XHTML_NS",
    "TrendRow",
    "check_xhtml_div",
    "render_table_text",
    "render_table_xhtml",
    "report_plain_text",
    "report_xhtml",
    "trend_rows",
]

XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
REPORT_HEADER: Final = "AI-generated, preliminary - review before use"
COLUMNS: Final = (
    "Analyte",
    "n",
    "First",
    "Baseline",
    "Latest",
    "Latest date",
    "Change",
    "% change",
    "Slope/yr",
    "Reference range",
    "Direction",
    "From PDF",
)
_FLAG_NOTE: Final = (
    "H/L: latest value above/below the reference range. Change and % change are from baseline."
)
# FHIR txt-1: the basic HTML formatting elements only.
# fmt: off
_ALLOWED: Final = frozenset({
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
    "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li",
    "ol", "p", "pre", "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "tt", "ul", "var",
})
# fmt: on
_BASIS_LABEL: Final = {
    "within-range": "stable (moved within range)",
    "no-better-direction": "changed (not judged)",
}


class TrendRow(BaseModel):
    """One series as the table shows it: display strings, in ``COLUMNS`` order."""

    model_config = ConfigDict(frozen=True)

    analyte: str
    n: int
    first_date: str
    baseline: str
    latest: str
    latest_date: str
    change: str
    percent_change: str
    slope_per_year: str
    reference_range: str
    direction: str
    pdf_points: int

    def cells(self) -> tuple[str, ...]:
        from_pdf = f"{self.pdf_points} of {self.n}" if self.pdf_points else "no"
        return (
            self.analyte,
            str(self.n),
            self.first_date,
            self.baseline,
            self.latest,
            self.latest_date,
            self.change,
            self.percent_change,
            self.slope_per_year,
            self.reference_range,
            self.direction,
            from_pdf,
        )


def range_text(low: float | None, high: float | None) -> str:
    """A reference range as a reader writes it (3 significant figures): ``0.6-1.3``, ``>= 60``."""
    if low is not None and high is not None:
        return f"{format_number(low)}-{format_number(high)}"
    if low is not None:
        return f">= {format_number(low)}"
    if high is not None:
        return f"<= {format_number(high)}"
    return "-"


def _row(t: Trend, document_refs: frozenset[str]) -> TrendRow:
    unit, name = unit_display(t.unit), t.display  # made safe by Trend
    v, low, high = t.latest.value, t.reference_low, t.reference_high
    flag = " H" if high is not None and v > high else " L" if low is not None and v < low else ""
    percent = (
        "-" if t.baseline == 0 else format_number(100 * t.change_from_baseline / abs(t.baseline), signed=True)
    )
    return TrendRow(
        analyte=f"{name} ({unit})" if unit else name,
        n=t.n,
        first_date=format_day(t.first.time),
        baseline=format_number(t.baseline),
        latest=format_number(v) + flag,
        latest_date=format_day(t.latest.time),
        change=format_number(t.change_from_baseline, signed=True),
        percent_change=percent if percent == "-" else percent + "%",
        slope_per_year="-" if t.slope_per_year is None else format_number(t.slope_per_year, signed=True),
        reference_range=range_text(low, high),
        direction=_BASIS_LABEL.get(t.basis, t.direction),
        pdf_points=sum(s.reference in document_refs for s in t.sources),
    )


def trend_rows(trends: Iterable[Trend], document_refs: frozenset[str] = frozenset()) -> list[TrendRow]:
    """One row per trend, in the order given."""
    return [_row(t, document_refs) for t in trends]


def _esc(text: str) -> str:
    return html.escape(safe_text(text, multiline=True, limit=None), quote=True)


def render_table_xhtml(rows: Sequence[TrendRow]) -> str:
    """The ``<table>`` element (no namespace declaration: it goes inside the report div)."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r.cells()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_table_text(rows: Sequence[TrendRow]) -> str:
    """The table as fixed-width text columns, one line per row, with a header and a rule."""
    grid = [COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(COLUMNS), rule, *(line(c) for c in grid[1:])]) + "\n"


def _narrative_xhtml(narrative: str) -> str:
    # Blank lines separate blocks; "- " lines become list items, other lines paragraphs.
    parts: list[str] = []
    items: list[str] = []
    for raw in [*narrative.splitlines(), ""]:
        text = raw.strip()
        if text.startswith("- "):
            items.append(f"<li>{_esc(text[2:])}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if text:
            parts.append(f"<p>{_esc(text)}</p>")
    return "".join(parts)


def report_xhtml(
    narrative: str,
    rows: Sequence[TrendRow],
    *,
    imaging_summaries: Sequence[str] = (),
    plot_titles: Sequence[str] = (),
) -> str:
    """The ``DiagnosticReport.text.div``: header, narrative, imaging comparisons, trend table."""
    parts = [f'<div xmlns="{XHTML_NS}">', f"<p><b>{_esc(REPORT_HEADER)}</b></p>", _narrative_xhtml(narrative)]
    if imaging_summaries:
        parts.append("<h3>Imaging comparisons</h3>")
        parts.append("<ul>" + "".join(f"<li>{_esc(s)}</li>" for s in imaging_summaries) + "</ul>")
    parts += ["<h3>Trend table</h3>", render_table_xhtml(rows), f"<p><small>{_esc(_FLAG_NOTE)}</small></p>"]
    if plot_titles:
        parts.append(f"<h3>Trend plots ({len(plot_titles)}, attached as PNG)</h3>")
        parts.append("<ul>" + "".join(f"<li>{_esc(t)}</li>" for t in plot_titles) + "</ul>")
    parts.append("</div>")
    div = "".join(parts)
    check_xhtml_div(div)
    return div


def report_plain_text(
    narrative: str, rows: Sequence[TrendRow], *, imaging_summaries: Sequence[str] = ()
) -> str:
    """The text/plain rendering: header, narrative, imaging comparisons, the table."""
    lines = [REPORT_HEADER, "", safe_text(narrative, multiline=True, limit=None).rstrip("\n")]
    if imaging_summaries:
        lines += ["", "Imaging comparisons:", *(f"- {s}" for s in imaging_summaries)]
    lines += ["", "Trend table:", render_table_text(rows).rstrip("\n"), _FLAG_NOTE]
    return "\n".join(lines) + "\n"


def check_xhtml_div(div: str) -> None:
    """Raise ``ValueError`` unless ``div`` is a FHIR narrative div (well-formed, txt-1, txt-2)."""
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        raise ValueError(f"narrative is not well-formed XHTML: {exc}") from exc
    if root.tag != f"{{{XHTML_NS}}}div":
        raise ValueError("narrative root must be an XHTML div")
    for el in root.iter():
        ns, _, name = el.tag.partition("}")
        if ns != "{" + XHTML_NS or name not in _ALLOWED:
            raise ValueError(f"element {el.tag!r} is not allowed in a FHIR narrative")
        if any(a.lower().startswith("on") for a in el.attrib):
            raise ValueError("event attributes are not allowed in a FHIR narrative")
    if not "".join(root.itertext()).strip():
        raise ValueError("narrative has no text")
