"""The write-back builders make JSON, not models (``Built.of_json``): the transaction sends it
unvalidated, so it must be exactly what validating it as R4B and dumping it gives back, for every
builder on the summary's and the lab documents' paths, UTC or not, with and without optional
elements. And a Built's model, validated on first use, is a real R4B model."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance
from lab_samples import lab
from trend_samples import lab_trend

from tools.narrative import render_summary
from tools.writeback import build_model_device, build_patient_transaction
from tools.writeback.ai_labels import ModelIdentity
from tools.writeback.identifiers import Built, fhir_datetime
from tools.writeback.lab_results import (
    build_lab_document_transaction,
    build_lab_result_observation,
    lab_pdf_extractor_identity,
)

MODELS: dict[str, Any] = {
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "Provenance": Provenance,
    "Device": Device,
}
UTC_ISSUED = datetime(2026, 7, 2, 3, 4, 5, 123456, tzinfo=UTC)
OFFSET_ISSUED = datetime(2026, 7, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))


def assert_canonical(bundle: dict[str, Any]) -> None:
    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        data = entry["resource"]
        model = MODELS[data["resourceType"]]
        # Key order included: the wire is byte for byte what validating and dumping it sent.
        dumped = json.dumps(model.model_validate(data).model_dump(mode="json"))
        assert dumped == json.dumps(data), data["resourceType"]


@pytest.mark.parametrize("issued", [UTC_ISSUED, OFFSET_ISSUED])
@pytest.mark.parametrize("pdf", [False, True])
def test_summary_transaction_json_is_what_validation_gives(issued: datetime, pdf: bool) -> None:
    trends = [
        lab_trend("creatinine", [1.0, 1.5, 2.5]),  # plotted, flags
        lab_trend("potassium", [4.0, 4.1]),  # stable, no interpretation
        lab_trend("XYZ", [1.0, 2.0], display="Local test", unit="U/L"),  # no range, no UCUM
        lab_trend("egfr", [90.0, 70.0, 50.0], start=datetime(2022, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))),
    ]
    refs = frozenset({"Observation/creatinine-1"}) if pdf else frozenset()
    bundle = build_patient_transaction(
        subject="Patient/p1",
        trends=trends,
        narrative=render_summary(None, trends),
        issued=issued,
        document_refs=refs,
        read_inputs=frozenset({"Observation/creatinine-1#v1"}) if pdf else frozenset(),
        imaging_summaries=["CT chest: unchanged"] if pdf else (),
    )
    assert_canonical(bundle)


def test_a_model_narrator_and_its_device_are_canonical_too() -> None:
    trends = [lab_trend("creatinine", [1.0, 1.5, 2.5])]
    narrator = ModelIdentity(
        name="medgemma", version="1.5", revision="abc", prompt_version="p2", dtype="bf16"
    )
    bundle = build_patient_transaction(
        subject="Patient/p1",
        trends=trends,
        narrative="A model's narrative.",
        issued=UTC_ISSUED,
        narrative_identity=narrator,
    )
    assert_canonical(bundle)
    assert any(
        e["resource"].get("property") for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"
    )


@pytest.mark.parametrize("tz", [UTC, ZoneInfo("America/New_York")])
def test_lab_document_transaction_json_is_what_validation_gives(tz: Any) -> None:
    identity = lab_pdf_extractor_identity("9.9.9")
    device = build_model_device(identity)
    rows = [
        lab(),
        lab(page=3, value=0.5, value_text="<0.5", comparator="<", flag=None),
        lab(page=4, name="Urine glucose", loinc="2350-7", value="negative", value_text="negative",
            unit=None, reference_low=None, reference_high=None, reference_text="negative", flag=None),
        lab(page=5, effective_time=None),
        lab(page=6, value=7, value_text="7", unit="mmol/L"),
        lab(page=7, ocr="tesseract 5.3.0"),  # read by OCR: tagged, engine in extension and Provenance
    ]  # fmt: skip
    observations = [
        build_lab_result_observation(
            row,
            subject="Patient/p1",
            document="DocumentReference/d1",
            pdf_sha256=hashlib.sha256(b"pdf").hexdigest(),
            device=device,
            identity=identity,
            issued=UTC_ISSUED,
            tz=tz,
        )
        for row in rows
    ]
    bundle = build_lab_document_transaction(
        document="DocumentReference/d1", observations=observations, identity=identity, issued=UTC_ISSUED
    )
    assert_canonical(bundle)


def test_the_model_is_validated_from_the_json_on_first_use() -> None:
    built = build_model_device(lab_pdf_extractor_identity("9.9.9"))
    assert isinstance(built.resource, Device)
    assert built.resource is built.resource  # validated once
    assert built.resource.model_dump(mode="json") == built.json
    # Built from a model, the JSON is its dump.
    again = Built(resource=built.resource, resource_type="Device", identifier=built.identifier)
    assert again.json == built.json


def test_fhir_datetime_writes_utc_as_z_and_keeps_other_offsets() -> None:
    assert fhir_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert fhir_datetime(OFFSET_ISSUED) == "2026-07-02T03:04:05-05:00"
    assert fhir_datetime(datetime(2026, 1, 2, tzinfo=ZoneInfo("Europe/London"))) == "2026-01-02T00:00:00Z"
