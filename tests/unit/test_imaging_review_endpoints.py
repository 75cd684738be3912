"""The imaging review's DICOMweb policy: pixels only from the configured server, never a record's URL.

Unit tier: the pure policy, Endpoint resolution with an `httpx.MockTransport` FHIR server, and
`compare_imaging` with a DICOMweb transport that records every request (none may come).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fhir_adapters import FhirClient, RetryPolicy
from tools.imaging.dicomweb import DicomWebClient
from tools.imaging_review import NO_DICOMWEB, NO_MODEL, ComparisonStatus, ImagingKind, compare_imaging
from tools.imaging_review.endpoints import (
    EndpointInfo,
    dicomweb_refusal,
    resolve_endpoints,
    same_dicomweb_root,
)
from tools.medgemma.fake_backend import ScriptedBackend
from tools.record import PatientRecord, build_record

PACS = "http://pacs.local:8042/dicom-web"
FHIR = "http://ehr.local/fhir"
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
PID = "p1"


def endpoint(eid: str, address: str, connection: str = "dicom-wado-rs") -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": eid,
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": connection,
        },
        "payloadType": [{"text": "DICOM"}],
        "address": address,
    }


def cxr_study(sid: str, started: str, endpoint_ref: str | None, uid: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{PID}"},
        "started": started,
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "series": [
            {
                "uid": f"{uid}.1",
                "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CR"},
                "bodySite": {"system": "http://snomed.info/sct", "code": "51185008"},
            }
        ],
    }
    if endpoint_ref is not None:
        resource["endpoint"] = [{"reference": endpoint_ref}]
    return resource


def info(ref: str, address: str, connection: str = "dicom-wado-rs", status: str = "active") -> EndpointInfo:
    return EndpointInfo(reference=ref, address=address, connection_type=connection, status=status)


@pytest.mark.parametrize(
    ("address", "same"),
    [
        (PACS, True),
        (PACS + "/", True),
        ("HTTP://PACS.LOCAL:8042/dicom-web", True),
        ("http://pacs.local:8042/dicom-web/studies", False),
        ("http://pacs.local:8043/dicom-web", False),
        ("https://pacs.local:8042/dicom-web", False),
        ("http://evil.example:8042/dicom-web", False),
        ("http://u:p@evil.example/dicom-web", False),
        ("pacs.local:8042/dicom-web", False),
    ],
)
def test_same_dicomweb_root(address: str, same: bool) -> None:
    assert same_dicomweb_root(address, PACS) is same


def test_default_ports_are_the_same_port() -> None:
    assert same_dicomweb_root("https://pacs.example/dicomweb", "https://pacs.example:443/dicomweb")


def test_endpoint_on_another_host_is_refused_naming_the_study_and_host() -> None:
    reason = dicomweb_refusal(
        "ImagingStudy/s1",
        ["Endpoint/e"],
        {"Endpoint/e": info("Endpoint/e", "https://other.example/wado")},
        PACS,
    )
    assert reason is not None
    assert reason.startswith("refused: ImagingStudy/s1")
    assert "other.example" in reason
    assert "/wado" not in reason  # hosts only, never an address's path


def test_other_root_on_the_same_host_is_refused() -> None:
    resolved = {"Endpoint/e": info("Endpoint/e", "http://pacs.local:8042/other-root")}
    reason = dicomweb_refusal("ImagingStudy/s1", ["Endpoint/e"], resolved, PACS)
    assert reason is not None
    assert "another DICOMweb root" in reason


def test_one_matching_wado_endpoint_among_several_is_enough() -> None:
    resolved = {
        "Endpoint/iid": info("Endpoint/iid", "https://viewer.example/iid", connection="ihe-iid"),
        "Endpoint/e": info("Endpoint/e", PACS + "/"),
    }
    assert dicomweb_refusal("ImagingStudy/s1", list(resolved), resolved, PACS) is None


def test_no_endpoint_means_the_configured_server() -> None:
    assert dicomweb_refusal("ImagingStudy/s1", [], {}, PACS) is None


@pytest.mark.parametrize(
    ("resolved", "expected"),
    [
        ({"Endpoint/e": "read failed: GET Endpoint/e -> HTTP 404"}, "could not be checked"),
        ({"Endpoint/e": info("Endpoint/e", PACS, connection="ihe-iid")}, "names no active dicom-wado-rs"),
        ({"Endpoint/e": info("Endpoint/e", PACS, status="off")}, "names no active dicom-wado-rs"),
    ],
)
def test_unusable_endpoints_are_refused(resolved: dict[str, EndpointInfo | str], expected: str) -> None:
    reason = dicomweb_refusal("ImagingStudy/s9", ["Endpoint/e"], resolved, PACS)
    assert reason is not None
    assert "ImagingStudy/s9" in reason
    assert expected in reason


def fhir_server(resources: dict[str, dict[str, Any]], seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        key = request.url.path.removeprefix("/fhir/")
        if key in resources:
            return httpx.Response(200, json=resources[key], headers={"content-type": "application/fhir+json"})
        outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
        return httpx.Response(404, json=outcome)

    return httpx.MockTransport(handler)


async def test_endpoints_resolve_from_contained_record_and_server() -> None:
    record = build_record(PID, [endpoint("in-record", PACS)], types=("Endpoint",))
    seen: list[str] = []
    transport = fhir_server({"Endpoint/on-server": endpoint("on-server", "https://other.example/x")}, seen)
    async with FhirClient(FHIR, transport=transport) as fhir:
        resolved = await resolve_endpoints(
            [
                "#c",
                "Endpoint/in-record",
                "Endpoint/on-server",
                f"{FHIR}/Endpoint/missing",
                "https://x.example/Endpoint/y",
            ],
            record=record,
            contained={"#c": info("#c", PACS)},
            fhir=fhir,
        )
    assert isinstance(resolved["#c"], EndpointInfo)
    assert isinstance(resolved["Endpoint/in-record"], EndpointInfo)
    on_server = resolved["Endpoint/on-server"]
    assert isinstance(on_server, EndpointInfo)
    assert on_server.address == "https://other.example/x"
    assert "read failed" in str(resolved[f"{FHIR}/Endpoint/missing"])
    assert resolved["https://x.example/Endpoint/y"] == "not an Endpoint on this FHIR server"
    # Only our FHIR server was asked, and only for what the record did not hold.
    assert seen == ["/fhir/Endpoint/on-server", "/fhir/Endpoint/missing"]


def recording_pacs(seen: list[str]) -> DicomWebClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(500)

    return DicomWebClient(PACS, transport=httpx.MockTransport(handler))


def cxr_record(endpoint_address: str) -> PatientRecord:
    record = build_record(
        PID,
        [
            endpoint("pacs", endpoint_address),
            cxr_study("cxr-prior", "2025-11-02T09:00:00Z", "Endpoint/pacs", "2.25.1"),
            cxr_study("cxr-current", "2026-05-01T09:00:00Z", "Endpoint/pacs", "2.25.2"),
        ],
        types=("ImagingStudy", "Endpoint"),
    )
    assert record.rejected == []
    return record


async def test_a_study_on_another_host_is_refused_and_nothing_is_fetched_or_asked() -> None:
    seen: list[str] = []
    model = ScriptedBackend(["never used"], cycle=True)
    async with recording_pacs(seen) as pacs:
        review = await compare_imaging(
            cxr_record("https://elsewhere.example/dicom-web"), dicomweb=pacs, model=model, now=NOW
        )
    (outcome,) = review.comparisons
    assert outcome.kind is ImagingKind.CXR
    assert outcome.status is ComparisonStatus.SKIPPED
    assert outcome.reason is not None
    assert "ImagingStudy/cxr-current" in outcome.reason
    assert "elsewhere.example" in outcome.reason
    assert outcome.built == ()
    assert seen == []
    assert model.requests == []


async def test_without_a_model_everything_is_skipped_and_nothing_is_fetched() -> None:
    seen: list[str] = []
    fhir_seen: list[str] = []
    record = cxr_record(PACS)
    async with recording_pacs(seen) as pacs, FhirClient(FHIR, transport=fhir_server({}, fhir_seen)) as fhir:
        review = await compare_imaging(record, dicomweb=pacs, model=None, now=NOW, fhir=fhir)
    assert [(c.status, c.reason) for c in review.comparisons] == [(ComparisonStatus.SKIPPED, NO_MODEL)]
    assert review.built == []
    assert seen == []
    assert fhir_seen == []
    assert review.summary_lines == ["CXR 2026-05-01 vs 2025-11-02: not analysed - no model configured"]


async def test_endpoint_that_cannot_be_read_refuses_the_study() -> None:
    seen: list[str] = []
    record = build_record(
        PID,
        [
            cxr_study("cxr-prior", "2025-11-02T09:00:00Z", "Endpoint/gone", "2.25.1"),
            cxr_study("cxr-current", "2026-05-01T09:00:00Z", "Endpoint/gone", "2.25.2"),
        ],
        types=("ImagingStudy",),
    )
    async with recording_pacs(seen) as pacs, FhirClient(FHIR, transport=fhir_server({}, [])) as fhir:
        review = await compare_imaging(
            record, dicomweb=pacs, model=ScriptedBackend(["x"]), now=NOW, fhir=fhir
        )
    (outcome,) = review.comparisons
    assert outcome.status is ComparisonStatus.SKIPPED
    assert "could not be checked" in str(outcome.reason)
    assert seen == []


async def test_without_a_dicomweb_server_nothing_is_asked() -> None:
    model = ScriptedBackend(["never used"], cycle=True)
    review = await compare_imaging(cxr_record(PACS), dicomweb=None, model=model, now=NOW)
    assert [(c.status, c.reason) for c in review.comparisons] == [(ComparisonStatus.SKIPPED, NO_DICOMWEB)]
    assert model.requests == []


async def test_a_pacs_that_fails_fails_the_comparison_without_asking_the_model() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(503)

    model = ScriptedBackend(["never used"], cycle=True)
    no_retry = RetryPolicy(max_attempts=1)
    async with DicomWebClient(PACS, transport=httpx.MockTransport(handler), retry=no_retry) as pacs:
        review = await compare_imaging(cxr_record(PACS), dicomweb=pacs, model=model, now=NOW)
    (outcome,) = review.comparisons
    assert outcome.status is ComparisonStatus.FAILED
    assert str(outcome.reason).startswith("images could not be fetched: ")
    assert "503" in str(outcome.reason)
    assert outcome.built == ()
    assert model.requests == []
    # Only the configured server's studies were asked for (current and prior, concurrently).
    assert {p.split("/series/")[0] for p in seen} == {
        "/dicom-web/studies/2.25.2",
        "/dicom-web/studies/2.25.1",
    }
