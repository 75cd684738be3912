"""The patient summary the app shows, built from the patient's FHIR resources as JSON (pure).

Input: what five searches of one patient return (`PatientResources`); output: the JSON of
`GET /api/patients/{id}/summary` (`SummaryView`). What is read from ChartAgent's own output
(README "What goes over the wire" and tools/writeback):

- `summary`: the current longitudinal DiagnosticReport (`tools.writeback.summaries.newest_summary`);
  its `presentedForm` attachments as same-origin API URLs that stream them.
- `trends`: the trend Observations the summary lists in `result`. Their points are the source
  results in `derivedFrom`, read by the trend engine's own series builder (`tools.labs.series`),
  so that feed and PDF values of one analyte are in one unit, as in the report; the reference
  range is the one the engine judged the direction by (`compute_trend`).
- `pdf_values`: values transcribed from lab-report PDFs (AIAST + the document-extraction tag),
  with the page and box of `urn:chartagent:source-location`.
- `imaging`: ChartAgent's imaging reports (comparisons and single-study readings) that still
  stand, with the chest X-ray boxes of their `result` Observations and the overlay PNG.
- `pending`: what waits for a person: the current AI reports and the transcribed values that are
  still `preliminary`. Trend and box Observations are reviewed through the report that lists them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from pydantic import BaseModel, ValidationError

from tools.labs.series import build_series
from tools.text_safety import safe_text
from tools.trends import compute_trend
from tools.writeback.approval import is_ai_output
from tools.writeback.builders import DIRECTION_SYSTEM, TREND_CODE_SYSTEM
from tools.writeback.extraction_labels import is_document_extraction
from tools.writeback.lab_results import SOURCE_LOCATION_URL
from tools.writeback.study_read import BOX_CODE, DICOM_IMAGE_URL, READ_SYSTEM
from tools.writeback.summaries import CURRENT_STATUSES, newest_summary

__all__ = [
    "TREND_MEMO",
    "AttachmentUrl",
    "PatientResources",
    "SummaryView",
    "TrendMemo",
    "build_summary_view",
    "pdf_attachment_index",
]

JsonDict = dict[str, Any]
# (resourceType, id, index in presentedForm / content) -> the URL that streams that attachment.
AttachmentUrl = Callable[[str, str, int], str]

_DICOM_UID_SYSTEM: Final = "urn:dicom:uid"
_BOX_EDGES: Final = ("x0", "y0", "x1", "y1")
# Attachments the app may open: the report's text, its plots and overlays, lab-report PDFs.
SERVED_CONTENT_TYPES: Final = frozenset({"text/plain", "image/png", "application/pdf"})
# What `newest_summary` reads of a DiagnosticReport (and R4B requires).
_SUMMARY_KEYS: Final = frozenset(
    {"resourceType", "id", "meta", "identifier", "status", "code", "subject", "issued", "imagingStudy"}
)


@dataclass(frozen=True)
class PatientResources:
    """One patient's resources as the server sent them (JSON)."""

    patient: JsonDict
    observations: Sequence[JsonDict] = ()
    reports: Sequence[JsonDict] = ()
    documents: Sequence[JsonDict] = ()
    studies: Sequence[JsonDict] = ()
    by_reference: dict[str, JsonDict] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {
            f"{r['resourceType']}/{r['id']}": r
            for r in (*self.observations, *self.reports, *self.documents, *self.studies)
            if r.get("id") and r.get("resourceType")
        }
        object.__setattr__(self, "by_reference", index)


class PatientBanner(BaseModel):
    id: str
    name: str | None
    birthDate: str | None  # FHIR element names, as the app reads them
    gender: str | None


class FormLink(BaseModel):
    contentType: str
    url: str
    title: str | None = None


class SummaryReport(BaseModel):
    reference: str
    status: str
    conclusion: str | None
    issued: str | None
    presentedForm: list[FormLink]


class TrendPointView(BaseModel):
    time: str
    value: float
    reference: str


class RangeView(BaseModel):
    low: float | None
    high: float | None


class TrendView(BaseModel):
    analyte: str
    code: str | None
    unit: str | None
    points: list[TrendPointView]
    referenceRange: RangeView | None
    direction: str | None
    reference: str


class PdfValue(BaseModel):
    reference: str
    analyte: str
    value: float | str | None
    unit: str | None
    document: str | None
    page: int | None
    bbox: list[float] | None
    # The PDF's attachment URL (open it at `#page=<page>`); None when the document is not at hand.
    url: str | None


class ImagingBox(BaseModel):
    label: str
    bbox: list[float]
    instance: str | None


class ImagingView(BaseModel):
    reference: str
    status: str
    conclusion: str | None
    study: str | None
    boxes: list[ImagingBox]
    overlay: str | None


class PendingResult(BaseModel):
    reference: str
    resourceType: Literal["Observation", "DiagnosticReport"]
    status: Literal["preliminary"]
    title: str
    issued: str | None


class SummaryView(BaseModel):
    patient: PatientBanner
    need_patient_banner: bool
    summary: SummaryReport | None
    trends: list[TrendView]
    pdf_values: list[PdfValue]
    imaging: list[ImagingView]
    pending: list[PendingResult]


def _has_coding(concept: Mapping[str, Any] | None, system: str, code: str | None = None) -> bool:
    return any(
        c.get("system") == system and (code is None or c.get("code") == code)
        for c in (concept or {}).get("coding") or []
    )


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _local(reference: str | None) -> str | None:
    """`Type/id` of a literal reference, relative or absolute (`https://ehr/fhir/Type/id`)."""
    if not reference:
        return None
    parts = reference.rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _name(patient: Mapping[str, Any]) -> str | None:
    names = patient.get("name") or []
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if not chosen:
        return None
    text = chosen.get("text") or " ".join([*(chosen.get("given") or []), chosen.get("family") or ""])
    return safe_text(text) or None


def _text(concept: Mapping[str, Any] | None) -> str:
    concept = concept or {}
    coding = concept.get("coding") or [{}]
    return safe_text(concept.get("text") or coding[0].get("display") or coding[0].get("code") or "")


def _component(obs: Mapping[str, Any], code: str) -> Mapping[str, Any] | None:
    return next(
        (c for c in obs.get("component") or [] if _has_coding(c.get("code"), TREND_CODE_SYSTEM, code)), None
    )


def _forms(report: Mapping[str, Any], url: AttachmentUrl) -> list[FormLink]:
    out = []
    for i, form in enumerate(report.get("presentedForm") or []):
        content_type = str(form.get("contentType") or "")
        if content_type.split(";")[0].strip().lower() in SERVED_CONTENT_TYPES:
            title = safe_text(form.get("title")) or None
            out.append(
                FormLink(contentType=content_type, url=url("DiagnosticReport", report["id"], i), title=title)
            )
    return out


def _summary(resources: PatientResources, url: AttachmentUrl) -> JsonDict | None:
    parsed = []
    for raw in resources.reports:
        if not is_ai_output(raw):
            continue
        try:
            # Only what newest_summary reads: text, attachments and results stay unparsed.
            parsed.append(
                DiagnosticReport.model_validate({k: v for k, v in raw.items() if k in _SUMMARY_KEYS})
            )
        except ValidationError:
            continue  # not one of ours after all: a summary of ours always parses
    newest = newest_summary(parsed)
    return None if newest is None else resources.by_reference.get(f"DiagnosticReport/{newest.id}")


def _version(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta") or {}
    version = meta.get("versionId") or meta.get("lastUpdated")
    return str(version) if version else None


class TrendMemo:
    """Trend views by the exact versions they were built from (the trend Observation and every
    source): the view is a pure function of those, and building it (parsing the sources, the
    series, the judged range) is most of the summary's cost. Bounded; thread-safe (views are built
    off the event loop). Resources without a version are never memoized."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._views: OrderedDict[tuple[str, ...], TrendView] = OrderedDict()
        self._lock = threading.Lock()

    def key(
        self, trend_obs: Mapping[str, Any], sources: Sequence[Mapping[str, Any]]
    ) -> tuple[str, ...] | None:
        parts = [_ref(trend_obs), _version(trend_obs)]
        for source in sources:
            parts += [_ref(source), _version(source)]
        return None if None in parts else tuple(str(p) for p in parts)

    def get(self, key: tuple[str, ...]) -> TrendView | None:
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
            return view

    def put(self, key: tuple[str, ...], view: TrendView) -> None:
        with self._lock:
            self._views[key] = view
            while len(self._views) > self.size:
                self._views.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._views.clear()


TREND_MEMO: Final = TrendMemo()


def _trend(trend_obs: Mapping[str, Any], resources: PatientResources) -> TrendView:
    raw_sources = [
        source
        for d in trend_obs.get("derivedFrom") or []
        if (source := resources.by_reference.get(_local(d.get("reference")) or "")) is not None
        and source.get("resourceType") == "Observation"
    ]
    key = TREND_MEMO.key(trend_obs, raw_sources)
    if key is not None and (known := TREND_MEMO.get(key)) is not None:
        return known
    view = _build_trend(trend_obs, raw_sources)
    if key is not None:
        TREND_MEMO.put(key, view)
    return view


def _build_trend(trend_obs: Mapping[str, Any], raw_sources: Sequence[Mapping[str, Any]]) -> TrendView:
    analyte = _component(trend_obs, "analyte") or {}
    concept = analyte.get("valueCodeableConcept") or {}
    coding = (concept.get("coding") or [{}])[0]
    direction = _component(trend_obs, "direction") or {}
    direction_coding: Mapping[str, Any] = next(
        (
            c
            for c in (direction.get("valueCodeableConcept") or {}).get("coding") or []
            if c.get("system") == DIRECTION_SYSTEM
        ),
        {},
    )
    sources = []
    for source in raw_sources:
        try:
            sources.append(Observation.model_validate(source))
        except ValidationError:
            continue
    points: list[TrendPointView] = []
    reference_range = None
    unit = (trend_obs.get("valueQuantity") or {}).get("unit")
    series = build_series(sources).series
    if series:
        # The sources of one trend are one series; the longest is it, should a server add noise.
        chosen = max(series, key=lambda s: len(s.points))
        points = [
            TrendPointView(time=p.time.isoformat(), value=p.value, reference=p.reference)
            for p in chosen.points
        ]
        unit = unit or chosen.unit
        if chosen.points:
            judged = compute_trend(chosen)
            if judged.reference_low is not None or judged.reference_high is not None:
                reference_range = RangeView(low=judged.reference_low, high=judged.reference_high)
    return TrendView(
        analyte=_text(concept) or _text(trend_obs.get("code")),
        code=coding.get("code"),
        unit=unit,
        points=points,
        referenceRange=reference_range,
        direction=direction_coding.get("code"),
        reference=_ref(trend_obs),
    )


def pdf_attachment_index(document: Mapping[str, Any]) -> int | None:
    """The index in `content` of the document's first PDF (the one the extractor read first)."""
    for i, content in enumerate(document.get("content") or []):
        content_type = str((content.get("attachment") or {}).get("contentType") or "")
        if content_type.split(";")[0].strip().lower() == "application/pdf":
            return i
    return None


def _source_location(obs: Mapping[str, Any]) -> tuple[int | None, list[float] | None]:
    ext = next((e for e in obs.get("extension") or [] if e.get("url") == SOURCE_LOCATION_URL), None)
    if ext is None:
        return None, None
    parts = {e.get("url"): e for e in ext.get("extension") or []}
    page = (parts.get("page") or {}).get("valueInteger")
    bbox_text = str((parts.get("bbox") or {}).get("valueString") or "")
    try:
        bbox = [float(v) for v in bbox_text.split(",")] if bbox_text else None
    except ValueError:
        bbox = None
    return (page if isinstance(page, int) else None), (bbox if bbox and len(bbox) == 4 else None)


def _pdf_value(obs: Mapping[str, Any], resources: PatientResources, url: AttachmentUrl) -> PdfValue:
    page, bbox = _source_location(obs)
    document = next(
        (
            ref
            for d in obs.get("derivedFrom") or []
            if (ref := _local(d.get("reference"))) and ref.startswith("DocumentReference/")
        ),
        None,
    )
    link = None
    doc = resources.by_reference.get(document or "")
    if doc is not None and (index := pdf_attachment_index(doc)) is not None:
        link = url("DocumentReference", doc["id"], index)
    quantity = obs.get("valueQuantity")
    value: float | str | None = (
        quantity.get("value") if quantity else safe_text(obs.get("valueString")) or None
    )
    return PdfValue(
        reference=_ref(obs),
        analyte=_text(obs.get("code")),
        value=value,
        unit=(quantity or {}).get("unit"),
        document=document,
        page=page,
        bbox=bbox,
        url=link,
    )


def _study_uid(study: Mapping[str, Any] | None) -> str | None:
    for identifier in (study or {}).get("identifier") or []:
        if identifier.get("system") == _DICOM_UID_SYSTEM and identifier.get("value"):
            return str(identifier["value"]).removeprefix("urn:oid:")
    return None


def _dicom_uids(obs: Mapping[str, Any]) -> dict[str, str]:
    ext = next((e for e in obs.get("extension") or [] if e.get("url") == DICOM_IMAGE_URL), None)
    return {
        str(e.get("url")): str(e.get("valueOid") or "").removeprefix("urn:oid:")
        for e in (ext or {}).get("extension") or []
    }


def _box(obs: Mapping[str, Any]) -> ImagingBox | None:
    edges: dict[str, float] = {}
    for component in obs.get("component") or []:
        value = (component.get("valueQuantity") or {}).get("value")
        for c in (component.get("code") or {}).get("coding") or []:
            code = str(c.get("code", ""))
            if c.get("system") == READ_SYSTEM and code.startswith("box-") and isinstance(value, int | float):
                edges[code.removeprefix("box-")] = float(value)
    if any(k not in edges for k in _BOX_EDGES):
        return None
    label = safe_text((obs.get("bodySite") or {}).get("text")) or _text(obs.get("code"))
    return ImagingBox(
        label=label, bbox=[edges[k] for k in _BOX_EDGES], instance=_dicom_uids(obs).get("instance")
    )


def _imaging(report: Mapping[str, Any], resources: PatientResources, url: AttachmentUrl) -> ImagingView:
    boxes: list[ImagingBox] = []
    uids: dict[str, str] = {}
    for r in report.get("result") or []:
        obs = resources.by_reference.get(_local(r.get("reference")) or "")
        if obs is not None and _has_coding(obs.get("code"), BOX_CODE["system"], BOX_CODE["code"]):
            if (box := _box(obs)) is not None:
                boxes.append(box)
            uids = uids or _dicom_uids(obs)
    studies = [_local(s.get("reference")) for s in report.get("imagingStudy") or []]
    # The current study comes first (a comparison lists [current, prior]).
    study = uids.get("study") or next(
        (u for s in studies if (u := _study_uid(resources.by_reference.get(s or ""))) is not None), None
    )
    overlay = next(
        (
            url("DiagnosticReport", report["id"], i)
            for i, form in enumerate(report.get("presentedForm") or [])
            if str(form.get("contentType") or "").split(";")[0].strip().lower() == "image/png"
        ),
        None,
    )
    return ImagingView(
        reference=_ref(report),
        status=str(report.get("status")),
        conclusion=safe_text(report.get("conclusion"), multiline=True, limit=None) or None,
        study=study,
        boxes=boxes,
        overlay=overlay,
    )


def _pending(resource: Mapping[str, Any]) -> PendingResult:
    return PendingResult(
        reference=_ref(resource),
        resourceType=resource["resourceType"],
        status="preliminary",
        title=_text(resource.get("code")),
        issued=resource.get("issued"),
    )


def _by_issued(resources: Iterable[JsonDict]) -> list[JsonDict]:
    """Newest first (FHIR instants of one server compare as text only when their zones match:
    ours are all written in UTC by ChartAgent)."""
    return sorted(resources, key=lambda r: (str(r.get("issued") or ""), str(r.get("id"))), reverse=True)


def build_summary_view(
    resources: PatientResources, *, need_patient_banner: bool, attachment_url: AttachmentUrl
) -> SummaryView:
    patient = resources.patient
    summary = _summary(resources, attachment_url)
    trends = []
    if summary is not None:
        for r in summary.get("result") or []:
            obs = resources.by_reference.get(_local(r.get("reference")) or "")
            if obs is not None and _has_coding(obs.get("code"), TREND_CODE_SYSTEM, "lab-trend"):
                trends.append(_trend(obs, resources))
    transcribed = [o for o in resources.observations if is_ai_output(o) and is_document_extraction(o)]
    ours_reports = [r for r in resources.reports if is_ai_output(r)]
    imaging = [r for r in ours_reports if r.get("imagingStudy") and r.get("status") in CURRENT_STATUSES]
    pending = [r for r in ours_reports if r.get("status") == "preliminary"] + [
        o for o in transcribed if o.get("status") == "preliminary"
    ]
    return SummaryView(
        patient=PatientBanner(
            id=str(patient.get("id")),
            name=_name(patient),
            birthDate=patient.get("birthDate"),
            gender=patient.get("gender"),
        ),
        need_patient_banner=need_patient_banner,
        summary=None
        if summary is None
        else SummaryReport(
            reference=_ref(summary),
            status=str(summary.get("status")),
            conclusion=safe_text(summary.get("conclusion"), multiline=True, limit=None) or None,
            issued=summary.get("issued"),
            presentedForm=_forms(summary, attachment_url),
        ),
        trends=trends,
        pdf_values=[
            _pdf_value(o, resources, attachment_url)
            for o in sorted(transcribed, key=lambda o: str(o.get("effectiveDateTime") or ""), reverse=True)
            if o.get("status") not in ("entered-in-error", "cancelled")
        ],
        imaging=[_imaging(r, resources, attachment_url) for r in _by_issued(imaging)],
        pending=[_pending(r) for r in _by_issued(pending)],
    )
