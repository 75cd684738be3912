"""Imaging tools: the patient's imaging studies, and whether an AI read of each exists."""

from __future__ import annotations

from typing import Final

from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydantic import BaseModel, Field

from tools.imaging_review.plan import study_entry
from tools.record import PatientRecord
from tools.registry.model import Citation, ToolContext, ToolFact, ToolOutput
from tools.registry.registry import PatientScoped, Tool
from tools.text_safety import safe_text
from tools.writeback import is_ai_asserted

__all__ = ["LIST_IMAGING_STUDIES", "ai_reads"]


class StudiesInput(PatientScoped):
    modality: str | None = Field(
        default=None, description="Only studies with this modality (CT, MR, CR, DX, SM)."
    )


class StudyOut(BaseModel):
    reference: str
    study_uid: str | None
    started: str | None
    modalities: list[str]
    series: int
    ai_reads: list[str]  # DiagnosticReport references of AI reads of this study


class StudiesOutput(ToolOutput):
    studies: list[StudyOut] = Field(default_factory=list)


def ai_reads(record: PatientRecord) -> dict[str, list[str]]:
    """ImagingStudy reference -> the AI-labelled DiagnosticReports that read it (any status)."""
    out: dict[str, list[str]] = {}
    for report in record.of_type("DiagnosticReport"):
        if not is_ai_asserted(report):
            continue
        for study in getattr(report, "imagingStudy", None) or []:
            if study.reference:
                out.setdefault(str(study.reference), []).append(f"DiagnosticReport/{report.id}")
    return out


async def list_imaging_studies(ctx: ToolContext, args: StudiesInput) -> StudiesOutput:
    record = await ctx.record()
    reads = ai_reads(record)
    wanted = args.modality.strip().upper() if args.modality else None
    facts: list[ToolFact] = []
    studies: list[StudyOut] = []
    entries = [study_entry(s) for s in record.of_type("ImagingStudy") if isinstance(s, ImagingStudy)]
    for entry in sorted(entries, key=lambda e: (e.started or "", e.id), reverse=True):
        if wanted is not None and wanted not in {m.upper() for m in entry.modalities}:
            continue
        read_by = reads.get(entry.reference, [])
        description = safe_text(entry.description, limit=80)
        text = (
            f"ImagingStudy {'/'.join(entry.modalities) or 'unknown modality'}"
            + (f" '{description}'" if description else "")
            + f" on {entry.date}, {len(entry.series)} series; "
            + (f"AI read: {', '.join(read_by)}" if read_by else "no AI read yet")
        )
        citation = Citation(reference=entry.reference, time=entry.started, study_uid=entry.study_uid)
        facts.append(ToolFact(text=text, citations=(citation,)))
        studies.append(
            StudyOut(
                reference=entry.reference,
                study_uid=entry.study_uid,
                started=entry.started,
                modalities=list(entry.modalities),
                series=len(entry.series),
                ai_reads=read_by,
            )
        )
    note = None if studies else "no imaging studies" + (f" with modality {wanted}" if wanted else "")
    return StudiesOutput(facts=facts, note=note, studies=studies)


LIST_IMAGING_STUDIES: Final = Tool(
    name="list_imaging_studies",
    description=(
        "The patient's imaging studies (CT, MRI, X-ray, whole-slide pathology), newest first, with "
        "their UIDs and whether ChartAgent has already read each one."
    ),
    input_model=StudiesInput,
    output_model=StudiesOutput,
    run=list_imaging_studies,
)
