"""The check at the end of a local job (`JobWorker.verify_batch`), against the real FHIR server.

A run verifies its own writes at its end: the marks of the patients still unchanged as of a fresh
server instant move past what the run wrote, so the next run's window starts at the end of this
one. Proved here (margin 0 s, as in `test_change_marks_verified`): after a first run the next
window holds none of its writes; a change posted by someone else during the first run, after that
patient's record was read, is still found by the next run; a person approving ChartAgent's summary
right after the run is found."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from fhir_reads import search, server_with
from test_change_marks_verified import (
    HookedWire,
    ids_of,
    job,
    marks_of,
    per_patient_searches,
    post_new_result,
    review_summary,
    window_starts,
)

from agent.planning.change_marks import WATCHED
from agent.testbed.cohort import Cohort, generate_cohort

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, 33)


@pytest.fixture
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


async def newest_stamp(server: str, rtypes: tuple[str, ...]) -> datetime:
    stamps = [
        datetime.fromisoformat(r["meta"]["lastUpdated"]) for t in rtypes for r in await search(server, t)
    ]
    return max(stamps)


async def test_the_next_window_starts_after_the_first_runs_writes(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    first, wire = await job(server, tmp_path, "n1", ids)
    assert first == dict.fromkeys(ids, "done+")
    # One window for the end check (the first run's patients had no marks to check before).
    assert len(window_starts(wire)) == len(WATCHED)
    marks = await marks_of(server, tmp_path, ids)
    wrote = await newest_stamp(server, ("DiagnosticReport", "Observation", "Provenance"))
    assert all(m.since > wrote for m in marks.values())
    second, wire = await job(server, tmp_path, "n2", ids)
    assert second == dict.fromkeys(ids, "unchanged")
    assert window_starts(wire)[: len(WATCHED)] == [min(m.since for m in marks.values())] * len(WATCHED)
    assert per_patient_searches(wire) == []


async def test_a_change_posted_during_the_run_after_the_record_was_read_is_found(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    changed, *quiet = ids
    landed: list[str] = []

    async def land_after_read(request: httpx.Request) -> None:
        # The first search naming the patient is its record read (no mark yet: no check first).
        params = dict(parse_qsl(request.url.query.decode()))
        named = params.get("patient", params.get("subject", ""))
        if not landed and request.url.path.endswith("/Observation") and changed in named:
            landed.append(changed)
            await post_new_result(server, changed)

    first, _ = await job(server, tmp_path, "n1", ids, HookedWire(land_after_read))
    assert landed == [changed]
    assert first == dict.fromkeys(ids, "done+")
    marks = await marks_of(server, tmp_path, ids)
    # The end check saw the change: that patient's mark stays before it, the others moved past.
    change = await newest_stamp(server, ("Observation",))
    assert marks[changed].since < change
    assert all(marks[p].since > change for p in quiet)
    second, wire = await job(server, tmp_path, "n2", ids)
    assert second == {changed: "done+", **dict.fromkeys(quiet, "unchanged")}
    touched = " ".join(path + "?" + query for _, path, query in wire.requests)
    assert all(p not in touched for p in quiet)
    third, _ = await job(server, tmp_path, "n3", ids)
    assert third == dict.fromkeys(ids, "unchanged")


async def test_a_person_approving_the_summary_after_the_run_is_found(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids)
    approved, *quiet = ids
    await review_summary(server, approved, "final")
    reviewed, wire = await job(server, tmp_path, "n2", ids)
    assert reviewed == dict.fromkeys(quiet, "unchanged") | {approved: reviewed[approved]}
    touched = " ".join(path + "?" + query for _, path, query in wire.requests)
    assert approved in touched  # down the full path: its record read
    assert all(p not in touched for p in quiet)
    again, wire = await job(server, tmp_path, "n3", ids)
    assert again == dict.fromkeys(ids, "unchanged")
    assert per_patient_searches(wire) == []
