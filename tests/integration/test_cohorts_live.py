"""Every cohort kind against a real sekmet holding the synthetic cohort: the right patients, and with
`since` only those changed after it (an Observation posted after the timestamp)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from fhir_reads import server_with

from agent.jobs.cohorts import CohortSpec, CohortSpecError, resolve_cohort
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient

SEED = 61
MEMBERS = ("ca-61-0", "ca-61-2")


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(5, SEED, lab_documents=False)


@pytest.fixture(scope="module")
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


@pytest.fixture(scope="module")
def group_id(fhir: str) -> str:
    """A Group of two active members and one inactive one."""
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [
            *({"entity": {"reference": f"Patient/{p}"}} for p in MEMBERS),
            {"entity": {"reference": "Patient/ca-61-4"}, "inactive": True},
        ],
    }
    resp = httpx.post(f"{fhir}/Group", json=group, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["id"])


def everyone(cohort: Cohort) -> tuple[str, ...]:
    return tuple(sorted(p.id for p in cohort.patients))


async def resolve(base: str, text: str, since: datetime | None = None) -> tuple[str, ...]:
    async with FhirClient(base) as client:
        return (await resolve_cohort(client, CohortSpec.parse(text), since=since)).patient_ids


def post_observation(base: str, patient_id: str) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-12-01T08:00:00Z",
        "valueQuantity": {
            "value": 1.1,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    httpx.post(f"{base}/Observation", json=observation, timeout=30).raise_for_status()


async def test_every_kind_resolves_to_its_patients(fhir: str, cohort: Cohort, group_id: str) -> None:
    females = tuple(sorted(p.id for p in cohort.patients if p.resources[0].get("gender") == "female"))
    assert 0 < len(females) < len(cohort.patients)  # the search must select, not pass everyone
    assert await resolve(fhir, "all") == everyone(cohort)
    assert await resolve(fhir, "search:gender=female") == females
    assert await resolve(fhir, f"group:{group_id}") == MEMBERS
    assert await resolve(fhir, "export:all") == everyone(cohort)
    assert await resolve(fhir, f"export:group:{group_id}") == MEMBERS


async def test_search_kinds_say_where_the_next_run_starts(fhir: str) -> None:
    before = datetime.now(UTC)
    async with FhirClient(fhir) as client:
        found = await resolve_cohort(client, CohortSpec.parse("all"), since=None)
    assert found.transaction_time_source == "bundle"  # sekmet stamps its searchset Bundles
    assert found.transaction_time is not None
    assert before <= found.transaction_time <= datetime.now(UTC)
    assert found.export_status_url is None


async def test_a_missing_group_is_bad_input(fhir: str) -> None:
    with pytest.raises(CohortSpecError, match="no such Group"):
        await resolve(fhir, "group:no-such-group")


async def test_since_selects_only_the_patients_changed_after_it(
    fhir: str, cohort: Cohort, group_id: str
) -> None:
    since = datetime.now(UTC)
    await asyncio.sleep(0.01)  # the server's clock is the same, at millisecond precision
    post_observation(fhir, "ca-61-1")  # not a Group member
    post_observation(fhir, "ca-61-2")  # a member
    changed = ("ca-61-1", "ca-61-2")
    assert await resolve(fhir, "all", since) == changed
    assert await resolve(fhir, "export:all", since) == changed
    assert await resolve(fhir, f"group:{group_id}", since) == ("ca-61-2",)
    assert await resolve(fhir, f"export:group:{group_id}", since) == ("ca-61-2",)
    gender = cohort.patients[1].resources[0]["gender"]
    expected = tuple(p for p in changed if cohort.patients[int(p[-1])].resources[0]["gender"] == gender)
    assert await resolve(fhir, f"search:gender={gender}", since) == expected

    # A run that starts where this one ended finds nothing new, by either route.
    async with FhirClient(fhir) as client:
        for text in ("all", "export:all"):
            ended = await resolve_cohort(client, CohortSpec.parse(text), since=since)
            assert ended.transaction_time is not None
            again = await resolve_cohort(client, CohortSpec.parse(text), since=ended.transaction_time)
            assert again.patient_ids == ()
