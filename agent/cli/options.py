"""Values shared by several commands, resolved in one place."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.settings import load_settings
from agent.testbed.stack import current_dicomweb_url, current_fhir_url


def state_dir_option() -> Path:
    return load_settings().state_dir


def resolve_fhir_url(explicit: str | None) -> str:
    """--fhir-url, else CHARTAGENT_FHIR_URL, else the running embedded stack."""
    if explicit:
        return explicit.rstrip("/")
    settings = load_settings()
    if settings.fhir_url:
        return settings.fhir_url.rstrip("/")
    url = current_fhir_url(settings.state_dir)
    if url is None:
        typer.secho(
            "No FHIR server: pass --fhir-url, set CHARTAGENT_FHIR_URL, or run `chartagent stack up`.",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    return url


def resolve_dicomweb_url(explicit: str | None) -> str | None:
    """--dicomweb-url, else CHARTAGENT_DICOMWEB_URL, else the running embedded stack's Orthanc."""
    if explicit:
        return explicit.rstrip("/")
    settings = load_settings()
    if settings.dicomweb_url:
        return settings.dicomweb_url.rstrip("/")
    return current_dicomweb_url(settings.state_dir)
