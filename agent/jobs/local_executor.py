"""The `local` executor: a run's pending patients in this process, a bounded number at a time.

The same activity as on Temporal (`summarize_one`, sharing one `JobWorker`) and the same ledger.
Started again with the same run id it resumes: the patients left `running` by a crash go back to
pending (their leases released) and the rest continue; finished patients are not run again.
A run cancelled in the ledger (`chartagent jobs cancel`) stops claiming; patients in flight finish.
Before claiming, one cohort-level change check covers the run's pending patients
(`JobWorker.check_batch`): those it finds unchanged are recorded in one ledger transaction and
never claimed (no graph, no lease, no search of their own). After the last patient, one more
(`JobWorker.verify_batch`) verifies the marks of the patients still unchanged as of the run's end,
so that the next run's window does not hold this run's own writes.

A patient whose worker stopped while summarizing it (killed or crashed: the ledger's `interrupted`,
counted on resume) runs first, alone: a patient whose data crashes the worker then takes down no
other patient's attempt, and the next resume finds it interrupted once more than the patients that
were in flight beside it. After `MAX_INTERRUPTED_ATTEMPTS` it is recorded failed without running
again (`jobs retry-failed` gives it as many again), so a run that meets such a patient completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from agent.jobs.activities import JobWorker, PatientBusy, summarize_one
from agent.jobs.ledger import PatientResult, PatientRow, RunStatus
from agent.planning.change_marks import ChangeIndex

__all__ = ["run_local"]

# How often an executor with nothing to claim looks again (patients leased by another run).
POLL_S: Final = 0.5
# Attempts its worker stopped in before a patient is given up (Temporal counts its own
# attempts: `temporal_worker._CRASH_ALLOWANCE`).
MAX_INTERRUPTED_ATTEMPTS: Final = 3


async def run_local(
    worker: JobWorker,
    run_id: str,
    *,
    concurrency: int = 4,
    on_result: Callable[[PatientResult], None] | None = None,
    poll_s: float = POLL_S,
    check_batch: bool = True,
    verify_at_end: bool = True,
) -> RunStatus:
    """Run the run's pending patients, `concurrency` at once; the run's status at the end (`done`
    when every patient finished, `cancelled` when it was cancelled meanwhile). `check_batch=False`:
    no cohort-level check, each patient checks its own (the baseline of the benchmark).
    `verify_at_end=False`: no check at the end (the benchmark times it on its own)."""
    ledger = worker.ledger
    holder = worker.lease_holder(run_id)
    await ledger.reset_running(run_id)
    rows = await ledger.patients(run_id)
    pending = [row.patient_id for row in rows if row.status == "pending"]
    # Not settled by the check below (it settles only patients never attempted in this run).
    interrupted = [row for row in rows if row.status == "pending" and row.interrupted > 0]
    run = await ledger.get_run(run_id)
    changes = None
    if check_batch and run is not None and run.status == "running":  # a cancelled run starts nothing
        changes = await worker.check_batch(pending)
        for result in await worker.settle_unchanged(run_id, changes):
            if on_result is not None:
                on_result(result)
    for result in await _run_interrupted(worker, run_id, interrupted, changes):
        if on_result is not None:
            on_result(result)
    in_flight: set[asyncio.Task[PatientResult]] = set()
    try:
        while True:
            run = await ledger.get_run(run_id)
            stopping = run is None or run.status != "running"
            free = 0 if stopping else concurrency - len(in_flight)
            for patient_id in await ledger.claim_next(run_id, holder, free) if free > 0 else []:
                in_flight.add(asyncio.create_task(summarize_one(worker, run_id, patient_id, changes=changes)))
            if not in_flight:
                if stopping or (await ledger.counts(run_id))["pending"] == 0:
                    break
                await asyncio.sleep(poll_s)  # what is left is leased by another run: later
                continue
            done, in_flight = await asyncio.wait(
                in_flight, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                try:
                    result = task.result()
                except PatientBusy:
                    continue  # requeued by the activity; claimed again once its lease is free
                if on_result is not None:
                    on_result(result)
    finally:
        # Stopped by an error or cancellation: the patients in flight go back to pending.
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
    if verify_at_end and check_batch and not stopping:
        await worker.verify_batch(pending)
    return await ledger.finish_run(run_id)


async def _run_interrupted(
    worker: JobWorker, run_id: str, rows: list[PatientRow], changes: ChangeIndex | None
) -> list[PatientResult]:
    """The pending patients their worker stopped in (`rows`), the most interrupted first, one at a
    time; those interrupted `MAX_INTERRUPTED_ATTEMPTS` times recorded failed instead. Stops when
    the run does."""
    ledger = worker.ledger
    results: list[PatientResult] = []
    for row in sorted(rows, key=lambda r: (-r.interrupted, r.patient_id)):
        run = await ledger.get_run(run_id)
        if run is None or run.status != "running":
            break
        if row.interrupted >= MAX_INTERRUPTED_ATTEMPTS:
            result = PatientResult(
                patient_id=row.patient_id,
                status="failed",
                reason=f"the worker stopped while summarizing this patient in {row.interrupted} attempts "
                "(killed or crashed); not tried again: `chartagent jobs retry-failed` tries it again",
            )
            await ledger.mark(run_id, result)
        else:
            try:
                result = await summarize_one(worker, run_id, row.patient_id, changes=changes)
            except PatientBusy:
                continue  # requeued; the claims below take it once its lease is free
        results.append(result)
    return results
