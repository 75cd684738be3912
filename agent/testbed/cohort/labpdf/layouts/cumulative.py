"""Layout (d): a cumulative report: one patient's results over time, one row per test and one
column per collection date, over as many pages as it takes, headers repeated on every page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from agent.testbed.cohort.labpdf.canvas import Sheet, finish, new_document
from agent.testbed.cohort.labpdf.layouts.common import fmt_date, fmt_datetime, number_pages
from agent.testbed.cohort.labpdf.truth import LabReport, LabResultTruth

__all__ = ["MAX_DATES", "cumulative_truth", "render_cumulative"]

MAX_DATES: Final = 6
_ROW: Final = 12.0
_NAME_X: Final = 40.0
_UNIT_X: Final = 170.0
_REF_X: Final = 235.0
_FIRST_DATE_X: Final = 300.0
_DATE_STEP: Final = 47.0


def _ordered(reports: Sequence[LabReport]) -> list[LabReport]:
    if not reports:
        raise ValueError("a cumulative report needs at least one report")
    if len({r.patient_id for r in reports}) != 1:
        raise ValueError("a cumulative report holds one patient's reports; got several patient ids")
    if len(reports) > MAX_DATES:
        raise ValueError(f"at most {MAX_DATES} dates fit across a page; got {len(reports)}")
    ordered = sorted(reports, key=lambda r: r.collected)
    if len({r.collected for r in ordered}) != len(ordered):
        raise ValueError("two reports share a collection time; a cumulative report has one column per time")
    if len({r.decimal_comma for r in ordered}) != 1:
        raise ValueError("reports mix decimal commas and points; a cumulative report is from one lab")
    return ordered


def cumulative_truth(reports: Sequence[LabReport]) -> LabReport:
    """The truth of ``render_cumulative(reports)``: every result, stamped with its collection time."""
    ordered = _ordered(reports)
    first, last = ordered[0], ordered[-1]
    results = tuple(
        result.model_copy(update={"collected": report.collected})
        for report in ordered
        for result in report.results
    )
    return first.model_copy(
        update={
            "report_id": f"CUM-{first.report_id}",
            "collected": first.collected,
            "reported": max(r.reported for r in ordered),
            "lab_name": last.lab_name,
            "results": results,
            "notes": tuple(dict.fromkeys(n for r in ordered for n in r.notes)),
        }
    )


def _rows(ordered: Sequence[LabReport]) -> list[tuple[str, str, list[LabResultTruth | None]]]:
    """(panel, test name, the result per date) in first-seen order."""
    keys: dict[tuple[str, str], list[LabResultTruth | None]] = {}
    for column, report in enumerate(ordered):
        for result in report.results:
            cells = keys.setdefault((result.panel, result.name), [None] * len(ordered))
            cells[column] = result
    panels = list(dict.fromkeys(panel for panel, _ in keys))
    return [(panel, name, cells) for panel in panels for (p, name), cells in keys.items() if p == panel]


def render_cumulative(reports: Sequence[LabReport]) -> bytes:
    """One patient's reports side by side by collection date (A4, Helvetica)."""
    ordered = _ordered(reports)
    truth = cumulative_truth(ordered)
    eu = truth.decimal_comma
    doc = new_document()

    def header(sheet: Sheet) -> None:
        sheet.text(sheet.margin, sheet.y + 10, f"CUMULATIVE REPORT - {truth.lab_name}", 11, "hebo")
        sheet.y += 24
        sheet.text(
            sheet.margin,
            sheet.y,
            f"{truth.patient_name}   DOB {fmt_date(truth.birth_date, eu)}   Sex {truth.sex}"
            f"   MRN {truth.patient_id}",
            8.5,
        )
        sheet.y += 16
        sheet.text(_NAME_X, sheet.y, "Test", 8, "hebo")
        sheet.text(_UNIT_X, sheet.y, "Units", 8, "hebo")
        sheet.text(_REF_X, sheet.y, "Ref. range", 8, "hebo")
        for column, report in enumerate(ordered):
            x = _FIRST_DATE_X + column * _DATE_STEP
            stamp = fmt_datetime(report.collected, eu).split(" ")
            sheet.text(x, sheet.y - 9, stamp[0], 7, "hebo")
            sheet.text(x, sheet.y, stamp[1], 7, "hebo")
        sheet.y += 4
        sheet.rule(0.8)
        sheet.y += _ROW

    sheet = Sheet(doc, on_new_page=header)
    header(sheet)
    current_panel = ""
    for panel, name, cells in _rows(ordered):
        if panel != current_panel:
            sheet.ensure(2 * _ROW)
            sheet.text(_NAME_X, sheet.y, panel, 8, "hebo")
            sheet.y += _ROW
            current_panel = panel
        sheet.ensure(_ROW)
        template = next(c for c in cells if c is not None)
        sheet.text(_NAME_X + 6, sheet.y, name, 8)
        sheet.text(_UNIT_X, sheet.y, template.unit, 7.5)
        sheet.text(_REF_X, sheet.y, template.reference_text, 7.5)
        for column, cell in enumerate(cells):
            if cell is not None:
                value = f"{cell.value_text} {cell.flag}" if cell.flag else cell.value_text
                sheet.text(
                    _FIRST_DATE_X + column * _DATE_STEP, sheet.y, value, 8, "hebo" if cell.flag else "helv"
                )
        sheet.y += _ROW
    sheet.y += 6
    for report in ordered:
        for result in report.results:
            if result.note:
                sheet.wrap(
                    _NAME_X,
                    f"{result.name} ({fmt_date(report.collected.date(), eu)}): {result.note}",
                    7.5,
                    "helv",
                    sheet.width - 2 * sheet.margin,
                )
    for note in truth.notes:
        sheet.wrap(_NAME_X, note, 7.5, "helv", sheet.width - 2 * sheet.margin)
    number_pages(sheet, f"Cumulative {truth.report_id}  Printed {fmt_datetime(truth.reported, eu)}")
    return finish(doc, f"Cumulative report {truth.patient_id}", truth.reported)
