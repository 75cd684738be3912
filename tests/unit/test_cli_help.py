"""Every command's --help renders (rich markup in help text can break it at run time)."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from agent.cli import _COMMAND_MODULES
from agent.cli.app import app

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)

COMMANDS = [
    ["stack", "up"], ["stack", "down"], ["stack", "status"], ["seed"], ["summarize"], ["demo"],
    ["imaging", "prepare"], ["imaging", "overlay"], ["analyze"], ["extract-labs"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_renders(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_every_command_module_is_registered() -> None:
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert {"stack", "seed", "summarize", "demo", "imaging", "analyze", "extract-labs"} <= names
