"""The workflows of a job run on Temporal: deterministic code only.

One `RunWorkflow` per run, id `chartagent-run-<run_id>`, started once (agent.jobs.temporal_executor
rejects a second start). It asks the ledger how many patients the run holds, and runs them in
chunks, each a `ChunkWorkflow` child (`<workflow id>-chunk-<n>`), a window of children at a time:
a workflow's history is capped at 51,200 events and 2,000 pending activities, and a chunk of 200
patients stays far below both (about 3 events per activity), the parent too (about 6 per child).

Before its patients, a chunk runs the cohort-level change check over them in one activity
(`chartagent.check_changes`: `JobWorker.check_batch`, a few searches for the whole chunk, then
`settle_unchanged`): the patients it found unchanged are recorded `unchanged` in the ledger there,
in one transaction, and get no activity of their own. The others are passed what the check found
(the server instant it was taken at, so that their runs leave verified marks; a patient found
unchanged but not settled, e.g. left running by a killed worker, the `through` of its mark). A
failed check only costs the per-patient checks. After its patients, the chunk checks them once
more (`chartagent.verify_changes`: `JobWorker.verify_batch`) as of a fresh server instant: the
marks of those still unchanged move past the chunk's own writes, so the next run's window starts
at the chunk's end. A failed end check only leaves the next window larger.

Each patient is one activity (`chartagent.summarize_patient`, agent.jobs.temporal_worker): it
reads and writes the ledger itself, so `chartagent jobs status` reads the same rows as for the
local executor, and a retried activity of a patient already done returns without running again.
Activities run at least once (a worker killed mid-patient, a lost completion): correctness rests
on the idempotent write-back (conditional creates), which the integration tests check on the
server.

This module runs inside temporalio's workflow sandbox: it imports nothing but the standard
library and `temporalio.workflow`; activities are named by string, not imported.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

PLAN_ACTIVITY = "chartagent.plan_run"
CHUNK_ACTIVITY = "chartagent.chunk_patients"
CHECK_ACTIVITY = "chartagent.check_changes"
END_CHECK_ACTIVITY = "chartagent.verify_changes"
PATIENT_ACTIVITY = "chartagent.summarize_patient"
FINISH_ACTIVITY = "chartagent.finish_run"


# Histories recorded before the chunk's change check existed replay without it.
_CHECK_PATCH = "chunk-change-check"
# ... and before the chunk's end check existed, without that.
_END_CHECK_PATCH = "chunk-end-check"


def run_workflow_id(run_id: str) -> str:
    return f"chartagent-run-{run_id}"


def retry_workflow_id(run_id: str, n: int) -> str:
    """The n-th `jobs retry-failed` of a run (n >= 1): a workflow of its own, the run's id being used."""
    return f"{run_workflow_id(run_id)}-retry-{n}"


@dataclass(frozen=True)
class RunOptions:
    """How a run is cut and retried; chosen at start and kept in the run's history."""

    chunk_size: int = 200
    # Children running at once: bounds how many patients' activities wait in the task queue.
    children_at_once: int = 8
    # Attempts per patient (the last one records the failure in the ledger instead of raising).
    max_attempts: int = 5
    initial_retry_s: float = 2.0
    max_retry_s: float = 60.0
    # A patient's whole run (graph, writes, the model's reads) must end within this.
    start_to_close_s: float = 1800.0
    # The activity heartbeats every third of this; a worker that dies is noticed after it.
    heartbeat_timeout_s: float = 30.0


@dataclass(frozen=True)
class RunInput:
    run_id: str
    options: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class ChunkInput:
    run_id: str
    index: int
    options: RunOptions


@dataclass(frozen=True)
class PatientInput:
    run_id: str
    patient_id: str
    max_attempts: int
    heartbeat_every_s: float
    # What the chunk's change check found (`checked` False: it did not run, the patient checks its
    # own changes): the `through` (ISO instant) of the mark it found the patient unchanged against,
    # and the server instant it was taken at.
    checked: bool = False
    unchanged_through: str | None = None
    checked_as_of: str | None = None


@dataclass(frozen=True)
class ChunkRequest:
    run_id: str
    index: int
    chunk_size: int


@dataclass(frozen=True)
class CheckRequest:
    run_id: str
    patient_ids: list[str]


@dataclass(frozen=True)
class CheckFinding:
    """The chunk's change check: `checked` False when it did not run (no marks kept, changes not
    checked). `settled`: recorded unchanged in the ledger by the check; `unchanged`: patient -> the
    `through` (ISO) of the mark it was found unchanged against; `as_of`: the server instant (ISO)."""

    checked: bool = False
    settled: list[str] = field(default_factory=list)
    unchanged: dict[str, str] = field(default_factory=dict)
    as_of: str | None = None


@dataclass
class RunTally:
    """Patients per final ledger status (done, unchanged, failed, cancelled ...)."""

    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, other: dict[str, int]) -> None:
        total = Counter(self.statuses)
        total.update(other)
        self.statuses = dict(total)


def _patient_retry(options: RunOptions) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=options.initial_retry_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=options.max_retry_s),
        maximum_attempts=options.max_attempts,
    )


# Ledger reads and writes: quick, retried until the ledger answers.
_LEDGER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_LEDGER_TIMEOUT = timedelta(seconds=60)
# The chunk's change check: a few searches; given up quickly (each patient then checks its own).
_CHECK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
_CHECK_TIMEOUT = timedelta(minutes=5)
_T = TypeVar("_T")


async def _chunk_check(activity: str, request: CheckRequest, result_type: type[_T], failed: str) -> _T | None:
    """One of a chunk's change checks (at its start, at its end): the answer, or None, logged,
    when it failed. Either check only saves work; the patients' runs never depend on it."""
    try:
        answer: _T = await workflow.execute_activity(
            activity,
            request,
            result_type=result_type,
            start_to_close_timeout=_CHECK_TIMEOUT,
            retry_policy=_CHECK_RETRY,
        )
    except ActivityError:
        workflow.logger.warning(failed)
        return None
    return answer


@workflow.defn(name="ChartAgentChunk")
class ChunkWorkflow:
    @workflow.run
    async def run(self, chunk: ChunkInput) -> RunTally:
        options = chunk.options
        patient_ids: list[str] = await workflow.execute_activity(
            CHUNK_ACTIVITY,
            ChunkRequest(chunk.run_id, chunk.index, options.chunk_size),
            result_type=list[str],
            start_to_close_timeout=_LEDGER_TIMEOUT,
            retry_policy=_LEDGER_RETRY,
        )
        found = CheckFinding()
        if patient_ids and workflow.patched(_CHECK_PATCH):
            checked = await _chunk_check(
                CHECK_ACTIVITY,
                CheckRequest(chunk.run_id, patient_ids),
                CheckFinding,
                "the chunk's change check failed: its patients check their own",
            )
            found = checked if checked is not None else found
        settled = set(found.settled)
        statuses: list[str] = await asyncio.gather(
            *(
                workflow.execute_activity(
                    PATIENT_ACTIVITY,
                    PatientInput(
                        chunk.run_id,
                        patient_id,
                        options.max_attempts,
                        heartbeat_every_s=options.heartbeat_timeout_s / 3,
                        checked=found.checked,
                        unchanged_through=found.unchanged.get(patient_id),
                        checked_as_of=found.as_of,
                    ),
                    result_type=str,
                    # The activity id names the patient: a retry is the same activity, so its
                    # lease holder (see the worker) is the same.
                    activity_id=f"patient-{patient_id}",
                    start_to_close_timeout=timedelta(seconds=options.start_to_close_s),
                    heartbeat_timeout=timedelta(seconds=options.heartbeat_timeout_s),
                    retry_policy=_patient_retry(options),
                )
                for patient_id in patient_ids
                if patient_id not in settled
            )
        )
        statuses += ["unchanged"] * len(settled)
        if patient_ids and workflow.patched(_END_CHECK_PATCH):
            await _chunk_check(
                END_CHECK_ACTIVITY,
                CheckRequest(chunk.run_id, patient_ids),
                int,
                "the chunk's end check failed: the next run's window is larger",
            )
        return RunTally(dict(Counter(statuses)))


@workflow.defn(name="ChartAgentRun")
class RunWorkflow:
    @workflow.run
    async def run(self, run: RunInput) -> RunTally:
        options = run.options
        chunks: int = await workflow.execute_activity(
            PLAN_ACTIVITY,
            ChunkRequest(run.run_id, 0, options.chunk_size),
            result_type=int,
            start_to_close_timeout=_LEDGER_TIMEOUT,
            retry_policy=_LEDGER_RETRY,
        )
        tally = RunTally()
        window = asyncio.Semaphore(max(1, options.children_at_once))

        async def chunk(index: int) -> None:
            async with window:
                result = await workflow.execute_child_workflow(
                    ChunkWorkflow.run,
                    ChunkInput(run.run_id, index, options),
                    id=f"{workflow.info().workflow_id}-chunk-{index}",
                )
                tally.add(result.statuses)

        await asyncio.gather(*(chunk(i) for i in range(chunks)))
        await workflow.execute_activity(
            FINISH_ACTIVITY,
            run.run_id,
            start_to_close_timeout=_LEDGER_TIMEOUT,
            retry_policy=_LEDGER_RETRY,
        )
        return tally
