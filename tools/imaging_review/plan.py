"""Which imaging comparisons to run for one patient (pure): current vs prior per modality and body site.

From the record's ImagingStudy resources:

* kinds by series modality: CR/DX -> chest X-ray (CXR), CT -> CT, MR -> MRI, SM -> whole-slide
  (skipped: not part of this review), anything else -> skipped (no recipe);
* per kind and body site (the series' coded `bodySite`; studies without one form their own
  group), the newest study is the current one and the newest strictly earlier study is its
  prior. One comparison per group: older studies are history, not inputs;
* CT or MRI without a prior: findings on the current study alone ("no prior available");
  a chest X-ray without a prior: skipped (localization is not part of this review);
* a CR/DX study is a chest X-ray only when its body site says chest, or, with no body site
  coded, when its description does; otherwise skipped;
* not considered: studies that are cancelled, entered in error or only registered. Reported as
  skipped: studies of another subject, AI-asserted ones (AI output is never an input), and
  studies that lack a start date or a StudyInstanceUID (`urn:dicom:uid`, or an `urn:ietf:rfc:3986`
  `urn:oid:` value as Synthea writes it).

Series: by the one series-selection policy (`tools.imaging.selection.select_pair`): the study's
series of the kind's modalities; with several, the current and prior series whose descriptions
match (T1 with T1), else the lowest series number. A study that lists no series leaves the choice
to the fetch (the same policy on the configured server's QIDO-RS answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydantic import BaseModel, ConfigDict

from tools.imaging.dicomweb import is_uid
from tools.imaging.selection import TASK_MODALITIES, ImagingTask, SeriesCandidate, rank, select_pair
from tools.imaging_review.endpoints import EndpointInfo, endpoint_info

# Private in tools.record; reused so that FHIR dates are read one way (partial dates included).
from tools.record import PatientRecord, as_utc
from tools.writeback.ai_labels import is_ai_asserted

__all__ = [
    "DICOM_UID_SYSTEM",
    "ImagingKind",
    "PlannedComparison",
    "SeriesEntry",
    "StudyEntry",
    "is_chest",
    "plan_comparisons",
    "study_entry",
]

DICOM_UID_SYSTEM: Final = "urn:dicom:uid"
_RFC3986: Final = "urn:ietf:rfc:3986"
# SNOMED CT: Thoracic structure (DICOM CID 4031 "CHEST"), Entire thorax.
_CHEST_CODES: Final = frozenset({"51185008", "302551006"})
_CHEST_WORDS: Final = ("chest", "thorax", "thoracic", "cxr", "lung")
NOT_CONSIDERED: Final = frozenset({"cancelled", "entered-in-error", "registered"})


class ImagingKind(StrEnum):
    CXR = "cxr"
    CT = "ct"
    MRI = "mri"
    WSI = "wsi"
    OTHER = "other"

    @property
    def label(self) -> str:
        return self.value.upper()


MODALITIES: Final[dict[ImagingKind, tuple[str, ...]]] = {
    kind: TASK_MODALITIES[ImagingTask(kind.value)] for kind in ImagingKind if kind is not ImagingKind.OTHER
}
_KIND_OF: Final = {m: kind for kind, modalities in MODALITIES.items() for m in modalities}
_COMPARED: Final = (ImagingKind.CXR, ImagingKind.CT, ImagingKind.MRI)


class SeriesEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    uid: str
    modality: str | None
    number: int | None
    description: str
    body_site: str | None  # "system|code", or the site's text when uncoded
    endpoints: tuple[str, ...]  # Endpoint references of this series (override the study's)

    @property
    def candidate(self) -> SeriesCandidate:
        return SeriesCandidate(
            uid=self.uid, modality=self.modality, number=self.number, description=self.description
        )


class StudyEntry(BaseModel):
    """What the review needs of one ImagingStudy."""

    model_config = ConfigDict(frozen=True)

    id: str
    study_uid: str | None
    started: str | None  # as recorded (FHIR date or dateTime text)
    when: datetime | None  # `started` in UTC, for ordering
    modalities: tuple[str, ...]  # of its series, else of the study
    series: tuple[SeriesEntry, ...]
    endpoints: tuple[str, ...]
    description: str
    contained: tuple[EndpointInfo, ...] = ()  # contained Endpoints, referenced as "#id"

    @property
    def reference(self) -> str:
        return f"ImagingStudy/{self.id}"

    @property
    def date(self) -> str:
        return (self.started or "undated")[:10]

    def kinds(self) -> list[ImagingKind]:
        found = {_KIND_OF.get(m.upper(), ImagingKind.OTHER) for m in self.modalities}
        return sorted(found, key=list(ImagingKind).index)

    def series_of(self, kind: ImagingKind) -> list[SeriesEntry]:
        """The series of the kind's modalities, in the selection policy's order."""
        wanted = MODALITIES.get(kind, ())
        by_uid = {s.uid: s for s in self.series}
        return [by_uid[c.uid] for c in rank(s.candidate for s in self.series) if c.code in wanted]

    def body_sites(self, kind: ImagingKind) -> tuple[str, ...]:
        return tuple(sorted({s.body_site for s in self.series_of(kind) if s.body_site}))

    def endpoints_for(self, series_uid: str | None) -> tuple[str, ...]:
        """The Endpoints that serve `series_uid`: its own when it names any, else the study's."""
        for s in self.series:
            if s.uid == series_uid and s.endpoints:
                return s.endpoints
        return self.endpoints


class PlannedComparison(BaseModel):
    """One comparison to run, or one study skipped with the reason (`skip_reason`)."""

    model_config = ConfigDict(frozen=True)

    kind: ImagingKind
    current: StudyEntry
    prior: StudyEntry | None
    current_series: str | None = None  # None: chosen at fetch time (the study lists no series)
    prior_series: str | None = None
    skip_reason: str | None = None
    notes: tuple[str, ...] = ()


def _text(value: Any) -> str:
    return str(value) if value is not None else ""


def _started(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _site(coding: Any) -> str | None:
    if coding is None:
        return None
    if getattr(coding, "code", None):
        return f"{_text(coding.system)}|{coding.code}"
    display = _text(getattr(coding, "display", None)).strip().lower()
    return display or None


def _refs(references: Iterable[Any] | None) -> tuple[str, ...]:
    return tuple(r.reference for r in references or () if getattr(r, "reference", None))


def _study_uid(resource: ImagingStudy) -> str | None:
    """The StudyInstanceUID: R4's `urn:dicom:uid` identifier, or an rfc3986 `urn:oid:` one (Synthea)."""
    for ident in resource.identifier or ():
        value = str(ident.value or "")
        if ident.system == DICOM_UID_SYSTEM or (ident.system == _RFC3986 and value.startswith("urn:oid:")):
            uid = value.removeprefix("urn:oid:")
            if is_uid(uid):
                return uid
    return None


def study_entry(resource: ImagingStudy) -> StudyEntry:
    """The review's view of an ImagingStudy (pure)."""
    series = tuple(
        SeriesEntry(
            uid=str(s.uid),
            modality=(_text(s.modality.code) or None) if s.modality is not None else None,
            number=s.number,
            description=_text(s.description),
            body_site=_site(s.bodySite),
            endpoints=_refs(s.endpoint),
        )
        for s in resource.series or ()
        if s.uid
    )
    modalities = tuple(dict.fromkeys(s.modality for s in series if s.modality))
    if not modalities:
        modalities = tuple(dict.fromkeys(str(m.code) for m in resource.modality or () if m.code))
    return StudyEntry(
        id=str(resource.id),
        study_uid=_study_uid(resource),
        started=_started(resource.started),
        when=as_utc(resource.started),
        modalities=modalities,
        series=series,
        endpoints=_refs(resource.endpoint),
        description=_text(resource.description),
        contained=tuple(
            endpoint_info(f"#{c.id}", c)
            for c in resource.contained or ()
            if c.get_resource_type() == "Endpoint" and c.id
        ),
    )


def is_chest(study: StudyEntry) -> bool | None:
    """True/False from the coded body site of its CR/DX series; None when none is coded."""
    sites = study.body_sites(ImagingKind.CXR)
    if not sites:
        return None
    return any(
        site.split("|")[-1] in _CHEST_CODES if "|" in site else any(w in site for w in _CHEST_WORDS)
        for site in sites
    )


def _described_as_chest(study: StudyEntry) -> bool:
    texts = [study.description, *(s.description for s in study.series_of(ImagingKind.CXR))]
    return any(w in t.lower() for t in texts for w in _CHEST_WORDS)


def subject_matches(resource: ImagingStudy, patient_id: str) -> bool:
    ref = _text(getattr(resource.subject, "reference", None))
    wanted = f"Patient/{patient_id}"
    return ref == wanted or ref.endswith("/" + wanted)


def _skip(kind: ImagingKind, study: StudyEntry, reason: str) -> PlannedComparison:
    return PlannedComparison(kind=kind, current=study, prior=None, skip_reason=reason)


def _plan_group(kind: ImagingKind, studies: Sequence[StudyEntry]) -> PlannedComparison:
    ordered = sorted(studies, key=lambda s: (s.when, s.id))  # every `when` is set here
    current = ordered[-1]
    assert current.when is not None
    earlier = [s for s in ordered if s.when is not None and s.when < current.when]
    prior = earlier[-1] if earlier else None
    current_series, prior_series = select_pair(
        [s.candidate for s in current.series],
        [s.candidate for s in prior.series] if prior is not None else [],
        ImagingTask(kind.value),
    )
    if prior is None:
        if kind is ImagingKind.CXR:
            return _skip(
                kind,
                current,
                "no prior chest X-ray of the same body site (localization is not part of this review)",
            )
        return PlannedComparison(
            kind=kind,
            current=current,
            prior=None,
            current_series=current_series,
            notes=("no prior available",),
        )
    return PlannedComparison(
        kind=kind, current=current, prior=prior, current_series=current_series, prior_series=prior_series
    )


def plan_comparisons(record: PatientRecord) -> list[PlannedComparison]:
    """The comparisons to run and the studies skipped, in kind order (CXR, CT, MRI, then skipped ones)."""
    groups: dict[tuple[ImagingKind, tuple[str, ...]], list[StudyEntry]] = {}
    skipped: list[PlannedComparison] = []
    for resource in record.of_type("ImagingStudy"):
        if not isinstance(resource, ImagingStudy) or resource.status in NOT_CONSIDERED:
            continue
        study = study_entry(resource)
        kinds = study.kinds()
        first = kinds[0] if kinds else ImagingKind.OTHER
        if not subject_matches(resource, record.patient_id):
            skipped.append(_skip(first, study, f"{study.reference} belongs to another subject"))
            continue
        if is_ai_asserted(resource):
            skipped.append(
                _skip(first, study, f"{study.reference} is AI-asserted; AI output is never an input")
            )
            continue
        compared = [k for k in kinds if k in _COMPARED]
        if not compared:
            if ImagingKind.WSI in kinds:
                reason = "whole-slide pathology is not part of the imaging comparison"
                skipped.append(_skip(ImagingKind.WSI, study, reason))
            else:
                listed = ", ".join(study.modalities) or "none recorded"
                skipped.append(_skip(ImagingKind.OTHER, study, f"no comparison recipe for modality {listed}"))
            continue
        if study.study_uid is None:
            reason = f"{study.reference} has no valid StudyInstanceUID ({DICOM_UID_SYSTEM} identifier)"
            skipped.append(_skip(compared[0], study, reason))
            continue
        if study.when is None:
            skipped.append(_skip(compared[0], study, f"{study.reference} has no start date to order it by"))
            continue
        for kind in compared:
            if kind is ImagingKind.CXR:
                chest = is_chest(study)
                if chest is False or (chest is None and not _described_as_chest(study)):
                    what = "its body site is not the chest" if chest is False else "no body site says chest"
                    skipped.append(_skip(kind, study, f"{study.reference} is not a chest X-ray ({what})"))
                    continue
            groups.setdefault((kind, study.body_sites(kind)), []).append(study)
    planned = [_plan_group(kind, studies) for (kind, _), studies in groups.items()]
    order = list(ImagingKind).index
    planned.sort(key=lambda p: (order(p.kind), p.current.started or "", p.current.id))
    return planned + skipped
