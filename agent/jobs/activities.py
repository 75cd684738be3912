"""The per-patient activity of a job, shared by the local executor and the Temporal worker.

`JobWorker` holds what one worker process opens once: the ledger, the FHIR client, the model
backend, the PACS (only when a model can use it) and the change marks, opened the way
`chartagent summarize` opens them. `summarize_one` runs one patient's planning graph with them.

A batch's change check (`JobWorker.check_batch`) settles the patients it finds unchanged without
their graphs: `settle_unchanged` records them in the ledger in one transaction (the local executor),
`summarize_one` answers them after one mark read (a Temporal chunk's patients). Nothing is written
for them, so they take no lease.

Activities run at least once (a worker killed after the write and before the ledger is updated
runs the patient again): correctness rests on the idempotent write-back (every create is
conditional on our identifier), not on exactly-once execution. Such a rerun is reported truly:
what a job creates carries the run's tag (`tools.writeback.run_tag`), and a patient whose earlier
attempt recorded nothing is run again reading its whole record (no change-mark shortcut), so what
that attempt wrote is found by the tag and the patient is `done`, not `unchanged` (`result_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Final, Self

from agent.checkpoints import open_change_marks
from agent.collector import long_running_collection
from agent.connections import open_dicomweb_client, open_fhir_client
from agent.context import RunContext
from agent.jobs.ledger import Ledger, PatientResult, open_ledger
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.planning.change_marks import (
    ChangeIndex,
    check_cohort,
    server_instant,
    undone_imaging,
)
from agent.settings import Settings
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from fhir_adapters.error_tree import ChartAgentError
from tools.medgemma.factory import open_backend
from tools.writeback.run_tag import created_by_run

__all__ = ["LEASE_TTL_S", "JobWorker", "PatientBusy", "PatientResult", "result_of", "summarize_one"]

# A patient's lease lasts this long unless renewed; it is renewed every third of it while the
# patient runs, so a crashed holder blocks the patient for at most this long.
LEASE_TTL_S: Final = 60.0


class PatientBusy(ChartAgentError):
    """Another writer (another run, another worker) holds the patient's lease: run it later.
    The ledger row is back to pending; Temporal retries the activity, the local executor requeues."""


class JobWorker:
    """What one worker process keeps open for every patient it runs (async context manager)."""

    def __init__(
        self,
        settings: Settings,
        fhir_url: str,
        dicomweb_url: str | None = None,
        *,
        check_changes: bool = True,
        lease_ttl_s: float = LEASE_TTL_S,
        fhir: FhirClient | None = None,
    ) -> None:
        self.settings = settings
        self.fhir_url = fhir_url
        self.dicomweb_url = dicomweb_url
        self.check_changes = check_changes
        self.lease_ttl_s = lease_ttl_s
        # A client to use instead of opening one (a test's recording transport); not closed here.
        self._fhir = fhir
        # Names this process in the leases (host, pid, and a token: pids are reused).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stack = AsyncExitStack()
        self._ledger: Ledger | None = None
        self._ctx: RunContext | None = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("JobWorker is used outside `async with`")
        return self._ledger

    @property
    def ctx(self) -> RunContext:
        if self._ctx is None:
            raise RuntimeError("JobWorker is used outside `async with`")
        return self._ctx

    def lease_holder(self, run_id: str) -> str:
        """Per run: one worker serving two runs of one cohort still lets one of them write a patient."""
        return f"{self.holder}/{run_id}"

    async def __aenter__(self) -> Self:
        # Whatever fails while opening closes what was opened (pop_all keeps them on success).
        async with AsyncExitStack() as stack:
            stack.enter_context(long_running_collection())
            ledger = await stack.enter_async_context(open_ledger(self.settings))
            marks = await stack.enter_async_context(open_change_marks(self.settings, self.fhir_url))
            client = self._fhir
            if client is None:
                client = await stack.enter_async_context(open_fhir_client(self.fhir_url, self.settings))
            model = await stack.enter_async_context(open_backend(self.settings))
            # The PACS is opened only when a model can use it: without one no image is fetched.
            pacs = None
            if self.dicomweb_url is not None and model is not None:
                pacs = await stack.enter_async_context(open_dicomweb_client(self.dicomweb_url, self.settings))
            self._stack = stack.pop_all()
        self._ledger = ledger
        self._ctx = RunContext(
            fhir=client,
            model=model,
            dicomweb=pacs,
            lab_timezone=self.settings.lab_zone,
            max_concurrency=self.settings.max_branch_concurrency,
            change_marks=marks,
            check_changes=self.check_changes,
        )
        return self

    async def check_batch(self, patient_ids: Sequence[str]) -> ChangeIndex | None:
        """The cohort-level change check of the patients about to run (`change_marks.check_cohort`).

        First the server's instant (`server_instant`): the marks of the patients found unchanged
        are verified as of it here, and the runs of this batch leave marks verified as of it (their
        records are read after it). None where runs check their own and nothing is verified (no
        marks kept, or changes not checked); an index with nobody unchanged when the check gave up.
        """
        ctx, store = self.ctx, self.ctx.checked_marks
        if store is None or not patient_ids:
            return None
        as_of = await self._server_instant()
        marks = await store.get_many(patient_ids)
        index = await check_cohort(ctx.fhir, marks, can_read_images=ctx.can_read_images) if marks else None
        unchanged = index.unchanged if index is not None else {}
        if as_of is not None and unchanged:
            await store.verify({p: marks[p] for p in unchanged}, as_of)
        if index is None and as_of is None:
            return None
        return ChangeIndex(unchanged=unchanged, as_of=as_of)

    async def verify_batch(self, patient_ids: Sequence[str]) -> int:
        """The end of a batch: the change check of its patients once more, as of a fresh server
        instant, verifying the marks of those it finds unchanged as of it; how many it verified.

        The window holds what the batch's runs wrote (judged as any check judges them: ignored
        while their status is what the run left) and anything else written meanwhile (a change
        after a patient's record was read: that patient stays unverified, so the next run finds
        it). The next run's window then starts at the end of this one instead of reading this
        run's writes again: a cost moved into the run that wrote them. Nothing is verified when the
        server gives no instant or the check gives up.
        """
        ctx, store = self.ctx, self.ctx.checked_marks
        if store is None or not patient_ids:
            return 0
        as_of = await self._server_instant()
        if as_of is None:
            return 0
        marks = {p: m for p, m in (await store.get_many(patient_ids)).items() if m.since < as_of}
        index = await check_cohort(ctx.fhir, marks, can_read_images=ctx.can_read_images) if marks else None
        if index is None or not index.unchanged:
            return 0
        await store.verify({p: marks[p] for p in index.unchanged}, as_of)
        return len(index.unchanged)

    async def _server_instant(self) -> datetime | None:
        """The server's clock less the configured margin (`server_instant`)."""
        margin = timedelta(seconds=self.settings.change_check_margin_s)
        return await server_instant(self.ctx.fhir, margin=margin)

    async def settle_unchanged(self, run_id: str, changes: ChangeIndex | None) -> list[PatientResult]:
        """Records the patients `changes` found unchanged, still pending in run `run_id`, as
        `unchanged` in one ledger transaction (no graph, no lease: nothing is written for them)."""
        if changes is None or not changes.unchanged:
            return []
        settled = await self.ledger.mark_unchanged(run_id, sorted(changes.unchanged))
        return [PatientResult(patient_id=p, status="unchanged") for p in settled]

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ledger = self._ctx = None
        await self._stack.aclose()


def result_of(
    outcome: PatientOutcome, state: SummarizeState | None, seconds: float, *, resumed_run: str | None = None
) -> PatientResult:
    """written -> done; unchanged -> unchanged; no lab series -> done (nothing to write);
    failed or unknown -> failed with the outcome's PHI-free reason.

    ``resumed_run``: the run whose earlier attempt at this patient recorded no result (killed or
    cancelled, possibly after its writes). What the record holds with that run's tag was written
    by it: listed as written, and a patient this attempt finds unchanged is done."""
    written = {ref for w in (state or {}).get("writes") or [] if w.stored for ref in w.references.values()}
    earlier: list[str] = []
    if resumed_run is not None and state is not None and "record" in state:
        earlier = created_by_run(
            (r for group in state["record"].resources.values() for r in group), resumed_run
        )
    common = {
        "patient_id": outcome.patient_id,
        "written": sorted(written.union(earlier)),
        "seconds": round(seconds, 3),
    }
    if outcome.status in ("failed", "unknown"):
        reason = outcome.error or outcome.status
        if outcome.status == "unknown":
            reason = f"outcome unknown (the server may hold the write): {reason}"
        return PatientResult.model_validate({**common, "status": "failed", "reason": reason})
    undone = _undone_imaging(state)
    if outcome.status == "unchanged" and not undone and not earlier:
        return PatientResult.model_validate({**common, "status": "unchanged"})
    notes = ["no lab series"] if outcome.status == "no-labs" else []
    if earlier:
        notes.append("written by an earlier attempt of this run that stopped before the ledger recorded it")
    if undone:
        # No mark was left (`mark_after_run`): the next run plans these again.
        notes.append(f"imaging not read, retried by the next run: {', '.join(undone)}")
    return PatientResult.model_validate({**common, "status": "done", "reason": "; ".join(notes) or None})


def _undone_imaging(state: SummarizeState | None) -> list[str]:
    """The imaging readings the run's worklist scheduled that stored no report."""
    worklist = (state or {}).get("worklist")
    if state is None or worklist is None:
        return []
    return undone_imaging(worklist.items, state.get("pending") or (), state.get("writes") or ())


async def _run_patient(ctx: RunContext, patient_id: str, *, resumed: bool) -> PatientResult:
    """`summarize_many`'s per-patient boundary: a patient's failure is its result. `resumed`: an
    earlier attempt of this run (`ctx.job_run`) began and recorded nothing."""
    started = time.monotonic()
    ran: list[tuple[PatientOutcome, SummarizeState | None]] = []
    await summarize_many(ctx, [patient_id], on_done=lambda outcome, state: ran.append((outcome, state)))
    ((outcome, state),) = ran
    return result_of(outcome, state, time.monotonic() - started, resumed_run=ctx.job_run if resumed else None)


async def _found_unchanged(ctx: RunContext, patient_id: str, changes: ChangeIndex) -> bool:
    """The batch's check found the patient unchanged against the mark it still has."""
    store = ctx.checked_marks
    if patient_id not in changes.unchanged or store is None:
        return False
    mark = await store.get(patient_id)
    return mark is not None and changes.settles(patient_id, mark, can_read_images=ctx.can_read_images)


def _batch_context(ctx: RunContext, changes: ChangeIndex | None) -> RunContext:
    """The worker's context for a run of a checked batch: its index, and the marks it leaves
    verified as of the batch's server instant (its record is read after it)."""
    if changes is None:
        return ctx
    marks = ctx.change_marks
    if marks is not None and changes.as_of is not None:
        marks = marks.read_after(changes.as_of)
    return replace(ctx, change_index=changes, change_marks=marks)


async def _keep_lease(worker: JobWorker, run_id: str, patient_id: str, holder: str) -> None:
    while True:
        await asyncio.sleep(worker.lease_ttl_s / 3)
        await worker.ledger.renew_lease(run_id, patient_id, holder, worker.lease_ttl_s)


async def summarize_one(
    worker: JobWorker,
    run_id: str,
    patient_id: str,
    *,
    changes: ChangeIndex | None = None,
    attempts_allowed: int | None = None,
) -> PatientResult:
    """Summarize one patient of run `run_id` and record the result in the ledger.

    A patient the batch's check (`changes`) found unchanged against the mark it still has is
    recorded `unchanged` at once: no graph, no lease (nothing is written). Otherwise takes the
    patient's lease first (raises `PatientBusy`, the row back to pending, when another writer holds
    it), keeps it renewed while the graph runs, and releases it at the end. Never raises for the
    patient's own failure: that is a `failed` result with a reason. Cancellation (a stopped
    executor, a cancelled Temporal activity) passes through with the row requeued.
    `changes`: the batch's cohort-level change check (`JobWorker.check_batch`), if it ran.
    `attempts_allowed`: the attempts the executor makes at a failing patient (Temporal's retries;
    None: this one only); a failure before the last is not `final`.
    """
    ledger = worker.ledger
    # An earlier attempt that recorded nothing may have written and left its mark: such a patient
    # is not settled by the mark; it runs, reading its record whole, to find what that one wrote
    # (`result_of`).
    if (
        changes is not None
        and await _found_unchanged(worker.ctx, patient_id, changes)
        and not await ledger.attempts(run_id, patient_id)
    ):
        result = PatientResult(patient_id=patient_id, status="unchanged")
        await ledger.mark(run_id, result)
        return result
    holder = worker.lease_holder(run_id)
    attempt = await ledger.take_lease(run_id, patient_id, holder, worker.lease_ttl_s)
    if not attempt:
        await ledger.requeue(run_id, patient_id)
        raise PatientBusy(f"patient {patient_id} is being written by another run or worker")
    resumed = attempt > 1
    keeper = asyncio.create_task(_keep_lease(worker, run_id, patient_id, holder))
    try:
        ctx = replace(_batch_context(worker.ctx, changes), job_run=run_id)
        if resumed:
            ctx = replace(ctx, check_changes=False)
        result = await _run_patient(ctx, patient_id, resumed=resumed)
        if result.status == "failed" and attempts_allowed is not None and attempt < attempts_allowed:
            result = result.model_copy(update={"final": False})
        await ledger.mark(run_id, result)
        return result
    except asyncio.CancelledError:
        await asyncio.shield(ledger.requeue(run_id, patient_id))
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await asyncio.shield(ledger.release_lease(run_id, patient_id, holder))
