"""What several layouts print the same way: dates, page numbers, footnotes."""

from __future__ import annotations

from datetime import date, datetime

from agent.testbed.cohort.labpdf.canvas import Sheet
from agent.testbed.cohort.labpdf.truth import LabReport

__all__ = ["fmt_date", "fmt_datetime", "footnotes", "number_pages"]


def fmt_date(day: date, european: bool) -> str:
    return day.strftime("%d.%m.%Y") if european else day.strftime("%m/%d/%Y")


def fmt_datetime(moment: datetime, european: bool) -> str:
    return f"{fmt_date(moment.date(), european)} {moment.strftime('%H:%M')}"


def footnotes(report: LabReport) -> list[str]:
    """One line per result footnote ("Vitamin B12: ...") then the report's comments."""
    lines = [f"{r.name}: {r.note}" for r in report.results if r.note]
    return lines + list(report.notes)


def number_pages(sheet: Sheet, label: str, size: float = 7.0) -> None:
    """ "<label>  Page i of n" at the foot of every page (after all pages exist)."""
    total = sheet.doc.page_count
    for index in range(total):
        page = sheet.doc[index]
        page.insert_text(
            (sheet.margin, sheet.height - sheet.margin / 2),
            f"{label}    Page {index + 1} of {total}",
            fontname="helv",
            fontsize=size,
        )
