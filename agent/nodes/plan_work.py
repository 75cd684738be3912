"""Plan the run from the record: what is new since ChartAgent's last run (`agent.planning.worklist`),
and the fan-out over it (LangGraph `Send`: one branch per lab-report document and per imaging
comparison, run concurrently up to the run's `max_concurrency`).

A patient with nothing new ends here: one record read, nothing recomputed, nothing written.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from langgraph.runtime import Runtime
from langgraph.types import Send

from agent.context import RunContext
from agent.nodes.read_study import StudyTask
from agent.planning.worklist import WorkKind, plan_work, single_read_studies
from agent.state import SummarizeState
from tools.imaging_review import NO_DICOMWEB, NO_MODEL, PlannedComparison, plan_comparisons, skipped_outcome
from tools.record import PatientRecord
from tools.text_safety import safe_text
from tools.writeback import is_ai_asserted
from tools.writeback.imaging_report import AI_REPORT_LABEL

_LINE_TEXT: Final = 200

__all__ = ["ComparisonTask", "DocumentTask", "fan_out", "plan"]


class DocumentTask(TypedDict):
    patient_id: str
    document: dict[str, Any]  # the DocumentReference as JSON


class ComparisonTask(TypedDict):
    patient_id: str
    plan: PlannedComparison
    studies: list[dict[str, Any]]  # the record's ImagingStudy resources (endpoints, refusals)
    reports: list[dict[str, Any]]  # the DiagnosticReports over these studies (to retire an older one)


def plan(state: SummarizeState, runtime: Runtime[RunContext]) -> SummarizeState:
    ctx = runtime.context
    record = state["record"]
    # A dry run shows the whole computation, whatever earlier runs wrote.
    worklist = plan_work(record, can_read_images=ctx.can_read_images, everything=ctx.dry_run)
    due = {i.key for i in worklist.of_kind(WorkKind.IMAGING_COMPARISON)}
    earlier = {} if ctx.dry_run else _earlier_readings(record)
    # Comparisons read by an earlier run, and those that cannot run, are reported; only new ones run.
    lines = []
    for planned in plan_comparisons(record):
        key = _key(planned)
        if key in due:
            continue
        report = earlier.get(frozenset(key.split("<")))
        if report is not None:
            lines.append(earlier_line(planned, report))
            continue
        skipped = skipped_outcome(planned, model=ctx.model, dicomweb=ctx.dicomweb)
        if skipped is not None:
            lines.append(skipped.summary)
    reads_due = {i.key for i in worklist.of_kind(WorkKind.IMAGING_READ)}
    for study in single_read_studies(record):
        report = earlier.get(frozenset({study}))
        if study in reads_due:
            continue
        if report is not None:
            lines.append(f"{study}: read earlier (AI-generated, DiagnosticReport/{report.id})")
        elif ctx.model is None or ctx.dicomweb is None:
            lines.append(f"{study}: not analysed - {NO_MODEL if ctx.model is None else NO_DICOMWEB}")
    return {"worklist": worklist, "imaging_lines": lines}


def _earlier_readings(record: PatientRecord) -> dict[frozenset[str], DiagnosticReport]:
    """ChartAgent's current imaging reports by the set of studies they read."""
    out: dict[frozenset[str], DiagnosticReport] = {}
    for r in record.of_type("DiagnosticReport"):
        if (
            isinstance(r, DiagnosticReport)
            and r.imagingStudy
            and is_ai_asserted(r)
            and r.status != "cancelled"
        ):
            out[frozenset(str(s.reference) for s in r.imagingStudy)] = r
    return out


def earlier_line(planned: PlannedComparison, report: DiagnosticReport) -> str:
    """The line of a comparison read by an earlier run: its report's conclusion, cited."""
    when = f"{planned.kind.label} {planned.current.date}" + (
        f" vs {planned.prior.date}" if planned.prior else ""
    )
    # The conclusion reads "<AI label>. <kind> <dates>: <what the model said>".
    said = (report.conclusion or "").removeprefix(AI_REPORT_LABEL).lstrip(". ")
    head, sep, rest = said.partition(": ")
    said = safe_text(rest if sep and head.startswith(planned.kind.label) else said, limit=_LINE_TEXT)
    return f"{when}: {said or 'read'} (AI-generated, earlier reading DiagnosticReport/{report.id})"


def _key(planned: PlannedComparison) -> str:
    return "<".join((planned.current.reference, *([planned.prior.reference] if planned.prior else [])))


def fan_out(state: SummarizeState) -> list[Send] | Literal["settle_documents", "__end__"]:
    worklist = state["worklist"]
    record = state["record"]
    patient = state["patient_id"]
    sends: list[Send] = []
    wanted_docs = {i.key for i in worklist.of_kind(WorkKind.DOCUMENT)}
    for doc in record.of_type("DocumentReference"):
        if f"DocumentReference/{doc.id}" in wanted_docs:
            task: DocumentTask = {"patient_id": patient, "document": doc.model_dump(mode="json")}
            sends.append(Send("read_document", task))
    wanted_pairs = {i.key for i in worklist.of_kind(WorkKind.IMAGING_COMPARISON)}
    studies = [s.model_dump(mode="json") for s in record.of_type("ImagingStudy")]
    for planned in plan_comparisons(record):
        if _key(planned) not in wanted_pairs:
            continue
        refs = {planned.current.reference, *([planned.prior.reference] if planned.prior else [])}
        reports = [
            r.model_dump(mode="json")
            for r in record.of_type("DiagnosticReport")
            if isinstance(r, DiagnosticReport) and {str(s.reference) for s in r.imagingStudy or ()} & refs
        ]
        comparison: ComparisonTask = {
            "patient_id": patient,
            "plan": planned,
            "studies": studies,
            "reports": reports,
        }
        sends.append(Send("compare_pair", comparison))
    wanted_reads = [i.key for i in worklist.of_kind(WorkKind.IMAGING_READ)]
    for study in wanted_reads:
        reports = [
            r.model_dump(mode="json")
            for r in record.of_type("DiagnosticReport")
            if isinstance(r, DiagnosticReport) and study in {str(s.reference) for s in r.imagingStudy or ()}
        ]
        read: StudyTask = {"patient_id": patient, "study": study, "studies": studies, "reports": reports}
        sends.append(Send("read_study", read))
    if sends:
        return sends
    if worklist.of_kind(WorkKind.LAB_SUMMARY):
        return "settle_documents"
    return "__end__"
