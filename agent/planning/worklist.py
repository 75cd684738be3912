"""From the gathered record and ChartAgent's own earlier outputs, what is new since the last run (pure).

- a lab-report document not in the read set of the current longitudinal summary -> `document`;
- results the trends could use that differ from that read set (new, changed or gone), or a new
  document (its transcriptions may join the trends), or no summary yet -> `lab-summary`;
- a planned imaging comparison (current vs prior, `tools.imaging_review.plan`) without an AI report
  over exactly that pair of studies -> `imaging-comparison`;
- a chest X-ray or whole-slide study without ChartAgent's single-study reading -> `imaging-read`.

A patient with nothing new gets an empty worklist: one record read, nothing recomputed.
The read set is the one the newest current summary carries (`tools.writeback.read_inputs`).
"""

from __future__ import annotations

from enum import StrEnum

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydantic import BaseModel, ConfigDict

from tools.documents.ingest import skip_reason as document_skip_reason
from tools.imaging_review.plan import (
    NOT_CONSIDERED,
    ImagingKind,
    is_chest,
    plan_comparisons,
    study_entry,
    subject_matches,
)
from tools.labs.inputs import trend_inputs
from tools.record import PatientRecord
from tools.writeback import is_ai_asserted, is_document_extraction
from tools.writeback.read_inputs import read_inputs_of
from tools.writeback.study_read import READ_SYSTEM
from tools.writeback.summaries import CURRENT_STATUSES, is_ours, newest_summary

__all__ = ["WorkItem", "WorkKind", "Worklist", "current_summary", "plan_work"]


class WorkKind(StrEnum):
    DOCUMENT = "document"
    IMAGING_COMPARISON = "imaging-comparison"
    # A study read alone: chest X-ray localization (boxes), whole-slide description.
    IMAGING_READ = "imaging-read"
    LAB_SUMMARY = "lab-summary"


class WorkItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: WorkKind
    # Stable name of the item: "DocumentReference/7", "ImagingStudy/3<ImagingStudy/2", "labs".
    key: str
    # The references it is computed from.
    inputs: tuple[str, ...]
    # Why it is on the list (PHI-free).
    reason: str


class Worklist(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: tuple[WorkItem, ...]
    # The read set the summary of this run will carry (trend inputs and lab documents).
    read_inputs: frozenset[str]
    # The summary whose read set was compared ("DiagnosticReport/<id>"), if any.
    previous_summary: str | None
    # ChartAgent's current reports in the record (summaries and imaging readings).
    previous_reports: int = 0

    def of_kind(self, kind: WorkKind) -> list[WorkItem]:
        return [i for i in self.items if i.kind is kind]


def current_summary(record: PatientRecord) -> DiagnosticReport | None:
    """The newest of ChartAgent's longitudinal summaries that is not retired."""
    return newest_summary(record.of_type("DiagnosticReport"))


def _imaging_reports(record: PatientRecord) -> list[DiagnosticReport]:
    return [
        r
        for r in record.of_type("DiagnosticReport")
        if isinstance(r, DiagnosticReport) and is_ours(r) and r.status in CURRENT_STATUSES and r.imagingStudy
    ]


def _is_single_read(report: DiagnosticReport) -> bool:
    return any(c.system == READ_SYSTEM for c in report.code.coding or ())


def _studies(report: DiagnosticReport) -> frozenset[str]:
    return frozenset(str(s.reference) for s in report.imagingStudy or () if s.reference)


def _compared_pairs(record: PatientRecord) -> set[frozenset[str]]:
    return {_studies(r) for r in _imaging_reports(record) if not _is_single_read(r)}


def _read_studies(record: PatientRecord) -> set[str]:
    return {ref for r in _imaging_reports(record) if _is_single_read(r) for ref in _studies(r)}


def plan_work(record: PatientRecord, *, can_read_images: bool, everything: bool = False) -> Worklist:
    """`can_read_images`: a model and a PACS are configured; without them imaging work is deferred
    (listed, not counted as work: a run without a model recomputes nothing for it).
    `everything`: plan as if ChartAgent had never run (a dry run shows the whole computation)."""
    subject = f"Patient/{record.patient_id}"
    summary = None if everything else current_summary(record)
    previous = read_inputs_of(summary) if summary is not None else None
    seen = previous or frozenset()
    items: list[WorkItem] = []

    documents = [
        d
        for d in record.of_type("DocumentReference")
        if isinstance(d, DocumentReference) and document_skip_reason(d, subject) is None
    ]
    document_keys = {record.content_key_of(d): f"DocumentReference/{d.id}" for d in documents}
    for key, ref in sorted(document_keys.items(), key=lambda kv: kv[1]):
        if key not in seen:
            items.append(
                WorkItem(kind=WorkKind.DOCUMENT, key=ref, inputs=(ref,), reason="lab report not read yet")
            )

    # The lab feed's results; values transcribed from documents are tracked by their documents.
    results = {
        record.content_key_of(o)
        for o in trend_inputs(record.of_type("Observation"))
        if not is_document_extraction(o)
    }
    read_inputs = frozenset(results | set(document_keys))
    new_documents = any(i.kind is WorkKind.DOCUMENT for i in items)
    old_results = {k for k in seen if k.startswith("Observation/")}
    if results or new_documents:
        reason = None
        if summary is None:
            reason = "no summary yet"
        elif previous is None:
            reason = "the current summary does not say what it read"
        elif results != old_results:
            reason = f"{len(results - old_results)} new or changed, {len(old_results - results)} gone"
        elif new_documents:
            reason = "new lab reports"
        if reason is not None:
            inputs = tuple(sorted(k.split("#")[0] for k in read_inputs))
            items.append(WorkItem(kind=WorkKind.LAB_SUMMARY, key="labs", inputs=inputs, reason=reason))

    compared = set() if everything else _compared_pairs(record)
    for planned in plan_comparisons(record):
        if planned.skip_reason is not None:
            continue
        studies = (planned.current.reference, *([planned.prior.reference] if planned.prior else []))
        if frozenset(studies) in compared:
            continue
        key = "<".join(studies)
        if not can_read_images:
            continue
        items.append(
            WorkItem(
                kind=WorkKind.IMAGING_COMPARISON,
                key=key,
                inputs=studies,
                reason=f"{planned.kind.value} study without an AI reading"
                + (" against its prior" if planned.prior else ""),
            )
        )
    read = set() if everything else _read_studies(record)
    for study in single_read_studies(record):
        if study in read:
            continue
        if not can_read_images:
            continue
        items.append(
            WorkItem(
                kind=WorkKind.IMAGING_READ, key=study, inputs=(study,), reason="study without an AI reading"
            )
        )
    return Worklist(
        items=tuple(items),
        read_inputs=read_inputs,
        previous_summary=f"DiagnosticReport/{summary.id}" if summary is not None else None,
        previous_reports=len(compared) + len(read) + (summary is not None),
    )


def single_read_studies(record: PatientRecord) -> list[str]:
    """The studies read alone: chest X-rays (localization) and whole slides (description); CT and MRI
    are read within their comparisons (each study's findings, current and prior)."""
    out = []
    for resource in record.of_type("ImagingStudy"):
        if not isinstance(resource, ImagingStudy) or is_ai_asserted(resource):
            continue
        if resource.status in NOT_CONSIDERED or not subject_matches(resource, record.patient_id):
            continue
        entry = study_entry(resource)
        kinds = entry.kinds()
        if ImagingKind.WSI in kinds or (ImagingKind.CXR in kinds and is_chest(entry) is not False):
            out.append(f"ImagingStudy/{resource.id}")
    return sorted(out)
