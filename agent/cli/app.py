"""The typer application object that every command module registers on."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from agent.cli.command_table import LazyCommandGroup

if TYPE_CHECKING:
    from agent.settings import SettingsError

app = typer.Typer(
    name="chartagent",
    help="ChartAgent: FHIR-native clinical data agent (AI-generated output, for review).",
    no_args_is_help=True,
    add_completion=False,
    # Lists every command from the static table; imports a command's module when it runs.
    cls=LazyCommandGroup,
)


@app.callback()
def check_settings(ctx: typer.Context) -> None:
    """Every command checks the CHARTAGENT_* settings before it runs; `--help` needs none."""
    # Click runs this before the command parses its own options and hands it none of them, so
    # `chartagent CMD --help` is recognised on the process's own command line.
    if ctx.resilient_parsing or "--help" in sys.argv[1:]:
        return
    # Imported here: pydantic-settings is a good part of `--help`'s start-up, which needs none.
    from agent.settings import SettingsError, load_settings

    try:
        load_settings()
    except SettingsError as exc:
        report_settings_error(exc)


def report_settings_error(exc: SettingsError) -> None:
    """One line per problem, no values (no traceback: pydantic's repeats every token and key); exit 2."""
    for line in exc.problems:
        typer.echo(f"invalid setting: {line}", err=True)
    raise typer.Exit(2) from None
