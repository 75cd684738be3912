"""Layout (a): a hospital report. Header with a boxed patient block, grey panel headers, a table
Test | Result | Flag | Units | Reference Range, footnotes, running header on later pages."""

from __future__ import annotations

from typing import Final

from agent.testbed.cohort.labpdf.canvas import Sheet, finish, new_document
from agent.testbed.cohort.labpdf.layouts.common import fmt_date, fmt_datetime, footnotes, number_pages
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["render_hospital"]

_COLUMNS: Final = (
    ("Test", 45.0),
    ("Result", 250.0),
    ("Flag", 315.0),
    ("Units", 350.0),
    ("Reference Range", 450.0),
)
_ROW: Final = 13.0


def _table_header(sheet: Sheet) -> None:
    sheet.y += 4
    for title, x in _COLUMNS:
        sheet.text(x, sheet.y, title, 8.5, "hebo")
    sheet.y += 4
    sheet.rule(0.8)
    sheet.y += _ROW


def _patient_block(sheet: Sheet, report: LabReport) -> None:
    eu = report.decimal_comma
    top = sheet.y
    sheet.rect(sheet.margin, top, sheet.width - sheet.margin, top + 62)
    left = (
        ("Patient:", report.patient_name),
        ("DOB:", f"{fmt_date(report.birth_date, eu)}   Sex: {report.sex}"),
        ("MRN:", report.patient_id),
    )
    right = (
        ("Report ID:", report.report_id),
        ("Collected:", fmt_datetime(report.collected, eu)),
        ("Reported:", fmt_datetime(report.reported, eu)),
    )
    for column_x, rows in ((sheet.margin + 8, left), (330.0, right)):
        y = top + 16
        for label, value in rows:
            sheet.text(column_x, y, label, 9, "hebo")
            sheet.text(column_x + 62, y, value, 9)
            y += 16
    sheet.y = top + 62 + 18


def render_hospital(report: LabReport) -> bytes:
    """The report as a hospital lab prints it (A4, Helvetica)."""
    doc = new_document()

    def running_header(sheet: Sheet) -> None:
        sheet.text(
            sheet.margin,
            sheet.y + 8,
            f"{report.lab_name} - {report.patient_name} - MRN {report.patient_id}",
            8,
        )
        sheet.y += 14
        sheet.rule()
        _table_header(sheet)

    sheet = Sheet(doc, on_new_page=running_header)
    sheet.text(sheet.margin, sheet.y + 14, report.lab_name, 15, "hebo")
    sheet.text(sheet.width - sheet.margin, sheet.y + 14, "LABORATORY REPORT", 11, "hebo", align_right=True)
    sheet.y += 28
    _patient_block(sheet, report)
    _table_header(sheet)
    for panel in report.panels:
        sheet.ensure(3 * _ROW)
        sheet.rect(sheet.margin, sheet.y - 10, sheet.width - sheet.margin, sheet.y + 4, fill=0.88)
        sheet.text(sheet.margin + 4, sheet.y, panel, 9, "hebo")
        sheet.y += _ROW + 2
        for result in (r for r in report.results if r.panel == panel):
            sheet.ensure(_ROW)
            font = "hebo" if result.flag else "helv"
            cells = (result.name, result.value_text, result.flag or "", result.unit, result.reference_text)
            for (_, x), cell in zip(_COLUMNS, cells, strict=True):
                if cell:
                    sheet.text(x, sheet.y, cell, 9, font if x != _COLUMNS[0][1] else "helv")
            sheet.y += _ROW
        sheet.y += 4
    notes = footnotes(report)
    if notes:
        sheet.y += 8
        sheet.ensure(3 * _ROW)
        sheet.text(sheet.margin, sheet.y, "Notes", 9, "hebo")
        sheet.y += _ROW
        for index, note in enumerate(notes, start=1):
            sheet.wrap(sheet.margin, f"{index}. {note}", 8, "helv", sheet.width - 2 * sheet.margin)
    sheet.y += 8
    sheet.ensure(_ROW)
    sheet.text(
        sheet.margin,
        sheet.y,
        "H = above reference range, L = below, A = abnormal. Electronically verified.",
        7,
    )
    number_pages(sheet, f"{report.report_id}")
    return finish(doc, f"Laboratory report {report.report_id}", report.reported)
