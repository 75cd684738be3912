"""gather_record against the real embedded FHIR server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fhir_adapters import FhirClient
from tools.record import gather_record

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"


def load_bundle(pid: str, *, bad_value: bool = False) -> dict[str, Any]:
    ref = {"reference": f"Patient/{pid}"}
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": pid, "birthDate": "1960-04-01"}]
    for i in range(12):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-o{i}",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "4548-4" if i % 2 else "2345-7"}]},
                "subject": ref,
                "effectiveDateTime": f"20{10 + i}-01-01",
                "valueQuantity": {"value": 6.0 + i / 10},
            }
        )
    resources += [
        {
            "resourceType": "Condition",
            "id": f"{pid}-c",
            "subject": ref,
            "code": {"text": "CKD 3"},
            "onsetDateTime": "2012",
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{pid}-m",
            "status": "active",
            "intent": "order",
            "subject": ref,
            "medicationCodeableConcept": {"text": "metformin"},
            "authoredOn": "2013-02-03",
        },
        {
            "resourceType": "Encounter",
            "id": f"{pid}-e",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": ref,
        },
    ]
    if bad_value:
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-bad",
                "status": "final",
                "code": {"text": "HbA1c"},
                "subject": ref,
                "valueQuantity": {"value": "abc"},
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


@pytest.mark.parametrize(
    ("strategy", "concurrent"), [("per-type", True), ("per-type", False), ("everything", True)]
)
async def test_gather_record(fhir_base_url: str, strategy: Any, concurrent: bool) -> None:
    pid = f"rec-{uuid.uuid4().hex[:12]}"
    async with FhirClient(fhir_base_url, flavour="sekmet") as client:
        await client.transaction(load_bundle(pid))
        record = await gather_record(client, pid, strategy=strategy, concurrent=concurrent)
    assert record.patient is not None
    assert str(record.patient.birthDate) == "1960-04-01"
    counts = {t: s.count for t, s in record.manifest.types.items()}
    assert counts == {"Condition": 1, "Encounter": 1, "MedicationRequest": 1, "Observation": 12}
    obs = record.manifest.types["Observation"]
    assert sorted((c.code, c.count) for c in obs.codes) == [("2345-7", 6), ("4548-4", 6)]
    assert obs.earliest is not None
    assert obs.latest is not None
    assert (obs.earliest.year, obs.latest.year) == (2010, 2021)
    assert record.rejected == []


async def test_malformed_resource_is_reported_and_the_rest_gathered(
    fhir_server_factory: Callable[..., str],
) -> None:
    base_url = fhir_server_factory(validation="off")  # a lenient server stores what a strict one refuses
    pid = f"bad-{uuid.uuid4().hex[:12]}"
    async with FhirClient(base_url, flavour="sekmet") as client:
        await client.transaction(load_bundle(pid, bad_value=True))
        record = await gather_record(client, pid)
    assert len(record.rejected) == 1
    rejected = record.rejected[0]
    assert (rejected.resource_type, rejected.id) == ("Observation", f"{pid}-bad")
    assert rejected.reason.startswith("valueQuantity.value")
    assert "abc" not in rejected.reason
    assert record.manifest.types["Observation"].count == 12
    assert record.patient is not None
