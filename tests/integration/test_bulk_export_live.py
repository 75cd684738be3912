"""Bulk Data export against a real sekmet: an export resumed from its saved status URL (also when
the server has lost the job), cancel, `_type`/`_typeFilter`, and the whole flow through the fault
proxy (429 and 503 while kicking off and polling, downloads cut or reset and retried)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fault_proxy import FaultKind, FaultPlan, FaultProxy, ScriptedFault
from fhir_reads import server_with

from agent.jobs.cohorts import CohortSpec, resolve_cohort
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from fhir_adapters.bulk_export import (
    BulkExportClient,
    BulkExportHttpError,
    ExportFile,
    ExportRequest,
    PollPolicy,
)
from fhir_adapters.retry import RetryPolicy

SEED = 62
FAST_ERRORS = PollPolicy(errors=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.2), deadline=60.0)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, SEED, lab_documents=False)


@pytest.fixture(scope="module")
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


def everyone(cohort: Cohort) -> tuple[str, ...]:
    return tuple(sorted(p.id for p in cohort.patients))


async def ids(_: ExportFile, resources: AsyncIterator[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["resourceType"], r["id"]) async for r in resources]


async def test_an_export_resumed_from_its_saved_status_url(fhir: str, cohort: Cohort) -> None:
    saved: list[str] = []
    async with FhirClient(fhir) as first:
        await BulkExportClient(first).kick_off(ExportRequest(types=("Patient",)), on_status_url=saved.append)
    # A new process: nothing but the saved URL survives.
    async with FhirClient(fhir) as client:
        manifest = await BulkExportClient(client).wait(saved[0])
        assert [f.type for f in manifest.output] == ["Patient"]
        got = await BulkExportClient(client).read_files(manifest, ids)
        assert sorted(rid for _, rid in got[0]) == list(everyone(cohort))

        # The cohort takes the same route: no new kick-off, the same status URL reported.
        kicked: list[str] = []
        found = await resolve_cohort(
            client,
            CohortSpec.parse("export:all"),
            since=None,
            saved_status_url=saved[0],
            on_status_url=kicked.append,
        )
        assert (found.patient_ids, found.export_status_url, kicked) == (everyone(cohort), saved[0], [])
        assert found.transaction_time == manifest.transaction_time


async def test_a_saved_status_url_the_server_lost_gets_a_new_export(fhir: str, cohort: Cohort) -> None:
    async with FhirClient(fhir) as client:
        bulk = BulkExportClient(client)
        lost = await bulk.kick_off(ExportRequest(types=("Patient",)))
        assert await bulk.cancel(lost) is True  # as a restart of sekmet (jobs in memory) would
        kicked: list[str] = []
        found = await resolve_cohort(
            client,
            CohortSpec.parse("export:all"),
            since=None,
            saved_status_url=lost,
            on_status_url=kicked.append,
        )
    assert found.patient_ids == everyone(cohort)
    assert len(kicked) == 1
    assert kicked[0] != lost
    assert found.export_status_url == kicked[0]


async def test_cancel_ends_the_export(fhir: str) -> None:
    async with FhirClient(fhir) as client:
        bulk = BulkExportClient(client)
        status_url = await bulk.kick_off(ExportRequest(level="system"))
        assert await bulk.cancel(status_url) is True
        with pytest.raises(BulkExportHttpError, match="bulk export status -> HTTP 404") as info:
            await bulk.wait(status_url)
        assert info.value.step == "status"
        assert await bulk.cancel(status_url) is False  # already gone


async def test_type_and_type_filter_select_what_is_exported(fhir: str, cohort: Cohort) -> None:
    patient = cohort.patients[0]
    expected = sorted(r["id"] for r in patient.resources if r["resourceType"] == "Observation")
    request = ExportRequest(
        level="system", types=("Observation",), type_filters=(f"Observation?subject=Patient/{patient.id}",)
    )
    async with FhirClient(fhir) as client:
        bulk = BulkExportClient(client)
        _, manifest = await bulk.export(request)
        got = [pair for file in await bulk.read_files(manifest, ids) for pair in file]
    assert {rtype for rtype, _ in got} == {"Observation"}
    assert sorted(rid for _, rid in got) == expected


async def test_through_faults_while_kicking_off_polling_and_downloading(fhir: str, cohort: Cohort) -> None:
    plan = FaultPlan(
        retry_after="1",
        script=(
            ScriptedFault(FaultKind.UNAVAILABLE, path=r"/\$export$"),
            ScriptedFault(FaultKind.TOO_MANY_REQUESTS, path=r"/bulk-status/", times=2),
            ScriptedFault(FaultKind.ERROR_BEFORE, path=r"/bulk-status/", skip=2),  # after the 429s
            ScriptedFault(FaultKind.CUT, path=r"/bulk-files/.*/Observation"),
            ScriptedFault(FaultKind.RESET_AFTER, path=r"/bulk-files/.*/Patient"),
        ),
    )
    with FaultProxy(fhir, plan) as proxy:
        async with FhirClient(proxy.base_url, flavour="sekmet") as client:
            bulk = BulkExportClient(client, policy=FAST_ERRORS)
            _, manifest = await bulk.export(ExportRequest(types=("Patient", "Observation")))
            got = [pair for file in await bulk.read_files(manifest, ids) for pair in file]
        faults = Counter(e.fault for e in proxy.log if e.fault is not None)
        paths = {e.path.split("/")[-2] for e in proxy.log}
    assert faults == {"503": 1, "429": 2, "500-before": 1, "cut": 1, "reset-after": 1}
    assert "bulk-status" in paths  # polling went through the proxy, not to sekmet's own port
    # Every resource once: the cut file was read again whole, not appended to.
    expected = Counter(
        (r["resourceType"], r["id"])
        for r in cohort.resources()
        if r["resourceType"] in ("Patient", "Observation")
    )
    assert Counter(got) == expected
