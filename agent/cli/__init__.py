"""Command-line entry point. Each command lives in its own module and registers on `app`.

`main` imports no command module up front: the app's group (`command_table.LazyCommandGroup`)
lists the commands from a static table and imports a command's module only when it runs.
"""

from __future__ import annotations

from agent.cli.app import app
from agent.cli.command_table import COMMAND_MODULES

# Every command module; importing them all registers every command on `app` eagerly (tests).
_COMMAND_MODULES: tuple[str, ...] = COMMAND_MODULES


def main() -> None:
    # Settings are checked by the app's callback before any command runs (`check_settings`).
    app()


__all__ = ["app", "main"]
