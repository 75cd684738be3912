#!/usr/bin/env python3
"""Benchmark: the job ledger's reads of a large run as the Temporal worker makes them.

A run on Temporal is cut into chunks of 200 patients (agent.jobs.temporal_workflows); each chunk's
first activity asks the ledger for its patients still to run (`chunk_patients`), and the run's
first asks how many chunks there are (`plan_run`). A nightly job of a health system holds 100,000
patients: 500 chunks.

Measured on a SQLite ledger of `--patients` pending patients (one run), through the worker's own
activities (temporalio's `ActivityEnvironment`, no server):

- `windowed` (the worker now): `plan_run` counts the patients, each `chunk_patients` reads its
  window of the run (`Ledger.patients(run, offset=, limit=)`);
- `whole run` (the baseline, what the worker did before): each activity read every patient row of
  the run and sliced it.

Both must give the same chunks. Then one failed patient's attempt count (`Ledger.attempts`, one
row) against the whole run read that a failed activity made before, per failure.

    .venv/bin/python bench/bench_ledger_scale.py [--patients 20000]

Last line: `bench ledger-chunks: (ratio)x (windowed S s vs whole run S s for N chunks of P patients)`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.testing import ActivityEnvironment

from agent.jobs.ledger import Ledger, open_ledger
from agent.jobs.temporal_worker import RunActivities
from agent.jobs.temporal_workflows import ChunkRequest
from agent.settings import Settings

RUN = "bench"
URL = "http://fhir.test/fhir"
CHUNK = 200
_TO_RUN = frozenset({"pending", "running"})


async def windowed(env: ActivityEnvironment, activities: RunActivities) -> list[list[str]]:
    chunks: int = await env.run(activities.plan_run, ChunkRequest(RUN, 0, CHUNK))
    return [await env.run(activities.chunk_patients, ChunkRequest(RUN, i, CHUNK)) for i in range(chunks)]


async def whole_run(ledger: Ledger) -> list[list[str]]:
    """The baseline: every activity reads the run whole (as before) and slices it."""
    chunks = math.ceil(len(await ledger.patients(RUN)) / CHUNK)
    got = []
    for i in range(chunks):
        rows = await ledger.patients(RUN)
        got.append([r.patient_id for r in rows[i * CHUNK : (i + 1) * CHUNK] if r.status in _TO_RUN])
    return got


async def run(patients: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        async with open_ledger(Settings(state_dir=Path(tmp), checkpoint_url=None)) as ledger:
            await ledger.create_run(RUN, cohort="all", since=None, executor="temporal", fhir_url=URL)
            await ledger.add_patients(RUN, [f"p{i:07d}" for i in range(patients)])
            activities = RunActivities(SimpleNamespace(ledger=ledger, fhir_url=URL))  # type: ignore[arg-type]
            env = ActivityEnvironment()
            start = time.perf_counter()
            ours = await windowed(env, activities)
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            theirs = await whole_run(ledger)
            theirs_s = time.perf_counter() - start
            if ours != theirs:
                raise SystemExit("the windowed chunks differ from the whole run's")
            start = time.perf_counter()
            for i in range(20):
                await ledger.attempts(RUN, f"p{i:07d}")
            one_s = (time.perf_counter() - start) / 20
            start = time.perf_counter()
            await ledger.patients(RUN)
            all_s = time.perf_counter() - start
    print(f"{patients} patients, {len(ours)} chunks of {CHUNK}; a failed patient's attempt count: "
          f"{one_s * 1000:.2f} ms (one row) vs {all_s * 1000:.0f} ms (the whole run, as before)")  # fmt: skip
    print(f"bench ledger-chunks: {theirs_s / ours_s:.1f}x (windowed {ours_s:.2f} s vs whole run "
          f"{theirs_s:.2f} s for {len(ours)} chunks of {CHUNK} patients)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--patients", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(run(args.patients))


if __name__ == "__main__":
    main()
