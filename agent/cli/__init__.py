"""Command-line entry point. Each command lives in its own module and registers on `app`."""

from __future__ import annotations

import importlib

from agent.cli.app import app

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
    # Settings are checked by the app's callback before any command runs (`check_settings`).
    app()


__all__ = ["app", "main"]
