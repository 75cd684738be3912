"""agent.service.record_reuse against a FHIR server that refuses `_lastUpdated` searches (what the
embedded server never does): the first refusal ends reuse for that server, and later runs read
the record without a check or a clock probe, as before reuse existed. The reuse itself, against
the embedded server: tests/integration/test_record_reuse.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from agent.service.record_reuse import RecordKey, RecordReuse
from fhir_adapters import FhirClient

BASE = "https://ehr.example/fhir"
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"}
KEY = RecordKey(caller="token:c", user=None, scopes="patient/*.rs", fhir_base=BASE, patient_id="p1")


def refusing(sent: list[httpx.Request]) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=PATIENT)
        if "_lastUpdated" in request.url.params:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-supported"}],
            }
            return httpx.Response(400, json=outcome)
        # Searches: empty pages, stamped with the server's clock (the probe reads it).
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": "2026-12-05T10:00:00Z"},
        }
        return httpx.Response(200, json=bundle)

    return handle


async def test_a_server_refusing_the_check_gets_plain_reads_afterwards() -> None:
    sent: list[httpx.Request] = []
    reuse = RecordReuse(margin=timedelta(0), min_resources=0)
    async with FhirClient(BASE, transport=httpx.MockTransport(refusing(sent))) as fhir:
        await reuse.record(KEY, fhir)  # read and kept
        assert reuse.kept[0] == 1
        await reuse.record(KEY, fhir)  # the check is refused: read again, kept no more
        assert reuse.kept[0] == 0
        assert any("_lastUpdated" in r.url.params for r in sent)
        sent.clear()
        record = await reuse.record(KEY, fhir)
    assert record.patient is not None
    assert not any("_lastUpdated" in r.url.params for r in sent)  # no check
    assert not any(r.url.params.get("_id", "").startswith("chartagent") for r in sent)  # no clock probe
    assert reuse.reused == 0
