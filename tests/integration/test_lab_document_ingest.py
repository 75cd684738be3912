"""Lab-report PDFs attached to DocumentReferences -> grounded Observations on a real FHIR server.

Every test makes its own patient (fresh ids) on the shared embedded server, so tests never see
each other's data. The PDFs and their truth come from ``agent.testbed.cohort.labpdf``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from lab_documents import lab_doc, seed

from agent.nodes.write_back import post_writes
from agent.testbed.cohort.labpdf import LabReport, make_report, render_hospital
from agent.testbed.cohort.labpdf.bad import encrypted_pdf, injection_report, truncated_pdf
from agent.testbed.cohort.labpdf.make import Dialect
from fhir_adapters import FhirClient, RetryPolicy
from tools.documents.ingest import DocumentIngest, ingest_lab_documents, with_writes
from tools.labs.inputs import trend_inputs
from tools.labs.series import build_series
from tools.record import PatientRecord, gather_record

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
EXTRACTION_TAG = "urn:chartagent:ai-output-kind|document-extraction"
EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.1234"
COLLECTED = datetime(2024, 3, 4, 7, 45)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def report(
    pid: str, results: dict[str, float | str], *, dialect: Dialect = Dialect.US, seed: int = 1
) -> LabReport:
    return make_report(pid, COLLECTED, results, seed, dialect=dialect)


async def extracted(client: FhirClient, pid: str) -> list[dict[str, Any]]:
    return await client.search("Observation", {"subject": f"Patient/{pid}", "_tag": EXTRACTION_TAG})


async def ingest_and_write(
    client: FhirClient, record: PatientRecord, *, dry_run: bool = False
) -> DocumentIngest:
    """The documents' pending writes, posted by the write node's own step, and settled."""
    ingest = await ingest_lab_documents(record, client, now=NOW, tz=NY)
    assert all(d.status != "written" for d in ingest.documents)  # nothing is written by ingest itself
    return with_writes(ingest, await post_writes(client, ingest.pending, dry_run=dry_run))


async def ingest(
    client: FhirClient, pid: str, *, dry_run: bool = False
) -> tuple[PatientRecord, DocumentIngest]:
    record = await gather_record(client, pid)
    return record, await ingest_and_write(client, record, dry_run=dry_run)


def coded(truth: LabReport) -> list[Any]:
    """The printed results that must be written: coded, and a result (not "see note")."""
    return [r for r in truth.results if r.loinc is not None and r.value_text != "see note"]


@pytest.fixture
async def fhir(fhir_base_url: str) -> Any:
    async with FhirClient(fhir_base_url, flavour="sekmet") as client:
        yield client


async def test_writes_grounded_observations_then_a_rerun_writes_nothing(fhir: FhirClient) -> None:
    pid, doc_id = fresh("pdf"), fresh("doc")
    planned: dict[str, float | str] = {"potassium": 5.9, "sodium": 139.0, "creatinine": 1.1, "crp": "<0.5"}
    truth = make_report(
        pid, COLLECTED, planned | {"b12": "see note"}, 1, notes={"b12": "Specimen haemolysed."}
    )
    await seed(fhir, pid, lab_doc(doc_id, pid, pdf=render_hospital(truth)))

    # Dry run: everything built, nothing sent.
    _, dry = await ingest(fhir, pid, dry_run=True)
    (dry_outcome,) = dry.documents
    assert dry_outcome.status == "written"
    assert dry_outcome.written == len(coded(truth))
    assert all(ref.startswith("urn:uuid:") for ref in dry.references)
    assert all("id" not in o for o in dry.observations)
    assert await extracted(fhir, pid) == []

    record, run = await ingest(fhir, pid)
    (outcome,) = run.documents
    assert outcome.document == f"DocumentReference/{doc_id}"
    assert (outcome.status, outcome.error) == ("written", None)
    assert outcome.extracted == len(truth.results)
    assert outcome.written == len(coded(truth))
    assert [n.name for n in outcome.not_written] == ["Vitamin B12"]
    written = await extracted(fhir, pid)
    assert sorted(o["id"] for o in written) == sorted(o["id"] for o in run.observations)
    assert sorted(f"Observation/{o['id']}" for o in written) == sorted(run.references)
    by_code = {o["code"]["coding"][0]["code"]: o for o in written}
    for t in coded(truth):
        o = by_code[t.loinc]
        assert o["status"] == "preliminary"
        assert o["code"]["text"] == t.name
        assert o["subject"]["reference"] == f"Patient/{pid}"
        assert o["derivedFrom"] == [{"reference": f"DocumentReference/{doc_id}"}]
        assert o["effectiveDateTime"] == "2024-03-04T07:45:00-05:00"  # printed 07:45, New York
        assert o["valueQuantity"]["value"] == t.value
        assert o["valueQuantity"].get("comparator") == (t.comparator.value if t.comparator else None)
        assert (o.get("interpretation") or [{}])[0].get("coding", [{}])[0].get("code") == (
            t.flag.value if t.flag else None
        )
        (location,) = o["extension"]
        parts = {e["url"]: e.get("valueInteger", e.get("valueString")) for e in location["extension"]}
        assert parts["page"] == 1
        assert len(parts["bbox"].split(",")) == 4
        assert o["device"]["reference"].startswith("Device/")
    # One Provenance naming every Observation, with the document as its source, by the extractor's Device.
    provenances = await fhir.search("Provenance", {"target": f"Observation/{written[0]['id']}"})
    (provenance,) = provenances
    assert {t["reference"] for t in provenance["target"]} == {f"Observation/{o['id']}" for o in written}
    assert {"role": "source", "what": {"reference": f"DocumentReference/{doc_id}"}} in provenance["entity"]
    device = await fhir.read("Device", provenance["agent"][0]["who"]["reference"].split("/")[1])
    assert device["deviceName"][0]["name"] == "chartagent-lab-pdf-extractor"

    # Gathered again, the transcribed values are trend inputs.
    series = build_series(trend_inputs((await gather_record(fhir, pid)).of_type("Observation")))
    assert {s.code for s in series.series} >= {"2823-3", "2951-2", "2160-0"}

    # Second run over the record as it is now: nothing new.
    _, again = await ingest(fhir, pid)
    (second,) = again.documents
    assert (second.status, second.written, second.already_written) == ("nothing-new", 0, len(coded(truth)))
    assert again.observations == []
    assert len(await extracted(fhir, pid)) == len(written)
    # Even over a stale record (the earlier run's output not gathered), the server creates nothing.
    stale = PatientRecord(
        patient_id=record.patient_id,
        patient=record.patient,
        resources=record.resources,
        manifest=record.manifest,
        rejected=[],
    )
    replay = await ingest_and_write(fhir, stale)
    assert (replay.documents[0].status, replay.documents[0].written) == ("nothing-new", 0)
    assert len(await extracted(fhir, pid)) == len(written)
    assert len(await fhir.search("Provenance", {"target": f"Observation/{written[0]['id']}"})) == 1


async def test_binary_attachment_and_a_result_already_in_fhir(fhir: FhirClient) -> None:
    pid, doc_id, binary_id = fresh("bin"), fresh("doc"), fresh("bin")
    truth = report(
        pid, {"creatinine": 1.2, "potassium": 4.1}, dialect=Dialect.SI
    )  # creatinine printed as 106 umol/L
    pdf = render_hospital(truth)
    feed = {
        "resourceType": "Observation",
        "id": fresh("feed"),
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": EPIC, "code": "CREAT", "display": "Creatinine"}]},
        "effectiveDateTime": "2024-03-04T12:45:00Z",  # 07:45 in New York
        "valueQuantity": {
            "value": 1.2,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    binary = {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": "application/pdf",
        "data": base64.b64encode(pdf).decode(),
    }
    await seed(fhir, pid, binary, feed, lab_doc(doc_id, pid, url=f"{fhir.base_url}/Binary/{binary_id}"))
    _, run = await ingest(fhir, pid)
    (outcome,) = run.documents
    assert (outcome.status, outcome.written, outcome.duplicates) == ("written", 1, 1)
    assert [n.reason for n in outcome.not_written] == [f"same as Observation/{feed['id']}"]
    (potassium,) = await extracted(fhir, pid)
    assert potassium["code"]["coding"][0]["code"] == "2823-3"


async def test_a_later_document_repeating_an_earlier_one_is_deduplicated(fhir: FhirClient) -> None:
    pid, first, second = fresh("two"), fresh("doc"), fresh("doc")
    truth = report(pid, {"potassium": 4.4, "sodium": 141.0})
    copy = report(pid, {"potassium": 4.4, "sodium": 141.0, "chloride": 101.0}, seed=2)  # a re-issued report
    await seed(
        fhir,
        pid,
        lab_doc(second, pid, pdf=render_hospital(copy), day="2024-03-09"),
        lab_doc(first, pid, pdf=render_hospital(truth)),
    )
    _, run = await ingest(fhir, pid)
    outcomes = {o.document: o for o in run.documents}
    assert [o.document for o in run.documents] == [
        f"DocumentReference/{first}",
        f"DocumentReference/{second}",
    ]
    assert (
        outcomes[f"DocumentReference/{first}"].written,
        outcomes[f"DocumentReference/{first}"].duplicates,
    ) == (2, 0)
    assert (
        outcomes[f"DocumentReference/{second}"].written,
        outcomes[f"DocumentReference/{second}"].duplicates,
    ) == (1, 2)
    assert len(await extracted(fhir, pid)) == 3


async def test_bad_documents_fail_alone_and_name_themselves(fhir: FhirClient) -> None:
    pid = fresh("bad")
    good_pdf = render_hospital(report(pid, {"potassium": 4.0, "sodium": 140.0}))
    ids = {kind: fresh(kind) for kind in ("encrypted", "truncated", "corrupt", "elsewhere", "good")}
    await seed(
        fhir,
        pid,
        lab_doc(ids["encrypted"], pid, pdf=encrypted_pdf(good_pdf)),
        lab_doc(ids["truncated"], pid, pdf=truncated_pdf(good_pdf, keep=0.7)),
        lab_doc(ids["corrupt"], pid, pdf=b"this is not a PDF at all"),
        lab_doc(ids["elsewhere"], pid, url="https://files.example.com/fhir/Binary/1"),
        lab_doc(ids["good"], pid, pdf=good_pdf),
        {
            "resourceType": "DocumentReference",
            "id": fresh("note"),
            "status": "current",
            "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "content": [
                {
                    "attachment": {
                        "contentType": "application/pdf",
                        "data": base64.b64encode(good_pdf).decode(),
                    }
                }
            ],
        },
    )
    _, run = await ingest(fhir, pid)
    outcomes = {o.document.split("/")[1]: o for o in run.documents}
    for kind, problem in (
        ("encrypted", "encrypted"),
        ("truncated", "damaged"),
        ("corrupt", "not a readable PDF"),
        ("elsewhere", "attachment URL refused"),
    ):
        outcome = outcomes[ids[kind]]
        assert outcome.status == "failed", kind
        assert outcome.error is not None
        assert outcome.error.startswith(f"DocumentReference/{ids[kind]}: ")
        assert problem in outcome.error
        assert outcome.written == 0
    assert outcomes[ids["good"]].status == "written"
    assert sorted(o.status for o in run.documents).count("skipped-not-lab") == 1
    written = await extracted(fhir, pid)
    assert {o["derivedFrom"][0]["reference"] for o in written} == {f"DocumentReference/{ids['good']}"}
    assert len(written) == 2


async def test_an_injected_instruction_is_data(fhir: FhirClient) -> None:
    pid, doc_id = fresh("inj"), fresh("doc")
    source = report(pid, {"ldl": 190.0, "hdl": 30.0, "glucose": 160.0, "hba1c": 8.1})
    pdf, truth = injection_report(source)
    await seed(fhir, pid, lab_doc(doc_id, pid, pdf=pdf))
    _, run = await ingest(fhir, pid)
    assert run.documents[0].status == "written"
    written = await extracted(fhir, pid)
    got = sorted(
        (
            o["code"]["coding"][0]["code"],
            o["valueQuantity"]["value"],
            o.get("interpretation", [{}])[0].get("coding", [{}])[0].get("code"),
        )
        for o in written
    )
    want = sorted((t.loinc, t.value, t.flag.value if t.flag else None) for t in coded(truth))
    assert got == want
    assert any(flag == "H" for _, _, flag in got)  # flagged results stay flagged
    assert all("instruction" not in (o["code"].get("text") or "").lower() for o in written)


class FailTransactionsOf(httpx.AsyncBaseTransport):
    """Forwards to the real server, but answers 500 to the transaction naming one document: a
    server fault the embedded server cannot produce on demand. With ``after_commit`` the server
    gets the transaction first (it commits), and the answer is lost behind a 500."""

    def __init__(self, document: str, *, after_commit: bool = False) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.marker = f'"{document}"'.encode()
        self.after_commit = after_commit
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        if request.method == "POST" and self.marker in body:
            self.failed += 1
            if self.after_commit:
                answer = await self.inner.handle_async_request(request)
                await answer.aread()
                assert answer.status_code == 200
            return httpx.Response(
                500, json={"resourceType": "OperationOutcome", "issue": []}, request=request
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_server_error_on_the_transaction_leaves_nothing_written(
    fhir_base_url: str, fhir: FhirClient
) -> None:
    pid, broken, good = fresh("srv"), fresh("doc"), fresh("doc")
    await seed(
        fhir,
        pid,
        lab_doc(broken, pid, pdf=render_hospital(report(pid, {"potassium": 5.2}))),
        lab_doc(good, pid, pdf=render_hospital(report(pid, {"sodium": 133.0}, seed=3)), day="2024-03-08"),
    )
    transport = FailTransactionsOf(f"DocumentReference/{broken}")
    async with FhirClient(fhir_base_url, transport=transport) as client:
        _, run = await ingest(client, pid)
    failed, written = run.documents
    assert failed.document == f"DocumentReference/{broken}"
    assert failed.status == "failed"
    assert failed.error is not None
    assert "HTTP 500" in failed.error
    assert "a read of the server shows none stored" in failed.error  # checked, not guessed
    assert failed.error.startswith(f"DocumentReference/{broken}: ")
    # Conditional creates only: resent within the retry budget, read back, sent once more.
    assert transport.failed == 2 * RetryPolicy().max_attempts
    assert written.status == "written"
    refs = {o["derivedFrom"][0]["reference"] for o in await extracted(fhir, pid)}
    assert refs == {f"DocumentReference/{good}"}
    assert len(run.observations) == 1


async def test_a_write_whose_answer_is_lost_is_read_back_and_its_values_used(
    fhir_base_url: str, fhir: FhirClient
) -> None:
    """Issue 9: the server commits the transaction but the answer is a 500 every time. The
    document is reported written (confirmed by a read of the server), never "nothing written",
    and the stored Observations, with their server ids, join the record for the trends."""
    pid, doc = fresh("lost"), fresh("doc")
    await seed(fhir, pid, lab_doc(doc, pid, pdf=render_hospital(report(pid, {"potassium": 5.2}))))
    transport = FailTransactionsOf(f"DocumentReference/{doc}", after_commit=True)
    async with FhirClient(fhir_base_url, transport=transport) as client:
        _, run = await ingest(client, pid)
    (outcome,) = run.documents
    assert outcome.status == "written", outcome.error
    assert outcome.error is None
    assert outcome.confirmed == len(run.observations) >= 1
    stored = await extracted(fhir, pid)
    assert len(stored) == len(run.observations)  # resent after the lost answers: still once each
    assert sorted(o["id"] for o in stored) == sorted(o["id"] for o in run.observations)
    assert all(r.startswith("Observation/") for r in run.references)
