"""Lab results transcribed from a lab-report PDF -> grounded FHIR R4B Observations (pure).

One Observation per printed result (``ExtractedLab``) that has a LOINC code, a collection date
and a value that is a result ("see note" is not):

* ``status`` preliminary, category laboratory, ``code`` = the LOINC coding with the printed name
  as ``text``; ``valueQuantity`` (UCUM system and code when the unit is UCUM, ``comparator`` for
  "<0.5") or ``valueString`` for a qualitative result; ``referenceRange`` low/high in the result's
  unit and/or the printed text; ``interpretation`` from the printed flag (v3 codes);
  ``effectiveDateTime`` = the printed collection date and time read in ``tz`` (a date alone
  when no time is printed); ``issued`` = the run's clock; ``derivedFrom`` = the DocumentReference.
* Labels: ``meta.security`` AIAST (a machine transcribed it, nobody has checked it yet) plus
  ``meta.tag`` ``DOCUMENT_EXTRACTION_TAG``: a transcription of source data, which trends may
  use, unlike ChartAgent's computed outputs (``is_document_extraction``).
* Grounding travels with the value: the extension ``SOURCE_LOCATION_URL`` (``page`` and
  ``bbox`` "x0,y0,x1,y1" in PDF points, origin top-left) and a ``note`` naming the page.
* ``identifier``: the extractor's identity, the DocumentReference and the SHA-256 of the PDF's
  bytes, and the row's page, bbox, LOINC code and printed value: a rerun on the same file
  creates nothing, a changed file creates new results.
* A value read by OCR from a scanned page (``ExtractedLab.ocr``, "tesseract 5.3.0") says so:
  ``meta.tag`` ``OCR_TAG`` as well, the engine beside its page and bbox, in the method, the note
  and the identifier (another engine's reading is another result); the Provenance names the
  engine on the document's source entity (extension ``OCR_ENGINE_URL``) and as a derivation entity.

``build_lab_document_transaction`` puts the extractor's Device, the Observations and one
Provenance (targets the Observations, source the DocumentReference) in one transaction Bundle,
every entry a conditional create.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from fhir.resources.R4B.observation import Observation

from tools.labs.analytes import ANALYTES, LOINC_SYSTEM
from tools.labs.loinc_catalog import CATALOG
from tools.labs.pdf import EXTRACTOR_NAME, EXTRACTOR_REVISION, ExtractedLab
from tools.labs.units import dimension_of
from tools.medgemma.tasks.lab_extraction import LabFlag
from tools.writeback.ai_labels import ModelIdentity, ai_meta, build_model_device, engine_identity
from tools.writeback.builders import build_provenance, check_time
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.extraction_labels import (
    DOCUMENT_EXTRACTION_TAG,
    OCR_ENGINE_URL,
    OCR_TAG,
    is_document_extraction,
)
from tools.writeback.identifiers import Built, InputRef, business_identifier, fhir_datetime

__all__ = [
    "DOCUMENT_EXTRACTION_TAG",
    "LAB_PDF_TASK",
    "NOT_A_RESULT",
    "OCR_TAG",
    "SOURCE_LOCATION_URL",
    "build_lab_document_transaction",
    "build_lab_result_observation",
    "effective_of",
    "format_bbox",
    "is_document_extraction",
    "lab_pdf_extractor_identity",
    "unwritable_reason",
]

SOURCE_LOCATION_URL: Final = "urn:chartagent:source-location"
LAB_PDF_TASK: Final = "lab-pdf-result"
# Printed in a result cell, but not a result: a pointer to a footnote, or a result still to come.
NOT_A_RESULT: Final = frozenset({"see note", "see comment", "see below", "pending"})

_UCUM: Final = "http://unitsofmeasure.org"
_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_FLAG_DISPLAY: Final = {
    LabFlag.HIGH: "High",
    LabFlag.LOW: "Low",
    LabFlag.CRITICAL_HIGH: "Critical high",
    LabFlag.CRITICAL_LOW: "Critical low",
    LabFlag.ABNORMAL: "Abnormal",
    LabFlag.NORMAL: "Normal",
}
# Units the tables hold as UCUM codes; ``ExtractedLab.unit`` is UCUM where known, else as printed.
_KNOWN_UCUM: Final = frozenset(
    {e.unit for e in CATALOG if e.unit}
    | {u for e in CATALOG for u in e.units}
    | {a.unit for a in ANALYTES}
    | {c.unit for a in ANALYTES for c in a.conversions}
)


def lab_pdf_extractor_identity(package_version: str | None = None) -> ModelIdentity:
    """The text-layer extractor; its version is the chartagent package's unless given."""
    return engine_identity(EXTRACTOR_NAME, EXTRACTOR_REVISION, package_version)


def unwritable_reason(lab: ExtractedLab) -> str | None:
    """Why ``lab`` is not written as an Observation, or ``None`` when it is."""
    if lab.loinc is None:
        return f"no LOINC code for the printed name ({lab.name_status})"
    if isinstance(lab.value, str) and " ".join(lab.value.lower().rstrip(".").split()) in NOT_A_RESULT:
        return "not a result (a pointer to a note, or pending)"
    if lab.effective is None:
        return "no collection date printed"
    return None


def effective_of(lab: ExtractedLab, tz: tzinfo = UTC) -> str | None:
    """``effectiveDateTime``: the printed date and time in ``tz``, or the date alone without a time."""
    if lab.effective is None:
        return None
    if lab.effective_time is None:
        return lab.effective.isoformat()
    return fhir_datetime(datetime.combine(lab.effective, lab.effective_time, tzinfo=tz))


def format_bbox(bbox: Sequence[float]) -> str:
    return ",".join(f"{v:.2f}" for v in bbox)


def _is_ucum(unit: str) -> bool:
    return unit in _KNOWN_UCUM or dimension_of(unit) is not None


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q["unit"] = unit
        if _is_ucum(unit):
            q |= {"system": _UCUM, "code": unit}
    return q


def _reference_range(lab: ExtractedLab) -> list[dict[str, Any]] | None:
    rr: dict[str, Any] = {}
    if lab.reference_low is not None:
        rr["low"] = _quantity(lab.reference_low, lab.unit)
    if lab.reference_high is not None:
        rr["high"] = _quantity(lab.reference_high, lab.unit)
    if lab.reference_text:
        rr["text"] = lab.reference_text
    return [rr] if rr else None


def _check_reference(name: str, reference: str, rtype: str) -> str:
    prefix = f"{rtype}/"
    rid = reference[len(prefix) :] if reference.startswith(prefix) else ""
    if not rid or "/" in rid or len(rid) > 64:
        raise ValueError(f"{name} must be a literal {rtype} reference such as '{rtype}/123'")
    return rid


def build_lab_result_observation(
    lab: ExtractedLab,
    *,
    subject: str,
    document: str,
    pdf_sha256: str,
    device: Built[Any],
    identity: ModelIdentity,
    issued: datetime,
    tz: tzinfo = UTC,
) -> Built[Observation]:
    """The Observation for one printed result of the PDF (``pdf_sha256``) of ``document``.

    ``tz`` is the zone of the wall-clock time printed on the report. Raises ``ValueError`` when
    ``lab`` is not writable (``unwritable_reason``) or on a bad subject, document or clock.
    """
    _check_reference("subject", subject, "Patient")
    _check_reference("document", document, "DocumentReference")
    check_time("issued", issued)
    if device.resource_type != "Device":
        raise ValueError("device must be a built Device")
    reason = unwritable_reason(lab)
    if reason is not None or lab.loinc is None:
        raise ValueError(f"{document} page {lab.page}: {reason}")
    ident = business_identifier(
        engine=identity.key(),
        task=LAB_PDF_TASK,
        inputs=[InputRef(reference=document, value=pdf_sha256)],
        parameters={
            "page": lab.page,
            "bbox": format_bbox(lab.bbox),
            "loinc": lab.loinc,
            "value_text": lab.value_text,
            **({"ocr": lab.ocr} if lab.ocr else {}),
        },
    )
    value: dict[str, Any]
    if isinstance(lab.value, str):
        value = {"valueString": lab.value}
    else:
        quantity = _quantity(lab.value, lab.unit)
        if lab.comparator is not None:
            # R4B's element order (value, comparator, unit, ...): the JSON is what validation dumps.
            quantity = {"value": quantity.pop("value"), "comparator": lab.comparator, **quantity}
        value = {"valueQuantity": quantity}
    interpretation = None
    if lab.flag is not None:
        coding = {"system": _INTERPRETATION, "code": lab.flag.value, "display": _FLAG_DISPLAY[lab.flag]}
        interpretation = [{"coding": [coding]}]
    data = {
        "resourceType": "Observation",
        "meta": ai_meta(tag=[dict(DOCUMENT_EXTRACTION_TAG), *_ocr_tags(lab)]),
        "extension": [
            {
                "extension": [
                    {"url": "page", "valueInteger": lab.page},
                    {"url": "bbox", "valueString": format_bbox(lab.bbox)},
                    *_ocr_location(lab),
                ],
                "url": SOURCE_LOCATION_URL,
            }
        ],
        "identifier": [ident.as_fhir()],
        "status": "preliminary",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": lab.loinc}], "text": lab.name},
        "subject": {"reference": subject},
        "effectiveDateTime": effective_of(lab, tz),
        "issued": fhir_datetime(issued),
        **value,
        "interpretation": interpretation,
        "note": [{"text": _transcribed_note(lab)}],
        "method": {
            "text": f"{identity.name} revision {identity.revision}: {_how_read(lab)}, "
            "value located on the page"
        },
        "device": {"reference": device.full_url},
        "referenceRange": _reference_range(lab),
        "derivedFrom": [{"reference": document}],
    }
    return Built.of_json(Observation.model_validate, data, identifier=ident)


def build_lab_document_transaction(
    *,
    document: str,
    observations: Sequence[Built[Observation]],
    identity: ModelIdentity,
    issued: datetime,
) -> dict[str, Any]:
    """The transaction Bundle (JSON-ready) writing ``observations`` of ``document``: the extractor's
    Device, the Observations and their Provenance, every entry ``POST`` with ``ifNoneExist``.

    The Observations must have been built with ``build_model_device(identity)`` as their device.
    Raises ``ValueError`` on an empty or repeated set of Observations.
    """
    _check_reference("document", document, "DocumentReference")
    if not observations:
        raise ValueError(f"{document}: nothing to write")
    if len({o.identifier.value for o in observations}) != len(observations):
        raise ValueError(f"{document}: the same printed result twice; drop repeats before building")
    device = build_model_device(identity)
    for o in observations:
        if (o.json.get("device") or {}).get("reference") != device.full_url:
            raise ValueError(f"{document}: an Observation credits another Device than {identity.name}'s")
    provenance = build_provenance(
        targets=observations, device=device, sources=[document], identity=identity, recorded=issued
    )
    return _with_ocr_engines(conditional_create_bundle([device, *observations, provenance]), document)


# A value read by OCR from a scanned page (``ExtractedLab.ocr`` names the engine) says so: the tag
# ``OCR_TAG``, the engine beside its page and box, the method and note; the identifier holds the
# engine, so that another engine's (or version's) reading is a new result, not the same one.
def _ocr_tags(lab: ExtractedLab) -> list[dict[str, str]]:
    return [dict(OCR_TAG)] if lab.ocr else []


def _ocr_location(lab: ExtractedLab) -> list[dict[str, Any]]:
    return [{"url": "ocr", "valueString": lab.ocr}] if lab.ocr else []


def _transcribed_note(lab: ExtractedLab) -> str:
    if lab.ocr:
        return f"Transcribed by OCR ({lab.ocr}) from page {lab.page} of the lab report PDF, a scanned page"
    return f"Transcribed from page {lab.page} of the lab report PDF"


def _how_read(lab: ExtractedLab) -> str:
    return f"OCR of the scanned page ({lab.ocr})" if lab.ocr else "text layer of the PDF"


def _ocr_engines(resource: dict[str, Any]) -> set[str]:
    return {
        str(part["valueString"])
        for ext in resource.get("extension") or ()
        if ext.get("url") == SOURCE_LOCATION_URL
        for part in ext.get("extension") or ()
        if part.get("url") == "ocr"
    }


def _with_ocr_engines(bundle: dict[str, Any], document: str) -> dict[str, Any]:
    """``bundle`` whose Provenance names the OCR engines that read any of its Observations: an
    extension on the document's source entity and a derivation entity per engine (unchanged when
    every value comes from the text layer)."""
    entries = bundle["entry"]
    engines = sorted(
        {
            e
            for entry in entries
            if entry["resource"]["resourceType"] == "Observation"
            for e in _ocr_engines(entry["resource"])
        }
    )
    if not engines:
        return bundle
    read_by = [{"url": OCR_ENGINE_URL, "valueString": e} for e in engines]
    out = []
    for entry in entries:
        resource = entry["resource"]
        if resource["resourceType"] == "Provenance":
            entities = [
                {"extension": read_by, **entity}
                if entity.get("role") == "source" and (entity.get("what") or {}).get("reference") == document
                else entity
                for entity in resource["entity"]
            ] + [
                {
                    "role": "derivation",
                    "what": {
                        "identifier": {"system": OCR_ENGINE_URL, "value": e},
                        "display": f"{e}: OCR of scanned pages",
                    },
                }
                for e in engines
            ]
            entry = {**entry, "resource": {**resource, "entity": entities}}
        out.append(entry)
    return {**bundle, "entry": out}
