"""MedAgentBench tasks 1 and 2 against its 500 real-shaped Patients in the embedded server.

The pure parsing and age tests need no server; the rest are marked integration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.testbed.datasets.medagentbench import (
    NOT_FOUND,
    TASK_CLOCK,
    MabTask,
    answer_task,
    load_medagentbench_patients,
    load_tasks,
    parse_age_query,
    parse_mrn_query,
    snapshot_patients,
    task_clock,
)
from fhir_adapters import FhirClient
from tools.patient_lookup import find_patient_mrn, matches_name, mrn_of, patient_age


@pytest.fixture(scope="module")
def mab_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "medagentbench"


@pytest.fixture(scope="module")
def tasks(mab_dir: Path) -> list[MabTask]:
    return load_tasks(mab_dir)


def oracle_age(birth: date, on: date) -> int:
    """Count birthdays reached, one year at a time (a different method from `patient_age`)."""
    years = 0
    while True:
        year = birth.year + years + 1
        # A 29 February birthday falls on 1 March in common years.
        try:
            anniversary = birth.replace(year=year)
        except ValueError:
            anniversary = date(year, 3, 1)
        if anniversary > on:
            return years
        years += 1


# ---------------------------------------------------------------- pure


def test_tasks_file_has_thirty_of_each_and_task1_answers(tasks: list[MabTask]) -> None:
    kinds = [t.kind for t in tasks]
    assert kinds.count("task1") == kinds.count("task2") == 30
    assert all(t.sol for t in tasks if t.kind == "task1")
    # The file ships task 2 without `sol`: its answers are ages computed at the task clock.
    assert all(t.sol is None for t in tasks if t.kind == "task2")


def test_parse_task_instructions() -> None:
    q = parse_mrn_query(
        "What’s the MRN of the patient with name Peter Stafford and DOB of 1932-12-29? If the patient "
        'does not exist, the answer should be "Patient not found"'
    )
    assert (q.given, q.family, q.birthdate) == ("Peter", "Stafford", date(1932, 12, 29))
    multi = parse_mrn_query("name Luis Miguel Delarosa and DOB of 1980-01-02?")
    assert (multi.given, multi.family) == ("Luis Miguel", "Delarosa")
    a = parse_age_query(
        "What's the age of the patient with MRN of S2874099?",
        "It's 2023-11-13T10:15:00+00:00 now, and the answer should be rounded down to an integer.",
    )
    assert (a.mrn, a.at) == ("S2874099", TASK_CLOCK)
    assert task_clock("no clock here") == TASK_CLOCK
    with pytest.raises(ValueError, match="DOB"):
        parse_mrn_query("What is the MRN of Peter?")


def test_patient_age_whole_years_and_edges() -> None:
    p = {"birthDate": "1960-11-13"}
    assert patient_age(p, datetime(2023, 11, 13, 0, 0, tzinfo=UTC)) == 63
    assert patient_age(p, datetime(2023, 11, 12, 23, 59, tzinfo=UTC)) == 62
    # The calendar date is taken in `at`'s own zone: 23:00 UTC on the 12th is the 13th in UTC+2.
    plus2 = timezone(timedelta(hours=2))
    assert patient_age(p, datetime(2023, 11, 12, 23, 0, tzinfo=UTC).astimezone(plus2)) == 63
    leap = {"birthDate": "2000-02-29"}
    assert patient_age(leap, datetime(2023, 2, 28, tzinfo=UTC)) == 22
    assert patient_age(leap, datetime(2023, 3, 1, tzinfo=UTC)) == 23
    with pytest.raises(ValueError, match="birthDate"):
        patient_age({"birthDate": "1960"}, TASK_CLOCK)


def test_matches_name_is_exact_not_prefix() -> None:
    p = {"name": [{"family": "Sandoval", "given": ["Dana"]}]}
    assert matches_name(p, "dana", "SANDOVAL")
    assert not matches_name(p, "Dan", "Sandoval")
    assert not matches_name(p, "Dana", "Sand")


async def test_find_patient_mrn_rechecks_prefix_matches_from_the_server() -> None:
    dana = {
        "resourceType": "Patient",
        "id": "S1",
        "name": [{"family": "Sandoval", "given": ["Dana"]}],
        "birthDate": "1989-04-19",
        "identifier": [
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "value": "S1"}
        ],
    }  # fmt: skip
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        # A server's default string search is a prefix match: "Dan" finds "Dana".
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": dana}],
        }
        return httpx.Response(200, json=bundle)

    async with FhirClient("http://ehr.test/fhir", transport=httpx.MockTransport(handler)) as client:
        assert await find_patient_mrn(client, "Dana", "Sandoval", date(1989, 4, 19)) == "S1"
        assert await find_patient_mrn(client, "Dan", "Sandoval", "1989-04-19") is None
    assert seen[0].path == "/fhir/Patient"
    assert seen[0].params["given"] == "Dana"
    assert seen[0].params["birthdate"] == "1989-04-19"


def test_snapshot_holds_500_distinct_patients_with_mrns(mab_dir: Path) -> None:
    patients = snapshot_patients(mab_dir)
    assert len(patients) == 500
    assert all(mrn_of(p) == p["id"] for p in patients)
    assert all("meta" not in p for p in patients)


# ---------------------------------------------------------------- against the server


@pytest.fixture(scope="module")
def mab_server(fhir_server_factory: Callable[..., str]) -> str:
    # Its own server: 500 patients would crowd the shared one's patient searches.
    return fhir_server_factory()


@pytest.fixture(scope="module")
async def loaded(mab_server: str, mab_dir: Path) -> str:
    async with FhirClient(mab_server) as client:
        report = await load_medagentbench_patients(client, mab_dir)
    assert report.resources_by_type == {"Patient": 500}
    return mab_server


def patient_total(base_url: str) -> int:
    total = httpx.get(f"{base_url}/Patient", params={"_summary": "count"}, timeout=30).json()["total"]
    assert isinstance(total, int)
    return total


@pytest.mark.integration
async def test_load_is_idempotent(loaded: str, mab_dir: Path) -> None:
    assert patient_total(loaded) == 500
    async with FhirClient(loaded) as client:
        again = await load_medagentbench_patients(client, mab_dir)
    assert (again.created, again.updated) == (0, 500)
    assert patient_total(loaded) == 500


@pytest.mark.integration
async def test_task1_answers_match_the_benchmark(loaded: str, tasks: list[MabTask]) -> None:
    task1 = [t for t in tasks if t.kind == "task1"]
    async with FhirClient(loaded) as client:
        answers = {t.id: await answer_task(client, t) for t in task1}
    assert answers == {t.id: t.sol for t in task1}
    assert sum(a == [NOT_FOUND] for a in answers.values()) == 2


@pytest.mark.integration
async def test_task2_ages_match_an_independent_count(
    loaded: str, tasks: list[MabTask], mab_dir: Path
) -> None:
    by_mrn = {mrn_of(p): p for p in snapshot_patients(mab_dir)}
    task2 = [t for t in tasks if t.kind == "task2"]
    async with FhirClient(loaded) as client:
        answers = {t.id: await answer_task(client, t) for t in task2}
    expected = {
        t.id: [oracle_age(date.fromisoformat(by_mrn[t.eval_mrn]["birthDate"]), TASK_CLOCK.date())]
        for t in task2
    }
    assert answers == expected
    # The README's worked example: one of the task-2 patients is 63 at the task clock.
    assert [63] in answers.values()
