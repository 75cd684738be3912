"""The local executor on the real FHIR server: a 20-patient cohort done once, the same run id again
runs nothing, a new run finds everything unchanged (change marks), a patient run again with the
change check off writes nothing twice (the idempotent write-back every executor rests on), two
runs of one cohort at once write nothing twice, a cancelled run starts nothing. Duplicates are
counted on the server. And the ledger's claims and leases on Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fhir_reads import count, duplicate_identifiers, server_with, totals
from postgres_server import postgres_cluster

from agent.jobs.activities import JobWorker, summarize_one
from agent.jobs.ledger import Ledger, PatientResult, open_ledger
from agent.jobs.local_executor import run_local
from agent.jobs.prepare import prepare_run
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort

pytestmark = pytest.mark.integration


def _settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, checkpoint_url=None)


async def _start(worker: JobWorker, run_id: str, cohort: str = "all") -> None:
    await prepare_run(
        worker.ledger, worker.ctx.fhir, run_id,
        cohort=cohort, since=None, executor="local", fhir_url=worker.fhir_url,
    )  # fmt: skip


async def test_twenty_patients_done_once_then_resumed_rerun_and_repeated(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(20, 1212)
    ids = sorted(p.id for p in cohort.patients)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    settings = _settings(tmp_path)
    seen: list[PatientResult] = []
    async with JobWorker(settings, base) as worker:
        await _start(worker, "first")
        assert await run_local(worker, "first", concurrency=4, on_result=seen.append) == "done"
        rows = await worker.ledger.patients("first")
        assert [r.patient_id for r in rows] == ids
        assert {r.status for r in rows} == {"done"}, [(r.patient_id, r.status, r.reason) for r in rows]
        assert all(r.attempts == 1 for r in rows)
        assert all(any(w.startswith("DiagnosticReport/") for w in r.written) for r in rows)
        assert sorted(r.patient_id for r in seen) == ids
        assert await duplicate_identifiers(base) == {}
        assert await count(base, "DiagnosticReport") == len(ids)  # one summary each
        stored = await totals(base)

        # The same run id again: every patient is finished, nothing runs.
        seen.clear()
        await _start(worker, "first")
        assert await run_local(worker, "first", concurrency=4, on_result=seen.append) == "done"
        assert seen == []
        assert all(r.attempts == 1 for r in await worker.ledger.patients("first"))

        # A new run of the cohort: nothing changed, every patient is cheap and unchanged.
        await _start(worker, "second")
        assert await run_local(worker, "second", concurrency=4) == "done"
        assert {r.status for r in await worker.ledger.patients("second")} == {"unchanged"}
        assert await totals(base) == stored

    # At least once: a patient run again, its record read and its writes posted again (the
    # change check off), stores nothing new.
    async with JobWorker(settings, base, check_changes=False) as worker:
        await _start(worker, "again")
        again = [await summarize_one(worker, "again", pid) for pid in ids[:3]]
    assert [r.status for r in again] == ["unchanged"] * 3, again
    assert await totals(base) == stored
    assert await duplicate_identifiers(base) == {}


async def test_two_runs_of_one_cohort_at_once_write_nothing_twice(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(6, 1213)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    settings = _settings(tmp_path)
    # Two workers with their own ledger connections and leases, as two processes would have.
    async with JobWorker(settings, base) as one, JobWorker(settings, base) as two:
        await _start(one, "a")
        await _start(two, "b")
        ends = await asyncio.gather(
            run_local(one, "a", concurrency=3, poll_s=0.1), run_local(two, "b", concurrency=3, poll_s=0.1)
        )
        assert list(ends) == ["done", "done"]
        rows = await one.ledger.patients("a") + await one.ledger.patients("b")
    assert {r.status for r in rows} <= {"done", "unchanged"}
    for patient in cohort.patients:
        # The lease let one run write the patient; the other found it unchanged afterwards.
        assert sorted(r.status for r in rows if r.patient_id == patient.id) == ["done", "unchanged"]
    assert await duplicate_identifiers(base) == {}
    assert await count(base, "DiagnosticReport") == len(cohort.patients)


async def test_a_cancelled_run_starts_no_patient(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(2, 1214)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    async with JobWorker(_settings(tmp_path), base) as worker:
        await _start(worker, "c")
        assert await worker.ledger.cancel("c")
        assert await run_local(worker, "c", concurrency=2) == "cancelled"
        assert (await worker.ledger.counts("c"))["pending"] == 2
    assert await count(base, "DiagnosticReport") == 0


async def test_the_ledger_on_postgres_claims_and_leases_exclusively(tmp_path: Path) -> None:
    ids = [f"p{i:02d}" for i in range(40)]
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with open_ledger(settings) as one, open_ledger(settings) as two:
            await one.create_run("r", cohort="all", since=None, executor="local", fhir_url="http://f")
            await one.create_run("s", cohort="all", since=None, executor="local", fhir_url="http://f")
            assert await one.add_patients("r", ids) == len(ids)
            assert await two.add_patients("r", ids) == 0

            async def drain(ledger: Ledger, holder: str) -> list[str]:
                got: list[str] = []
                while batch := await ledger.claim_next("r", holder, 3):
                    got += batch
                return got

            a, b = await asyncio.gather(drain(one, "A"), drain(two, "B"))
            assert sorted(a + b) == ids
            assert not set(a) & set(b)
            leases = await asyncio.gather(
                *(
                    ledger.take_lease(run, "p00", holder, 60)
                    for ledger, run, holder in [(one, "r", "A"), (two, "s", "B")]
                )
            )
            assert sorted(leases) == [False, True]
            await one.mark("r", PatientResult(patient_id="p00", status="failed", reason="x"))
            assert (await two.counts("r"))["failed"] == 1
            assert await two.reset_running("r") == len(ids) - 1
            assert await two.retry_failed("r") == 1
            assert (await one.counts("r"))["pending"] == len(ids)
            # Pruning: the cancelled run goes; the running one stays with its patients. Which
            # run won p00's lease is a race; the winner holds p00 as a patient row too.
            await two.add_patients("s", ["x"])
            assert await two.cancel("s")
            s_rows = len(await two.patients("s"))
            assert s_rows == 1 + (leases[1] > 0)
            pruned = await one.prune(time.time() + 1)
            assert (pruned.runs, pruned.patient_rows, pruned.kept) == (1, s_rows, [])
            assert await one.get_run("s") is None
            assert len(await two.patients("r")) == len(ids)
            # A Temporal chunk's window of the run, in patient-id order.
            window = await one.patients("r", offset=35, limit=10)
            assert [p.patient_id for p in window] == ids[35:]


async def test_since_last_starts_at_the_last_successful_runs_transaction_time(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(2, 1215)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    async with JobWorker(_settings(tmp_path), base) as worker:
        first = await prepare_run(
            worker.ledger,
            worker.ctx.fhir,
            "first",
            cohort="all",
            since="last",
            executor="local",
            fhir_url=base,
        )
        assert first.since is None  # no earlier run: every patient
        assert await run_local(worker, "first", concurrency=2) == "done"
        done = await worker.ledger.get_run("first")
        assert done is not None
        assert done.transaction_time is not None
        nightly = await prepare_run(
            worker.ledger,
            worker.ctx.fhir,
            "nightly",
            cohort="all",
            since="last",
            executor="local",
            fhir_url=base,
        )
        assert nightly.since == done.transaction_time
        # ChartAgent's own write-back of the first run is not a change: nobody is due.
        assert await worker.ledger.patients("nightly") == []
        assert await run_local(worker, "nightly", concurrency=2) == "done"
        # A new result of one patient makes that patient, and only it, due the night after.
        changed = cohort.patients[0].id
        result = next(
            r
            for r in cohort.resources()
            if r["resourceType"] == "Observation" and r["subject"]["reference"] == f"Patient/{changed}"
        )
        fresh = {k: v for k, v in result.items() if k not in ("id", "meta", "identifier")}
        async with httpx.AsyncClient() as http:
            (await http.post(f"{base}/Observation", json=fresh)).raise_for_status()
        after = await prepare_run(
            worker.ledger,
            worker.ctx.fhir,
            "after",
            cohort="all",
            since="last",
            executor="local",
            fhir_url=base,
        )
        assert after.since is not None
        assert [r.patient_id for r in await worker.ledger.patients("after")] == [changed]
    assert await count(base, "DiagnosticReport") == len(cohort.patients)
