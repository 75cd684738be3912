"""The workflows of a job run on Temporal: deterministic code only.

One `RunWorkflow` per run, id `chartagent-run-<run_id>`, started once (agent.jobs.temporal_executor
rejects a second start). It asks the ledger how many patients the run holds, and runs them in
chunks, each a `ChunkWorkflow` child (`<workflow id>-chunk-<n>`), a window of children at a time:
a workflow's history is capped at 51,200 events and 2,000 pending activities, and a chunk of 200
patients stays far below both (about 3 events per activity), the parent too (about 6 per child).

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

from temporalio import workflow
from temporalio.common import RetryPolicy

PLAN_ACTIVITY = "chartagent.plan_run"
CHUNK_ACTIVITY = "chartagent.chunk_patients"
PATIENT_ACTIVITY = "chartagent.summarize_patient"
FINISH_ACTIVITY = "chartagent.finish_run"


def run_workflow_id(run_id: str) -> str:
    return f"chartagent-run-{run_id}"


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


@dataclass(frozen=True)
class ChunkRequest:
    run_id: str
    index: int
    chunk_size: int


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
        statuses: list[str] = await asyncio.gather(
            *(
                workflow.execute_activity(
                    PATIENT_ACTIVITY,
                    PatientInput(
                        chunk.run_id,
                        patient_id,
                        options.max_attempts,
                        heartbeat_every_s=options.heartbeat_timeout_s / 3,
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
            )
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
