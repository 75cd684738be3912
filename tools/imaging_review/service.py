"""`compare_imaging`: a patient's imaging, current vs prior, through MedGemma (the thin async shell).

Per planned comparison (`plan.plan_comparisons`):
1. no model configured, or no DICOMweb server: skipped, nothing fetched;
2. the Endpoints of both studies checked (`endpoints.dicomweb_refusal`): a study served from
   elsewhere than the configured DICOMweb base URL is refused, nothing fetched;
3. both studies fetched from the configured server and prepared (`fetch.fetch_and_prepare`);
4. the model, through the task registry (`tools.medgemma.tasks.registry`): CXR -> (cxr, compare)
   (prior image, current image, their dates); CT/MRI -> (ct|mri, findings) on the current study
   and on the prior (two calls), combined by `volume_comparison.combine`. Answers are parsed
   strictly; an unreadable one fails the comparison ("model answer not usable: ...") and nothing
   is written for it;
5. the write-back entries (`tools.writeback.imaging_report.build_imaging_writeback`).

Only our own errors (DICOMweb, DICOM source, imaging, FHIR, model) end a comparison as failed;
anything else is a bug and propagates. Reasons carry ids, counts and hosts, never patient data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ChartAgentError
from tools.imaging.dicomweb import DicomWebClient, DicomWebError
from tools.imaging.errors import ImagingError
from tools.imaging.selection import ImagingTask
from tools.imaging.sources import DicomSourceError
from tools.imaging_review.endpoints import dicomweb_refusal, resolve_endpoints
from tools.imaging_review.fetch import FetchedStudy, fetch_and_prepare
from tools.imaging_review.outcome import ComparisonOutcome, ComparisonStatus, ImagingReview
from tools.imaging_review.plan import ImagingKind, PlannedComparison, StudyEntry, plan_comparisons
from tools.medgemma.errors import ModelError
from tools.medgemma.identity import model_identity
from tools.medgemma.tasks import ModelOutputError, TaskOutput, cxr_comparison, volume_findings
from tools.medgemma.tasks.registry import AnalysisTask, Job, TaskOptions, lookup
from tools.medgemma.tasks.volume_comparison import VolumeComparison, VolumeRead, combine
from tools.medgemma.types import ModelBackend
from tools.record import PatientRecord
from tools.writeback.identifiers import Param
from tools.writeback.imaging_report import ComparisonTask, ImagingResult, StudyInput, build_imaging_writeback

__all__ = ["NO_DICOMWEB", "NO_MODEL", "ReviewOptions", "compare_imaging"]

NO_MODEL = "no model configured"
NO_DICOMWEB = "no DICOMweb server configured"

_TASK = {
    ImagingKind.CXR: ComparisonTask.CXR,
    ImagingKind.CT: ComparisonTask.CT,
    ImagingKind.MRI: ComparisonTask.MRI,
}

T = TypeVar("T")
Output = TypeVar("Output", bound=TaskOutput)


class ReviewOptions(BaseModel):
    """Per-run model settings for the review (the tasks' defaults unless given)."""

    model_config = ConfigDict(frozen=True)

    thinking: bool = False
    max_new_tokens: int | None = Field(default=None, ge=1, le=32768)

    def task_options(self, *, prior_date: str | None = None, current_date: str | None = None) -> TaskOptions:
        return TaskOptions(
            thinking=self.thinking,
            max_new_tokens=self.max_new_tokens,
            prior_date=prior_date,
            current_date=current_date,
        )


class _Failed(ChartAgentError):
    """A comparison ends as failed with this reason (internal control flow)."""

    def __init__(self, reason: str, raw_text: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw_text = raw_text


def _outcome(
    plan: PlannedComparison, status: ComparisonStatus, reason: str | None = None, **extra: Any
) -> ComparisonOutcome:
    return ComparisonOutcome(
        kind=plan.kind,
        current=plan.current.id,
        prior=plan.prior.id if plan.prior is not None else None,
        current_date=plan.current.date,
        prior_date=plan.prior.date if plan.prior is not None else None,
        status=status,
        reason=reason,
        **({"notes": plan.notes} | extra),
    )


async def _pair(first: Awaitable[T], second: Awaitable[T] | None) -> tuple[T, T | None]:
    """Both awaited concurrently; the first exception (in argument order) is raised once both ended."""
    if second is None:
        return await first, None
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    for r in (a, b):
        if isinstance(r, BaseException):
            raise r
    return a, b  # type: ignore[return-value]  # exceptions were raised above


async def _refusal(
    plan: PlannedComparison, record: PatientRecord, dicomweb: DicomWebClient, fhir: FhirClient | None
) -> str | None:
    studies: list[tuple[StudyEntry, str | None]] = [(plan.current, plan.current_series)]
    if plan.prior is not None:
        studies.append((plan.prior, plan.prior_series))
    for study, series in studies:
        refs = study.endpoints_for(series)
        contained = {e.reference: e for e in study.contained}
        resolved = await resolve_endpoints(refs, record=record, contained=contained, fhir=fhir)
        reason = dicomweb_refusal(study.reference, refs, resolved, dicomweb.base_url)
        if reason is not None:
            return reason
    return None


async def _fetch(
    plan: PlannedComparison, dicomweb: DicomWebClient
) -> tuple[FetchedStudy, FetchedStudy | None]:
    prior = (
        fetch_and_prepare(dicomweb, plan.prior, plan.prior_series, plan.kind)
        if plan.prior is not None
        else None
    )
    try:
        return await _pair(fetch_and_prepare(dicomweb, plan.current, plan.current_series, plan.kind), prior)
    except (DicomWebError, DicomSourceError) as exc:
        raise _Failed(f"images could not be fetched: {exc}") from exc
    except ImagingError as exc:
        raise _Failed(f"images could not be prepared: {exc}") from exc


async def _ask(model: ModelBackend, job: Job, output: type[Output], role: str) -> Output:
    try:
        run = await job.run(model)
    except ModelOutputError as exc:
        raise _Failed(f"model answer not usable ({role}): {exc.reason}", exc.raw_text) from exc
    except ModelError as exc:
        raise _Failed(f"model call failed ({role}): {exc}") from exc
    if not isinstance(run.result, output):  # the registry pairs each task with its parser
        raise TypeError(
            f"{job.prompt_version}: parsed {type(run.result).__name__}, expected {output.__name__}"
        )
    return run.result


def _volume_read(
    study: StudyEntry, fetched: FetchedStudy, findings: volume_findings.VolumeFindings
) -> VolumeRead:
    return VolumeRead(
        study_date=study.started,
        series_uid=fetched.series_uid,
        slice_instances=tuple(s.instance_number for s in fetched.prepared.metadata.slices),
        findings=findings,
    )


async def _read_volumes(
    plan: PlannedComparison,
    model: ModelBackend,
    current: FetchedStudy,
    prior: FetchedStudy | None,
    options: ReviewOptions,
) -> VolumeComparison:
    spec = lookup(ImagingTask(plan.kind.value), AnalysisTask.FINDINGS)
    modality = volume_findings.VolumeModality(plan.kind.value)

    def ask(fetched: FetchedStudy, role: str) -> Awaitable[volume_findings.VolumeFindings]:
        job = spec.job(fetched.prepared, options=options.task_options())
        return _ask(model, job, volume_findings.VolumeFindings, f"{role} study")

    now_findings, then_findings = await _pair(
        ask(current, "current"), ask(prior, "prior") if prior is not None else None
    )
    prior_read = None
    if prior is not None and plan.prior is not None and then_findings is not None:
        prior_read = _volume_read(plan.prior, prior, then_findings)
    return combine(modality, _volume_read(plan.current, current, now_findings), prior_read)


async def _compare_cxr(
    plan: PlannedComparison,
    model: ModelBackend,
    current: FetchedStudy,
    prior: FetchedStudy,
    options: ReviewOptions,
) -> cxr_comparison.CxrComparison:
    assert plan.prior is not None  # the plan skips a chest X-ray without a prior
    job = lookup(ImagingTask.CXR, AnalysisTask.COMPARE).job(
        current.prepared,
        prior.prepared,
        options.task_options(prior_date=plan.prior.date, current_date=plan.current.date),
    )
    return await _ask(model, job, cxr_comparison.CxrComparison, "chest X-ray pair")


def _study_input(study: StudyEntry, fetched: FetchedStudy) -> StudyInput:
    # The plan skips studies without a StudyInstanceUID or a start date.
    assert study.study_uid is not None
    assert study.started is not None
    return StudyInput(
        imaging_study_id=study.id,
        study_uid=study.study_uid,
        series_uids=(fetched.series_uid,),
        started=study.started,
    )


async def review_pair(
    plan: PlannedComparison,
    record: PatientRecord,
    *,
    dicomweb: DicomWebClient,
    model: ModelBackend,
    fhir: FhirClient | None,
    now: datetime,
    options: ReviewOptions,
) -> ComparisonOutcome:
    refusal = await _refusal(plan, record, dicomweb, fhir)
    if refusal is not None:
        return _outcome(plan, ComparisonStatus.SKIPPED, refusal)
    try:
        current, prior = await _fetch(plan, dicomweb)
        result: ImagingResult
        parameters: dict[str, Param] = {
            "max_new_tokens": options.max_new_tokens,
            "thinking": options.thinking,
        }
        if plan.kind is ImagingKind.CXR:
            assert prior is not None
            result = await _compare_cxr(plan, model, current, prior, options)
            prompt_version = lookup(ImagingTask.CXR, AnalysisTask.COMPARE).prompt_version
        else:
            result = await _read_volumes(plan, model, current, prior, options)
            prompt_version = lookup(ImagingTask(plan.kind.value), AnalysisTask.FINDINGS).prompt_version
            parameters["slices"] = len(current.prepared.images)
            parameters["prior_slices"] = len(prior.prepared.images) if prior is not None else None
    except _Failed as failed:
        return _outcome(plan, ComparisonStatus.FAILED, failed.reason, raw_text=failed.raw_text)
    notes = (*plan.notes, *current.notes, *(prior.notes if prior is not None else ()))
    current_input = _study_input(plan.current, current)
    prior_input = _study_input(plan.prior, prior) if plan.prior is not None and prior is not None else None
    built = build_imaging_writeback(
        task=_TASK[plan.kind],
        subject=f"Patient/{record.patient_id}",
        result=result,
        current=current_input,
        prior=prior_input,
        identity=model_identity(model.info, prompt_version),
        issued=now,
        parameters=parameters,
    )
    # What its pending write was computed from: each study's reference and StudyInstanceUID.
    inputs = tuple(
        x
        for s in (current_input, prior_input)
        if s is not None
        for x in (s.reference, f"urn:oid:{s.study_uid}")
    )
    return _outcome(
        plan, ComparisonStatus.READY, result=result, built=tuple(built), notes=notes, inputs=inputs
    )


def skipped_outcome(
    plan: PlannedComparison, *, model: ModelBackend | None, dicomweb: DicomWebClient | None
) -> ComparisonOutcome | None:
    """The skipped outcome of a planned comparison that cannot run (its own reason, no model, no
    PACS), or None when it can."""
    if plan.skip_reason is not None:
        return _outcome(plan, ComparisonStatus.SKIPPED, plan.skip_reason)
    if model is None:
        return _outcome(plan, ComparisonStatus.SKIPPED, NO_MODEL)
    if dicomweb is None:
        return _outcome(plan, ComparisonStatus.SKIPPED, NO_DICOMWEB)
    return None


async def compare_imaging(
    record: PatientRecord,
    *,
    dicomweb: DicomWebClient | None,
    model: ModelBackend | None,
    now: datetime,
    fhir: FhirClient | None = None,
    options: ReviewOptions | None = None,
) -> ImagingReview:
    """Compare the patient's newest imaging with its priors; one outcome per comparison or skipped study.

    `dicomweb` is the only server pixels are fetched from; `fhir` (optional) reads the Endpoints
    the record refers to but does not hold. `now` is the run's clock (`issued`, `recorded`).
    Comparisons run one after another (a CT pair holds a few hundred MB while it is prepared);
    within one, the two studies are fetched, and the two CT/MRI reads sent, concurrently.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    options = options or ReviewOptions()
    outcomes: list[ComparisonOutcome] = []
    for plan in plan_comparisons(record):
        skipped = skipped_outcome(plan, model=model, dicomweb=dicomweb)
        if skipped is not None:
            outcomes.append(skipped)
        else:
            assert model is not None
            assert dicomweb is not None
            outcomes.append(
                await review_pair(
                    plan, record, dicomweb=dicomweb, model=model, fhir=fhir, now=now, options=options
                )
            )
    return ImagingReview(comparisons=tuple(outcomes))
