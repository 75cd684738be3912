"""Run the planning graph for one patient now, in the background, and report its progress.

`POST /api/patients/{id}/summarize` starts a run (one at a time per patient of a FHIR server: a
second start while one runs answers the running one) and `GET /api/runs/{run_id}` reports it: the
graph's nodes as they finish (LangGraph's stream of node updates), the references the run wrote,
and a PHI-free error (`agent.jobs.summarize.describe_failure`, the same words as the CLI's).

The run executes in this process; its progress is kept in the database the API replicas share
(agent.service.run_store), so any replica answers the poll and refuses a second run of the
patient. A replica that stops mid-run leaves its run to read as failed once its beat is older than
`BEAT_TTL_S`: what it wrote stays on the FHIR server and the next run finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.jobs.summarize import describe_failure, outcome_of
from agent.metrics import summary_run
from agent.service.run_store import RunRecord, RunStep, RunStore, RunsUnavailable
from agent.settings import Settings
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from tools.writeback.pending import WriteOutcome

__all__ = ["RunRegistry", "run_summary"]

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _written(state: SummarizeState) -> list[str]:
    writes: list[WriteOutcome] = list(state.get("writes") or [])
    return sorted({ref for w in writes if w.stored for ref in w.references.values()})


async def run_summary(
    ctx: RunContext, patient_id: str, on_step: Callable[[str], Awaitable[None]]
) -> SummarizeState:
    """The planning graph for one patient, as `summarize_patient` runs it without checkpoints,
    awaiting `on_step(node)` as each node finishes."""
    config: RunnableConfig = {"max_concurrency": ctx.max_concurrency}
    state: dict[str, Any] = {}
    stream = summarize_graph.astream(
        {"patient_id": patient_id}, config=config, context=ctx, stream_mode=["updates", "values"]
    )
    async for mode, chunk in stream:
        if mode == "updates" and isinstance(chunk, dict):
            for node in chunk:
                await on_step(str(node))
        elif mode == "values" and isinstance(chunk, dict):
            state = chunk
    return state  # type: ignore[return-value]  # the graph's final values are its state


# Opens what a run needs (the caller's FHIR client, the model, the PACS) and closes it after.
ContextOpener = Callable[[AsyncExitStack], Awaitable[RunContext]]


class RunRegistry:
    """This process's runs, their rows in the shared `store` (set for the app's life)."""

    def __init__(self) -> None:
        self.store: RunStore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def _store(self) -> RunStore:
        if self.store is None:  # the app's lifespan opens it: a request before it is a wiring defect
            raise RunsUnavailable("the summary runs are not open")
        return self.store

    async def get(self, run_id: str) -> RunRecord | None:
        return await self._store().get(run_id)

    async def start(self, fhir_base: str, patient_id: str, open_context: ContextOpener) -> tuple[str, bool]:
        """(the run's id, whether it started now): a patient's running run, on this replica or
        another, is answered, not doubled. Raises `RunsUnavailable` when the store cannot be
        written (nothing started)."""
        store = self._store()
        run_id, started = await store.start(secrets.token_urlsafe(12), fhir_base, patient_id)
        if started:
            task = asyncio.create_task(self._execute(store, run_id, patient_id, open_context))
            self._tasks[run_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(run_id, None))
        return run_id, started

    async def _execute(
        self, store: RunStore, run_id: str, patient_id: str, open_context: ContextOpener
    ) -> None:
        steps: list[RunStep] = []
        written: list[str] = []
        status: Literal["done", "failed"] = "failed"
        error: str | None = None

        async def on_step(node: str) -> None:
            steps.append(RunStep(node=node, at=_now()))
            await _quietly(store.beat(run_id, steps))

        beats = asyncio.create_task(_beat(store, run_id))
        try:
            async with AsyncExitStack() as stack:
                ctx = await open_context(stack)
                state = await run_summary(ctx, patient_id, on_step)
            outcome = outcome_of(patient_id, state, dry_run=False)
            written = _written(state)
            if outcome.status in ("failed", "unknown"):
                error = outcome.error or outcome.status
            else:
                status = "done"
        except asyncio.CancelledError:
            error = "the run was cancelled (the service stopped)"
            summary_run("cancelled")
            raise
        except Exception as exc:  # the run's boundary: any failure is reported, PHI-free
            error = describe_failure(exc)
            log.warning("summary run %s failed: %s", run_id, type(exc).__name__)
            summary_run("failed")
        else:
            summary_run(status)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            await asyncio.shield(_quietly(store.finish(run_id, status, steps, written, error)))

    async def aclose(self) -> None:
        """Cancel the runs still going (at shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _beat(store: RunStore, run_id: str) -> None:
    while True:
        await asyncio.sleep(store.beat_ttl_s / 3)
        await _quietly(store.beat(run_id))


async def _quietly(update: Awaitable[None]) -> None:
    """A progress write that failed: the run goes on (its row catches up at the next write, or
    reads as stopped once its beat is older than its time to live)."""
    try:
        await update
    except RunsUnavailable as exc:
        log.warning("%s", exc)


def context_opener(
    settings: Settings,
    fhir: Callable[[], AbstractAsyncContextManager[FhirClient]],
    dicomweb_url: str | None,
) -> ContextOpener:
    """Opens a run's context as the CLI's `summarize` does: the caller's FHIR client, the
    configured model, and the PACS only when a model can use it."""

    async def open_context(stack: AsyncExitStack) -> RunContext:
        from agent.connections import open_dicomweb_client
        from tools.medgemma.factory import open_backend

        client = await stack.enter_async_context(fhir())
        model = await stack.enter_async_context(open_backend(settings))
        pacs = None
        if dicomweb_url is not None and model is not None:
            pacs = await stack.enter_async_context(open_dicomweb_client(dicomweb_url, settings))
        return RunContext(
            fhir=client,
            model=model,
            dicomweb=pacs,
            lab_timezone=settings.lab_zone,
            max_concurrency=settings.max_branch_concurrency,
        )

    return open_context
