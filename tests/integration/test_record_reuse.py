"""A patient's record kept between the service's runs (agent.service.record_reuse) against the
embedded FHIR server: reused while nothing of the patient is newer than its read, read again
after a write to the patient (one the record then holds), when it is too old, or for a caller
with other scopes; and the reuse check goes over the wire as `_lastUpdated` searches only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fhir_reads import server_with

from agent.service.record_reuse import MIN_RESOURCES, RecordKey, RecordReuse
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 23)


@pytest.fixture(scope="module")
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(patient: str, scopes: str = "patient/*.rs") -> RecordKey:
    return RecordKey(
        caller="token:client-a",
        user="Practitioner/1",
        scopes=scopes,
        fhir_base="http://fhir.test",
        patient_id=patient,
    )


def observation(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-07-01T08:00:00Z",
        "valueQuantity": {
            "value": 4.1,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }


async def test_a_kept_record_is_reused_until_the_patient_changes(fhir: str, cohort: Cohort) -> None:
    patient = cohort.patients[0].id
    sent: list[httpx.Request] = []

    async def seen(request: httpx.Request) -> None:
        sent.append(request)

    clock = Clock()
    # No margin: the embedded server stamps and commits each write under one lock.
    reuse = RecordReuse(margin=timedelta(0), min_resources=0, clock=clock)
    async with FhirClient(
        fhir, flavour="sekmet", http=httpx.AsyncClient(event_hooks={"request": [seen]})
    ) as client:
        first = await reuse.record(key(patient), client)
        sent.clear()
        again = await reuse.record(key(patient), client)
        assert again is first
        assert reuse.reused == 1
        # The check is searches of the patient newer than the read, nothing else.
        assert sent
        assert all(r.method == "GET" and "_lastUpdated=gt" in str(r.url) for r in sent)
        assert all(patient in str(r.url) for r in sent)

        await client.create(observation(patient))
        changed = await reuse.record(key(patient), client)
        assert changed is not first
        potassium = [o for o in changed.resources.get("Observation", []) if o.code.text == "Potassium"]
        assert (
            len(potassium)
            == len([o for o in first.resources.get("Observation", []) if o.code.text == "Potassium"]) + 1
        )
        assert await reuse.record(key(patient), client) is changed  # kept again

        clock.now += 601  # older than MAX_AGE_S: read again, whatever the server says
        assert await reuse.record(key(patient), client) is not changed
        # Another grant's view is its own record, and so is another user's of the same client.
        other = await reuse.record(key(patient, "patient/Observation.rs"), client)
        assert other is not changed
        colleague = RecordKey(
            caller="token:client-a", user="Practitioner/2", scopes="patient/*.rs", fhir_base="http://fhir.test",
            patient_id=patient,
        )  # fmt: skip
        assert await reuse.record(colleague, client) is not changed
    assert reuse.reused == 2


async def test_the_least_recently_used_records_go_when_the_resource_budget_is_spent(
    fhir: str, cohort: Cohort
) -> None:
    one, two = (p.id for p in cohort.patients)
    async with FhirClient(fhir, flavour="sekmet") as client:
        sizes = {
            p: (await RecordReuse(margin=timedelta(0), min_resources=0).record(key(p), client)).manifest.total
            for p in (one, two)
        }
        reuse = RecordReuse(margin=timedelta(0), min_resources=0, max_resources=sizes[one] + sizes[two] - 1)
        await reuse.record(key(one), client)
        assert reuse.kept == (1, sizes[one])
        await reuse.record(key(two), client)  # over the budget: the older record goes
        assert reuse.kept == (1, sizes[two])
        await reuse.record(key(two), client)
        assert reuse.reused == 1
        small = RecordReuse(margin=timedelta(0), min_resources=0, max_resources=min(sizes.values()) - 1)
        await small.record(key(one), client)  # larger than the whole budget: not kept
        assert small.kept == (0, 0)


async def test_a_small_record_is_read_each_time_not_checked(fhir: str, cohort: Cohort) -> None:
    patient = cohort.patients[0].id
    reuse = RecordReuse(margin=timedelta(0))  # MIN_RESOURCES: this cohort's records are smaller
    async with FhirClient(fhir, flavour="sekmet") as client:
        first = await reuse.record(key(patient), client)
        assert first.manifest.total < MIN_RESOURCES
        assert reuse.kept == (0, 0)
        assert await reuse.record(key(patient), client) is not first
    assert reuse.reused == 0
