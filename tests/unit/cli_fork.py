"""Run several `chartagent` command lines as separate processes that share one start-up.

The command modules are imported once (seconds here, most of it the agent's graph and PDF
libraries); each command line then runs in a forked child with its own stdout, stderr and exit
code, exactly as the console script runs it (`agent.cli.main`, SystemExit to an exit status, an
uncaught exception to a traceback on stderr and status 1). The bad-file tests get a real process
per input this way for the price of one import, instead of one per input.

    python cli_fork.py OUT_DIR COMMANDS_JSON [MODULE ...]

writes OUT_DIR/<i>.out, OUT_DIR/<i>.err and OUT_DIR/<i>.rc for the i-th argument list of
COMMANDS_JSON (a JSON list of lists of strings). MODULEs (e.g. agent.cli.imaging): import only
those before forking (default: every command module); `main` itself imports a command's module
when it runs (agent.cli.command_table), so a command outside MODULEs still runs, importing in the
child. Linux and macOS (os.fork).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from pathlib import Path


def _child(args: list[str], out: Path, err: Path) -> int:
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    from agent import cli

    sys.argv = ["chartagent", *args]
    try:
        cli.main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    out_dir = Path(sys.argv[1])
    commands: list[list[str]] = json.loads(sys.argv[2])
    from agent import cli

    for name in sys.argv[3:] or cli._COMMAND_MODULES:  # done once, before forking
        importlib.import_module(name)
    children: dict[int, int] = {}
    for i, args in enumerate(commands):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(args, out_dir / f"{i}.out", out_dir / f"{i}.err")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = i
    for pid, i in children.items():
        _, status = os.waitpid(pid, 0)
        (out_dir / f"{i}.rc").write_text(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main()
