"""`chartagent seed [--patients N] [--seed S] [--fhir-url URL]`: write the synthetic cohort.

Idempotent: resources are PUT at deterministic ids, so seeding again changes no counts.
Prints counts only, never patient data.
"""

from __future__ import annotations

import asyncio

import typer

from agent.cli.app import app
from agent.cli.options import resolve_fhir_url
from agent.cohort import generate_cohort
from agent.cohort.load import SeedReport, seed_cohort
from agent.fhir_connection import open_fhir_client
from fhir_adapters import FhirError


async def seed_synthetic(fhir_url: str, patients: int, seed: int) -> SeedReport:
    cohort = generate_cohort(patients, seed)
    async with open_fhir_client(fhir_url) as client:
        return await seed_cohort(client, cohort)


@app.command("seed")
def seed(
    patients: int = typer.Option(12, "--patients", min=0, max=10_000, help="Number of synthetic patients."),
    seed: int = typer.Option(7, "--seed", min=0, help="Random seed; the same seed gives the same cohort."),
    fhir_url: str | None = typer.Option(
        None, "--fhir-url", help="FHIR base URL (default: CHARTAGENT_FHIR_URL, else the embedded stack)."
    ),
) -> None:
    """Seed a deterministic synthetic cohort (CKD, diabetes, anaemia, lipids, hypertension)."""
    url = resolve_fhir_url(fhir_url)
    try:
        report = asyncio.run(seed_synthetic(url, patients, seed))
    except FhirError as exc:
        typer.secho(f"seed failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"seeded {report.patients} patients (seed {seed}) into {url} in {report.elapsed_s:.1f} s: "
        f"{report.created} created, {report.updated} updated"
    )
    for rtype, count in report.resources_by_type.items():
        typer.echo(f"  {rtype:<18} {count}")
