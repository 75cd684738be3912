"""Run the planning graph for one patient now, in the background, and report its progress.

`POST /api/patients/{id}/summarize` starts a run (one at a time per patient: a second start while
one runs answers the running one) and `GET /api/runs/{run_id}` reports it: the graph's nodes as
they finish (LangGraph's stream of node updates), the references the run wrote, and a PHI-free
error (`agent.jobs.summarize.describe_failure`, the same words as the CLI's).

Runs live in this process's memory (the last `KEEP_FINISHED` finished ones are kept): a restart
forgets them, while what a run wrote stays on the FHIR server and the next run finds it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.jobs.summarize import describe_failure, outcome_of
from agent.settings import Settings
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from tools.writeback.pending import WriteOutcome

__all__ = ["KEEP_FINISHED", "RunRegistry", "RunStep", "RunView", "run_summary"]

log = logging.getLogger(__name__)

KEEP_FINISHED: Final = 200
RunStatus = Literal["running", "done", "failed"]


class RunStep(BaseModel):
    node: str
    at: str


class RunView(BaseModel):
    run_id: str
    status: RunStatus
    steps: list[RunStep]
    written: list[str]
    error: str | None


@dataclass
class _Run:
    run_id: str
    patient_id: str
    status: RunStatus = "running"
    steps: list[RunStep] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    error: str | None = None
    task: asyncio.Task[None] | None = None

    def view(self) -> RunView:
        return RunView(
            run_id=self.run_id,
            status=self.status,
            steps=list(self.steps),
            written=list(self.written),
            error=self.error,
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _written(state: SummarizeState) -> list[str]:
    writes: list[WriteOutcome] = list(state.get("writes") or [])
    return sorted({ref for w in writes if w.stored for ref in w.references.values()})


async def run_summary(ctx: RunContext, patient_id: str, on_step: Callable[[str], None]) -> SummarizeState:
    """The planning graph for one patient, as `summarize_patient` runs it without checkpoints,
    calling `on_step(node)` as each node finishes."""
    config: RunnableConfig = {"max_concurrency": ctx.max_concurrency}
    state: dict[str, Any] = {}
    stream = summarize_graph.astream(
        {"patient_id": patient_id}, config=config, context=ctx, stream_mode=["updates", "values"]
    )
    async for mode, chunk in stream:
        if mode == "updates" and isinstance(chunk, dict):
            for node in chunk:
                on_step(str(node))
        elif mode == "values" and isinstance(chunk, dict):
            state = chunk
    return state  # type: ignore[return-value]  # the graph's final values are its state


# Opens what a run needs (the caller's FHIR client, the model, the PACS) and closes it after.
ContextOpener = Callable[[AsyncExitStack], Awaitable[RunContext]]


class RunRegistry:
    """The runs of this process: one running per patient; finished ones kept for their reports."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._running: dict[str, str] = {}

    def get(self, run_id: str) -> _Run | None:
        return self._runs.get(run_id)

    def start(self, patient_id: str, open_context: ContextOpener) -> tuple[_Run, bool]:
        """(the run, whether it started now): a patient's running run is answered, not doubled."""
        running = self._running.get(patient_id)
        if running is not None:
            return self._runs[running], False
        run = _Run(run_id=secrets.token_urlsafe(12), patient_id=patient_id)
        self._runs[run.run_id] = run
        self._running[patient_id] = run.run_id
        run.task = asyncio.create_task(self._execute(run, open_context), name=f"summary-run-{run.run_id}")
        self._forget_old()
        return run, True

    async def _execute(self, run: _Run, open_context: ContextOpener) -> None:
        try:
            async with AsyncExitStack() as stack:
                ctx = await open_context(stack)
                state = await run_summary(
                    ctx, run.patient_id, lambda node: run.steps.append(RunStep(node=node, at=_now()))
                )
            outcome = outcome_of(run.patient_id, state, dry_run=False)
            run.written = _written(state)
            if outcome.status in ("failed", "unknown"):
                run.status, run.error = "failed", outcome.error or outcome.status
            else:
                run.status = "done"
        except asyncio.CancelledError:
            run.status, run.error = "failed", "the run was cancelled (the service stopped)"
            raise
        except Exception as exc:  # the run's boundary: any failure is reported, PHI-free
            run.status, run.error = "failed", describe_failure(exc)
            log.warning("summary run %s failed: %s", run.run_id, type(exc).__name__)
        finally:
            self._running.pop(run.patient_id, None)

    def _forget_old(self) -> None:
        finished = [rid for rid, r in self._runs.items() if r.status != "running"]
        for rid in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._runs[rid]

    async def aclose(self) -> None:
        """Cancel the runs still going (at shutdown)."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
