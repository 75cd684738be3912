"""Observations of values read by OCR say so: tag, grounding extension, identifier, Provenance."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from tools.labs.pdf import ExtractedLab
from tools.writeback import build_model_device
from tools.writeback.extraction_labels import OCR_ENGINE_URL, is_document_extraction, is_ocr_reading
from tools.writeback.lab_results import (
    SOURCE_LOCATION_URL,
    build_lab_document_transaction,
    build_lab_result_observation,
    lab_pdf_extractor_identity,
)

IDENTITY = lab_pdf_extractor_identity("1.0")
DEVICE = build_model_device(IDENTITY)
ISSUED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DOC = "DocumentReference/scan-1"


def lab(ocr: str | None, name: str = "Sodium", loinc: str = "2951-2", value: float = 140.0) -> ExtractedLab:
    return ExtractedLab(
        name=name,
        loinc=loinc,
        name_status="matched",
        value=value,
        value_text=f"{value:g}",
        unit="mmol/L",
        effective=date(2024, 3, 4),
        page=1,
        bbox=(250.0, 110.0, 268.0, 118.0),
        ocr=ocr,
    )


def observation(ocr: str | None) -> Any:
    return build_lab_result_observation(
        lab(ocr), subject="Patient/p1", document=DOC, pdf_sha256="ab" * 32, device=DEVICE, identity=IDENTITY,
        issued=ISSUED,
    )  # fmt: skip


def test_an_ocr_reading_is_tagged_and_names_its_engine() -> None:
    built = observation("tesseract 5.3.0")
    obs = built.resource.model_dump(mode="json")
    assert is_document_extraction(obs)
    assert is_ocr_reading(obs)
    assert is_ocr_reading(built.resource)
    (location,) = [e for e in obs["extension"] if e["url"] == SOURCE_LOCATION_URL]
    parts = {p["url"]: p for p in location["extension"]}
    assert parts["ocr"]["valueString"] == "tesseract 5.3.0"
    assert parts["page"]["valueInteger"] == 1
    assert "OCR" in obs["note"][0]["text"]
    assert "tesseract 5.3.0" in obs["method"]["text"]


def test_a_text_layer_value_is_not_tagged_and_keeps_its_identifier() -> None:
    text = observation(None)
    obs = text.resource.model_dump(mode="json")
    assert not is_ocr_reading(obs)
    assert all(p["url"] != "ocr" for e in obs["extension"] for p in e["extension"])
    assert "OCR" not in obs["note"][0]["text"]
    # The same printed value read by OCR, or by another engine version, is another result.
    identifiers = {observation(o).identifier.value for o in (None, "tesseract 5.3.0", "tesseract 5.4.1")}
    assert len(identifiers) == 3
    assert observation("tesseract 5.3.0").identifier == observation("tesseract 5.3.0").identifier


def provenance(bundle: dict[str, Any]) -> dict[str, Any]:
    (prov,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    Provenance.model_validate(prov)
    return dict(prov)


def test_the_provenance_names_the_ocr_engine_on_the_source_document() -> None:
    bundle = build_lab_document_transaction(
        document=DOC, observations=[observation(None), observation("tesseract 5.3.0")], identity=IDENTITY,
        issued=ISSUED,
    )  # fmt: skip
    prov = provenance(bundle)
    (source,) = [e for e in prov["entity"] if e["role"] == "source"]
    assert source["what"] == {"reference": DOC}
    assert source["extension"] == [{"url": OCR_ENGINE_URL, "valueString": "tesseract 5.3.0"}]
    engines = [e["what"]["identifier"] for e in prov["entity"] if e["role"] == "derivation"]
    assert {"system": OCR_ENGINE_URL, "value": "tesseract 5.3.0"} in engines


def test_a_text_layer_transaction_has_no_ocr_entity() -> None:
    bundle = build_lab_document_transaction(
        document=DOC, observations=[observation(None)], identity=IDENTITY, issued=ISSUED
    )
    prov = provenance(bundle)
    assert all("extension" not in e for e in prov["entity"])
    assert all(e["what"].get("identifier", {}).get("system") != OCR_ENGINE_URL for e in prov["entity"])


def test_an_ocr_transaction_is_exactly_what_validating_it_gives() -> None:
    """The transaction is sent as built, unvalidated: the OCR additions keep it canonical R4B."""
    bundle = build_lab_document_transaction(
        document=DOC, observations=[observation(None), observation("tesseract 5.3.0")], identity=IDENTITY,
        issued=ISSUED,
    )  # fmt: skip
    Bundle.model_validate(bundle)
    models: dict[str, Any] = {"Observation": Observation, "Provenance": Provenance, "Device": Device}
    for entry in bundle["entry"]:
        data = entry["resource"]
        dumped = models[data["resourceType"]].model_validate(data).model_dump(mode="json")
        assert json.dumps(dumped) == json.dumps(data), data["resourceType"]
