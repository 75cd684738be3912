"""Seeding the synthetic cohort into a real embedded FHIR server: counts, idempotency, lookups."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.patient_lookup import find_patient_by_mrn, find_patient_mrn, mrn_of

pytestmark = pytest.mark.integration

SEED = 7
TYPES = (
    "Patient",
    "Condition",
    "MedicationRequest",
    "Encounter",
    "Observation",
    "DocumentReference",
    "Binary",
)


def cli_app() -> typer.Typer:
    # Registers `seed` (the lead wires it into `agent.cli`); a second command keeps typer in
    # multi-command mode.
    for module in ("agent.cli.seed", "agent.cli.stack"):
        importlib.import_module(module)
    from agent.cli.app import app

    return app


def server_counts(base_url: str) -> dict[str, int]:
    counts = {}
    for rtype in TYPES:
        resp = httpx.get(f"{base_url}/{rtype}", params={"_summary": "count"}, timeout=30)
        resp.raise_for_status()
        counts[rtype] = resp.json()["total"]
    return {k: v for k, v in sorted(counts.items()) if v}


@pytest.fixture(scope="module")
def seed_server(fhir_server_factory: Callable[..., str]) -> str:
    # A server of its own: the counts below must see only this cohort.
    return fhir_server_factory()


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(12, SEED)


async def test_seed_then_reseed_leaves_counts_unchanged(seed_server: str, cohort: Cohort) -> None:
    expected = cohort.counts_by_type()
    total = sum(expected.values())
    async with FhirClient(seed_server) as client:
        started = time.perf_counter()
        first = await seed_cohort(client, cohort)
        elapsed = time.perf_counter() - started
        assert (first.patients, first.bundles, first.created, first.updated) == (12, 12, total, 0)
        assert first.resources_by_type == expected
        assert server_counts(seed_server) == expected

        second = await seed_cohort(client, cohort)
        assert (second.created, second.updated) == (0, total)
        assert server_counts(seed_server) == expected
    # Seeding 12 patients (~1,600 resources) takes about 2 s here; catch an order-of-magnitude regression.
    assert elapsed < 30


async def test_seeded_records_are_searchable_by_code_and_lookup(seed_server: str, cohort: Cohort) -> None:
    async with FhirClient(seed_server) as client:
        await seed_cohort(client, cohort)
        patient = cohort.patients[0]
        creat = [
            r
            for r in patient.resources
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "2160-0"
        ]
        found = await client.search(
            "Observation", [("patient", patient.id), ("code", "http://loinc.org|2160-0")], count=1000
        )
        assert sorted(o["id"] for o in found) == sorted(o["id"] for o in creat)

        for p in cohort.patients[:4]:
            res = p.resources[0]
            by_mrn = await find_patient_by_mrn(client, p.mrn)
            assert by_mrn is not None
            assert by_mrn["id"] == p.id
            mrn = await find_patient_mrn(
                client, res["name"][0]["given"][0], res["name"][0]["family"], res["birthDate"]
            )
            assert mrn == mrn_of(res) == p.mrn


def test_seed_command_prints_counts_and_is_idempotent(seed_server: str) -> None:
    app = cli_app()
    runner = CliRunner()
    args = ["seed", "--patients", "2", "--seed", "99", "--fhir-url", seed_server]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "seeded 2 patients" in first.output
    assert "0 updated" in first.output
    counts = server_counts(seed_server)
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert " 0 created" in second.output
    assert server_counts(seed_server) == counts
    # Counts only: no names or birth dates on the terminal.
    for p in generate_cohort(2, 99).patients:
        assert p.resources[0]["name"][0]["family"] not in first.output
        assert p.resources[0]["birthDate"] not in first.output


def test_seed_command_refuses_a_dead_server() -> None:
    result = CliRunner().invoke(
        cli_app(), ["seed", "--patients", "1", "--fhir-url", "http://127.0.0.1:9/fhir"]
    )
    assert result.exit_code == 1
    assert "seed failed" in result.output
