"""`chartagent seed [--patients N] [--seed S] [--imaging/--no-imaging] [--fhir-url URL]`: write
the synthetic cohort, and its imaging into the PACS.

Idempotent: FHIR resources are PUT at deterministic ids and studies the PACS already holds
are not sent again, so seeding again changes no counts. Prints counts only, never patient data.
"""

from __future__ import annotations

import asyncio

import typer

from agent.cli.app import app
from agent.cli.options import resolve_dicomweb_url, resolve_fhir_url
from agent.connections import open_dicomweb_client, open_fhir_client
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.imaging.seed import ImagingSeedReport, seed_imaging
from agent.testbed.cohort.load import SeedReport, seed_cohort
from fhir_adapters import FhirError
from tools.imaging.dicomweb import DicomWebError


async def seed_synthetic(
    fhir_url: str, patients: int, seed: int, dicomweb_url: str | None = None
) -> tuple[SeedReport, ImagingSeedReport | None]:
    """The cohort into FHIR; with a DICOMweb URL, its imaging into the PACS too."""
    cohort = generate_cohort(patients, seed)
    async with open_fhir_client(fhir_url) as fhir:
        report = await seed_cohort(fhir, cohort)
        if dicomweb_url is None:
            return report, None
        async with open_dicomweb_client(dicomweb_url) as pacs:
            imaging = await seed_imaging(fhir, pacs, cohort, dicomweb_url=dicomweb_url)
    return report, imaging


def print_imaging(report: ImagingSeedReport, dicomweb_url: str) -> None:
    typer.echo(
        f"imaging: {report.studies} studies into {dicomweb_url} in {report.elapsed_s:.1f} s "
        f"({report.instances_stored} instances stored, "
        f"{report.studies_already_stored} studies already there); "
        f"FHIR Endpoint + ImagingStudy: {report.fhir_created} created, {report.fhir_updated} updated"
    )
    for failure in report.failed:
        typer.secho(f"  study not stored: {failure}", fg="red", err=True)


@app.command("seed")
def seed(
    patients: int = typer.Option(12, "--patients", min=0, max=10_000, help="Number of synthetic patients."),
    seed: int = typer.Option(7, "--seed", min=0, help="Random seed; the same seed gives the same cohort."),
    imaging: bool | None = typer.Option(
        None,
        "--imaging/--no-imaging",
        help="Also store CT/MRI/CXR/WSI studies in the PACS (default: when a PACS is configured or running).",
    ),
    fhir_url: str | None = typer.Option(
        None, "--fhir-url", help="FHIR base URL (default: CHARTAGENT_FHIR_URL, else the embedded stack)."
    ),
    dicomweb_url: str | None = typer.Option(
        None, "--dicomweb-url", help="DICOMweb base URL (default: CHARTAGENT_DICOMWEB_URL, else the stack's)."
    ),
) -> None:
    """Seed a deterministic synthetic cohort (CKD, diabetes, anaemia, lipids, hypertension, imaging)."""
    url = resolve_fhir_url(fhir_url)
    pacs = resolve_dicomweb_url(dicomweb_url) if imaging is not False else None
    if imaging and pacs is None:
        typer.secho("--imaging needs a PACS: --dicomweb-url, CHARTAGENT_DICOMWEB_URL or `stack up`", err=True)
        raise typer.Exit(2)
    try:
        report, imaging_report = asyncio.run(seed_synthetic(url, patients, seed, pacs))
    except (FhirError, DicomWebError) as exc:
        typer.secho(f"seed failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"seeded {report.patients} patients (seed {seed}) into {url} in {report.elapsed_s:.1f} s: "
        f"{report.created} created, {report.updated} updated"
    )
    for rtype, count in report.resources_by_type.items():
        typer.echo(f"  {rtype:<18} {count}")
    if imaging_report is not None and pacs is not None:
        print_imaging(imaging_report, pacs)
        if imaging_report.failed:
            raise typer.Exit(1)
