"""A Temporal worker of job runs: the workflows of agent.jobs.temporal_workflows and their activities.

    python -m agent.jobs.temporal_worker [--fhir-url URL] [--dicomweb-url URL] [--concurrency N]

It connects to `CHARTAGENT_TEMPORAL_ADDRESS` (namespace and task queue from the settings), opens
one `JobWorker` (ledger, FHIR client, model backend, PACS, change marks) and runs at most
`--concurrency` patients at a time until SIGINT/SIGTERM. Model calls share the backend and its
`CHARTAGENT_MODEL_MAX_CONCURRENCY` limit. `chartagent jobs run --executor temporal` against the
embedded dev server runs the same worker inside its own process (agent.jobs.temporal_executor).

Each chunk's change check (`check_changes`) runs `JobWorker.check_batch` over the chunk's patients,
records those it found unchanged and still pending as `unchanged` (`JobWorker.settle_unchanged`,
one ledger transaction) and answers what it found for the others. After the chunk's patients,
`verify_changes` runs `JobWorker.verify_batch` over them: their marks verified as of the chunk's
end, so that the next run's window does not hold this run's own writes.

Each patient's activity (`summarize_patient`):
- skips a patient of a run that was cancelled, and refuses a run of another FHIR server;
- runs `agent.jobs.activities.summarize_one` (with the chunk's finding), which takes the
  patient's lease, records the result in the ledger and releases the lease, while a background
  task heartbeats (a worker that dies is noticed after the heartbeat timeout and the patient runs
  again elsewhere);
- a patient whose lease another writer holds is retried later (not counted as a failure);
- a failed result is retried with backoff until the ledger counts `max_attempts` attempts,
  then stays failed with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from agent.jobs.activities import LEASE_TTL_S, JobWorker, PatientBusy, summarize_one
from agent.jobs.ledger import PatientResult, RunRow
from agent.jobs.temporal_workflows import (
    CHECK_ACTIVITY,
    CHUNK_ACTIVITY,
    END_CHECK_ACTIVITY,
    FINISH_ACTIVITY,
    PATIENT_ACTIVITY,
    PLAN_ACTIVITY,
    CheckFinding,
    CheckRequest,
    ChunkRequest,
    ChunkWorkflow,
    PatientInput,
    RunWorkflow,
)
from agent.metrics import MetricsPortUnavailable, serve_metrics
from agent.planning.change_marks import ChangeIndex
from agent.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Ledger statuses a chunk still has to run (`running`: its worker died before recording it).
_TO_RUN: Final = frozenset({"pending", "running"})
# A patient whose activity keeps dying (a worker killed each time) is given up after this many
# of Temporal's attempts per ledger attempt allowed.
_CRASH_ALLOWANCE: Final = 10


class RunActivities:
    """The activities of one worker process, sharing its `JobWorker`."""

    def __init__(self, worker: JobWorker) -> None:
        self.worker = worker
        # (run, patient) being summarized in this process: a retry Temporal starts while the first
        # attempt still runs here (a heartbeat missed) must not make a second writer.
        self._here: set[tuple[str, str]] = set()

    async def _run(self, run_id: str) -> RunRow:
        run = await self.worker.ledger.get_run(run_id)
        if run is None:
            raise ApplicationError(f"no run {run_id} in the ledger", non_retryable=True)
        if run.fhir_url.rstrip("/") != self.worker.fhir_url.rstrip("/"):
            # The lease scope and the writes are the run's server's: another server's worker must not run it.
            raise ApplicationError(
                f"run {run_id} is on another FHIR server than this worker's", non_retryable=True
            )
        return run

    @activity.defn(name=PLAN_ACTIVITY)
    async def plan_run(self, request: ChunkRequest) -> int:
        """How many chunks the run's patients make (all of them, in patient-id order)."""
        await self._run(request.run_id)
        patients = sum((await self.worker.ledger.counts(request.run_id)).values())
        return math.ceil(patients / max(1, request.chunk_size))

    @activity.defn(name=CHUNK_ACTIVITY)
    async def chunk_patients(self, request: ChunkRequest) -> list[str]:
        """The chunk's patients still to run (those done, unchanged or failed are not run again).
        Only the chunk's window of the ledger is read."""
        await self._run(request.run_id)
        size = request.chunk_size
        rows = await self.worker.ledger.patients(request.run_id, offset=request.index * size, limit=size)
        return [r.patient_id for r in rows if r.status in _TO_RUN]

    @activity.defn(name=CHECK_ACTIVITY)
    async def check_changes(self, request: CheckRequest) -> CheckFinding:
        """The chunk's cohort-level change check; the patients it found unchanged settled in the ledger."""
        await self._run(request.run_id)
        index = await self.worker.check_batch(request.patient_ids)
        if index is None:
            return CheckFinding()
        settled = await self.worker.settle_unchanged(request.run_id, index)
        return CheckFinding(
            checked=True,
            settled=[r.patient_id for r in settled],
            unchanged={p: through.isoformat() for p, through in index.unchanged.items()},
            as_of=index.as_of.isoformat() if index.as_of is not None else None,
        )

    @activity.defn(name=END_CHECK_ACTIVITY)
    async def verify_changes(self, request: CheckRequest) -> int:
        """The chunk's end check (`JobWorker.verify_batch`); how many marks it verified."""
        run = await self._run(request.run_id)
        if run.status != "running":
            return 0  # cancelled: the patients in flight may still be writing
        return await self.worker.verify_batch(request.patient_ids)

    @activity.defn(name=FINISH_ACTIVITY)
    async def finish_run(self, run_id: str) -> None:
        await self.worker.ledger.finish_run(run_id)

    @activity.defn(name=PATIENT_ACTIVITY)
    async def summarize_patient(self, patient: PatientInput) -> str:
        """The patient's final ledger status (done, unchanged, failed, cancelled)."""
        ledger = self.worker.ledger
        run = await ledger.get_run(patient.run_id)
        if run is None or run.status == "cancelled":
            return "cancelled"
        key = (patient.run_id, patient.patient_id)
        if key in self._here:
            raise _busy(patient, "is still running in this worker")
        if activity.info().attempt > _CRASH_ALLOWANCE * patient.max_attempts:
            return await self._give_up(patient, "its worker stopped on every attempt")
        self._here.add(key)
        beats = asyncio.create_task(_heartbeat(patient.heartbeat_every_s))
        try:
            result = await summarize_one(
                self.worker,
                patient.run_id,
                patient.patient_id,
                changes=_finding(patient),
                attempts_allowed=patient.max_attempts,
            )
        except PatientBusy:
            raise _busy(patient, "is being written by another run or worker") from None
        finally:
            self._here.discard(key)
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
        if not result.final:
            # Recorded as failed meanwhile; the next attempt marks it running again.
            raise ApplicationError(
                f"patient {patient.patient_id} failed: {result.reason}", type="PatientFailed"
            )
        return result.status

    async def _give_up(self, patient: PatientInput, why: str) -> str:
        await self.worker.ledger.mark(
            patient.run_id, PatientResult(patient_id=patient.patient_id, status="failed", reason=why)
        )
        return "failed"


def _finding(patient: PatientInput) -> ChangeIndex | None:
    """The chunk's check as far as this patient goes (`summarize_one` checks that a mark it found
    the patient unchanged against is still the patient's)."""
    if not patient.checked:
        return None
    through = patient.unchanged_through
    return ChangeIndex(
        unchanged={} if through is None else {patient.patient_id: datetime.fromisoformat(through)},
        as_of=None if patient.checked_as_of is None else datetime.fromisoformat(patient.checked_as_of),
    )


def _busy(patient: PatientInput, what: str) -> ApplicationError:
    # Retried after about a heartbeat's interval, whatever the backoff has grown to.
    return ApplicationError(
        f"patient {patient.patient_id} {what}",
        type="PatientBusy",
        next_retry_delay=timedelta(seconds=max(1.0, patient.heartbeat_every_s)),
    )


async def _heartbeat(every_s: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every_s)


async def connect(settings: Settings, address: str | None = None) -> Client:
    return await Client.connect(address or settings.temporal_address, namespace=settings.temporal_namespace)


def build_worker(client: Client, settings: Settings, job_worker: JobWorker, *, concurrency: int) -> Worker:
    activities = RunActivities(job_worker)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[RunWorkflow, ChunkWorkflow],
        activities=[
            activities.plan_run,
            activities.chunk_patients,
            activities.check_changes,
            activities.verify_changes,
            activities.finish_run,
            activities.summarize_patient,
        ],
        max_concurrent_activities=concurrency,
        # A patient cancelled mid-run gets a moment to requeue its ledger row and drop its lease.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def serve(
    settings: Settings,
    fhir_url: str,
    dicomweb_url: str | None = None,
    *,
    concurrency: int = 4,
    lease_ttl_s: float | None = None,
) -> None:
    """Run a worker until SIGINT or SIGTERM."""
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ttl = LEASE_TTL_S if lease_ttl_s is None else lease_ttl_s
    async with (
        JobWorker(settings, fhir_url, dicomweb_url, lease_ttl_s=ttl) as job_worker,
        build_worker(client, settings, job_worker, concurrency=concurrency),
    ):
        log.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent.jobs.temporal_worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--fhir-url", help="default: CHARTAGENT_FHIR_URL, else the embedded stack's")
    parser.add_argument("--dicomweb-url", help="default: CHARTAGENT_DICOMWEB_URL, else the embedded stack's")
    parser.add_argument("--concurrency", type=int, default=4, help="patients at once (default 4)")
    # A crashed worker's patients wait this long before another worker takes them (tests shorten it).
    parser.add_argument("--lease-ttl-s", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from agent.cli.options import resolve_dicomweb_url, resolve_fhir_url

    settings = load_settings()
    if not settings.temporal_address:
        parser.error("set CHARTAGENT_TEMPORAL_ADDRESS (host:port of the Temporal frontend)")
    # WARNING for the libraries: httpx's INFO request lines carry FHIR URLs with patient ids.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    try:
        serve_metrics(settings)
    except MetricsPortUnavailable as exc:
        parser.exit(2, f"error: {exc}\n")
    asyncio.run(
        serve(
            settings,
            resolve_fhir_url(args.fhir_url),
            resolve_dicomweb_url(args.dicomweb_url),
            concurrency=max(1, args.concurrency),
            lease_ttl_s=args.lease_ttl_s,
        )
    )


if __name__ == "__main__":
    main()
