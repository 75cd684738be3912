"""The static table of `chartagent` commands and the group that imports a command's module only
when that command runs.

Command modules import the agent's graphs, the imaging and PDF libraries and MedGemma's
runtime (seconds together); `chartagent --help` and `chartagent stack status` need none of
that. The top-level help is rendered from this table; `tests/unit/test_cli_command_table.py`
checks it against the commands the modules really register.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import typer
from typer._click import Command, Context  # the click typer vendors: its groups' own types
from typer.core import TyperCommand, TyperGroup


class CommandEntry(NamedTuple):
    name: str
    # Importing it registers the command on `agent.cli.app.app`.
    module: str
    # The first paragraph of the command's help: what the top-level help lists.
    help: str


# In the order typer lists the eagerly registered app: commands first, then groups.
COMMANDS: tuple[CommandEntry, ...] = (
    CommandEntry(
        "seed",
        "agent.cli.seed",
        "Seed a deterministic synthetic cohort (CKD, diabetes, anaemia, lipids, hypertension, imaging).",
    ),
    CommandEntry(
        "summarize",
        "agent.cli.summarize",
        "Summarize lab trends and write them back as AI-labelled, preliminary FHIR resources.",
    ),
    CommandEntry(
        "ask",
        "agent.cli.ask",
        "Ask a question about one patient; every statement cites the resources it rests on.",
    ),
    CommandEntry("demo", "agent.cli.demo", "Run ChartAgent end to end on the embedded stack."),
    CommandEntry(
        "serve",
        "agent.cli.serve",
        "Serve the SMART app, its API, the chat endpoint, MCP and CDS Hooks over HTTP.",
    ),
    CommandEntry(
        "analyze",
        "agent.cli.analyze",
        "Run MedGemma on a CT, MRI, chest X-ray or whole-slide image and print the checked result.",
    ),
    CommandEntry(
        "extract-labs",
        "agent.cli.extract_labs",
        "Extract lab results (with page and bbox) from a PDF's text layer; scanned pages are listed.",
    ),
    CommandEntry(
        "stack",
        "agent.cli.stack",
        "Start, stop and inspect the embedded servers (FHIR and Orthanc on loopback).",
    ),
    CommandEntry(
        "imaging",
        "agent.cli.imaging",
        "Prepare CT, MRI, chest X-ray and whole-slide images for MedGemma; draw boxes.",
    ),
    CommandEntry(
        "jobs",
        "agent.cli.jobs",
        "Run summarization jobs over a cohort; resume, inspect, retry, cancel and prune them.",
    ),
)

COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(entry.module for entry in COMMANDS))


class NotLoadedCommand(TyperCommand):
    """Stands in for a command whose module is not imported: name and help for the listing."""

    def __init__(self, entry: CommandEntry) -> None:
        super().__init__(entry.name, help=entry.help)
        self.entry = entry


class LazyCommandGroup(TyperGroup):
    """The top-level group: every table entry is listed; its module is imported when it is resolved
    (run, or asked for its own `--help`). Commands already registered are used as they are."""

    def __init__(self, *, commands: Any = None, **attrs: Any) -> None:
        super().__init__(commands=commands, **attrs)
        registered = dict(self.commands)
        self.commands = {
            e.name: registered.pop(e.name) if e.name in registered else NotLoadedCommand(e) for e in COMMANDS
        }
        self.commands.update(registered)  # not in the table: the table test fails on these

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, NotLoadedCommand) and name is not None:
            command = self.commands[name] = load_command(command.entry)
        return name, command, rest


def load_command(entry: CommandEntry) -> Command:
    """Import the entry's module and build its command from the app it registered on."""
    from agent.cli.app import app  # here: app.py builds its group from this module

    importlib.import_module(entry.module)
    command = typer.main.get_group(app).commands.get(entry.name)
    if command is None or isinstance(command, NotLoadedCommand):
        raise RuntimeError(f"{entry.module} registers no command {entry.name!r}")
    return command
