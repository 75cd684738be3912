"""Command-line entry point. Each command lives in its own module and registers on `app`."""

from __future__ import annotations

import importlib
import sys

from agent.cli.app import app
from agent.settings import SettingsError, load_settings

# Command modules, imported for their registration side effect.
_COMMAND_MODULES: tuple[str, ...] = (
    "agent.cli.stack",
    "agent.cli.seed",
    "agent.cli.summarize",
    "agent.cli.demo",
    "agent.cli.imaging",
    "agent.cli.analyze",
    "agent.cli.extract_labs",
)


def main() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name)
    args = sys.argv[1:]
    try:
        # Every command checks the CHARTAGENT_* settings before it runs, --help excepted.
        if args and "--help" not in args:
            load_settings()
        app()
    except SettingsError as exc:
        # One line per problem, no values (no traceback: pydantic's repeats every token and key).
        for line in exc.problems:
            print(f"invalid setting: {line}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["app", "main"]
