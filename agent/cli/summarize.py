"""`chartagent summarize --patient ID | --all [--dry-run] [--json]`."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import IO, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.checkpoints import open_checkpointer, open_store
from agent.cli.app import app
from agent.cli.options import resolve_dicomweb_url, resolve_fhir_url
from agent.connections import open_dicomweb_client, open_fhir_client
from agent.context import RunContext
from agent.jobs.summarize import Checkpointing, PatientOutcome, list_patient_ids, summarize_many
from agent.planning.change_marks import ChangeMarks
from agent.settings import load_settings
from agent.state import SummarizeState
from fhir_adapters import FhirError
from tools.medgemma.config import ModelConfig
from tools.medgemma.errors import ModelConfigurationError
from tools.medgemma.factory import open_backend
from tools.writeback.pending import WriteKind, of_kind, posting_order


def dry_run_payload(outcome: PatientOutcome, state: SummarizeState | None) -> dict[str, Any]:
    """`{"facts": {...}, "documents": [...], "bundle": {...}, "writes": [...]}`: what would be
    written, and why. `bundle` is the longitudinal summary's transaction; `writes` every pending
    write (transcriptions, imaging reports, the summary), each its own transaction."""
    facts = state.get("facts") if state else None
    documents = state.get("documents") if state else None
    pending = sorted(state.get("pending") or [], key=posting_order) if state else []
    summary = next((p.bundle for p in of_kind(pending, WriteKind.LONGITUDINAL_SUMMARY)), None)
    return {
        "patient_id": outcome.patient_id,
        "status": outcome.status,
        "error": outcome.error,
        "facts": facts.model_dump(mode="json") if facts else None,
        # Per lab-report PDF: what was read, what would be written, what was left and why.
        "documents": [d.model_dump(mode="json") for d in documents.documents] if documents else [],
        "imaging": outcome.imaging,
        "bundle": summary,
        "writes": [p.model_dump(mode="json") for p in pending],
    }


async def run_summaries(
    fhir_url: str,
    patient: str | None,
    dry_run: bool,
    show_progress: bool,
    dicomweb_url: str | None = None,
    run_id: str | None = None,
    full: bool = False,
) -> tuple[list[PatientOutcome], list[dict[str, Any]]]:
    """`run_id`: checkpoint each patient's run under it (a dry run keeps none): the same id again
    after a crash reports the finished patients, resumes the interrupted one and runs the rest.
    A run that reaches every patient deletes its checkpoints at the end."""
    payloads: list[dict[str, Any]] = []
    settings = load_settings()
    async with AsyncExitStack() as stack:
        checkpointing = None
        marks = None
        if not dry_run:
            store = await stack.enter_async_context(open_store(settings))
            marks = ChangeMarks(store, fhir_url)
            if run_id is not None:
                saver = await stack.enter_async_context(open_checkpointer(settings))
                checkpointing = Checkpointing(saver=saver, store=store, run_id=run_id)
        client = await stack.enter_async_context(open_fhir_client(fhir_url, settings))
        model = await stack.enter_async_context(open_backend(settings))
        # The PACS is opened only when a model can use it: without one no image is fetched.
        pacs = None
        if dicomweb_url is not None and model is not None:
            pacs = await stack.enter_async_context(open_dicomweb_client(dicomweb_url, settings))
        ids = [patient] if patient else await list_patient_ids(client)
        ctx = RunContext(
            fhir=client,
            dry_run=dry_run,
            model=model,
            dicomweb=pacs,
            lab_timezone=settings.lab_zone,
            max_concurrency=settings.max_branch_concurrency,
            # --full: every record is read (a change check cannot see hard deletes); the runs
            # still leave their marks for the next one.
            change_marks=marks,
            check_changes=not full,
        )
        progress = Progress(
            TextColumn("summarizing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not show_progress,
        )
        with progress:
            task = progress.add_task("patients", total=len(ids))

            def done(outcome: PatientOutcome, state: SummarizeState | None) -> None:
                if dry_run:
                    payloads.append(dry_run_payload(outcome, state))
                progress.advance(task)

            outcomes = await summarize_many(ctx, ids, on_done=done, checkpointing=checkpointing)
        if checkpointing is not None:
            # Every patient ran to an outcome: nothing is left to resume (a crash never gets here).
            await checkpointing.forget(ids)
    return outcomes, payloads


# Off a terminal (a pipe, a file, CI logs) a line is as long as its content: nothing is cut or wrapped.
_OFF_TERMINAL_WIDTH: Final = 100_000


def output_console(file: IO[str] | None = None) -> Console:
    """A console for results: on a terminal as wide as it is, elsewhere wide enough that the
    `problem` column (and every URL) is printed whole instead of cut at 80 columns."""
    console = Console(file=file)
    if console.is_terminal:
        return console
    return Console(file=file, width=_OFF_TERMINAL_WIDTH)


def outcome_table(outcomes: list[PatientOutcome], title: str) -> Table:
    table = Table(title=title)
    columns = ("patient", "status", "lab series", "from PDFs", "new", "already there", "rejected", "problem")
    for column in columns:
        table.add_column(column)
    for o in outcomes:
        problems = [o.error] if o.error else []
        if o.confirmed:
            problems.append(f"answer lost; read back: {sum(o.confirmed.values())} resources stored")
        if o.superseded:
            problems.append(f"replaced {len(o.superseded)} earlier report(s)")
        if o.document_errors:  # the details follow the table (`problem_lines`)
            problems.append(f"{len(o.document_errors)} lab PDF(s) not read")
        table.add_row(
            o.patient_id,
            o.status,
            str(o.series),
            str(o.from_documents),
            str(sum(o.created.values())),
            str(sum(o.existing.values())),
            str(o.rejected),
            "; ".join(problems),
        )
    return table


def problem_lines(outcomes: list[PatientOutcome]) -> list[str]:
    """One line per lab-report PDF that could not be read (references and problems, no patient data)."""
    return [f"  {o.patient_id}: {e}" for o in outcomes for e in o.document_errors]


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@app.command("summarize")
def summarize(
    patient: str | None = typer.Option(None, "--patient", help="FHIR id of one patient."),
    all_patients: bool = typer.Option(False, "--all", help="Every patient on the server."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compute and build; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with --dry-run: facts and bundle)."),
    fhir_url: str | None = typer.Option(
        None, "--fhir-url", help="FHIR base URL (default: CHARTAGENT_FHIR_URL, else the embedded stack)."
    ),
    dicomweb_url: str | None = typer.Option(
        None,
        "--dicomweb-url",
        help="DICOMweb base URL for imaging comparisons (default: CHARTAGENT_DICOMWEB_URL, else the stack).",
    ),
    run_id: str | None = typer.Option(
        None,
        "--run-id",
        help="Checkpoint the run under this id; the same id after a crash resumes it (see the README).",
    ),
    full: bool = typer.Option(
        False,
        "--full",
        help="Read every record even when nothing changed since the last run (notices hard deletes).",
    ),
) -> None:
    """Summarize lab trends and write them back as AI-labelled, preliminary FHIR resources."""
    if (patient is None) == (not all_patients):
        typer.secho("Give exactly one of --patient ID or --all.", fg="red", err=True)
        raise typer.Exit(2)
    url = resolve_fhir_url(fhir_url)
    show_progress = all_patients and sys.stderr.isatty()
    try:
        typer.echo(ModelConfig.from_settings(load_settings()).describe(), err=True)
        pacs = resolve_dicomweb_url(dicomweb_url)
        if not dry_run:
            # Every run keeps checkpoints; its id is what resumes it after a crash.
            run_id = run_id or new_run_id()
            typer.echo(f"run {run_id} (after a crash: --run-id {run_id} resumes it)", err=True)
        outcomes, payloads = asyncio.run(
            run_summaries(url, patient, dry_run, show_progress, pacs, run_id, full)
        )
    except ModelConfigurationError as exc:
        typer.secho(f"model configuration: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except FhirError as exc:
        typer.secho(f"summarize failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        if dry_run:
            out: Any = payloads[0] if patient else payloads
        else:
            out = [o.model_dump(mode="json") for o in outcomes]
        typer.echo(json.dumps(out, indent=2))
    else:
        title = f"ChartAgent summaries ({'dry run' if dry_run else url})"
        output_console().print(outcome_table(outcomes, title))
        for line in problem_lines(outcomes):
            typer.echo(line)
    if any(o.status in ("failed", "unknown") for o in outcomes):
        raise typer.Exit(1)
