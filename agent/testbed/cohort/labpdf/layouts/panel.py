"""Layout (c): a one-page compact panel (A5 landscape, small Times): Test | Result Flag |
Reference | Units, the flag printed next to the value ("212 H")."""

from __future__ import annotations

from typing import Final

from agent.testbed.cohort.labpdf.canvas import Sheet, finish, new_document
from agent.testbed.cohort.labpdf.layouts.common import fmt_date, fmt_datetime, footnotes
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["render_panel"]

_A5_LANDSCAPE: Final = (595.0, 420.0)
_COLUMNS: Final = (("Analyte", 30.0), ("Result", 215.0), ("Reference", 300.0), ("Units", 420.0))
_ROW: Final = 10.0


def render_panel(report: LabReport) -> bytes:
    """The report on one compact page; raises ``ValueError`` when it does not fit one page."""
    doc = new_document()
    sheet = Sheet(doc, size=_A5_LANDSCAPE, margin=30)
    eu = report.decimal_comma
    sheet.text(sheet.margin, sheet.y, report.lab_name, 11, "tibo")
    sheet.text(sheet.width - sheet.margin, sheet.y, " / ".join(report.panels), 9, "tibo", align_right=True)
    sheet.y += 14
    sheet.text(
        sheet.margin,
        sheet.y,
        f"{report.patient_name}  |  DOB {fmt_date(report.birth_date, eu)}  |  {report.sex}"
        f"  |  ID {report.patient_id}"
        f"  |  Coll. {fmt_datetime(report.collected, eu)}  |  Rep. {fmt_datetime(report.reported, eu)}"
        f"  |  #{report.report_id}",
        7,
        "tiro",
    )
    sheet.y += 6
    sheet.rule()
    sheet.y += 10
    for title, x in _COLUMNS:
        sheet.text(x, sheet.y, title, 8, "tibo")
    sheet.y += _ROW
    notes = footnotes(report)
    needed = sheet.y + _ROW * (len(report.results) + len(notes) + 2 * len(report.panels))
    if needed > sheet.bottom:
        raise ValueError(
            f"report {report.report_id}: {len(report.results)} results do not fit one compact page; "
            "use render_hospital or render_commercial"
        )
    multi = len(report.panels) > 1
    for panel in report.panels:
        if multi:
            sheet.text(sheet.margin, sheet.y, panel, 7.5, "tibo")
            sheet.y += _ROW
        for result in (r for r in report.results if r.panel == panel):
            value = f"{result.value_text} {result.flag}" if result.flag else result.value_text
            for (_, x), cell in zip(
                _COLUMNS, (result.name, value, result.reference_text, result.unit), strict=True
            ):
                if cell:
                    sheet.text(x, sheet.y, cell, 8, "tibo" if result.flag and x == _COLUMNS[1][1] else "tiro")
            sheet.y += _ROW
    sheet.y += 4
    for note in notes:
        sheet.wrap(sheet.margin, f"* {note}", 7, "tiit", sheet.width - 2 * sheet.margin)
    if doc.page_count != 1:  # pragma: no cover - guarded by the fit check above
        raise AssertionError("compact panel spilled over one page")
    return finish(doc, f"{' / '.join(report.panels)} {report.report_id}", report.reported)
