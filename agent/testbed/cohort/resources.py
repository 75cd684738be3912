"""FHIR R4 resource builders for the synthetic cohort (pure: plain JSON dicts, no I/O).

Every resource carries the cohort tag and a deterministic id chosen by the caller.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

from agent.testbed.cohort.codes import (
    COHORT_TAG,
    EPIC_LOCAL_LAB_SYSTEM,
    LOINC,
    MRN_SYSTEM,
    UCUM,
    V2_0203,
    Code,
    ConditionSpec,
    MedicationSpec,
)
from agent.testbed.cohort.demographics import Demographics
from agent.testbed.cohort.labs import AnalyteSpec, interpretation, round_to
from agent.testbed.cohort.profiles import LabDialect
from tools.writeback.attachment import attachment_hash

__all__ = [
    "binary",
    "blood_pressure",
    "condition",
    "encounter",
    "lab_document_reference",
    "lab_observation",
    "medication_request",
    "patient",
    "vital_observation",
]

_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_INTERPRETATION_DISPLAY = {"H": "High", "L": "Low", "N": "Normal"}
_BP_PANEL = Code("http://loinc.org", "85354-9", "Blood pressure panel with all children optional")
_LAB_REPORT = Code(LOINC, "11502-2", "Laboratory report")
# HL7 v2 diagnostic service section, the category US Core gives laboratory DiagnosticReports: the
# same search (category=LAB) finds a lab's structured and document results.
_LAB_SECTION = Code("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")


def _meta() -> dict[str, Any]:
    return {"tag": [COHORT_TAG.coding()]}


def _instant(when: datetime) -> str:
    return when.isoformat()


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def patient(pid: str, mrn: str, demo: Demographics) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": _meta(),
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical Record Number"}]},
                "system": MRN_SYSTEM,
                "value": mrn,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": demo.family, "given": [demo.given]}],
        "gender": "female" if demo.female else "male",
        "birthDate": demo.birth_date.isoformat(),
    }


def condition(cid: str, pid: str, spec: ConditionSpec, onset: date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": _meta(),
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                        "display": "Problem List Item",
                    }
                ]
            }
        ],
        "code": {"coding": [spec.snomed.coding(), spec.icd10.coding()], "text": spec.text},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": onset.isoformat(),
    }


def medication_request(mid: str, pid: str, spec: MedicationSpec, authored: date) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": mid,
        "meta": _meta(),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [spec.rxnorm.coding()], "text": spec.rxnorm.display},
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": authored.isoformat(),
        "dosageInstruction": [{"text": spec.dosage}],
    }


def encounter(eid: str, pid: str, start: datetime, minutes: int = 30) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "meta": _meta(),
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [
            {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "390906007",
                        "display": "Follow-up encounter",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": _instant(start), "end": _instant(start + timedelta(minutes=minutes))},
    }


Category = Literal["laboratory", "vital-signs"]
_CATEGORY_DISPLAY: dict[Category, str] = {"laboratory": "Laboratory", "vital-signs": "Vital Signs"}


def _observation_base(
    oid: str, pid: str, eid: str, category: Category, code: dict[str, Any], when: datetime
) -> dict[str, Any]:
    display = _CATEGORY_DISPLAY[category]
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": _meta(),
        "status": "final",
        "category": [{"coding": [{"system": _OBS_CATEGORY, "code": category, "display": display}]}],
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{eid}"},
        "effectiveDateTime": _instant(when),
    }


def lab_observation(
    oid: str,
    pid: str,
    eid: str,
    spec: AnalyteSpec,
    canonical_value: float,
    *,
    dialect: LabDialect,
    when: datetime,
) -> dict[str, Any]:
    """A final lab result in the patient's dialect, with the table's reference range and H/L/N flag."""
    si = dialect is LabDialect.SI and spec.si is not None
    code_def, unit = (spec.si.code, spec.si.unit) if si and spec.si else (spec.code, spec.unit)
    code: dict[str, Any] = {"coding": [code_def.coding()], "text": code_def.display}
    if dialect is LabDialect.EPIC_LOCAL and spec.local_code is not None:
        # Epic-style result: local component id only, no LOINC.
        name = spec.row.display.upper()
        code = {"coding": [{"system": EPIC_LOCAL_LAB_SYSTEM, "code": spec.local_code, "display": name}],
                "text": name}  # fmt: skip
    low, high = spec.reference.low, spec.reference.high
    value = spec.report(canonical_value, si=si)
    ref_low = spec.report(low, si=si) if low is not None else None
    ref_high = spec.report(high, si=si) if high is not None else None
    obs = _observation_base(oid, pid, eid, "laboratory", code, when)
    obs["issued"] = _instant(when + timedelta(hours=3))
    obs["valueQuantity"] = _quantity(value, unit)
    flag = interpretation(value, ref_low, ref_high)
    obs["interpretation"] = [
        {"coding": [{"system": _INTERPRETATION, "code": flag, "display": _INTERPRETATION_DISPLAY[flag]}]}
    ]
    ref_range: dict[str, Any] = {}
    if ref_low is not None:
        ref_range["low"] = _quantity(ref_low, unit)
    if ref_high is not None:
        ref_range["high"] = _quantity(ref_high, unit)
    obs["referenceRange"] = [ref_range]
    return obs


def vital_observation(
    oid: str, pid: str, eid: str, spec: AnalyteSpec, value: float, when: datetime
) -> dict[str, Any]:
    obs = _observation_base(
        oid, pid, eid, "vital-signs", {"coding": [spec.code.coding()], "text": spec.code.display}, when
    )
    obs["valueQuantity"] = _quantity(round_to(value, spec.decimals), spec.unit)
    return obs


def blood_pressure(
    oid: str,
    pid: str,
    eid: str,
    systolic: tuple[AnalyteSpec, float],
    diastolic: tuple[AnalyteSpec, float],
    when: datetime,
) -> dict[str, Any]:
    """US Core blood pressure: the 85354-9 panel with systolic and diastolic components."""
    obs = _observation_base(
        oid, pid, eid, "vital-signs", {"coding": [_BP_PANEL.coding()], "text": "Blood pressure"}, when
    )
    obs["component"] = [
        {
            "code": {"coding": [spec.code.coding()], "text": spec.code.display},
            "valueQuantity": _quantity(round_to(value, spec.decimals), spec.unit),
        }
        for spec, value in (systolic, diastolic)
    ]
    return obs


def binary(bid: str, pid: str, content_type: str, data: bytes) -> dict[str, Any]:
    """A Binary; ``securityContext`` is the patient, so a server grants access as to the record."""
    return {
        "resourceType": "Binary",
        "id": bid,
        "meta": _meta(),
        "contentType": content_type,
        "securityContext": {"reference": f"Patient/{pid}"},
        "data": base64.b64encode(data).decode("ascii"),
    }


def lab_document_reference(
    did: str,
    pid: str,
    pdf: bytes,
    *,
    title: str,
    description: str,
    reported: datetime,
    collected: Sequence[datetime],
    binary_id: str | None = None,
) -> dict[str, Any]:
    """A lab-report PDF (LOINC 11502-2): ``date`` is when it was reported, ``context.period`` spans
    its collection times; the bytes inline (``attachment.data``) or in ``Binary/<binary_id>``."""
    if not collected:
        raise ValueError("a lab report has at least one collection time")
    attachment: dict[str, Any] = {
        "contentType": "application/pdf",
        "title": title,
        "creation": _instant(reported),
        "size": len(pdf),
        "hash": attachment_hash(pdf),
    }
    if binary_id is None:
        attachment["data"] = base64.b64encode(pdf).decode("ascii")
    else:
        attachment["url"] = f"Binary/{binary_id}"
    return {
        "resourceType": "DocumentReference",
        "id": did,
        "meta": _meta(),
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [_LAB_REPORT.coding()], "text": _LAB_REPORT.display},
        "category": [{"coding": [_LAB_SECTION.coding()], "text": _LAB_SECTION.display}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": _instant(reported),
        "description": description,
        "content": [{"attachment": attachment}],
        "context": {"period": {"start": _instant(min(collected)), "end": _instant(max(collected))}},
    }
