"""The typer application object that every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="chartagent",
    help="ChartAgent: FHIR-native clinical data agent (AI-generated output, for review).",
    no_args_is_help=True,
    add_completion=False,
)
