"""`chartagent demo`: stack up, seed the synthetic cohort, summarize everyone, show what was
written and where to look. The stack keeps running afterwards (`chartagent stack down`)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import typer

from agent.cli.app import app
from agent.cli.options import state_dir_option
from agent.cli.seed import print_imaging, seed_synthetic
from agent.cli.summarize import outcome_table, output_console, problem_lines, run_summaries
from agent.testbed import stack as embedded
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.imaging.seed import cohort_imaging_plan
from fhir_adapters import FhirError
from tools.imaging.dicomweb import DicomWebError
from tools.writeback import AIAST, DOCUMENT_EXTRACTION_TAG
from tools.writeback.builders import TREND_CODE_SYSTEM


@app.command("demo")
def demo(
    patients: int = typer.Option(12, "--patients", min=1, max=1000, help="Synthetic patients to seed."),
    seed: int = typer.Option(7, "--seed", min=0, help="Cohort seed."),
) -> None:
    """Run ChartAgent end to end on the embedded stack."""
    console = output_console()
    try:
        status = embedded.up(state_dir_option())
    except embedded.StackError as exc:
        typer.secho(f"stack up failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    url, pacs = status.fhir.url, status.dicomweb.url
    assert url is not None
    console.print(f"[bold]1. Embedded stack[/bold] FHIR {url}  DICOMweb {pacs or '(not running)'}")
    try:
        report, imaging = asyncio.run(seed_synthetic(url, patients, seed, pacs))
        console.print(
            f"[bold]2. Seeded[/bold] {report.patients} synthetic patients (seed {seed}): "
            + ", ".join(f"{n} {t}" for t, n in sorted(report.resources_by_type.items()))
        )
        if imaging is not None and pacs is not None:
            print_imaging(imaging, pacs)
        outcomes, _ = asyncio.run(
            run_summaries(url, None, dry_run=False, show_progress=True, dicomweb_url=pacs)
        )
    except (FhirError, DicomWebError) as exc:
        typer.secho(f"demo failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    console.print("[bold]3. Summarized[/bold] every patient and wrote the results back:")
    console.print(outcome_table(outcomes, "What ChartAgent wrote (AI-generated, status preliminary)"))
    for line in problem_lines(outcomes):
        typer.echo(line)
    aiast = quote(f"{AIAST['system']}|{AIAST['code']}", safe="")
    first = next((o.patient_id for o in outcomes if o.status in ("written", "unchanged")), None)
    console.print(
        "[bold]4. Where to look[/bold] (results transcribed from lab-report PDFs, trend Observations,"
    )
    console.print(
        "   a longitudinal DiagnosticReport with a trend table and plots, Provenance, Devices; all AIAST)"
    )
    trend = quote(f"{TREND_CODE_SYSTEM}|lab-trend", safe="")
    transcribed = quote(f"{DOCUMENT_EXTRACTION_TAG['system']}|{DOCUMENT_EXTRACTION_TAG['code']}", safe="")
    # Plain echo: URLs must not be wrapped.
    typer.echo(
        f"  Lab-report PDFs:     {url}/DocumentReference?type={quote('http://loinc.org|11502-2', safe='')}"
    )
    typer.echo(f"  Transcribed results: {url}/Observation?_tag={transcribed}   (page + bbox in an extension)")
    typer.echo(f"  AI summary reports:  {url}/DiagnosticReport?_security={aiast}")
    typer.echo(f"  AI trend results:    {url}/Observation?code={trend}")
    if first:
        typer.echo(
            f"  One patient, with provenance: {url}/DiagnosticReport?subject=Patient/{first}"
            "&_revinclude=Provenance:target"
        )
    if pacs is not None:
        typer.echo(f"  Imaging studies:     {url}/ImagingStudy   (each points to its DICOMweb Endpoint)")
        typer.echo(f"  Images (QIDO-RS):    {pacs}/studies")
        ct = next(
            (s for s in cohort_imaging_plan(generate_cohort(patients, seed)).studies if "CT" in s.modalities),
            None,
        )
        if ct is not None:
            typer.echo(
                f"  Prepare a CT for MedGemma: chartagent imaging prepare ct dicomweb:{ct.uid} --out ct.npz"
            )
    typer.echo("  Run it again: nothing new is written (conditional creates on deterministic identifiers).")
    typer.echo("  The stack keeps running; stop it with `chartagent stack down`.")
    if status.app.url and status.ehr.url:
        console.print(
            "[bold]5. The SMART app[/bold] (approve or reject the AI results, trends, imaging, chat),"
            " launched from the EHR stand-in:"
        )
        if first:
            typer.echo(f"  Launch for one patient: {status.ehr.url}/launch?patient={first}")
        typer.echo(f"  Every patient:          {status.ehr.url}/")
        typer.echo(f"  App:                    {status.app.url}/app/   (a launch opens it with a session)")
    if any(o.status in ("failed", "unknown") for o in outcomes):
        raise typer.Exit(1)
