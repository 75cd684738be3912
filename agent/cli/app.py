"""The typer application object that every command module registers on."""

from __future__ import annotations

import sys

import typer

from agent.settings import SettingsError, load_settings

app = typer.Typer(
    name="chartagent",
    help="ChartAgent: FHIR-native clinical data agent (AI-generated output, for review).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def check_settings(ctx: typer.Context) -> None:
    """Every command checks the CHARTAGENT_* settings before it runs; `--help` needs none."""
    # Click runs this before the command parses its own options and hands it none of them, so
    # `chartagent CMD --help` is recognised on the process's own command line.
    if ctx.resilient_parsing or "--help" in sys.argv[1:]:
        return
    try:
        load_settings()
    except SettingsError as exc:
        report_settings_error(exc)


def report_settings_error(exc: SettingsError) -> None:
    """One line per problem, no values (no traceback: pydantic's repeats every token and key); exit 2."""
    for line in exc.problems:
        typer.echo(f"invalid setting: {line}", err=True)
    raise typer.Exit(2) from None
