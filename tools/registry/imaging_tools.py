"""Imaging tools: the patient's imaging studies, an AI read of one study, and one compared with its prior.

`analyze_study` and `compare_with_prior` read only: the model's result comes back as facts with
citations (the ImagingStudy, its study/series/instance UIDs, and for chest X-ray boxes the box in
the original image's pixels, x0, y0, x1, y1); nothing is written. A study must be one of the
record's ImagingStudy resources: a reference to any other (another patient's) is refused. Without a
model or a DICOMweb server they answer with a note saying so, not an error.
"""

from __future__ import annotations

from typing import Final

from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydantic import BaseModel, Field

from fhir_adapters.error_tree import BadInputError
from tools.imaging_review.outcome import ComparisonOutcome, ComparisonStatus
from tools.imaging_review.plan import PlannedComparison, plan_comparisons, study_entry
from tools.imaging_review.read import ReadStatus, StudyRead, find_study, read_study, study_reference
from tools.imaging_review.service import compare_imaging
from tools.medgemma.tasks.cxr_comparison import CxrComparison
from tools.medgemma.tasks.cxr_localization import CxrLocalization
from tools.medgemma.tasks.slide_description import SlideDescription
from tools.medgemma.tasks.volume_comparison import VolumeRead
from tools.medgemma.tasks.volume_findings import VolumeFindings
from tools.record import PatientRecord
from tools.registry.model import Citation, ToolContext, ToolFact, ToolOutput
from tools.registry.registry import PatientScoped, Tool
from tools.text_safety import safe_text
from tools.writeback import is_ai_asserted

__all__ = ["ANALYZE_STUDY", "COMPARE_WITH_PRIOR", "LIST_IMAGING_STUDIES", "StudyNotInRecordError", "ai_reads"]

_MODEL_TEXT: Final = 300  # model-written text in a fact, at most


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


class StudyNotInRecordError(BadInputError):
    """A study reference that is not one of the patient's ImagingStudy resources."""


def _study_of_record(record: PatientRecord, ref: str) -> ImagingStudy:
    found = find_study(record, ref)
    if found is None:
        raise StudyNotInRecordError(
            f"refused: {study_reference(ref)} is not an ImagingStudy of this patient's record "
            "(list_imaging_studies names them)"
        )
    return found


class AnalyzeInput(PatientScoped):
    study: str = Field(
        min_length=1,
        max_length=200,
        description="The study's reference, 'ImagingStudy/<id>' (as list_imaging_studies gives it).",
    )
    question: str | None = Field(
        default=None,
        max_length=500,
        description="Optional: what to ask of the images instead of the default task's question.",
    )


class AnalyzeOutput(ToolOutput):
    study: str | None = None
    status: str | None = None
    task: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None


def _citation(read: StudyRead, instance: str | None = None, **extra: object) -> Citation:
    selected = read.selected
    return Citation.model_validate(
        {
            "reference": read.study,
            "time": read.started,
            "study_uid": (selected.study_uid if selected else None) or read.study_uid,
            "series_uid": selected.series_uid if selected else None,
            "instance_uid": instance,
            **extra,
        }
    )


def _model_text(text: str) -> str:
    return safe_text(text, limit=_MODEL_TEXT)


def _read_facts(read: StudyRead) -> list[ToolFact]:
    result = read.result
    what = f"{read.kind.label if read.kind else 'Imaging'} {(read.started or 'undated')[:10]}"
    facts: list[ToolFact] = []
    if isinstance(result, VolumeFindings):
        for f in result.findings:
            cites = tuple(
                _citation(read, read.slice_instances[n - 1] if 0 < n <= len(read.slice_instances) else None)
                for n in f.slices
            ) or (_citation(read),)
            where = f" (SLICE {', '.join(map(str, f.slices))})" if f.slices else ""
            facts.append(
                ToolFact(
                    text=f"{what} finding (AI-generated): {_model_text(f.description)}{where}",
                    citations=cites,
                )
            )
        if not result.findings:
            facts.append(
                ToolFact(
                    text=f"{what}: no abnormal finding reported (AI-generated)", citations=(_citation(read),)
                )
            )
        facts.append(
            ToolFact(
                text=f"{what} impression (AI-generated): {_model_text(result.impression)}",
                citations=(_citation(read),),
            )
        )
    elif isinstance(result, CxrLocalization):
        instance = read.selected.instance_uids[0] if read.selected and read.selected.instance_uids else None
        for b in result.boxes:
            box = b.box
            bbox = (box.x0, box.y0, box.x1, box.y1)
            text = (
                f"{what} (AI-generated): {_model_text(b.anatomy or b.label)} localized at "
                f"x {box.x0:.0f}-{box.x1:.0f}, y {box.y0:.0f}-{box.y1:.0f} "
                f"(original pixels of the {result.image_width} x {result.image_height} image)"
            )
            facts.append(ToolFact(text=text, citations=(_citation(read, instance, bbox=bbox),)))
        if not result.boxes:
            facts.append(
                ToolFact(
                    text=f"{what}: no structure localized (AI-generated)",
                    citations=(_citation(read, instance),),
                )
            )
    elif isinstance(result, SlideDescription):
        facts.append(
            ToolFact(
                text=f"{what} slide description (AI-generated): {_model_text(result.description)}",
                citations=(_citation(read),),
            )
        )
        facts += [
            ToolFact(
                text=f"{what} slide finding (AI-generated): {_model_text(f)}", citations=(_citation(read),)
            )
            for f in result.findings
        ]
    return facts


async def analyze_study(ctx: ToolContext, args: AnalyzeInput) -> AnalyzeOutput:
    record = await ctx.record()
    _study_of_record(record, args.study)
    read = await read_study(
        record,
        args.study,
        dicomweb=ctx.dicomweb,
        model=ctx.model,
        now=ctx.now,
        fhir=ctx.fhir,
        question=args.question,
    )
    selected = read.selected
    out = AnalyzeOutput(
        study=read.study,
        status=read.status.value,
        task=read.task.value if read.task else None,
        study_uid=(selected.study_uid if selected else None) or read.study_uid,
        series_uid=selected.series_uid if selected else None,
    )
    if read.status is not ReadStatus.READY:
        out.note = f"{read.study} not analysed: {read.reason}"
        return out
    out.facts = _read_facts(read)
    out.note = "; ".join(read.notes) or None
    return out


class CompareInput(PatientScoped):
    study: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "The current study, 'ImagingStudy/<id>'; its prior (same kind and body site) is chosen for you."
        ),
    )


class CompareOutput(ToolOutput):
    current: str | None = None
    prior: str | None = None
    status: str | None = None


def _planned(record: PatientRecord, resource: ImagingStudy) -> PlannedComparison | None:
    """The comparison whose current study is `resource`: the review's plan over the record as it
    stood then (the studies strictly earlier, and this one)."""
    target = study_entry(resource)
    if target.when is None:
        return None
    kept = [
        s
        for s in record.of_type("ImagingStudy")
        if s is resource
        or (isinstance(s, ImagingStudy) and (when := study_entry(s).when) is not None and when < target.when)
    ]
    then = record.model_copy(update={"resources": {**record.resources, "ImagingStudy": kept}})
    return next((p for p in plan_comparisons(then) if p.current.id == target.id), None)


def _comparison_citations(outcome: ComparisonOutcome, plan: PlannedComparison) -> tuple[Citation, ...]:
    result = outcome.result
    series: dict[str, str | None] = {plan.current.id: plan.current_series}
    if plan.prior is not None:
        series[plan.prior.id] = plan.prior_series
    reads: list[VolumeRead] = []
    if result is not None and not isinstance(result, CxrComparison):
        reads = [result.current, *([result.prior] if result.prior is not None else [])]
    studies = [plan.current, *([plan.prior] if plan.prior is not None else [])]
    for study, read in zip(studies, reads, strict=False):
        series[study.id] = read.series_uid
    return tuple(
        Citation(reference=s.reference, time=s.started, study_uid=s.study_uid, series_uid=series.get(s.id))
        for s in studies
    )


async def compare_with_prior(ctx: ToolContext, args: CompareInput) -> CompareOutput:
    record = await ctx.record()
    resource = _study_of_record(record, args.study)
    reference = study_reference(args.study)
    plan = _planned(record, resource)
    if plan is None or plan.skip_reason is not None:
        why = plan.skip_reason if plan is not None else f"no comparison is planned for {reference}"
        return CompareOutput(current=reference, note=f"not compared: {why}")
    prior = plan.prior.reference if plan.prior is not None else None
    # The review over these two studies alone plans exactly this comparison, and says why it is
    # skipped (its own reason, no model, no PACS) or how it ended.
    pair = {plan.current.id, *([plan.prior.id] if plan.prior is not None else [])}
    studies = [s for s in record.of_type("ImagingStudy") if s.id in pair]
    only = record.model_copy(update={"resources": {**record.resources, "ImagingStudy": studies}})
    review = await compare_imaging(only, dicomweb=ctx.dicomweb, model=ctx.model, now=ctx.now, fhir=ctx.fhir)
    outcome = next(c for c in review.comparisons if c.current == plan.current.id)
    out = CompareOutput(current=reference, prior=prior, status=outcome.status.value)
    if outcome.status is not ComparisonStatus.READY:
        out.note = f"not compared: {outcome.reason}"
        return out
    cites = _comparison_citations(outcome, plan)
    result = outcome.result
    when = f"{plan.kind.label} {plan.current.date}" + (f" vs {plan.prior.date}" if plan.prior else "")
    if isinstance(result, CxrComparison):
        out.facts = [
            ToolFact(
                text=f"{when} (AI-generated): {_model_text(c.finding)} {c.change.value}"
                + (f" - {_model_text(c.evidence)}" if c.evidence else ""),
                citations=cites,
            )
            for c in result.comparisons
        ]
        if result.summary:
            out.facts.append(
                ToolFact(
                    text=f"{when} summary (AI-generated): {_model_text(result.summary)}", citations=cites
                )
            )
    elif result is not None:
        out.facts = [
            ToolFact(
                text=f"{when} current impression (AI-generated): "
                f"{_model_text(result.current.findings.impression)}",
                citations=cites[:1],
            )
        ]
        if result.prior is not None:
            out.facts.append(
                ToolFact(
                    text=f"{when} prior impression (AI-generated, read separately): "
                    f"{_model_text(result.prior.findings.impression)}",
                    citations=cites[1:],
                )
            )
        else:
            out.note = "no prior available: the current study was read on its own"
    return out


ANALYZE_STUDY: Final = Tool(
    name="analyze_study",
    description=(
        "An AI read (MedGemma) of one imaging study of the patient by its modality: CT or MRI findings "
        "and impression, chest X-ray anatomy boxes in original pixels, whole-slide pathology description. "
        "Reads only; writes nothing. Slow (fetches the images and runs the model)."
    ),
    input_model=AnalyzeInput,
    output_model=AnalyzeOutput,
    run=analyze_study,
)
COMPARE_WITH_PRIOR: Final = Tool(
    name="compare_with_prior",
    description=(
        "An AI comparison (MedGemma) of one CT, MRI or chest X-ray study with the patient's prior study "
        "of the same kind and body site: per finding improved / stable / worsened (chest X-ray), or each "
        "study's impression (CT, MRI). Reads only; writes nothing. Slow."
    ),
    input_model=CompareInput,
    output_model=CompareOutput,
    run=compare_with_prior,
)
