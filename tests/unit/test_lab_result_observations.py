"""Observations from printed lab results: valid R4B, grounded, labelled, idempotent, zone-aware."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from lab_samples import lab

from tools.labs.pdf import ExtractedLab
from tools.medgemma.tasks.lab_extraction import LabFlag
from tools.writeback import (
    AIAST,
    DOCUMENT_EXTRACTION_TAG,
    build_model_device,
    is_ai_asserted,
    is_document_extraction,
)
from tools.writeback.identifiers import AI_OUTPUT_SYSTEM
from tools.writeback.lab_results import (
    SOURCE_LOCATION_URL,
    build_lab_document_transaction,
    build_lab_result_observation,
    lab_pdf_extractor_identity,
    unwritable_reason,
)

ISSUED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SUBJECT = "Patient/p1"
DOC = "DocumentReference/doc-1"
SHA = hashlib.sha256(b"pdf one").hexdigest()
IDENTITY = lab_pdf_extractor_identity("9.9.9")
DEVICE = build_model_device(IDENTITY)


def build(row: ExtractedLab, **kw: Any) -> Observation:
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "document": DOC,
        "pdf_sha256": SHA,
        "device": DEVICE,
        "identity": IDENTITY,
        "issued": ISSUED,
    } | kw
    return build_lab_result_observation(row, **args).resource


def as_json(obs: Observation) -> dict[str, Any]:
    data: dict[str, Any] = obs.model_dump(mode="json")
    return data


def test_quantity_result_with_range_flag_and_grounding() -> None:
    obs = build(lab())
    doc = as_json(obs)
    Observation.model_validate(doc)  # round-trips as R4B
    assert doc["status"] == "preliminary"
    assert doc["category"][0]["coding"][0]["code"] == "laboratory"
    assert doc["code"] == {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"}
    assert doc["valueQuantity"] == {
        "value": 5.9,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    (rr,) = doc["referenceRange"]
    assert (rr["low"]["value"], rr["high"]["value"], rr["low"]["code"], rr["text"]) == (
        3.5,
        5.1,
        "mmol/L",
        "3.5-5.1",
    )
    (interp,) = doc["interpretation"]
    assert interp["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "H",
        "display": "High",
    }
    assert doc["subject"] == {"reference": SUBJECT}
    assert doc["derivedFrom"] == [{"reference": DOC}]
    assert doc["issued"].startswith("2025-06-01T12:00:00")
    (ext,) = doc["extension"]
    assert ext["url"] == SOURCE_LOCATION_URL
    assert {e["url"]: e.get("valueInteger", e.get("valueString")) for e in ext["extension"]} == {
        "page": 2,
        "bbox": "200.00,110.50,214.25,119.00",
    }
    assert doc["note"] == [{"text": "Transcribed from page 2 of the lab report PDF"}]
    assert doc["device"] == {"reference": DEVICE.full_url}


def test_labels_ai_asserted_and_document_extraction() -> None:
    obs = build(lab())
    assert is_ai_asserted(obs)
    assert is_document_extraction(obs)
    assert is_document_extraction(as_json(obs))  # the JSON form is recognised too
    assert as_json(obs)["meta"]["security"] == [AIAST]
    assert as_json(obs)["meta"]["tag"] == [DOCUMENT_EXTRACTION_TAG]
    plain = Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "meta": {"security": [AIAST]},
        }
    )
    assert is_ai_asserted(plain)
    assert not is_document_extraction(plain)


@pytest.mark.parametrize(
    ("printed", "value", "comparator"),
    [("<0.5", 0.5, "<"), (">90", 90.0, ">"), ("<=1.0", 1.0, "<=")],
)
def test_censored_values_carry_their_comparator(printed: str, value: float, comparator: str) -> None:
    row = lab(
        name="CRP",
        loinc="1988-5",
        value=value,
        value_text=printed,
        unit="mg/L",
        comparator=comparator,
        flag=None,
    )
    q = as_json(build(row))["valueQuantity"]
    assert (q["value"], q["comparator"], q["code"]) == (value, comparator, "mg/L")
    assert "interpretation" not in as_json(build(row))


def test_qualitative_result_is_a_string_with_a_text_range() -> None:
    row = lab(
        name="Nitrite",
        loinc="5802-4",
        value="positive",
        value_text="positive",
        unit=None,
        reference_low=None,
        reference_high=None,
        reference_text="negative",
        flag=LabFlag.ABNORMAL,
    )
    doc = as_json(build(row))
    assert doc["valueString"] == "positive"
    assert "valueQuantity" not in doc
    assert doc["referenceRange"] == [{"text": "negative"}]
    assert doc["interpretation"][0]["coding"][0]["code"] == "A"


def test_a_unit_that_is_not_ucum_keeps_its_text_only() -> None:
    doc = as_json(
        build(lab(unit="ratio units", reference_low=None, reference_high=None, reference_text=None))
    )
    assert doc["valueQuantity"] == {"value": 5.9, "unit": "ratio units"}
    assert "referenceRange" not in doc


def test_effective_time_is_read_in_the_given_zone() -> None:
    ny = as_json(build(lab(), tz=ZoneInfo("America/New_York")))["effectiveDateTime"]
    berlin = as_json(build(lab(), tz=ZoneInfo("Europe/Berlin")))["effectiveDateTime"]
    utc = as_json(build(lab()))["effectiveDateTime"]
    assert ny == "2024-03-04T07:45:00-05:00"
    assert berlin == "2024-03-04T07:45:00+01:00"
    assert utc.startswith("2024-03-04T07:45:00")
    assert utc.endswith(("+00:00", "Z"))
    summer = as_json(build(lab(effective=date(2024, 7, 4)), tz=ZoneInfo("America/New_York")))
    assert summer["effectiveDateTime"] == "2024-07-04T07:45:00-04:00"


def test_a_date_without_time_stays_a_date() -> None:
    doc = as_json(build(lab(effective_time=None), tz=ZoneInfo("America/New_York")))
    assert doc["effectiveDateTime"] == "2024-03-04"


def ident(row: ExtractedLab, **kw: Any) -> str:
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "document": DOC,
        "pdf_sha256": SHA,
        "device": DEVICE,
        "identity": IDENTITY,
        "issued": ISSUED,
    } | kw
    built = build_lab_result_observation(row, **args)
    (identifier,) = built.resource.identifier or []
    assert identifier.system == AI_OUTPUT_SYSTEM
    assert identifier.value == built.identifier.value
    return built.identifier.value


def test_identifier_is_stable_and_changes_with_the_document() -> None:
    first = ident(lab())
    assert ident(lab()) == first
    # The run's clock and the zone do not make a new result: the document and the row do.
    assert ident(lab(), issued=datetime(2030, 1, 1, tzinfo=UTC), tz=ZoneInfo("Asia/Tokyo")) == first
    changed = [
        ident(lab(), pdf_sha256=hashlib.sha256(b"pdf two").hexdigest()),
        ident(lab(), document="DocumentReference/doc-2"),
        ident(lab(page=3)),
        ident(lab(bbox=(200.0, 130.0, 214.25, 139.0))),
        ident(lab(value=6.0, value_text="6.0")),
        ident(lab(loinc="6298-4")),
        ident(lab(), identity=lab_pdf_extractor_identity("9.9.10")),
    ]
    assert first not in changed
    assert len(set(changed)) == len(changed)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"loinc": None, "name_status": "unknown"}, "no LOINC code"),
        ({"value": "see note", "value_text": "see note"}, "not a result"),
        ({"value": "Pending", "value_text": "Pending"}, "not a result"),
        ({"effective": None, "effective_time": None}, "no collection date"),
    ],
)
def test_unwritable_rows_are_refused_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    row = lab(**fields)
    assert reason in (unwritable_reason(row) or "")
    with pytest.raises(ValueError, match=reason):
        build(row)


def test_negative_is_a_result() -> None:
    assert unwritable_reason(lab(value="negative", value_text="negative", unit=None)) is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"subject": "p1"}, "subject"),
        ({"document": "Binary/1"}, "document"),
        ({"issued": datetime(2025, 6, 1)}, "timezone-aware"),
    ],
)
def test_bad_inputs_raise(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(lab(), **kw)


def test_transaction_device_observations_provenance_all_conditional() -> None:
    rows = [
        lab(),
        lab(
            name="Sodium", loinc="2951-2", value=139.0, value_text="139", flag=None, bbox=(200, 130, 214, 139)
        ),
    ]
    built = [
        build_lab_result_observation(
            r, subject=SUBJECT, document=DOC, pdf_sha256=SHA, device=DEVICE, identity=IDENTITY, issued=ISSUED
        )
        for r in rows
    ]
    bundle = build_lab_document_transaction(
        document=DOC, observations=built, identity=IDENTITY, issued=ISSUED
    )
    Bundle.model_validate(bundle)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["Device", "Observation", "Observation", "Provenance"]
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["ifNoneExist"].split("=", 1)[0] in ("identifier", "_tag")
    assert bundle["entry"][-1]["request"]["ifNoneExist"].startswith("_tag=")
    device, *_observations, provenance = (e["resource"] for e in bundle["entry"])
    assert device["deviceName"][0]["name"] == "chartagent-lab-pdf-extractor"
    assert {t["reference"] for t in provenance["target"]} == {b.full_url for b in built}
    sources = [e["what"]["reference"] for e in provenance["entity"] if e["role"] == "source"]
    assert sources == [DOC]
    assert provenance["agent"][0]["who"]["reference"] == bundle["entry"][0]["fullUrl"]
    # Same inputs, same bundle.
    again = build_lab_document_transaction(document=DOC, observations=built, identity=IDENTITY, issued=ISSUED)
    assert again == bundle
    with pytest.raises(ValueError, match="twice"):
        build_lab_document_transaction(
            document=DOC, observations=[built[0], built[0]], identity=IDENTITY, issued=ISSUED
        )
    with pytest.raises(ValueError, match="nothing to write"):
        build_lab_document_transaction(document=DOC, observations=[], identity=IDENTITY, issued=ISSUED)
