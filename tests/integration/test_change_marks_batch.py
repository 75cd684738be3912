"""The cohort-level change check against the real FHIR server: after a complete run of a batch, one
search per watched type (no patient filter) finds every patient unchanged, ChartAgent's own writes
included, and their runs then make no request at all; a new result for one patient, or a person's
review of another's summary, sends exactly that patient down the full path. A patient without a
mark, deferred imaging work, a window too large or a failing search leave the check to each run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fhir_reads import search, server_with
from test_change_marks import Wire, is_ai_asserted_json, new_result_after

from agent.checkpoints import open_change_marks
from agent.context import RunContext
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.planning.change_marks import WATCHED, ChangeIndex, check_cohort
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from fhir_adapters.retry import RetryPolicy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, 33)


@pytest.fixture
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


@asynccontextmanager
async def batch(server: str, state_dir: Path) -> AsyncIterator[tuple[Wire, RunContext]]:
    wire = Wire()
    async with (
        open_change_marks(Settings(state_dir=state_dir), server) as marks,
        FhirClient(server, transport=wire) as client,
    ):
        yield wire, RunContext(fhir=client, change_marks=marks)


async def index_of(ctx: RunContext, ids: list[str], **kwargs: int) -> ChangeIndex | None:
    assert ctx.change_marks is not None
    marks = await ctx.change_marks.get_many(ids)
    return await check_cohort(ctx.fhir, marks, can_read_images=ctx.can_read_images, **kwargs)


async def statuses(ctx: RunContext, ids: list[str]) -> dict[str, str]:
    outcomes: list[PatientOutcome] = await summarize_many(ctx, ids)
    return {o.patient_id: o.status for o in outcomes}


async def first_run(server: str, state_dir: Path, ids: list[str]) -> None:
    async with batch(server, state_dir) as (_, ctx):
        assert set((await statuses(ctx, ids)).values()) == {"written"}


def ids_of(cohort: Cohort) -> list[str]:
    return [p.id for p in cohort.patients]


async def test_after_a_complete_run_one_search_per_type_marks_everyone_unchanged(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await first_run(server, tmp_path, ids)
    async with batch(server, tmp_path) as (wire, ctx):
        index = await index_of(ctx, ids)
        # One page per watched type, none filtered by patient: the first run's own writes (all
        # newer than every mark) came back and were recognised as such.
        assert index is not None
        assert sorted(index.unchanged) == sorted(ids)
        assert len(wire.requests) == len(WATCHED)
        assert all(
            "_lastUpdated=gt" in q and "patient=" not in q and "subject=" not in q
            for _, _, q in wire.requests
        )
        wire.requests.clear()
        assert await statuses(replace(ctx, change_index=index), ids) == dict.fromkeys(ids, "unchanged")
        assert wire.requests == []  # no per-patient search, no record read


async def test_a_new_result_and_a_reviewed_summary_send_exactly_those_patients_down_the_full_path(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await first_run(server, tmp_path, ids)
    with_result, reviewed, quiet = ids
    results = [
        o
        for o in await search(server, "Observation", subject=f"Patient/{with_result}")
        if not is_ai_asserted_json(o)
    ]
    fresh = new_result_after(max(results, key=lambda o: str(o.get("effectiveDateTime"))))
    summaries = [
        r
        for r in await search(server, "DiagnosticReport", subject=f"Patient/{reviewed}")
        if is_ai_asserted_json(r) and not r.get("imagingStudy") and r["status"] == "preliminary"
    ]
    assert len(summaries) == 1
    approved = {**summaries[0], "status": "final"}  # a clinician signs ChartAgent's summary off
    async with httpx.AsyncClient() as http:
        (await http.post(f"{server}/Observation", json=fresh)).raise_for_status()
        (await http.put(f"{server}/DiagnosticReport/{approved['id']}", json=approved)).raise_for_status()

    async with batch(server, tmp_path) as (wire, ctx):
        index = await index_of(ctx, ids)
        assert index is not None
        assert sorted(index.unchanged) == [quiet]
        wire.requests.clear()
        ran = await statuses(replace(ctx, change_index=index), ids)
        assert ran[quiet] == "unchanged"
        assert ran[with_result] == "written"
        # Only the two changed patients searched or read anything.
        touched = " ".join(path + "?" + query for _, path, query in wire.requests)
        assert quiet not in touched
        assert with_result in touched
        assert reviewed in touched

    # Their runs left new marks: the next batch finds all three unchanged again.
    async with batch(server, tmp_path) as (_, ctx):
        index = await index_of(ctx, ids)
        assert index is not None
        assert sorted(index.unchanged) == sorted(ids)


async def test_without_a_mark_or_with_imaging_deferred_a_patient_checks_its_own(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await first_run(server, tmp_path, ids[:2])  # the third has no mark
    async with batch(server, tmp_path) as (_, ctx):
        index = await index_of(ctx, ids)
        assert index is not None
        assert sorted(index.unchanged) == sorted(ids[:2])
        assert ctx.change_marks is not None
        marks = await ctx.change_marks.get_many(ids)
        # A model and a PACS now: the marked runs deferred imaging work, nobody is skipped.
        deferred = await check_cohort(ctx.fhir, marks, can_read_images=True)
        assert deferred is not None
        assert not deferred.unchanged
        # A mark replaced since the check is not trusted to the index.
        stale = ChangeIndex(unchanged={p: m.through.replace(year=2000) for p, m in marks.items()})
        assert not stale.is_unchanged(ids[0], marks[ids[0]])
        assert index.is_unchanged(ids[0], marks[ids[0]])


async def test_a_window_too_large_or_a_failing_search_falls_back_to_per_patient_checks(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await first_run(server, tmp_path, ids)
    async with batch(server, tmp_path) as (wire, ctx):
        assert await index_of(ctx, ids, limit=1) is None
        assert len(wire.requests) <= len(WATCHED)  # it stopped paging at once
        # Without an index every run checks its own, and still finds nothing new.
        wire.requests.clear()
        assert await statuses(ctx, ids) == dict.fromkeys(ids, "unchanged")
        # Each its own `_lastUpdated` searches (the first run's own writes may take a second page).
        assert {(path, query.split("&")[0]) for _, path, query in wire.requests} == {
            (f"/fhir/{t}", f"patient={p}") for t in WATCHED for p in ids
        }
        assert all("_lastUpdated=gt" in q for _, _, q in wire.requests)
    async with (
        open_change_marks(Settings(state_dir=tmp_path), server) as marks,
        FhirClient("http://127.0.0.1:9/fhir", retry=RetryPolicy(max_attempts=1)) as dead,
    ):
        found = await marks.get_many(ids)
        assert await check_cohort(dead, found, can_read_images=False) is None
