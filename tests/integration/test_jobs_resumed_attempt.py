"""A patient whose attempt stopped after its writes and before the ledger recorded it (a worker
killed there) is recorded `done` when the run resumes, with what that attempt wrote, not
`unchanged`: what a job run creates carries the run's tag (`tools.writeback.run_tag`), and a
resumed attempt reads the record whole and finds it. Both places a kill can land are tried:
after the writes and before the change mark, and after the mark before the ledger. The server is
the judge: the run's tag on what it holds, and no identifier twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir_reads import duplicate_identifiers, search, server_with

from agent.jobs.activities import JobWorker, summarize_one
from agent.jobs.local_executor import run_local
from agent.jobs.prepare import prepare_run
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from tools.writeback.run_tag import JOB_RUN_SYSTEM

pytestmark = pytest.mark.integration


class _Killed(BaseException):
    """The worker dying at that line: nothing after it runs (not an error a patient reports)."""


_SEARCHED = ("Observation", "DiagnosticReport")


def _refs(resources: list[Any]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


async def _tagged(base: str, run_id: str) -> set[str]:
    tag = f"{JOB_RUN_SYSTEM}|{run_id}"
    return {ref for rtype in _SEARCHED for ref in _refs(await search(base, rtype, _tag=tag))}


@pytest.mark.parametrize("killed_before", ["the change mark", "the ledger"])
async def test_a_patient_killed_after_its_writes_resumes_done_with_them(
    fhir_server_factory: Callable[..., str], tmp_path: Path, killed_before: str
) -> None:
    cohort = generate_cohort(3, 1217)
    victim = sorted(p.id for p in cohort.patients)[0]
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with JobWorker(settings, base) as worker:
        await prepare_run(
            worker.ledger, worker.ctx.fhir, "night",
            cohort="all", since=None, executor="local", fhir_url=worker.fhir_url,
        )  # fmt: skip
        marks = worker.ctx.change_marks
        assert marks is not None
        target: Any = marks if killed_before == "the change mark" else worker.ledger
        method = "put" if killed_before == "the change mark" else "mark"
        real = getattr(target, method)

        async def dies(*args: Any, **kwargs: Any) -> None:
            raise _Killed

        setattr(target, method, dies)
        try:
            with pytest.raises(_Killed):
                await summarize_one(worker, "night", victim)
        finally:
            setattr(target, method, real)
        wrote = await _tagged(base, "night")
        assert any(r.startswith("DiagnosticReport/") for r in wrote), "the killed attempt wrote its summary"
        row = {r.patient_id: r for r in await worker.ledger.patients("night")}[victim]
        assert (row.status, row.attempts) == ("running", 1)

        # The run resumed, as `jobs run` resumes a run id: its running patients back to pending.
        assert await worker.ledger.reset_running("night") == 1
        assert await run_local(worker, "night", concurrency=2) == "done"
        rows = {r.patient_id: r for r in await worker.ledger.patients("night")}

    resumed = rows[victim]
    assert (resumed.status, resumed.attempts) == ("done", 2), resumed
    assert "earlier attempt of this run" in (resumed.reason or "")
    assert set(resumed.written) == wrote  # what the killed attempt created, as the server holds it
    assert {r.status for r in rows.values()} == {"done"}
    assert await duplicate_identifiers(base) == {}
    # What the run created carries its tag: the killed attempt's and the other patients' results.
    others = {w for r in rows.values() if r.patient_id != victim for w in r.written}
    assert await _tagged(base, "night") == wrote | {w for w in others if w.split("/")[0] in _SEARCHED}


async def test_a_resumed_attempt_that_wrote_nothing_before_is_unchanged(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    """The tag is the run's own: a later run's resumed attempt finds nothing of its own and says
    unchanged (the record was written by the first run)."""
    cohort = generate_cohort(2, 1218)
    ids = sorted(p.id for p in cohort.patients)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with JobWorker(settings, base) as worker:
        for run_id in ("first", "second"):
            await prepare_run(
                worker.ledger, worker.ctx.fhir, run_id,
                cohort="all", since=None, executor="local", fhir_url=worker.fhir_url,
            )  # fmt: skip
        assert await run_local(worker, "first", concurrency=2) == "done"
        # An attempt of the second run that began and recorded nothing (cancelled, say).
        assert await worker.ledger.take_lease("second", ids[0], "gone", 60.0)
        await worker.ledger.release_lease("second", ids[0], "gone")
        await worker.ledger.reset_running("second")
        assert await run_local(worker, "second", concurrency=2) == "done"
        rows = {r.patient_id: r for r in await worker.ledger.patients("second")}
    assert (rows[ids[0]].status, rows[ids[0]].attempts, rows[ids[0]].written) == ("unchanged", 2, [])
    assert rows[ids[1]].status == "unchanged"
    assert await _tagged(base, "second") == set()
    assert await duplicate_identifiers(base) == {}
