"""Verified instants of change marks, through the local executor against the real FHIR server.

Each batch check takes the server's instant first; the patients it finds unchanged, and the marks
that the batch's runs leave, are verified as of it, and the next check's window starts at the
oldest such instant of its batch instead of at the oldest record's newest resource. Proved here:
a change between two runs is found; a change that lands while a check runs is found by the next
run; a person approving or rejecting ChartAgent's summary is found after the instant moved past
ChartAgent's own writes; a patient whose instant is old (or whose mark has none) still checks
correctly beside patients with recent ones; a window read in small pages (keyset on
`_lastUpdated`) judges as one page does; and when the check gives up, the patients' own searches
move their instants on, so that the next window is small again. The margin is 0 s here, so that
the windows are as tight as they can be (sekmet stamps and commits each write under one lock)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from fhir_reads import search, server_with
from test_change_marks import Wire, is_ai_asserted_json, new_result_after

from agent.checkpoints import open_change_marks
from agent.jobs.activities import JobWorker
from agent.jobs.local_executor import run_local
from agent.planning import change_marks
from agent.planning.change_marks import WATCHED, ChangeMark
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration


class HookedWire(Wire):
    """The real network, recorded; `after(request)` runs once a response has come back."""

    def __init__(self, after: Callable[[httpx.Request], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self.after = after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if self.after is not None:
            await response.aread()
            await self.after(request)
        return response


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, 33)


@pytest.fixture
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


def settings_of(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, checkpoint_url=None, change_check_margin_s=0)


async def job(
    server: str,
    state_dir: Path,
    run_id: str,
    ids: Sequence[str],
    wire: Wire | None = None,
    *,
    verify_at_end: bool = True,
) -> tuple[dict[str, str], Wire]:
    """A local job over `ids`: each patient's ledger status (written ones as `done+`).
    `verify_at_end=False`: as a run killed before its end check leaves its marks (the next window
    holds the run's own writes)."""
    wire = wire or Wire()
    async with (
        FhirClient(server, transport=wire) as client,
        JobWorker(settings_of(state_dir), server, fhir=client) as worker,
    ):
        await worker.ledger.create_run(run_id, cohort="test", since=None, executor="local", fhir_url=server)
        await worker.ledger.add_patients(run_id, ids)
        assert await run_local(worker, run_id, concurrency=3, verify_at_end=verify_at_end) == "done"
        rows = await worker.ledger.patients(run_id)
    return {r.patient_id: r.status + ("+" if r.written else "") for r in rows}, wire


async def marks_of(server: str, state_dir: Path, ids: Sequence[str]) -> dict[str, ChangeMark]:
    async with open_change_marks(settings_of(state_dir), server) as marks:
        return await marks.get_many(ids)


def window_starts(wire: Wire) -> list[datetime]:
    """The `_lastUpdated=gt` bound of each cohort-level window search (no patient filter): the
    batch check's first (`len(WATCHED)` of them), then the end check's."""
    out = []
    for _, _, query in wire.requests:
        params = dict(parse_qsl(query))
        if params.get("_sort") == "_lastUpdated" and params.get("_lastUpdated", "").startswith("gt"):
            assert "patient" not in params
            assert "subject" not in params
            out.append(datetime.fromisoformat(params["_lastUpdated"][2:]))
    return out


def per_patient_searches(wire: Wire) -> list[str]:
    return [q for _, _, q in wire.requests if "patient=" in q or "subject=" in q]


async def post_new_result(server: str, patient: str) -> None:
    results = [
        o
        for o in await search(server, "Observation", subject=f"Patient/{patient}")
        if not is_ai_asserted_json(o)
    ]
    fresh = new_result_after(max(results, key=lambda o: str(o.get("effectiveDateTime"))))
    async with httpx.AsyncClient() as http:
        (await http.post(f"{server}/Observation", json=fresh)).raise_for_status()


async def review_summary(server: str, patient: str, status: str) -> None:
    """A person signs ChartAgent's summary off (`final`) or rejects it (`entered-in-error`)."""
    summaries = [
        r
        for r in await search(server, "DiagnosticReport", subject=f"Patient/{patient}")
        if is_ai_asserted_json(r) and not r.get("imagingStudy") and r["status"] == "preliminary"
    ]
    assert len(summaries) == 1
    async with httpx.AsyncClient() as http:
        reviewed = {**summaries[0], "status": status}
        (await http.put(f"{server}/DiagnosticReport/{reviewed['id']}", json=reviewed)).raise_for_status()


def ids_of(cohort: Cohort) -> list[str]:
    return sorted(p.id for p in cohort.patients)


async def test_a_change_between_two_runs_is_found(server: str, cohort: Cohort, tmp_path: Path) -> None:
    ids = ids_of(cohort)
    first, _ = await job(server, tmp_path, "n1", ids)
    assert first == dict.fromkeys(ids, "done+")
    after_first = await marks_of(server, tmp_path, ids)
    # The first run's marks are verified as of its check, before any record was read.
    assert all(m.verified is not None and m.verified >= m.through for m in after_first.values())

    second, wire = await job(server, tmp_path, "n2", ids)
    assert second == dict.fromkeys(ids, "unchanged")
    assert window_starts(wire)[: len(WATCHED)] == [min(m.since for m in after_first.values())] * len(WATCHED)
    assert per_patient_searches(wire) == []  # no search of their own, no record read
    after_second = await marks_of(server, tmp_path, ids)
    # Found unchanged: the instant moved on past the first run's own writes.
    assert all(after_second[p].since > after_first[p].since for p in ids)

    changed, *quiet = ids
    await post_new_result(server, changed)
    third, wire = await job(server, tmp_path, "n3", ids)
    assert third == {changed: "done+", **dict.fromkeys(quiet, "unchanged")}
    assert window_starts(wire)[: len(WATCHED)] == [min(m.since for m in after_second.values())] * len(WATCHED)
    fourth, _ = await job(server, tmp_path, "n4", ids)
    assert fourth == dict.fromkeys(ids, "unchanged")


async def test_a_change_that_lands_during_a_check_is_found_by_the_next_run(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids)
    changed = ids[0]
    landed: list[str] = []

    async def land_once(request: httpx.Request) -> None:
        # After the check's Observation window was answered: the check cannot see this one.
        params = dict(parse_qsl(request.url.query.decode()))
        if not landed and request.url.path.endswith("/Observation") and params.get("_sort"):
            landed.append(changed)
            await post_new_result(server, changed)

    during, _ = await job(server, tmp_path, "n2", ids, HookedWire(land_once))
    assert landed == [changed]
    assert during == dict.fromkeys(ids, "unchanged")  # as of the check's instant, it was
    after, _ = await job(server, tmp_path, "n3", ids)
    assert after == {changed: "done+", **dict.fromkeys(ids[1:], "unchanged")}


async def test_a_person_approving_or_rejecting_a_summary_is_found(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids)
    await job(server, tmp_path, "n2", ids)  # the instants move past ChartAgent's own writes
    approved, rejected, quiet = ids
    await review_summary(server, approved, "final")
    await review_summary(server, rejected, "entered-in-error")
    reviewed, wire = await job(server, tmp_path, "n3", ids)
    assert reviewed[quiet] == "unchanged"
    # Both down the full path (their records read), the quiet one settled by the check alone.
    touched = " ".join(path + "?" + query for _, path, query in wire.requests)
    assert approved in touched
    assert rejected in touched
    assert quiet not in touched
    again, wire = await job(server, tmp_path, "n4", ids)
    assert again == dict.fromkeys(ids, "unchanged")
    assert per_patient_searches(wire) == []


async def test_an_old_instant_or_none_still_checks_correctly(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids)
    old, recent, unverified = ids
    await post_new_result(server, old)
    # A batch without the changed patient: the others' instants move past the change.
    partial, _ = await job(server, tmp_path, "n2", [recent, unverified])
    assert partial == dict.fromkeys([recent, unverified], "unchanged")
    marks = await marks_of(server, tmp_path, ids)
    assert marks[old].since < marks[recent].since
    # A mark of the version before verified instants: checked from its `through`.
    async with open_change_marks(settings_of(tmp_path), server) as store:
        await store.put(unverified, marks[unverified].model_copy(update={"verified": None}))
    full, wire = await job(server, tmp_path, "n3", ids)
    assert full == {old: "done+", recent: "unchanged", unverified: "unchanged"}
    assert window_starts(wire)[: len(WATCHED)] == [marks[unverified].through] * len(WATCHED)


async def test_a_window_read_in_small_pages_judges_as_one_page_does(
    server: str, cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids, verify_at_end=False)  # a window of the run's writes
    await post_new_result(server, ids[1])
    monkeypatch.setattr(change_marks, "_COHORT_PAGE", 4)
    paged, wire = await job(server, tmp_path, "n2", ids)
    assert paged == {ids[1]: "done+", ids[0]: "unchanged", ids[2]: "unchanged"}
    # Each next page a new search from the last stamp read, never an offset.
    window = [q for _, _, q in wire.requests if "_sort=_lastUpdated" in q]
    assert any("_lastUpdated=ge" in q for q in window)
    assert not any("_offset" in q or "_getpages" in q for q in window)


async def test_a_check_that_gives_up_still_moves_the_instants_of_the_unchanged(
    server: str, cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ids_of(cohort)
    await job(server, tmp_path, "n1", ids, verify_at_end=False)  # a window of the run's writes
    before = await marks_of(server, tmp_path, ids)
    monkeypatch.setattr(change_marks, "COHORT_CHECK_LIMIT", 0)
    monkeypatch.setattr(change_marks, "WINDOW_PER_PATIENT", 0)
    gave_up, wire = await job(server, tmp_path, "n2", ids)
    assert gave_up == dict.fromkeys(ids, "unchanged")
    assert per_patient_searches(wire)  # each checked its own
    after = await marks_of(server, tmp_path, ids)
    assert all(after[p].since > before[p].since for p in ids)
    monkeypatch.undo()
    # The next batch's window starts at the instant those searches verified.
    again, wire = await job(server, tmp_path, "n3", ids)
    assert again == dict.fromkeys(ids, "unchanged")
    assert window_starts(wire)[: len(WATCHED)] == [min(m.since for m in after.values())] * len(WATCHED)
    assert per_patient_searches(wire) == []
