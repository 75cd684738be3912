#!/usr/bin/env python3
"""Benchmark: start-up of `chartagent --help` and `chartagent stack status`, lazy vs eager imports.

Each run is a fresh process, timed from spawn to exit (wall clock), with CHARTAGENT_STATE_DIR an
empty folder (no stack runs there: `stack status` reports both servers down and exits 1):

- ours: the console script as installed (`.venv/bin/chartagent ...`): the app's group lists the
  commands from the static table and imports only the module of the command that runs;
- baseline, measured in the same run: the start-up before lazy loading, i.e. every command
  module imported first (for its registration), then the same app, which is what `main` did.

Both sides must print the same output and exit with the same status before anything is timed.
The target is under 0.3 s for each command line; the figures are medians.

    .venv/bin/python bench/bench_cli_start.py [--runs 9] [--baseline-runs 3]

Lines: `bench cli-start: <ratio>x (<command>: <ours> vs <baseline>; under 0.3 s: yes|no)`,
ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.cli.command_table import COMMAND_MODULES

TARGET_S = 0.3
COMMAND_LINES: tuple[tuple[str, ...], ...] = (("--help",), ("stack", "status"), ("stack", "status", "--json"))

# What `agent.cli.main` did before: import every command module, then run the app.
EAGER = (
    "import importlib, sys\n"
    f"for name in {COMMAND_MODULES!r}:\n"
    "    importlib.import_module(name)\n"
    "from agent.cli import main\n"
    "sys.argv[0] = 'chartagent'\n"
    "main()\n"
)


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("chartagent")
    if script.is_file():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'chartagent'; from agent.cli import main; main()",
    ]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    return time.perf_counter() - start, result


def median_wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(run(argv, env)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args()
    ours_argv = console_script()
    eager_argv = [sys.executable, "-c", EAGER]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as state_dir:
        env = {**os.environ, "CHARTAGENT_STATE_DIR": state_dir, "COLUMNS": "100"}
        for line in COMMAND_LINES:
            _, ours = run([*ours_argv, *line], env)
            _, eager = run([*eager_argv, *line], env)
            if (ours.returncode, ours.stdout) != (eager.returncode, eager.stdout):
                raise SystemExit(f"chartagent {' '.join(line)}: output differs from the eager start")
        floor = median_wall([sys.executable, "-c", "pass"], env, args.runs)
        print(f"python start-up alone (python -c pass): {floor:.3f} s median of {args.runs}")
        for line in COMMAND_LINES:
            shown = "chartagent " + " ".join(line)
            baseline = median_wall([*eager_argv, *line], env, args.baseline_runs)
            ours_s = median_wall([*ours_argv, *line], env, args.runs)
            under = "yes" if ours_s < TARGET_S else "no"
            print(
                f"{shown}: {ours_s:.3f} s median of {args.runs} (under {TARGET_S} s: {under}); "
                f"eager import of every command module first, as before: {baseline:.3f} s "
                f"median of {args.baseline_runs}"
            )
            figures = f"{shown}: {ours_s:.3f} s vs {baseline:.3f} s; under {TARGET_S} s: {under}"
            print(f"bench cli-start: {baseline / ours_s:.1f}x ({figures})")


if __name__ == "__main__":
    main()
