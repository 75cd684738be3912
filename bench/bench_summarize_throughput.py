#!/usr/bin/env python3
"""Benchmark: cohort throughput of the summarization job, first run and unchanged rerun.

Starts the embedded FHIR server (sekmet, in its own process, via `agent.testbed.stack`) on a free
loopback port and seeds a synthetic cohort (`agent.testbed.cohort`, lab-report PDFs included). No
model (the templated narrative) and no PACS (imaging work deferred), so the figures are
ChartAgent's own cost and the server's.

The cohort is split in two arms of different patients with the same mix (profiles repeat every 15
patients, so arms of a multiple of 15 hold the same mix):

- `concurrent`: the way `chartagent jobs run --executor local` runs a cohort: a run in the job
  ledger, `agent.jobs.local_executor.run_local` with `--concurrency` patients at a time over one
  `JobWorker` (one FhirClient, one change-mark store, the ledger's claims and leases);
- `one at a time`: the baseline, `agent.jobs.summarize.summarize_patient` one patient after another
  (no ledger, no batch check).

Each arm runs twice: the first run (reads every record, every PDF, computes the trends, draws the
plots, writes every transaction; each patient must end written) and the unchanged rerun with
per-patient checks (the change mark the first run left, one round of `_lastUpdated` searches per
patient; each must end unchanged). Then the concurrent arm's unchanged rerun as `jobs run` does it:
one cohort-level change check for the run (`JobWorker.check_batch`, timed with the rerun), after
which the patients it found unchanged are recorded in one ledger transaction; and once more, the
next night. Each job ends with its end check (`JobWorker.verify_batch`), timed with its run and
also on its own: the first run's reads what that run wrote (the server reads it once) and verifies
the marks as of the run's end, so the morning's window holds none of it. That cost is moved from
the morning's rerun into the first run, not removed: the first run is reported with it, and
without it beside. The per-patient
rerun of the same arm is their baseline. Measured per arm and run: patients/s (wall clock) and
ChartAgent CPU-seconds per patient (`time.process_time()` of this process); beside it the server's
CPU-seconds per patient (its process, from /proc: sekmet is one uvicorn process, so it can use one
core at most) and the `tesseract` subprocesses' that read the cohort's scanned pages (every fourth
patient has one; from `getrusage(RUSAGE_CHILDREN)`): ChartAgent's own too, but not in its
process's figure. On 2 cores the three together bound the rate: 2 / (ChartAgent + server +
tesseract) patients/s.

The verified instant's margin (`CHARTAGENT_CHANGE_CHECK_MARGIN_S`, 60 s by default: writes that
commit late on a database-backed server) is 1 s here: sekmet stamps and commits every write under
one lock, and with 60 s the first rerun's window would also hold the seeding that ran just before
(a nightly window holds a day of writes, next to which the margin is nothing).

Before its last line it prints the job ledger's size after the four jobs (`ledger: ...`: runs,
patient rows, bytes on disk a row and how much of that is the written identifiers): what a nightly
job adds for each patient it sees, and why `chartagent jobs prune` exists.

    .venv/bin/python bench/bench_summarize_throughput.py [--patients 105] [--baseline 30] [--concurrency 8]

Line: `bench summarize-throughput: first run X patients/s (Y CPU-s/patient; server Z, tesseract T),
unchanged rerun ...;
vs one at a time ... (ratio)x`, ratio = concurrent patients/s / one-at-a-time patients/s on the
first run; then `unchanged rerun, cohort-level check ... vs per-patient checks ... (ratio)x` and the
next night's.
Aims on 2 cores (issue 12): first run >= 4 patients/s and <= 0.25 CPU-s per patient;
unchanged rerun >= 20 patients/s and <= 0.05 CPU-s per patient.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.checkpoints import open_change_marks
from agent.context import RunContext
from agent.jobs.activities import JobWorker
from agent.jobs.ledger import LEDGER_FILE
from agent.jobs.local_executor import run_local
from agent.jobs.summarize import PatientOutcome, describe_failure, outcome_of, summarize_patient
from agent.planning.change_marks import ChangeMarks
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack import FhirServer, FhirServerSpec
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient

SEED = 47
# After the cohort's last results (agent.testbed.cohort.REFERENCE_DATE): none lies in the future.
NOW = datetime(2026, 7, 2, 3, 4, 5, tzinfo=UTC)
# The verified instant's margin (see the module's docstring).
MARGIN_S = 1.0


@contextmanager
def embedded_server() -> Iterator[FhirServer]:
    with tempfile.TemporaryDirectory(prefix="bench-fhir-") as tmp:
        server = FhirServer(FhirServerSpec(port=free_port(), state_dir=Path(tmp)))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a running process so far (Linux /proc); 0 without one."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(server: FhirServer) -> float:
    """User + system CPU seconds of the server's process so far."""
    return process_cpu_s(server.pid)


def ocr_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children: the `tesseract` subprocesses
    that read the scanned pages (the server is a child too, but is not reaped before the end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Wall clock, this process's CPU, the server's CPU and the finished `tesseract` children's CPU, now.
Reading = tuple[float, float, float, float]


def reading(server: FhirServer) -> Reading:
    return time.perf_counter(), time.process_time(), server_cpu_s(server), ocr_cpu_s()


@dataclass(frozen=True)
class Pass:
    patients: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    ocr_cpu_s: float

    @property
    def rate(self) -> float:
        return self.patients / self.wall_s

    @property
    def cpu_per_patient(self) -> float:
        return self.cpu_s / self.patients

    @classmethod
    def between(cls, patients: int, start: Reading, end: Reading) -> Pass:
        """The pass of ``patients`` from reading ``start`` to reading ``end``."""
        return cls(patients, *(b - a for a, b in zip(start, end, strict=True)))

    def line(self) -> str:
        server, ocr = self.server_cpu_s / self.patients, self.ocr_cpu_s / self.patients
        return (
            f"{self.rate:.2f} patients/s ({self.cpu_per_patient:.3f} CPU-s/patient; server {server:.3f}, "
            f"tesseract {ocr:.3f})"
        )


async def one(fhir: FhirClient, marks: ChangeMarks, patient_id: str) -> PatientOutcome:
    ctx = RunContext(fhir=fhir, now=NOW, change_marks=marks)
    try:
        return outcome_of(patient_id, await summarize_patient(ctx, patient_id), dry_run=False)
    except Exception as exc:  # reported and checked below, as a job would
        return PatientOutcome(patient_id=patient_id, status="failed", error=describe_failure(exc))


async def timed(
    server: FhirServer,
    fhir: FhirClient,
    marks: ChangeMarks,
    ids: Sequence[str],
    concurrency: int,
    expected: str,
    label: str,
) -> Pass:
    """Run every patient, `concurrency` at a time; every outcome must be `expected`."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(pid: str) -> PatientOutcome:
        async with gate:
            return await one(fhir, marks, pid)

    gc.collect()
    start = reading(server)
    outcomes = await asyncio.gather(*(bounded(pid) for pid in ids))
    result = Pass.between(len(ids), start, reading(server))
    wrong = [o for o in outcomes if o.status != expected]
    if wrong:
        statuses = dict(Counter(o.status for o in wrong))
        raise SystemExit(f"{label}: {len(wrong)} not {expected}: {statuses}; first: {wrong[0].error}")
    print(f"{label}: {result.patients} patients in {result.wall_s:.1f} s: {result.line()}")
    return result


async def timed_job(
    server: FhirServer, worker: JobWorker, ids: Sequence[str], concurrency: int, expected: str, label: str,
    *, check_batch: bool = True,
) -> tuple[Pass, Pass]:  # fmt: skip
    """A ledger run of `ids` through the local executor, as `chartagent jobs run` runs it; every
    patient must end `expected` (done with writes, or unchanged). The run with its end check
    (`JobWorker.verify_batch`, run here after `run_local` as `run_local` runs it, to be timed on
    its own), and the end check alone (zero without a batch check)."""
    run_id = f"bench-{label.replace(' ', '-').replace(',', '')}"
    gc.collect()
    start = reading(server)
    await worker.ledger.create_run(
        run_id, cohort="bench", since=None, executor="local", fhir_url=server.base_url
    )
    await worker.ledger.add_patients(run_id, ids)
    await run_local(worker, run_id, concurrency=concurrency, check_batch=check_batch, verify_at_end=False)
    checking = reading(server)
    verified = await worker.verify_batch(ids) if check_batch else 0
    finished = reading(server)
    result = Pass.between(len(ids), start, finished)
    end = Pass.between(len(ids), checking, finished)
    rows = await worker.ledger.patients(run_id)
    wrong = [r for r in rows if r.status != expected or (expected == "done" and not r.written)]
    if wrong or len(rows) != len(ids):
        statuses = dict(Counter(r.status for r in wrong))
        raise SystemExit(f"{label}: {len(wrong)} not {expected}: {statuses}; first: {wrong[0].reason}")
    if check_batch and verified != len(ids):
        raise SystemExit(f"{label}: the end check verified {verified} of {len(ids)} patients")
    written = sum(len(r.written) for r in rows)
    wrote = f" ({written} resources written or found)" if written else ""
    ended = (
        f"; of which the end check {end.wall_s:.2f} s, {end.cpu_s:.2f} CPU-s, server {end.server_cpu_s:.2f}"
    )
    print(f"{label}: {result.patients} patients in {result.wall_s:.1f} s: {result.line()}{wrote}"
          f"{ended if check_batch else ''}")  # fmt: skip
    return result, end


def without(run: Pass, end: Pass) -> Pass:
    """The run's figures less its end check."""
    return Pass(
        run.patients,
        run.wall_s - end.wall_s,
        run.cpu_s - end.cpu_s,
        run.server_cpu_s - end.server_cpu_s,
        run.ocr_cpu_s - end.ocr_cpu_s,
    )


def ledger_size(state_dir: Path) -> str:
    """What the job ledger holds after the runs: rows and bytes on disk (the database and its WAL)
    a patient row, what a nightly job adds for each patient it sees."""
    files = [state_dir / LEDGER_FILE, state_dir / f"{LEDGER_FILE}-wal"]
    size = sum(f.stat().st_size for f in files if f.exists())
    with closing(sqlite3.connect(state_dir / LEDGER_FILE)) as db:
        ((runs,),) = db.execute("SELECT COUNT(*) FROM job_runs").fetchall()
        ((rows, written),) = db.execute("SELECT COUNT(*), SUM(LENGTH(written)) FROM job_patients").fetchall()
    return (
        f"ledger: {runs} runs, {rows} patient rows, {size / 1024:.0f} KiB on disk "
        f"({size / rows:.0f} bytes a row, of which {written / rows:.0f} the written identifiers)"
    )


async def run(patients: int, baseline: int, concurrency: int) -> None:
    t0 = time.perf_counter()
    # One more patient for the warm-up, outside both arms (imports, caches, matplotlib's fonts).
    cohort = generate_cohort(patients + baseline + 1, SEED)
    ids = [p.id for p in cohort.patients]
    warm_id = ids[-1]
    job_ids, solo_ids = ids[:patients], ids[patients:-1]
    with embedded_server() as server, tempfile.TemporaryDirectory(prefix="bench-marks-") as tmp:
        base_url = server.base_url
        settings = Settings(state_dir=Path(tmp), fhir_flavour="sekmet", change_check_margin_s=MARGIN_S)
        async with FhirClient(base_url, flavour="sekmet") as fhir:
            seeded = await seed_cohort(fhir, cohort)
            docs = sum(len(v) for v in cohort.lab_documents.values())
            ready_s = time.perf_counter() - t0
            print(f"sekmet at {base_url}; cohort seed {SEED}: {len(ids)} patients, {seeded.resources} "
                  f"resources, {docs} lab-report PDFs (generated and seeded in {ready_s:.0f} s); "
                  f"no model, no PACS; arms: {patients} patients as a local job {concurrency} at a "
                  f"time, {baseline} one at a time; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            async with (
                open_change_marks(settings, base_url) as marks,
                JobWorker(settings, base_url) as worker,
            ):
                await timed(server, fhir, marks, [warm_id], 1, "written", "warm-up")
                c, s = "concurrent", "one at a time"
                first_job, end_check = await timed_job(
                    server, worker, job_ids, concurrency, "done", f"first run, {c}"
                )
                first = {
                    c: first_job,
                    s: await timed(server, fhir, marks, solo_ids, 1, "written", f"first run, {s}"),
                }
                rerun = {
                    c: (
                        await timed_job(
                            server,
                            worker,
                            job_ids,
                            concurrency,
                            "unchanged",
                            f"unchanged rerun, {c}",
                            check_batch=False,
                        )
                    )[0],
                    s: await timed(server, fhir, marks, solo_ids, 1, "unchanged", f"unchanged rerun, {s}"),
                }
                label = f"unchanged rerun, {c}, cohort-level check"
                batch, _ = await timed_job(server, worker, job_ids, concurrency, "unchanged", label)
                label = f"unchanged rerun again, {c}, cohort-level check (the next night)"
                again, _ = await timed_job(server, worker, job_ids, concurrency, "unchanged", label)
            print(ledger_size(Path(tmp)))
    print(f"bench summarize-throughput: first run {first[c].line()} with its end check (without it "
          f"{without(first[c], end_check).line()}; the check {end_check.wall_s:.2f} s, "
          f"{end_check.cpu_s / end_check.patients:.3f} CPU-s/patient, server "
          f"{end_check.server_cpu_s / end_check.patients:.3f}), unchanged rerun {rerun[c].line()}, "
          f"{concurrency} at a time; vs one at a time: first run {first[s].line()}, unchanged rerun "
          f"{rerun[s].line()} ({first[c].rate / first[s].rate:.2f}x first run, "
          f"{rerun[c].rate / rerun[s].rate:.2f}x rerun); unchanged rerun, cohort-level check "
          f"{batch.line()} vs per-patient checks {rerun[c].line()} "
          f"({batch.rate / rerun[c].rate:.2f}x); the next night {again.line()} "
          f"({again.rate / rerun[c].rate:.2f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--patients", type=int, default=105, help="patients run concurrently")
    parser.add_argument("--baseline", type=int, default=30, help="patients run one at a time")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.patients, args.baseline, args.concurrency))


if __name__ == "__main__":
    main()
