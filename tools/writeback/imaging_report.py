"""FHIR R4B write-back of one imaging comparison, current vs prior (pure builders).

Per comparison: the model ``Device``, one ``DiagnosticReport`` and its ``Provenance``, returned as
``Built`` entries for the patient's transaction (the same Device built elsewhere is the identical
``Built``; the integrator de-duplicates by ``full_url``).

The DiagnosticReport:

* ``meta.security`` AIAST, ``status`` preliminary (nothing is final until a person approves it),
  ``category`` v2-0074 ``RAD``.
* ``code`` LOINC 18748-4 "Diagnostic imaging study": the generic code for a report on an imaging
  study. The ImagingStudy's ``procedureCode`` is not used: it is often absent (the seeded cohort
  has none), differs between the two studies compared, and names the acquisition, not this
  AI reading of two of them.
* ``effectiveDateTime`` the current study's ``started``; ``issued`` the run's clock;
  ``imagingStudy`` [current, prior].
* ``conclusion`` the model's summary (CXR) or its impression of each study (CT, MRI), labelled
  AI-generated and preliminary; ``presentedForm`` text/plain with the full structured result.
* ``identifier`` = ``business_identifier(engine=<model identity key>, task=<cxr|ct|mri>-comparison,
  inputs=[ImagingStudy/<id> = StudyInstanceUID + series used, ...], parameters=<prompt version,
  which study is current and which prior, slices, generation settings>)``: a rerun on the same
  studies with the same model and prompt writes nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from pydantic import BaseModel, ConfigDict, Field

from tools.medgemma.tasks.cxr_comparison import CxrComparison
from tools.medgemma.tasks.volume_comparison import NOT_COMPARED_NOTE, VolumeComparison, VolumeRead
from tools.medgemma.tasks.volume_findings import VolumeModality
from tools.writeback.ai_labels import ModelIdentity, ai_meta, build_model_device
from tools.writeback.attachment import attachment
from tools.writeback.builders import build_provenance, check_subject, check_time
from tools.writeback.identifiers import Built, InputRef, Param, business_identifier

__all__ = [
    "AI_REPORT_LABEL",
    "IMAGING_REPORT_CODE",
    "RADIOLOGY_CATEGORY",
    "ComparisonTask",
    "ImagingResult",
    "StudyInput",
    "build_imaging_report",
    "build_imaging_writeback",
    "conclusion_text",
    "render_report_text",
]

IMAGING_REPORT_CODE: Final[dict[str, str]] = {
    "system": "http://loinc.org",
    "code": "18748-4",
    "display": "Diagnostic imaging study",
}
RADIOLOGY_CATEGORY: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
    "code": "RAD",
    "display": "Radiology",
}
AI_REPORT_LABEL: Final = "AI-generated (MedGemma), preliminary, not reviewed by a clinician"

ImagingResult = CxrComparison | VolumeComparison


class ComparisonTask(StrEnum):
    """The task name in the identifier, one per comparison kind."""

    CXR = "cxr-comparison"
    CT = "ct-comparison"
    MRI = "mri-comparison"

    @property
    def label(self) -> str:
        return {"cxr-comparison": "CXR", "ct-comparison": "CT", "mri-comparison": "MRI"}[self.value]


_TASK_OF_MODALITY: Final = {VolumeModality.CT: ComparisonTask.CT, VolumeModality.MRI: ComparisonTask.MRI}
_WHAT: Final = {
    ComparisonTask.CXR: "chest X-ray",
    ComparisonTask.CT: "CT",
    ComparisonTask.MRI: "MRI",
}


class StudyInput(BaseModel):
    """One ImagingStudy as it was read: its id, StudyInstanceUID, the series used and its date."""

    model_config = ConfigDict(frozen=True)

    imaging_study_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    study_uid: str = Field(min_length=1)
    series_uids: tuple[str, ...] = Field(min_length=1)
    started: str = Field(min_length=4)  # FHIR date or dateTime, as the ImagingStudy records it

    @property
    def reference(self) -> str:
        return f"ImagingStudy/{self.imaging_study_id}"

    @property
    def date(self) -> str:
        return self.started[:10]

    def input_ref(self) -> InputRef:
        # What was read is the study and its series: a re-sent ImagingStudy (new versionId, same
        # pixels) must not duplicate the report.
        return InputRef(
            reference=self.reference, value=f"{self.study_uid}:{','.join(sorted(self.series_uids))}"
        )


def _check_inputs(
    task: ComparisonTask, result: ImagingResult, current: StudyInput, prior: StudyInput | None
) -> None:
    if prior is not None and prior.imaging_study_id == current.imaging_study_id:
        raise ValueError(f"{current.reference} cannot be compared with itself")
    if isinstance(result, CxrComparison):
        if task is not ComparisonTask.CXR:
            raise ValueError(f"a chest X-ray comparison result cannot be written as {task.value}")
        if prior is None:
            raise ValueError("a chest X-ray comparison needs the prior study")
        return
    if _TASK_OF_MODALITY[result.modality] is not task:
        raise ValueError(f"a {result.modality.value} comparison result cannot be written as {task.value}")
    if (prior is None) != (result.prior is None):
        raise ValueError("the prior study and the prior read must both be given, or neither")
    reads: list[tuple[VolumeRead, StudyInput]] = [(result.current, current)]
    if result.prior is not None and prior is not None:
        reads.append((result.prior, prior))
    for read, study in reads:
        if read.series_uid not in study.series_uids:
            raise ValueError(f"series {read.series_uid} was read but is not listed for {study.reference}")


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _dates(current: StudyInput, prior: StudyInput | None) -> str:
    return f"{current.date} vs {prior.date}" if prior is not None else f"{current.date} (no prior available)"


def conclusion_text(
    task: ComparisonTask, result: ImagingResult, current: StudyInput, prior: StudyInput | None
) -> str:
    """The report's conclusion: the AI label, then the model's summary or its impression of each study."""
    head = f"{AI_REPORT_LABEL}. {task.label} {_dates(current, prior)}:"
    if isinstance(result, CxrComparison):
        changes = "; ".join(f"{c.finding} {c.change.value}" for c in result.comparisons)
        said = result.summary.strip() or (changes + "." if changes else "no finding compared.")
        return f"{head} {said}"
    text = f"{head} current impression: {result.current.findings.impression}"
    if result.prior is None:
        return text
    return f"{text} Prior impression: {result.prior.findings.impression} ({NOT_COMPARED_NOTE}.)"


def _volume_lines(title: str, read: VolumeRead) -> list[str]:
    lines = [f"{title} findings:"]
    for f in read.findings.findings:
        where = ""
        if f.slices:
            instances = ", ".join("?" if n is None else str(n) for n in read.instances_of(f.slices))
            where = f" (SLICE {', '.join(map(str, f.slices))}; InstanceNumber {instances})"
        lines.append(f"- {f.description}{where}")
    if not read.findings.findings:
        lines.append("- no abnormal finding reported")
    lines.append(f"{title} impression: {read.findings.impression}")
    return lines


def _study_line(role: str, study: StudyInput, slices: int | None) -> str:
    shown = f", {slices} image(s) shown" if slices is not None else ""
    return (
        f"{role}: {study.reference}, started {study.started}, StudyInstanceUID {study.study_uid}, "
        f"series {', '.join(study.series_uids)}{shown}"
    )


def render_report_text(
    task: ComparisonTask,
    result: ImagingResult,
    current: StudyInput,
    prior: StudyInput | None,
    identity: ModelIdentity,
) -> str:
    """The full structured result as plain text (the report's presentedForm)."""
    lines = [
        f"{_WHAT[task]} comparison, current vs prior - {AI_REPORT_LABEL}",
        f"Model: {identity.name} version {identity.version}, prompt {identity.prompt_version or 'unknown'}",
    ]
    if isinstance(result, CxrComparison):
        lines += [_study_line("Current", current, 1)]
        if prior is not None:
            lines.append(_study_line("Prior", prior, 1))
        lines.append("Per finding, prior -> current:")
        for c in result.comparisons:
            lines.append(f"- {c.finding}: {c.change.value}" + (f" - {c.evidence}" if c.evidence else ""))
        if not result.comparisons:
            lines.append("- no finding compared")
        lines.append(f"Summary: {result.summary or '(none given)'}")
    else:
        lines.append(_study_line("Current", current, len(result.current.slice_instances)))
        if result.prior is not None and prior is not None:
            lines.append(_study_line("Prior", prior, len(result.prior.slice_instances)))
        lines += _volume_lines("Current", result.current)
        if result.prior is None:
            lines.append("Prior: no prior available")
        else:
            lines += _volume_lines("Prior", result.prior)
            lines.append(f"Note: {NOT_COMPARED_NOTE}.")
    if result.parse_notes:
        lines.append("Parsing notes: " + "; ".join(result.parse_notes))
    return "\n".join(lines) + "\n"


def _identifier_parameters(
    identity: ModelIdentity, current: StudyInput, prior: StudyInput | None, extra: Mapping[str, Param]
) -> dict[str, Param]:
    # The inputs are sorted in the identifier; which one is current must be said here.
    return {
        "prompt_version": identity.prompt_version,
        "current": current.reference,
        "prior": prior.reference if prior is not None else None,
        **extra,
    }


def build_imaging_report(
    *,
    task: ComparisonTask,
    subject: str,
    result: ImagingResult,
    current: StudyInput,
    prior: StudyInput | None,
    identity: ModelIdentity,
    issued: datetime,
    parameters: Mapping[str, Param] | None = None,
) -> Built[DiagnosticReport]:
    """The DiagnosticReport of one comparison; raises ``ValueError`` on inconsistent input."""
    check_subject(subject)
    check_time("issued", issued)
    _check_inputs(task, result, current, prior)
    studies = [current] if prior is None else [current, prior]
    ident = business_identifier(
        engine=identity.key(),
        task=task.value,
        inputs=[s.input_ref() for s in studies],
        parameters=_identifier_parameters(identity, current, prior, parameters or {}),
    )
    text = render_report_text(task, result, current, prior, identity)
    report = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            "meta": ai_meta(),
            "identifier": [ident.as_fhir()],
            "status": "preliminary",
            "category": [{"coding": [dict(RADIOLOGY_CATEGORY)]}],
            "code": {
                "coding": [dict(IMAGING_REPORT_CODE)],
                "text": f"AI {_WHAT[task]} comparison, current vs prior",
            },
            "subject": {"reference": subject},
            "effectiveDateTime": current.started,
            "issued": issued.isoformat(),
            "imagingStudy": [{"reference": s.reference} for s in studies],
            "conclusion": conclusion_text(task, result, current, prior),
            "presentedForm": [
                attachment(
                    "text/plain; charset=utf-8",
                    text.encode("utf-8"),
                    f"{_WHAT[task]} comparison ({AI_REPORT_LABEL})",
                    issued,
                )
            ],
        }
    )
    return Built(resource=report, resource_type="DiagnosticReport", identifier=ident)


def build_imaging_writeback(
    *,
    task: ComparisonTask,
    subject: str,
    result: ImagingResult,
    current: StudyInput,
    prior: StudyInput | None,
    identity: ModelIdentity,
    issued: datetime,
    parameters: Mapping[str, Param] | None = None,
) -> list[Built[Any]]:
    """[model Device, DiagnosticReport, Provenance] of one comparison, for the patient's transaction.

    ``issued`` is also the Provenance's ``recorded``: the caller's clock, so that this stays pure.
    """
    device: Built[Device] = build_model_device(identity)
    report = build_imaging_report(
        task=task,
        subject=subject,
        result=result,
        current=current,
        prior=prior,
        identity=identity,
        issued=issued,
        parameters=parameters,
    )
    sources: Sequence[str] = [current.reference] + ([prior.reference] if prior is not None else [])
    provenance = build_provenance(
        targets=[report], device=device, sources=sources, identity=identity, recorded=issued
    )
    return [device, report, provenance]
