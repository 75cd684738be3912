"""`read_study`: one ImagingStudy of the patient read by MedGemma on its own (the thin async shell).

The task follows the study's modality: CT or MRI -> findings, chest X-ray -> localization (boxes in
original pixels), whole-slide image -> description (`tools.medgemma.tasks.registry`). Per call:

1. the study must be one of the record's ImagingStudy resources, of the record's patient, not
   AI-asserted, with a StudyInstanceUID; otherwise SKIPPED with the reason, nothing fetched;
2. no model or no DICOMweb server: SKIPPED; an Endpoint on another server: SKIPPED (refused), as
   in the comparison review (`endpoints.dicomweb_refusal`);
3. the series chosen by the one selection policy (the ImagingStudy's series, else the server's
   QIDO-RS listing), fetched and prepared by `tools.imaging.prepare.prepare_dicomweb`;
4. the registered task run and parsed strictly; an unreadable answer is FAILED with the reason and
   the raw text kept for audit (never for logs);
5. the write-back (`tools.writeback.study_read`) and its `PendingWrite`, which the caller posts.

Only our own errors (DICOMweb, DICOM source, imaging, model) end a read as FAILED; anything else
is a bug and propagates. Reasons carry ids and counts, never patient data. No state is shared
between calls: the planning graph may run one per study concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from fhir.resources.R4B.imagingstudy import ImagingStudy

from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient, DicomWebError
from tools.imaging.errors import ImagingError
from tools.imaging.prepare import PreparedSeries, Selected, prepare_dicomweb
from tools.imaging.prepared import PreparedImages
from tools.imaging.selection import ImagingTask, Several, select_pair
from tools.imaging.sources import DicomSourceError, DicomWebRef
from tools.imaging_review.endpoints import dicomweb_refusal, resolve_endpoints
from tools.imaging_review.outcome import AI_SUFFIX
from tools.imaging_review.plan import (
    NOT_CONSIDERED,
    ImagingKind,
    StudyEntry,
    is_chest,
    study_entry,
    subject_matches,
)
from tools.imaging_review.service import NO_DICOMWEB, NO_MODEL, ReviewOptions
from tools.medgemma.errors import ModelError
from tools.medgemma.identity import model_identity
from tools.medgemma.tasks import ModelOutputError
from tools.medgemma.tasks.cxr_localization import CxrLocalization
from tools.medgemma.tasks.registry import AnalysisTask, TaskOptions, lookup, tasks_for
from tools.medgemma.tasks.slide_description import SlideDescription
from tools.medgemma.tasks.volume_findings import VolumeFindings
from tools.medgemma.types import ModelBackend
from tools.record import PatientRecord
from tools.writeback.ai_labels import is_ai_asserted
from tools.writeback.identifiers import Built, Param
from tools.writeback.pending import PendingWrite
from tools.writeback.study_read import ReadStudy, StudyReadResult, build_study_read, study_read_write

__all__ = ["ReadStatus", "StudyRead", "find_study", "read_study", "study_reference"]

_READ_KINDS: Final = (ImagingKind.CXR, ImagingKind.CT, ImagingKind.MRI, ImagingKind.WSI)


class ReadStatus(StrEnum):
    READY = "ready"  # parsed; `built` and `pending` hold what to write
    SKIPPED = "skipped"  # not attempted; nothing fetched
    FAILED = "failed"  # attempted; the images or the model's answer not usable; nothing to write


@dataclass(frozen=True, eq=False)
class StudyRead:
    """One study read (or not): what was read, how it ended, the result and what to write."""

    study: str  # "ImagingStudy/<id>" as asked
    status: ReadStatus
    kind: ImagingKind | None = None
    task: AnalysisTask | None = None
    reason: str | None = None
    result: StudyReadResult | None = None
    selected: Selected | None = None  # study, series and instance UIDs of the images shown
    study_uid: str | None = None
    started: str | None = None
    # The SOP instance shown as each prepared image, in order, when one image is one instance.
    slice_instances: tuple[str, ...] = ()
    built: tuple[Built[Any], ...] = ()
    pending: PendingWrite | None = None
    notes: tuple[str, ...] = ()
    raw_text: str | None = None  # the model's whole answer when it could not be read (audit only)

    def __post_init__(self) -> None:
        if (self.status is ReadStatus.READY) != (self.pending is not None):
            raise ValueError("a ready read has a pending write, and only a ready one")
        if self.status is not ReadStatus.READY and not self.reason:
            raise ValueError(f"a {self.status.value} read needs its reason")

    @property
    def summary(self) -> str:
        """One plain-text line, e.g. "CT 2026-05-01 ImagingStudy/x: <impression> (AI-generated)"."""
        head = (
            f"{self.kind.label if self.kind else 'Imaging'} {(self.started or 'undated')[:10]} {self.study}"
        )
        result = self.result
        if self.status is not ReadStatus.READY or result is None:
            return f"{head}: not analysed - {self.reason or self.status.value}"
        if isinstance(result, VolumeFindings):
            said = result.impression
        elif isinstance(result, SlideDescription):
            said = result.description
        else:
            said = "localized " + (", ".join(b.anatomy or b.label for b in result.boxes) or "nothing")
        return f"{head}: {' '.join(said.split())[:200]} {AI_SUFFIX}"


def study_reference(ref: str) -> str:
    """`ImagingStudy/<id>` from `<id>`, `ImagingStudy/<id>` or an absolute URL ending so."""
    text = ref.strip()
    if "ImagingStudy/" in text:
        text = text.rsplit("ImagingStudy/", 1)[1]
    return f"ImagingStudy/{text.split('/', 1)[0]}"


def find_study(record: PatientRecord, ref: str) -> ImagingStudy | None:
    """The record's ImagingStudy named by `ref`, or None (never a study of another record)."""
    wanted = study_reference(ref).removeprefix("ImagingStudy/")
    for resource in record.of_type("ImagingStudy"):
        if isinstance(resource, ImagingStudy) and resource.id == wanted:
            return resource
    return None


def _kind(entry: StudyEntry) -> ImagingKind | None:
    return next((k for k in entry.kinds() if k in _READ_KINDS), None)


def _refusal_before_fetch(record: PatientRecord, ref: str) -> tuple[StudyEntry | None, str | None]:
    resource = find_study(record, ref)
    if resource is None:
        return None, f"refused: {study_reference(ref)} is not an ImagingStudy of this patient's record"
    entry = study_entry(resource)
    if not subject_matches(resource, record.patient_id):
        return entry, f"refused: {entry.reference} belongs to another subject"
    if resource.status in NOT_CONSIDERED:
        return entry, f"{entry.reference} is {resource.status}"
    if is_ai_asserted(resource):
        return entry, f"{entry.reference} is AI-asserted; AI output is never an input"
    if entry.study_uid is None:
        return entry, f"{entry.reference} has no valid StudyInstanceUID"
    if entry.started is None:
        return entry, f"{entry.reference} has no start date"
    kind = _kind(entry)
    if kind is None:
        return entry, f"no reading recipe for modality {', '.join(entry.modalities) or 'none recorded'}"
    if kind is ImagingKind.CXR and is_chest(entry) is False:
        return entry, f"{entry.reference} is not a chest X-ray (its body site is not the chest)"
    return entry, None


async def _endpoint_refusal(
    entry: StudyEntry,
    series: str | None,
    record: PatientRecord,
    dicomweb: DicomWebClient,
    fhir: FhirClient | None,
) -> str | None:
    refs = entry.endpoints_for(series)
    contained = {e.reference: e for e in entry.contained}
    resolved = await resolve_endpoints(refs, record=record, contained=contained, fhir=fhir)
    return dicomweb_refusal(entry.reference, refs, resolved, dicomweb.base_url)


def _original_image(prepared: PreparedImages) -> npt.NDArray[np.uint8]:
    """The radiograph as read, without its padding: the frame the boxes are in."""
    padding = prepared.metadata.padding
    image: npt.NDArray[np.uint8] = prepared.images[0]
    if padding is None:
        return image
    cropped: npt.NDArray[np.uint8] = image[
        padding.top : padding.top + padding.height, padding.left : padding.left + padding.width
    ]
    return cropped


def _slice_instances(series: PreparedSeries) -> tuple[str, ...]:
    if not isinstance(series.prepared, PreparedImages):
        return ()
    uids = series.selected.instance_uids
    return uids if len(uids) == len(series.prepared.metadata.slices) else ()


async def read_study(
    record: PatientRecord,
    study_ref: str,
    *,
    dicomweb: DicomWebClient | None,
    model: ModelBackend | None,
    now: datetime,
    task: AnalysisTask | None = None,
    fhir: FhirClient | None = None,
    question: str | None = None,
    options: ReviewOptions | None = None,
    current: Iterable[Any] | None = None,
) -> StudyRead:
    """Read one of the record's studies with the task of its modality (module docstring).

    `task`: the modality's default unless given (`compare` is not a single-study read: ValueError).
    `fhir` (optional) reads Endpoints the record refers to but does not hold. `question` replaces
    the task's default question (and is part of the write's identity). `current`: the resources an
    older read is looked for in, to retire it (default: the record's DiagnosticReports).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if task is AnalysisTask.COMPARE:
        raise ValueError("compare needs a prior study; read_study reads one study")
    ref = study_reference(study_ref)
    entry, refusal = _refusal_before_fetch(record, study_ref)
    kind = _kind(entry) if entry is not None else None
    base: dict[str, Any] = {
        "study": ref,
        "kind": kind,
        "study_uid": entry.study_uid if entry else None,
        "started": entry.started if entry else None,
    }
    if refusal is not None:
        return StudyRead(status=ReadStatus.SKIPPED, reason=refusal, **base)
    assert entry is not None
    assert kind is not None
    assert entry.study_uid is not None
    modality = ImagingTask(kind.value)
    chosen = task or tasks_for(modality)[0]
    spec = lookup(modality, chosen)  # KeyError for a task the modality does not have: a caller bug
    base["task"] = chosen
    if model is None:
        return StudyRead(status=ReadStatus.SKIPPED, reason=NO_MODEL, **base)
    if dicomweb is None:
        return StudyRead(status=ReadStatus.SKIPPED, reason=NO_DICOMWEB, **base)
    series_uid, _ = select_pair([s.candidate for s in entry.series], [], modality)
    refusal = await _endpoint_refusal(entry, series_uid, record, dicomweb, fhir)
    if refusal is not None:
        return StudyRead(status=ReadStatus.SKIPPED, reason=refusal, **base)
    try:
        preparation = await prepare_dicomweb(
            DicomWebRef(study_uid=entry.study_uid),
            modality,
            client=dicomweb,
            series=series_uid,
            several=Several.FIRST,
            label=ref,
        )
        series = preparation.one()
    except (DicomWebError, DicomSourceError) as exc:
        return StudyRead(status=ReadStatus.FAILED, reason=f"images could not be fetched: {exc}", **base)
    except ImagingError as exc:
        return StudyRead(status=ReadStatus.FAILED, reason=f"images could not be prepared: {exc}", **base)
    unread = [f for f in preparation.failures if f.kind == "input"]
    notes = (f"{len(unread)} instance(s) of the series could not be read",) if unread else ()
    base |= {"selected": series.selected, "slice_instances": _slice_instances(series), "notes": notes}
    options = options or ReviewOptions()
    task_options = TaskOptions(
        question=question, thinking=options.thinking, max_new_tokens=options.max_new_tokens
    )
    try:
        run = await spec.job(series.prepared, options=task_options).run(model)
    except ModelOutputError as exc:
        reason = f"model answer not usable: {exc.reason}"
        return StudyRead(status=ReadStatus.FAILED, reason=reason, raw_text=exc.raw_text, **base)
    except ModelError as exc:
        return StudyRead(status=ReadStatus.FAILED, reason=f"model call failed: {exc}", **base)
    result = run.result
    if not isinstance(result, VolumeFindings | CxrLocalization | SlideDescription):
        raise TypeError(f"{spec.prompt_version}: parsed {type(result).__name__}")  # the registry pairs them
    selected = series.selected
    if isinstance(result, CxrLocalization) and len(selected.instance_uids) != 1:
        # Boxes are tied to the SOP instance they lie on: without its UID they cannot be.
        reason = f"the image read has {len(selected.instance_uids)} SOPInstanceUIDs, not one"
        return StudyRead(status=ReadStatus.FAILED, reason=reason, **base)
    read = ReadStudy(
        imaging_study_id=entry.id,
        study_uid=selected.study_uid or entry.study_uid,
        series_uid=selected.series_uid or series_uid or "",
        instance_uids=selected.instance_uids,
        started=entry.started or "",  # set: refused above otherwise
    )
    parameters: dict[str, Param] = {
        "question": (question or "").strip() or None,
        "max_new_tokens": options.max_new_tokens,
        "thinking": options.thinking,
    }
    image = _original_image(series.images) if isinstance(result, CxrLocalization) else None
    # Off the event loop: the overlay PNG of a radiograph is tens of milliseconds of zlib.
    built = await asyncio.to_thread(
        build_study_read,
        subject=f"Patient/{record.patient_id}",
        result=result,
        study=read,
        identity=model_identity(model.info, spec.prompt_version),
        issued=now,
        image=image,
        parameters=parameters,
    )
    older = current if current is not None else record.of_type("DiagnosticReport")
    pending = study_read_write(built, read, older)
    return StudyRead(status=ReadStatus.READY, result=result, built=tuple(built), pending=pending, **base)
