"""Issue 5 end to end on a real FHIR server: seed the cohort with its lab-report PDFs, summarize,
and find in FHIR the Observations transcribed from the PDFs (grounded, deduplicated, with
Provenance), trend Observations that use them, and the longitudinal DiagnosticReport with its
table and PNG plots; a rerun writes nothing new; a bad PDF fails alone.

The expected transcriptions come from the cohort's ground truth (`Cohort.lab_documents`), which
the generator writes independently of the extractor.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir_reads import get, search, server_with, totals
from PIL import Image

from agent.context import RunContext
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from tools.writeback.lab_results import DOCUMENT_EXTRACTION_TAG

pytestmark = pytest.mark.integration

TAG_TOKEN = f"{DOCUMENT_EXTRACTION_TAG['system']}|{DOCUMENT_EXTRACTION_TAG['code']}"
LOINC = "http://loinc.org"
# A fixed run clock: the written resources do not depend on the wall clock.
NOW = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)

Key = tuple[str, str, Any]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    # Seed 7, 12 patients: the demo's cohort, holding every layout and the one encrypted PDF.
    return generate_cohort(12, 7)


@pytest.fixture(scope="module")
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


@pytest.fixture(scope="module")
def runs(server: str, cohort: Cohort) -> tuple[list[PatientOutcome], list[PatientOutcome], dict[str, int]]:
    ids = [p.id for p in cohort.patients]

    async def twice() -> tuple[list[PatientOutcome], list[PatientOutcome], dict[str, int], dict[str, int]]:
        async with FhirClient(server) as client:
            first = await summarize_many(RunContext(fhir=client, now=NOW), ids)
            after_first = await totals(server)
            second = await summarize_many(RunContext(fhir=client, now=NOW), ids)
        return first, second, after_first, await totals(server)

    first, second, after_first, after_second = asyncio.run(twice())
    assert after_second == after_first, "a rerun wrote something"
    return first, second, after_first


def _value(v: float | str) -> Any:
    return round(v, 6) if isinstance(v, float | int) else str(v).lower()


def expected_transcriptions(cohort: Cohort, patient_id: str) -> set[Key]:
    """What a correct reading writes: readable documents' coded results not already in FHIR."""
    out: set[Key] = set()
    for doc in cohort.lab_documents.get(patient_id, ()):
        if not doc.readable:
            continue
        for r in doc.results:
            if r.loinc is None or r.duplicates_fhir or r.value == "see note":
                continue
            out.add((r.loinc, r.effective.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"), _value(r.value)))
    return out


def written_key(obs: dict[str, Any]) -> Key:
    (coding,) = [c for c in obs["code"]["coding"] if c["system"] == LOINC]
    when = datetime.fromisoformat(obs["effectiveDateTime"]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    value = obs["valueQuantity"]["value"] if "valueQuantity" in obs else obs["valueString"]
    return coding["code"], when, _value(float(value) if "valueQuantity" in obs else value)


async def transcribed(server: str, patient_id: str) -> list[dict[str, Any]]:
    return await search(server, "Observation", subject=f"Patient/{patient_id}", _tag=TAG_TOKEN)


def test_every_printed_result_not_in_fhir_is_transcribed_once(server: str, cohort: Cohort, runs: Any) -> None:
    first, second, _ = runs
    assert [o.status for o in second] == ["unchanged"] * len(second)
    by_id = {o.patient_id: o for o in first}
    total = 0
    for patient in cohort.patients:
        written = asyncio.run(transcribed(server, patient.id))
        keys = [written_key(o) for o in written]
        assert len(keys) == len(set(keys)), f"{patient.id}: a result transcribed twice"
        assert set(keys) == expected_transcriptions(cohort, patient.id), patient.id
        assert by_id[patient.id].from_documents == len(written)
        total += len(written)
    assert total > 0


def test_transcriptions_are_grounded_labelled_and_have_provenance(
    server: str, cohort: Cohort, runs: Any
) -> None:
    patient = next(p for p in cohort.patients if any(d.readable for d in cohort.lab_documents.get(p.id, ())))
    docs = {f"DocumentReference/{d.document_id}" for d in cohort.lab_documents[patient.id]}
    written = asyncio.run(transcribed(server, patient.id))
    assert written
    for obs in written:
        assert obs["status"] == "preliminary"
        assert obs["meta"]["security"][0]["code"] == "AIAST"
        (source,) = obs["derivedFrom"]
        assert source["reference"] in docs
        (location,) = [e for e in obs["extension"] if e["url"] == "urn:chartagent:source-location"]
        parts = {e["url"]: e for e in location["extension"]}
        assert parts["page"]["valueInteger"] >= 1
        x0, y0, x1, y1 = (float(v) for v in parts["bbox"]["valueString"].split(","))
        assert x1 > x0
        assert y1 > y0
    provenances = asyncio.run(
        search(server, "Provenance", target=",".join(f"Observation/{o['id']}" for o in written[:5]))
    )
    assert provenances
    for prov in provenances:
        sources = {e["what"].get("reference") for e in prov["entity"] if e["role"] == "source"}
        assert sources
        assert sources <= docs
        device = asyncio.run(get(f"{server}/{prov['agent'][0]['who']['reference']}"))
        assert device["type"]["coding"][0]["code"] == "Artificial-Intelligence"


def test_trends_use_transcribed_values_and_the_report_has_table_and_plots(
    server: str, cohort: Cohort, runs: Any
) -> None:
    used = 0
    for patient in cohort.patients:
        pdf_refs = {f"Observation/{o['id']}" for o in asyncio.run(transcribed(server, patient.id))}
        (report,) = asyncio.run(search(server, "DiagnosticReport", subject=f"Patient/{patient.id}"))
        trend_refs = [r["reference"] for r in report["result"]]
        for ref in trend_refs:
            trend = asyncio.run(get(f"{server}/{ref}"))
            used += len({d["reference"] for d in trend["derivedFrom"]} & pdf_refs)
        assert report["status"] == "preliminary"
        assert "<table" in report["text"]["div"]
        forms = report["presentedForm"]
        assert forms[0]["contentType"].startswith("text/plain")
        pngs = [f for f in forms if f["contentType"] == "image/png"]
        for png in pngs:
            with Image.open(io.BytesIO(base64.b64decode(png["data"]))) as image:
                assert image.format == "PNG"
                assert image.width > 100
        assert pngs, f"{patient.id}: no abnormal or changing series plotted"
        if any(d.readable for d in cohort.lab_documents.get(patient.id, ())):
            assert "Lab-report PDFs:" in report["conclusion"]
    assert used > 0, "no trend used a value transcribed from a PDF"


def test_the_encrypted_pdf_fails_alone(server: str, cohort: Cohort, runs: Any) -> None:
    first, _, _ = runs
    bad = [(pid, d) for pid, docs in cohort.lab_documents.items() for d in docs if d.bad]
    assert bad, "the cohort holds one encrypted lab report"
    for patient_id, doc in bad:
        outcome = next(o for o in first if o.patient_id == patient_id)
        assert outcome.status == "written"
        (error,) = outcome.document_errors
        assert error.startswith(f"DocumentReference/{doc.document_id}:")
        assert "encrypt" in error.lower()
        (report,) = asyncio.run(search(server, "DiagnosticReport", subject=f"Patient/{patient_id}"))
        assert f"Not read: DocumentReference/{doc.document_id}: " in report["conclusion"]
        written = asyncio.run(transcribed(server, patient_id))
        assert all(
            o["derivedFrom"][0]["reference"] != f"DocumentReference/{doc.document_id}" for o in written
        )
