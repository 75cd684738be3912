"""A patient whose worker keeps stopping while summarizing it (data that crashes the process) does
not keep a local run from completing: on resume the interrupted patients run first and alone, and
one interrupted `MAX_INTERRUPTED_ATTEMPTS` times is recorded failed with the reason, without
running; `jobs retry-failed` runs it again. The crashes are the ledger state a killed worker leaves
(a lease held, the row running, then `reset_running` on resume); the server is the judge of what
was written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir_reads import count, duplicate_identifiers, server_with

from agent.jobs import local_executor
from agent.jobs.activities import JobWorker
from agent.jobs.ledger import PatientResult
from agent.jobs.local_executor import MAX_INTERRUPTED_ATTEMPTS, run_local
from agent.jobs.prepare import prepare_run
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort

pytestmark = pytest.mark.integration


async def test_interrupted_patients_run_alone_first_and_a_crashing_one_is_given_up(
    fhir_server_factory: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = generate_cohort(5, 1219)
    ids = sorted(p.id for p in cohort.patients)
    crasher, victim = ids[3], ids[1]
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    running: set[str] = set()
    beside: dict[str, set[str]] = {}  # patient -> the patients running at some time beside it
    real = local_executor.summarize_one

    async def watched(worker: JobWorker, run_id: str, patient_id: str, **kwargs: Any) -> PatientResult:
        beside.setdefault(patient_id, set()).update(running)
        for other in running:
            beside.setdefault(other, set()).add(patient_id)
        running.add(patient_id)
        try:
            return await real(worker, run_id, patient_id, **kwargs)
        finally:
            running.discard(patient_id)

    monkeypatch.setattr(local_executor, "summarize_one", watched)
    async with JobWorker(Settings(state_dir=tmp_path, checkpoint_url=None), base) as worker:
        ledger = worker.ledger
        await prepare_run(
            ledger,
            worker.ctx.fhir,
            "night",
            cohort="all",
            since=None,
            executor="local",
            fhir_url=worker.fhir_url,
        )
        # The worker died while summarizing the crasher three times, and once beside it the victim.
        for times, patient in ((MAX_INTERRUPTED_ATTEMPTS, crasher), (1, victim)):
            for _ in range(times):
                assert await ledger.take_lease("night", patient, "dead-worker", 60.0)
                await ledger.reset_running("night")
        seen: list[PatientResult] = []
        assert await run_local(worker, "night", concurrency=4, on_result=seen.append) == "done"
        rows = {r.patient_id: r for r in await ledger.patients("night")}

        assert [(r.patient_id, r.status) for r in seen[:2]] == [(crasher, "failed"), (victim, "done")]
        assert rows[crasher].status == "failed"
        assert f"in {MAX_INTERRUPTED_ATTEMPTS} attempts (killed or crashed)" in (rows[crasher].reason or "")
        assert rows[crasher].attempts == MAX_INTERRUPTED_ATTEMPTS  # not run again
        assert await count(base, "DiagnosticReport", subject=f"Patient/{crasher}") == 0
        assert beside[victim] == set()  # alone
        assert crasher not in beside
        assert {rows[p].status for p in ids if p != crasher} == {"done"}

        # An operator's retry runs it again, counted from zero.
        assert await ledger.retry_failed("night") == 1
        assert await run_local(worker, "night", concurrency=4) == "done"
        row = {r.patient_id: r for r in await ledger.patients("night")}[crasher]
    assert (row.status, row.interrupted, row.attempts) == ("done", 0, MAX_INTERRUPTED_ATTEMPTS + 1)
    assert await count(base, "DiagnosticReport", subject=f"Patient/{crasher}") == 1
    assert await duplicate_identifiers(base) == {}
