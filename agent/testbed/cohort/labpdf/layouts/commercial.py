"""Layout (b): a commercial reference lab. Letter size, a two-column first page (patient |
specimen), then Test (dotted leaders) | Result | Units | Reference Interval | Flag in Courier."""

from __future__ import annotations

from typing import Final

import pymupdf

from agent.testbed.cohort.labpdf.canvas import Sheet, finish, new_document
from agent.testbed.cohort.labpdf.layouts.common import fmt_date, fmt_datetime, footnotes, number_pages
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["render_commercial"]

_LETTER: Final = (612.0, 792.0)
_LEADER_END: Final = 250.0
_COLUMNS: Final = (
    ("TESTS", 40.0),
    ("RESULT", 258.0),
    ("UNITS", 330.0),
    ("REFERENCE INTERVAL", 420.0),
    ("FLAG", 540.0),
)
_ROW: Final = 12.0
_SIZE: Final = 8.5


def _header(sheet: Sheet) -> None:
    for title, x in _COLUMNS:
        sheet.text(x, sheet.y, title, 8, "cobo")
    sheet.y += 3
    sheet.rule()
    sheet.y += _ROW


def _leader(name: str) -> str:
    """``name`` followed by dots up to the result column."""
    text = name + " "
    while pymupdf.get_text_length(text + ".", fontname="cour", fontsize=_SIZE) < _LEADER_END - _COLUMNS[0][1]:
        text += "."
    return text


def _two_columns(sheet: Sheet, report: LabReport) -> None:
    eu = report.decimal_comma
    left = (
        "PATIENT INFORMATION",
        report.patient_name.upper(),
        f"DOB: {fmt_date(report.birth_date, eu)}",
        f"Sex: {report.sex}",
        f"Patient ID: {report.patient_id}",
    )
    right = (
        "SPECIMEN INFORMATION",
        f"Accession: {report.report_id}",
        f"Collected: {fmt_datetime(report.collected, eu)}",
        f"Reported: {fmt_datetime(report.reported, eu)}",
        "Status: FINAL",
    )
    top = sheet.y
    for x, lines in ((sheet.margin, left), (sheet.width / 2 + 10, right)):
        y = top
        for index, line in enumerate(lines):
            sheet.text(x, y, line, 9 if index else 8, "cobo" if index == 0 else "cour")
            y += 12
    sheet.line(sheet.width / 2, top - 10, sheet.width / 2, top + 52)
    sheet.y = top + 5 * 12 + 8
    sheet.text(sheet.margin, sheet.y, "Tests Ordered: " + "; ".join(p.title() for p in report.panels), 8)
    sheet.y += 18


def render_commercial(report: LabReport) -> bytes:
    """The report as a commercial lab prints it (Letter, Courier, leaders, flag last)."""
    doc = new_document()

    def running_header(sheet: Sheet) -> None:
        sheet.text(
            sheet.margin, sheet.y + 6, f"{report.patient_name.upper()}   ID {report.patient_id}", 8, "cour"
        )
        sheet.text(sheet.width - sheet.margin, sheet.y + 6, report.lab_name, 8, "helv", align_right=True)
        sheet.y += 22
        _header(sheet)

    sheet = Sheet(doc, size=_LETTER, margin=40, on_new_page=running_header)
    sheet.text(sheet.margin, sheet.y + 12, report.lab_name.upper(), 13, "cobo")
    sheet.y += 36
    _two_columns(sheet, report)
    _header(sheet)
    for panel in report.panels:
        sheet.ensure(3 * _ROW)
        sheet.text(sheet.margin, sheet.y, panel.title(), 9, "cobo")
        sheet.y += _ROW
        for result in (r for r in report.results if r.panel == panel):
            sheet.ensure(_ROW)
            name = _leader("  " + result.name)
            flag = {"H": "High", "L": "Low", "A": "Abnormal"}.get(result.flag or "", "")
            cells = (name, result.value_text, result.unit, result.reference_text, flag)
            for (_, x), cell in zip(_COLUMNS, cells, strict=True):
                if cell:
                    sheet.text(x, sheet.y, cell, _SIZE, "cour")
            sheet.y += _ROW
        sheet.y += 6
    notes = footnotes(report)
    if notes:
        sheet.ensure(3 * _ROW)
        sheet.text(sheet.margin, sheet.y, "COMMENTS", 8, "cobo")
        sheet.y += _ROW
        for note in notes:
            sheet.wrap(sheet.margin, note, 8, "cour", sheet.width - 2 * sheet.margin)
    number_pages(sheet, f"Accession {report.report_id}  FINAL REPORT")
    return finish(doc, f"Final report {report.report_id}", report.reported)
