"""Lab tools: an analyte's series and trend, and reading one lab-report PDF (never writing it)."""

from __future__ import annotations

import asyncio
from typing import Final

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import Field

from tools.documents.attachments import fetch_pdfs
from tools.labs.analytes import ANALYTES, LOINC_SYSTEM, analyte_for_coding
from tools.labs.inputs import trend_inputs
from tools.labs.loinc_catalog import resolve
from tools.labs.pdf.reader import extract_labs
from tools.labs.series import LabPoint, LabSeries, SeriesSet, build_series
from tools.narrative import format_number, unit_display
from tools.registry.model import Citation, ToolContext, ToolFact, ToolOutput
from tools.registry.registry import PatientScoped, Tool
from tools.trends import compute_trend

__all__ = ["LAB_TREND", "READ_LAB_REPORT", "find_series"]

MAX_POINT_FACTS: Final = 100


class TrendInput(PatientScoped):
    analyte: str = Field(
        min_length=1,
        max_length=100,
        description="The test: a name as printed ('HbA1c', 'potassium'), or a LOINC code ('4548-4').",
    )


class TrendOutput(ToolOutput):
    analyte: str | None = None
    code: str | None = None
    unit: str | None = None
    direction: str | None = None
    points: int = 0


def find_series(series: SeriesSet, wanted: str) -> LabSeries | None:
    """The series a name or code means: a code, an analyte key or name, a printed synonym
    (the lab-PDF catalog), or display words."""
    text = wanted.strip()
    low = text.lower()
    with_points = [s for s in series.series if s.points]
    for s in with_points:
        if s.code.lower() == low or (s.analyte_key or "").lower() == low or s.display.lower() == low:
            return s
    for analyte in ANALYTES:
        if low in (analyte.key, analyte.display.lower()):
            return series.by_analyte(analyte.key)
    entry = resolve(text).entry
    if entry is not None:
        known = analyte_for_coding(LOINC_SYSTEM, entry.loinc)
        found = series.by_analyte(known.key) if known else series.by_code(entry.loinc)
        if found is not None and found.points:
            return found
    words = low.split()
    return next((s for s in with_points if all(w in s.display.lower() for w in words)), None)


def _point_citation(point: LabPoint, unit: str | None) -> Citation:
    return Citation(reference=point.reference, value=point.value, unit=unit, time=point.time.isoformat())


def _value(value: float, unit: str | None) -> str:
    return format_number(value) + (f" {unit_display(unit)}" if unit else "")


async def lab_trend(ctx: ToolContext, args: TrendInput) -> TrendOutput:
    record = await ctx.record()
    series_set = build_series(trend_inputs(record.of_type("Observation")), now=ctx.now)
    series = find_series(series_set, args.analyte)
    if series is None:
        known = ", ".join(sorted({s.display for s in series_set.series if s.points})[:20])
        return TrendOutput(
            note=f"no lab series matches that name or code; series in the record: {known or 'none'}"
        )
    trend = compute_trend(series)
    unit = series.unit
    name = trend.display
    latest = series.points[-1]
    facts = [
        ToolFact(
            text=f"Latest {name}: {_value(latest.value, unit)} on {latest.time.date().isoformat()}",
            citations=(_point_citation(latest, unit),),
        )
    ]
    if len(series.points) > 1:
        previous = series.points[-2]
        facts.append(
            ToolFact(
                text=f"Previous {name}: {_value(previous.value, unit)} on {previous.time.date().isoformat()}",
                citations=(_point_citation(previous, unit),),
            )
        )
        first = series.points[0]
        facts.append(
            ToolFact(
                text=(
                    f"{name} trend over {len(series.points)} results from {first.time.date().isoformat()} "
                    f"to {latest.time.date().isoformat()}: {trend.direction} ({trend.direction_reason})"
                ),
                citations=tuple(_point_citation(p, unit) for p in series.points),
            )
        )
    for point in reversed(series.points[-MAX_POINT_FACTS:]):
        facts.append(
            ToolFact(
                text=f"{name}: {_value(point.value, unit)} on {point.time.date().isoformat()}",
                citations=(_point_citation(point, unit),),
            )
        )
    return TrendOutput(
        facts=facts,
        analyte=name,
        code=series.code,
        unit=unit,
        direction=str(trend.direction),
        points=len(series.points),
    )


class ReportInput(PatientScoped):
    document: str = Field(
        min_length=1, max_length=200, description="The lab report's reference, 'DocumentReference/<id>'."
    )


class ReportOutput(ToolOutput):
    results: int = 0
    pages: int = 0
    scanned_pages: list[int] = Field(default_factory=list)


async def read_lab_report(ctx: ToolContext, args: ReportInput) -> ReportOutput:
    record = await ctx.record()
    wanted = args.document.strip().removeprefix("DocumentReference/")
    doc = next(
        (
            d
            for d in record.of_type("DocumentReference")
            if d.id == wanted and isinstance(d, DocumentReference)
        ),
        None,
    )
    if doc is None:
        # Only documents gathered with this patient's search can be read: no reach by id.
        return ReportOutput(note="that document is not in this patient's record")
    reference = f"DocumentReference/{doc.id}"
    facts: list[ToolFact] = []
    pages = 0
    scanned: list[int] = []
    for pdf in await fetch_pdfs(doc, ctx.fhir):
        extraction = await asyncio.to_thread(extract_labs, pdf.data, name=reference)
        pages += extraction.page_count
        scanned += list(extraction.needs_model)
        for row in extraction.results:
            when = row.effective.isoformat() if row.effective else None
            unit = unit_display(row.unit) if row.unit else ""
            text = f"{row.name}: {row.value_text} {unit}".rstrip() + f" (page {row.page})"
            if row.flag:
                text += f", flagged {row.flag}"
            if when:
                text += f", collected {when}"
            citation = Citation(
                reference=reference,
                value=row.value,
                unit=row.unit,
                time=when,
                page=row.page,
                bbox=row.bbox,
            )
            facts.append(ToolFact(text=text, citations=(citation,)))
    note = None
    if scanned:
        note = f"pages {', '.join(map(str, scanned))} have no text layer and were not read"
    return ReportOutput(facts=facts, note=note, results=len(facts), pages=pages, scanned_pages=scanned)


LAB_TREND: Final = Tool(
    name="lab_trend",
    description=(
        "One lab test's results over time and its trend: latest and previous values, every result "
        "with its date and reference, and the direction (improved / stable / worsened)."
    ),
    input_model=TrendInput,
    output_model=TrendOutput,
    run=lab_trend,
)
READ_LAB_REPORT: Final = Tool(
    name="read_lab_report",
    description=(
        "Read one lab-report PDF of the patient (a DocumentReference): each printed result with its page "
        "and position. Reads only; writes nothing."
    ),
    input_model=ReportInput,
    output_model=ReportOutput,
    run=read_lab_report,
)
