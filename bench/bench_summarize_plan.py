#!/usr/bin/env python3
"""Benchmark: the planning summarization graph, the unchanged-patient path and the graph's overhead.

Starts the embedded FHIR server (sekmet, via `agent.testbed.stack`) on a free loopback port and
seeds the synthetic cohort (`agent.testbed.cohort`, lab-report PDFs included). The model is the
scripted one (`tools.medgemma.fake_backend.ScriptedBackend`): it answers instantly, so the figures
are ChartAgent's own cost. A first real run writes every patient's analyses (not timed); then, in
the same run and on the same patients:

1. `unchanged-vs-full`: per-patient wall time of the unchanged path (a second run as a job runs it:
   the change mark the first run left, one `_lastUpdated` search per watched type, nothing new,
   the record not read, nothing recomputed) against a full recomputation of the same patients (a
   dry run plans everything: reads every PDF, computes the trends, asks the model, builds every
   transaction, posts nothing). With a fixed latency injected before every request (default 30 ms:
   an EHR is tens of milliseconds away; the headline, what a deployment sees) and on loopback.
   Timed beside it: the unchanged path without a change mark (`no mark`: the record read and the
   plan in the graph), `gather_record` alone (`record read`) and `gather_record` + `plan_work`
   without LangGraph (`read+plan`).
2. `planner-overhead`: per-patient time of the graph (dry run; without a checkpointer, and with the
   SQLite one of `agent.checkpoints`, a fresh run id each time) against the same work without
   LangGraph (`direct`): the graph's node functions (thin shells over `gather_record`, `plan_work`,
   `settle_readings`, `build_series`/`compute_trend`, the model request, `build_patient_transaction`)
   called in order as plain Python on a dict, each new document read by
   `tools.documents.ingest.read_document` directly, up to `max_concurrency` at once as the fan-out
   does. On loopback. For every patient the direct run must compute what the graph computed
   (trends, narrative, would-be writes). Also printed: how many checkpoints and bytes the SQLite
   saver stores per patient run (a checkpoint per superstep; each channel's value once per version,
   apart) and what serializing one finished state costs.

Each mode is timed per patient (wall clock, and the CPU time of this process: steadier on a shared
machine); modes run one after another for each patient, after one warm-up patient; figures are
medians over the patients (and passes). Every run's status is checked (`unchanged`, `dry-run`).

    .venv/bin/python bench/bench_summarize_plan.py [--patients 6] [--latency-ms 30] [--repeats 1]

Lines: `bench unchanged-vs-full: <ratio>x (...)` (with latency first, the headline, then on
loopback), ratio = full / unchanged; `bench planner-overhead: <ratio>x (...)` (graph, then graph
with the checkpointer), ratio = graph / direct, so that the overhead reads as a factor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_fhir_gather import LatencyTransport, embedded_server
from fhir.resources.R4B.documentreference import DocumentReference
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.runtime import Runtime

from agent.checkpoints import SQLITE_FILE, checkpoint_serde, open_checkpointer, open_store
from agent.context import RunContext
from agent.jobs.summarize import Checkpointing, outcome_of, summarize_patient
from agent.nodes.build_summary import build_summary
from agent.nodes.compute_trends import compute_trends
from agent.nodes.gather import gather
from agent.nodes.ingest_documents import join_transcriptions, settle_documents
from agent.nodes.plan_work import plan
from agent.nodes.routing import after_join, after_trends
from agent.nodes.synthesize import synthesize
from agent.nodes.write_back import write_back
from agent.planning.change_marks import ChangeMarks
from agent.planning.worklist import WorkKind, plan_work
from agent.settings import Settings
from agent.state import SummarizeState
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.documents.ingest import DocumentReading, read_document
from tools.medgemma.fake_backend import ScriptedBackend
from tools.record import gather_record

SEED = 31
# After the cohort's last results (agent.testbed.cohort.REFERENCE_DATE): none lies in the future.
NOW = datetime(2026, 7, 2, 3, 4, 5, tzinfo=UTC)
# No numbers: the narrative checks accept it, so the model's text is used (as with a real model).
ANSWER = "Kidney function worsened; the other series are stable. Review the source results."

Mode = Callable[[FhirClient, str], Awaitable[SummarizeState]]


def model() -> ScriptedBackend:
    return ScriptedBackend([ANSWER], cycle=True)


def context(fhir: FhirClient, *, dry_run: bool, marks: ChangeMarks | None = None) -> RunContext:
    return RunContext(fhir=fhir, dry_run=dry_run, now=NOW, model=model(), change_marks=marks)


async def graph_run(
    fhir: FhirClient, patient_id: str, *, dry_run: bool, marks: ChangeMarks | None = None
) -> SummarizeState:
    return await summarize_patient(context(fhir, dry_run=dry_run, marks=marks), patient_id)


def unchanged_with(marks: ChangeMarks) -> Mode:
    """The unchanged path as a job runs it: the change mark of the last run, one round of searches."""

    async def unchanged(fhir: FhirClient, patient_id: str) -> SummarizeState:
        return await graph_run(fhir, patient_id, dry_run=False, marks=marks)

    return unchanged


async def unchanged_unmarked(fhir: FhirClient, patient_id: str) -> SummarizeState:
    """The unchanged path without a change mark: the record read and the plan (nothing new)."""
    return await graph_run(fhir, patient_id, dry_run=False)


async def full(fhir: FhirClient, patient_id: str) -> SummarizeState:
    return await graph_run(fhir, patient_id, dry_run=True)


async def record_read(fhir: FhirClient, patient_id: str) -> SummarizeState:
    """The floor of the unchanged path: `gather_record` alone (the same concurrent searches)."""
    return {"patient_id": patient_id, "record": await gather_record(fhir, patient_id)}


async def read_and_plan(fhir: FhirClient, patient_id: str) -> SummarizeState:
    """The unchanged path's work without LangGraph: the record read and `plan_work`."""
    record = await gather_record(fhir, patient_id)
    return {"patient_id": patient_id, "record": record, "worklist": plan_work(record, can_read_images=False)}


async def direct(fhir: FhirClient, patient_id: str) -> SummarizeState:
    """The graph's dry run without LangGraph: the same node functions, in order, on a plain dict;
    each new document read by the tool directly (no Send task to dump and validate)."""
    ctx = context(fhir, dry_run=True)
    rt = Runtime(context=ctx)
    state: SummarizeState = {"patient_id": patient_id}
    state |= await gather(state, rt)
    state |= plan(state, rt)
    worklist, record = state["worklist"], state["record"]
    if worklist.of_kind(WorkKind.IMAGING_COMPARISON):
        raise SystemExit("the bench runs without a PACS: no imaging comparison may be planned")
    wanted = {i.key for i in worklist.of_kind(WorkKind.DOCUMENT)}
    docs = [
        d
        for d in record.of_type("DocumentReference")
        if isinstance(d, DocumentReference) and f"DocumentReference/{d.id}" in wanted
    ]
    gate = asyncio.Semaphore(ctx.max_concurrency)

    async def read(doc: DocumentReference) -> DocumentReading:
        async with gate:
            return await read_document(
                doc, patient_id, fhir, now=ctx.now, tz=ctx.lab_timezone, model=ctx.model
            )

    state["readings"] = list(await asyncio.gather(*(read(d) for d in docs)))
    if not docs and not worklist.of_kind(WorkKind.LAB_SUMMARY):
        return state
    state |= settle_documents(state, rt)
    state["writes"] = (await write_back(state, rt))["writes"]
    state |= join_transcriptions(state)
    if after_join(state) == "__end__":
        return state
    state |= compute_trends(state, rt)
    if after_trends(state) == "__end__":
        return state
    state |= await synthesize(state, rt)
    state["pending"] = state.get("pending", []) + build_summary(state, rt)["pending"]
    state["writes"] = state["writes"] + (await write_back(state, rt))["writes"]
    return state


def work_of(state: SummarizeState) -> tuple[Any, ...]:
    """What a dry run computed: trends, narrative, the would-be writes and their transactions."""
    return (
        [t.model_dump() for t in state.get("trends", [])],
        state.get("narrative"),
        [(w.key, w.kind.value, w.status) for w in state.get("writes", [])],
        sorted(p.key for p in state.get("pending", [])),
    )


# What each mode must report for every patient, checked before its time is kept.
EXPECTED = {
    "unchanged": "unchanged",
    "no mark": "unchanged",
    "full": "dry-run",
    "graph": "dry-run",
    "graph+sqlite": "dry-run",
}


def check(name: str, patient_id: str, state: SummarizeState, samples: dict[str, SummarizeState]) -> None:
    if name in EXPECTED:
        outcome = outcome_of(patient_id, state, dry_run=name not in ("unchanged", "no mark"))
        if outcome.status != EXPECTED[name]:
            raise SystemExit(f"{name}: {patient_id} is {outcome.status}, expected {EXPECTED[name]}")
    if name == "read+plan" and state["worklist"].items:
        raise SystemExit(f"read+plan: {patient_id} has work planned")
    if name in ("unchanged", "no mark") and "trends" in state:
        raise SystemExit(f"{name}: {patient_id} recomputed its trends")
    if name == "unchanged" and "record" in state:
        raise SystemExit(f"unchanged: {patient_id}: the record was read (no change mark used)")
    if name == "direct" and work_of(state) != work_of(samples["graph"]):
        raise SystemExit(f"direct: {patient_id}: not the graph's work")


@dataclass
class Samples:
    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


async def interleaved(
    base_url: str, latency_s: float, ids: list[str], modes: dict[str, Mode], repeats: int, warm: set[str]
) -> Samples:
    """Per-patient wall time of each mode, and the CPU time of this process (all its threads, not
    the FHIR server's): on a shared machine it moves less than the wall time. For each patient the
    modes run one after another, so that drift hits every mode; one warm-up patient first for the
    modes not in ``warm`` yet (imports, caches, the SQLite tables)."""
    out = Samples(wall={name: [] for name in modes}, cpu={name: [] for name in modes})
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(
                FhirClient(base_url, transport=LatencyTransport(latency_s), flavour="sekmet")
            )
            for name in modes
        }
        for rep in range(repeats + 1):
            for pid in ids[:1] if rep == 0 else ids:
                samples: dict[str, SummarizeState] = {}
                for name, mode in modes.items():
                    if not rep and name in warm:
                        continue
                    gc.collect()  # the previous mode's garbage is not collected on this one's time
                    t0, c0 = time.perf_counter(), time.process_time()
                    samples[name] = await mode(clients[name], pid)
                    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                    check(name, pid, samples[name], samples)
                    if rep:
                        out.wall[name].append(elapsed)
                        out.cpu[name].append(cpu)
        warm.update(modes)
    return out


def report(samples: Samples, label: str) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU time per patient of each mode."""
    wall = {name: statistics.median(ts) for name, ts in samples.wall.items()}
    cpu = {name: statistics.median(ts) for name, ts in samples.cpu.items()}
    for name, ts in samples.wall.items():
        mean, lo, hi = statistics.mean(ts) * 1000, min(ts) * 1000, max(ts) * 1000
        print(f"{label} {name:12s} {wall[name] * 1000:7.1f} ms per patient median, mean {mean:.1f}, "
              f"min {lo:.1f}, max {hi:.1f} ({len(ts)} runs); CPU {cpu[name] * 1000:.1f} ms")  # fmt: skip
    return wall, cpu


async def write_all(base_url: str, cohort: Cohort, marks: ChangeMarks) -> list[str]:
    """Seed the cohort and write every patient's analyses once (the state the unchanged path sees);
    each run leaves its change mark."""
    ids = [p.id for p in cohort.patients]
    async with FhirClient(base_url, flavour="sekmet") as fhir:
        seeded = await seed_cohort(fhir, cohort)
        t0 = time.perf_counter()
        for pid in ids:
            first = outcome_of(pid, await unchanged_with(marks)(fhir, pid), dry_run=False)
            if first.status != "written":
                raise SystemExit(f"first run: {pid} is {first.status} ({first.error})")
        written_s = time.perf_counter() - t0
    docs = sum(len(v) for v in cohort.lab_documents.values())
    print(f"sekmet at {base_url}; cohort seed {SEED}: {len(ids)} patients, {seeded.resources} resources, "
          f"{docs} lab-report PDFs; scripted model (instant); no PACS (imaging work deferred)")  # fmt: skip
    print(f"first run, writing everything (not a mode): {written_s / len(ids) * 1000:.0f} ms per patient")
    return ids


def sqlite_breakdown(path: Path) -> str:
    """Per patient run (thread): how many checkpoints the SQLite saver stored and their bytes, the
    channel values it stored apart (`agent.checkpoint_blobs`: once per channel version), and the
    task writes."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        threads, checkpoints, checkpoint_bytes = db.execute(
            "SELECT COUNT(DISTINCT thread_id), COUNT(*), SUM(LENGTH(checkpoint)) FROM checkpoints"
        ).fetchone()
        values, value_bytes = 0, 0  # LangGraph's own saver has no table of values
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'checkpoint_blobs'").fetchone():
            query = "SELECT COUNT(*), SUM(LENGTH(blob)) FROM checkpoint_blobs"
            values, value_bytes = db.execute(query).fetchone()
        (write_bytes,) = db.execute("SELECT SUM(LENGTH(value)) FROM writes").fetchone()
    mb = 1024 * 1024
    return (
        f"{checkpoints / threads:.0f} checkpoints ({checkpoint_bytes / threads / mb:.2f} MB), "
        f"{values / threads:.0f} channel values ({(value_bytes or 0) / threads / mb:.1f} MB) and "
        f"{write_bytes / threads / mb:.1f} MB of task writes per patient run"
    )


async def checkpoint_cost(state: SummarizeState) -> str:
    """What checkpointing one finished dry run serializes (the serializer alone, no SQLite)."""
    serde = checkpoint_serde()
    sizes: dict[str, int] = {}
    t0 = time.perf_counter()
    for key, value in state.items():
        sizes[key] = len(serde.dumps_typed(value)[1])
    elapsed = time.perf_counter() - t0
    top = ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
    return f"{sum(sizes.values()) / 1024:.0f} KB in {elapsed * 1000:.1f} ms ({top})"


async def run(patients: int, latency_ms: float, repeats: int) -> None:
    cohort = generate_cohort(patients, SEED)
    with embedded_server() as base_url, tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as tmp:
        settings = Settings(state_dir=Path(tmp))
        async with (
            open_store(settings) as store,
            open_checkpointer(settings) as saver,
            AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "plain.sqlite")) as plain,
        ):
            plain.serde = checkpoint_serde()
            marks = ChangeMarks(store, base_url)
            ids = await write_all(base_url, cohort, marks)
            print(f"per patient, modes interleaved patient by patient after one warm-up patient; "
                  f"{repeats} passes; injected latency per request (in brackets)")  # fmt: skip
            unchanged = unchanged_with(marks)

            async def checkpointed(fhir: FhirClient, patient_id: str) -> SummarizeState:
                # A fresh run id each time: a finished thread would be answered from its checkpoint.
                ckpt = Checkpointing(saver=saver, store=store, run_id=uuid.uuid4().hex)
                return await summarize_patient(context(fhir, dry_run=True), patient_id, ckpt)

            async def plain_checkpointed(fhir: FhirClient, patient_id: str) -> SummarizeState:
                # The baseline: LangGraph's own SQLite saver, every value in every checkpoint.
                ckpt = Checkpointing(saver=plain, store=store, run_id=uuid.uuid4().hex)
                return await summarize_patient(context(fhir, dry_run=True), patient_id, ckpt)

            at_latency: dict[str, Mode] = {
                "record read": record_read,
                "read+plan": read_and_plan,
                "no mark": unchanged_unmarked,
                "unchanged": unchanged,
                "full": full,
            }
            on_loopback: dict[str, Mode] = {
                "record read": record_read,
                "read+plan": read_and_plan,
                "no mark": unchanged_unmarked,
                "unchanged": unchanged,
                "graph": full,
                "direct": direct,
                "graph+sqlite": checkpointed,
                "graph+plain sqlite": plain_checkpointed,
            }
            warm: set[str] = set()
            lat, _ = report(
                await interleaved(base_url, latency_ms / 1000, ids, at_latency, repeats, warm),
                f"[{latency_ms:.0f} ms]",
            )
            loop, loop_cpu = report(
                await interleaved(base_url, 0.0, ids, on_loopback, repeats, warm), "[0 ms]"
            )
        stored = sqlite_breakdown(Path(tmp) / SQLITE_FILE)
        plain_stored = sqlite_breakdown(Path(tmp) / "plain.sqlite")
        async with FhirClient(base_url, flavour="sekmet") as fhir:
            serialized = await checkpoint_cost(await full(fhir, ids[0]))
    print(f"SQLite checkpointer: {stored}; serializing one finished state once: {serialized}")
    for med, ms in ((lat, latency_ms), (loop, 0.0)):
        u, f, r = med["unchanged"], med.get("full", med.get("graph", 0.0)), med["record read"]
        n = med["no mark"]
        print(f"bench unchanged-vs-full: {f / u:.1f}x ({u * 1000:.1f} ms vs {f * 1000:.1f} ms per patient, "
              f"{ms:.0f} ms latency; change mark + one round of searches; without a mark (record read "
              f"and plan) {n * 1000:.1f} ms, {f / n:.1f}x; record read alone {r * 1000:.1f} ms)")  # fmt: skip
    d, g, c = loop["direct"], loop["graph"], loop["graph+sqlite"]
    dc, gc, cc = loop_cpu["direct"], loop_cpu["graph"], loop_cpu["graph+sqlite"]
    print(f"bench planner-overhead: {g / d:.2f}x ({g * 1000:.1f} ms vs {d * 1000:.1f} ms per patient, "
          f"{(g - d) * 1000:+.1f} ms: graph vs direct, dry run, no checkpointer; "
          f"CPU {gc * 1000:.1f} vs {dc * 1000:.1f} ms, {gc / dc:.2f}x)")  # fmt: skip
    print(f"bench planner-overhead: {c / d:.2f}x ({c * 1000:.1f} ms vs {d * 1000:.1f} ms per patient, "
          f"{(c - d) * 1000:+.1f} ms: graph + SQLite checkpointer vs direct, dry run; "
          f"CPU {cc * 1000:.1f} vs {dc * 1000:.1f} ms, {cc / dc:.2f}x)")  # fmt: skip
    p, pc = loop["graph+plain sqlite"], loop_cpu["graph+plain sqlite"]
    print(f"bench checkpointer: {p / c:.2f}x ({c * 1000:.1f} ms vs {p * 1000:.1f} ms per patient: graph + "
          f"ChartAgent's SQLite checkpointer vs LangGraph's AsyncSqliteSaver, dry run; CPU "
          f"{cc * 1000:.1f} vs {pc * 1000:.1f} ms, {pc / cc:.2f}x; plain saver {plain_stored})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.patients, args.latency_ms, args.repeats))


if __name__ == "__main__":
    main()
