"""The static command table (`agent.cli.command_table`) cannot drift from the commands the modules
register, and the console script imports a command's module only when that command runs."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from agent.cli.app import app
from agent.cli.command_table import (
    COMMAND_MODULES,
    COMMANDS,
    CommandEntry,
    LazyCommandGroup,
    NotLoadedCommand,
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module)

# A fresh interpreter runs `chartagent ARGS` through the console script's `main` and reports, on
# the last line of stderr, which command modules it imported.
_DRIVER = """
import json, sys
sys.argv = ["chartagent", *sys.argv[1:]]
from agent.cli import main
from agent.cli.command_table import COMMAND_MODULES
try:
    main()
finally:
    sys.stdout.flush()
    print(json.dumps(sorted(m for m in COMMAND_MODULES if m in sys.modules)), file=sys.stderr)
"""


def _run_fresh(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )
    *err, loaded = result.stderr.rstrip("\n").split("\n")
    return result.returncode, result.stdout, "\n".join(err), json.loads(loaded)


def _listed_help(text: str | None) -> str:
    """What the top-level help lists for a command: the first paragraph of its help, on one line."""
    return inspect.cleandoc(text or "").split("\n\n")[0].replace("\n", " ").strip()


def _describe(command: Any) -> dict[str, Any]:
    """A command's shape: help, parameters and sub-commands (recursively)."""
    subcommands = getattr(command, "commands", {})
    return {
        "help": command.help,
        "params": [(p.name, p.opts, p.required) for p in command.params],
        "commands": {name: _describe(sub) for name, sub in subcommands.items()},
    }


def _registered() -> dict[str, tuple[str, Any]]:
    """Every command registered on the eager app: name -> (defining module, click command)."""
    group = typer.main.get_group(app)
    found: dict[str, tuple[str, Any]] = {}
    for info in app.registered_commands:
        assert info.name, info
        assert info.callback, info
        found[info.name] = (info.callback.__module__, group.commands[info.name])
    for group_info in app.registered_groups:
        callbacks = [c.callback for c in group_info.typer_instance.registered_commands if c.callback]
        assert group_info.name, group_info
        assert callbacks, group_info
        found[group_info.name] = (callbacks[0].__module__, group.commands[group_info.name])
    return found


def test_table_names_modules_and_help_lines_are_the_registered_ones() -> None:
    registered = _registered()
    assert {e.name for e in COMMANDS} == set(registered)
    for entry in COMMANDS:
        module, command = registered[entry.name]
        assert entry.module == module, entry.name
        assert entry.help == _listed_help(command.help), entry.name


def test_table_lists_commands_before_groups_as_typer_does() -> None:
    registered = _registered()
    groups = [name for name, (_, command) in registered.items() if getattr(command, "commands", None)]
    names = [e.name for e in COMMANDS]
    assert names[-len(groups) :] == [n for n in names if n in groups], names


def test_an_unregistered_table_entry_fails_to_load() -> None:
    group = LazyCommandGroup(name="chartagent")
    group.commands["ghost"] = NotLoadedCommand(CommandEntry("ghost", "agent.cli.seed", "x"))
    ctx = typer.Context(group)
    with pytest.raises(RuntimeError, match="registers no command 'ghost'"):
        group.resolve_command(ctx, ["ghost"])


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda e: e.name)
def test_lazily_loaded_command_is_the_registered_one(entry: CommandEntry) -> None:
    group = LazyCommandGroup(name="chartagent")  # as a fresh start builds it: placeholders only
    ctx = typer.Context(group)
    name, command, rest = group.resolve_command(ctx, [entry.name, "--flag"])
    assert (name, rest) == (entry.name, ["--flag"])
    assert _describe(command) == _describe(_registered()[entry.name][1])


def test_top_level_help_imports_no_command_module_and_lists_them_as_the_eager_app() -> None:
    code, out, err, loaded = _run_fresh("--help")
    assert code == 0, err
    assert loaded == []
    eager = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert eager.exit_code == 0
    assert out == eager.output
    for entry in COMMANDS:
        assert f" {entry.name} " in out


def test_stack_status_imports_only_the_stack_command(tmp_path: Path) -> None:
    code, out, err, loaded = _run_fresh(
        "stack", "status", "--json", env={"CHARTAGENT_STATE_DIR": str(tmp_path / "state")}
    )
    assert (code, out, loaded) == (1, "{}\n", ["agent.cli.stack"]), err


def test_a_command_help_loads_that_command() -> None:
    code, out, err, loaded = _run_fresh("stack", "--help")
    assert code == 0, err
    assert loaded == ["agent.cli.stack"]
    assert all(sub in out for sub in (" up ", " down ", " status ")), out


def test_settings_are_checked_before_a_lazily_loaded_command(tmp_path: Path) -> None:
    code, out, err, _ = _run_fresh(
        "stack",
        "status",
        env={"CHARTAGENT_FHIR_MAX_CONCURRENCY": "0", "CHARTAGENT_STATE_DIR": str(tmp_path)},
    )
    assert (code, out) == (2, "")
    assert "invalid setting: CHARTAGENT_FHIR_MAX_CONCURRENCY" in err


def test_an_unknown_command_is_a_usage_error_with_a_suggestion() -> None:
    code, _, err, loaded = _run_fresh("stak")
    assert code == 2
    assert "No such command 'stak'. Did you mean 'stack'?" in err
    assert loaded == []
