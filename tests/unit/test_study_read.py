"""`read_study` and the agent's imaging tools, where no server is needed: what is refused or skipped
before anything is fetched, a PACS that fails (MockTransport), and the task a caller may not ask."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fhir_adapters import FhirClient
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging_review.read import ReadStatus, read_study, study_reference
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.tasks.registry import AnalysisTask
from tools.record import PatientRecord, build_record
from tools.registry import ToolContext, read_tools

PID = "p-read"
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
PACS = "http://pacs.test/dicom-web"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def study(sid: str, modality: str, *, uid: str | None = "2.25.77", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{PID}"},
        "started": "2026-05-01T10:00:00Z",
        "series": [{"uid": "2.25.78", "number": 1, "modality": {"system": DCM, "code": modality}}],
        **extra,
    }
    if uid is not None:
        resource["identifier"] = [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}]
    return resource


def record(*resources: dict[str, Any]) -> PatientRecord:
    return build_record(PID, list(resources), types=("ImagingStudy", "Endpoint"))


def model() -> ScriptedBackend:
    return ScriptedBackend(["{}"], cycle=True)


async def _no_wait(_: float) -> None:
    return None


def failing_pacs(status: int = 503) -> tuple[DicomWebClient, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(status, text="unavailable")

    return DicomWebClient(PACS, transport=httpx.MockTransport(handler), sleep=_no_wait), seen


def test_study_reference_forms() -> None:
    assert study_reference("abc") == "ImagingStudy/abc"
    assert study_reference(" ImagingStudy/abc ") == "ImagingStudy/abc"
    assert study_reference("https://ehr/fhir/ImagingStudy/abc/_history/2") == "ImagingStudy/abc"


async def test_what_is_refused_or_skipped_before_anything_is_fetched() -> None:
    rec = record(study("ct1", "CT"), study("nouid", "CT", uid=None), study("us", "US"))
    pacs, seen = failing_pacs()
    async with pacs:
        cases = {
            "ImagingStudy/elsewhere": (pacs, model(), "not an ImagingStudy of this patient's record"),
            "nouid": (pacs, model(), "no valid StudyInstanceUID"),
            "us": (pacs, model(), "no reading recipe for modality US"),
            "ct1": (pacs, None, "no model configured"),
        }
        for ref, (client, backend, reason) in cases.items():
            done = await read_study(rec, ref, dicomweb=client, model=backend, now=NOW)
            assert done.status is ReadStatus.SKIPPED, ref
            assert reason in str(done.reason)
            assert done.pending is None
        no_pacs = await read_study(rec, "ct1", dicomweb=None, model=model(), now=NOW)
    assert no_pacs.reason == "no DICOMweb server configured"
    assert no_pacs.task is AnalysisTask.FINDINGS
    assert seen == []


async def test_a_failing_pacs_is_a_failed_read_not_an_exception() -> None:
    rec = record(study("ct1", "CT"))
    backend = model()
    pacs, seen = failing_pacs()
    async with pacs:
        done = await read_study(rec, "ImagingStudy/ct1", dicomweb=pacs, model=backend, now=NOW)
    assert done.status is ReadStatus.FAILED
    assert str(done.reason).startswith("images could not be fetched: ")
    assert "503" in str(done.reason)
    assert seen
    assert backend.requests == []
    assert "not analysed - images could not be fetched" in done.summary


async def test_compare_is_not_a_single_study_read() -> None:
    with pytest.raises(ValueError, match="prior"):
        await read_study(
            record(study("ct1", "CT")), "ct1", dicomweb=None, model=None, now=NOW, task=AnalysisTask.COMPARE
        )


async def test_the_tools_refuse_a_study_outside_the_record_and_note_a_missing_model() -> None:
    rec = record(study("ct1", "CT"))
    async with FhirClient("http://fhir.test/fhir") as fhir:  # never called: the record is given
        ctx = ToolContext(fhir=fhir, patient_id=PID, _record=rec)
        registry = read_tools()
        for tool in ("analyze_study", "compare_with_prior"):
            refused = await registry.call(tool, {"study": "ImagingStudy/other-patients"}, ctx)
            assert not refused.ok
            assert "refused" in str(refused.error)
        noted = await registry.call("analyze_study", {"study": "ImagingStudy/ct1"}, ctx)
        compared = await registry.call("compare_with_prior", {"study": "ct1"}, ctx)
    assert noted.ok
    assert "no model configured" in str(noted.note)
    assert compared.ok
    assert "no model configured" in str(compared.note)
    assert compared.output is not None
    assert compared.output["prior"] is None


async def test_compare_with_prior_says_why_a_study_is_not_compared() -> None:
    chest = {"system": "http://snomed.info/sct", "code": "51185008"}
    cxr = study("cxr1", "DX")
    cxr["series"][0]["bodySite"] = chest
    rec = record(study("sm1", "SM"), cxr)
    async with FhirClient("http://fhir.test/fhir") as fhir:
        ctx = ToolContext(fhir=fhir, patient_id=PID, model=model(), _record=rec)
        slide = await read_tools().call("compare_with_prior", {"study": "sm1"}, ctx)
        alone = await read_tools().call("compare_with_prior", {"study": "ImagingStudy/cxr1"}, ctx)
    assert slide.ok
    assert slide.note == "not compared: whole-slide pathology is not part of the imaging comparison"
    assert alone.ok
    assert str(alone.note).startswith("not compared: no prior chest X-ray")
    assert slide.facts == alone.facts == []
