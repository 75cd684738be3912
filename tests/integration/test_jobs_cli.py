"""`chartagent jobs` as processes against the real FHIR server: `kill -9` mid-run, then the same
run id resumes it (every patient done, none lost, nothing written twice); two runs of one cohort
in two processes at once write nothing twice; writes refused by the server fail their patients
with a reason, `jobs status --json` says so in its documented shape, and `jobs retry-failed`
completes them; `jobs cancel`. Duplicates are counted on the server by identifier."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultKind, FaultPlan, FaultProxy
from fhir_reads import count, duplicate_identifiers, server_with

from agent.testbed.cohort import generate_cohort

pytestmark = pytest.mark.integration


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTAGENT_")}
    return {**env, "CHARTAGENT_STATE_DIR": str(state_dir), **extra}


def _jobs(state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "jobs", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(state_dir, **env),
        check=False,
    )


def _spawn(state_dir: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    """In its own process group; output to a file (a pipe nobody reads would stall it)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "jobs", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(state_dir),
            start_new_session=True,
        )


def _ledger_rows(state_dir: Path, run_id: str) -> dict[str, tuple[str, int]]:
    """patient -> (status, attempts), read straight from the ledger's SQLite file."""
    with sqlite3.connect(state_dir / "jobs.sqlite", timeout=30) as db:
        rows = db.execute(
            "SELECT patient_id, status, attempts FROM job_patients WHERE run_id = ?", (run_id,)
        ).fetchall()
    return {str(p): (str(s), int(a)) for p, s, a in rows}


def _status(state_dir: Path, run_id: str) -> dict[str, Any]:
    shown = _jobs(state_dir, "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


async def test_kill_9_mid_run_then_the_same_run_id_finishes_it(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(8, 1221)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    args = ("run", "--run-id", "nightly", "--concurrency", "2", "--fhir-url", base)
    run = _spawn(tmp_path, tmp_path / "first.log", *args)
    deadline = time.monotonic() + 240
    try:
        while True:  # kill once some, not all, patients are done
            assert run.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no patient done in time"
            with_rows: dict[str, tuple[str, int]] = {}
            if (tmp_path / "jobs.sqlite").exists():
                with contextlib.suppress(sqlite3.OperationalError):  # the file, not yet its tables
                    with_rows = _ledger_rows(tmp_path, "nightly")
            if sum(s == "done" for s, _ in with_rows.values()) >= 2:
                break
            await asyncio.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    before = _ledger_rows(tmp_path, "nightly")
    done_before = {p for p, (s, _) in before.items() if s == "done"}
    assert len(before) == len(cohort.patients)
    assert len(done_before) < len(cohort.patients), "killed mid-run, not after it"

    resumed = _jobs(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _ledger_rows(tmp_path, "nightly")
    assert all(after[p] == ("done", 1) for p in done_before)  # finished before the kill: not run again
    # The others are done by the resumed run: a first run writes every patient's summary, and a
    # patient whose attempt was killed after its writes is found by the run's tag, not unchanged.
    assert {s for p, (s, _) in after.items() if p not in done_before} == {"done"}, after
    assert await duplicate_identifiers(base) == {}
    assert await count(base, "DiagnosticReport") == len(cohort.patients)


async def test_two_processes_running_one_cohort_write_nothing_twice(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(6, 1222)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    runs = [
        _spawn(
            tmp_path,
            tmp_path / f"{name}.log",
            "run",
            "--run-id",
            name,
            "--concurrency",
            "3",
            "--fhir-url",
            base,
        )
        for name in ("left", "right")
    ]
    try:
        codes = [await asyncio.to_thread(r.wait, 300) for r in runs]
    finally:
        for r in runs:
            if r.poll() is None:
                os.killpg(r.pid, signal.SIGKILL)
    assert codes == [0, 0], [(tmp_path / f"{n}.log").read_text()[-2000:] for n in ("left", "right")]
    for name in ("left", "right"):
        assert {s for s, _ in _ledger_rows(tmp_path, name).values()} <= {"done", "unchanged"}
    assert await duplicate_identifiers(base) == {}
    assert await count(base, "DiagnosticReport") == len(cohort.patients)


async def test_refused_writes_fail_with_a_reason_then_retry_failed_completes_them(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(3, 1223)
    ids = sorted(p.id for p in cohort.patients)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    # Every transaction (a POST to the base) is refused before it reaches the server.
    refuse = FaultPlan(rate=1.0, kinds=(FaultKind("500-before"),), methods=frozenset({"POST"}))
    with FaultProxy(base, refuse) as proxy:
        flavour = {"CHARTAGENT_FHIR_FLAVOUR": "sekmet"}  # sekmet's absolute links back through the proxy
        first = _jobs(tmp_path, "run", "--run-id", "r", "--fhir-url", proxy.base_url, **flavour)
        assert first.returncode == 1, first.stderr[-2000:]
        assert "chartagent jobs retry-failed r" in first.stdout
        shown = _status(tmp_path, "r")
        assert set(shown) == {"run", "done", "unchanged", "failed", "pending", "patients"}
        assert (shown["run"], shown["done"], shown["unchanged"], shown["failed"], shown["pending"]) == (
            "r", 0, 0, 3, 0,
        )  # fmt: skip
        assert [p["id"] for p in shown["patients"]] == ids
        for patient in shown["patients"]:
            assert set(patient) == {"id", "status", "reason"}
            assert patient["status"] == "failed"
            assert "500" in patient["reason"], patient
        assert await count(base, "DiagnosticReport") == 0

        proxy.set_plan(FaultPlan())  # the server takes writes again
        retried = _jobs(tmp_path, "retry-failed", "r", **flavour)
        assert retried.returncode == 0, retried.stderr[-2000:]
    shown = _status(tmp_path, "r")
    assert (shown["done"], shown["failed"], shown["pending"]) == (3, 0, 0)
    assert all(p["reason"] is None for p in shown["patients"])
    assert await duplicate_identifiers(base) == {}
    assert await count(base, "DiagnosticReport") == len(ids)

    cancelled = _jobs(tmp_path, "cancel", "r")
    assert cancelled.returncode == 0, cancelled.stderr[-2000:]
    # A cancelled run is no successful run: pruning removes it and its patients' rows.
    pruned = _jobs(tmp_path, "prune", "--older-than", "0")
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    assert pruned.stdout.startswith("deleted 1 run(s) created before "), pruned.stdout
    assert pruned.stdout.rstrip().endswith(f"with {len(ids)} patient row(s)"), pruned.stdout
    assert _ledger_rows(tmp_path, "r") == {}
    assert _jobs(tmp_path, "status", "r").returncode == 2
    unknown = _jobs(tmp_path, "status", "no-such-run")
    assert unknown.returncode == 2
    assert "no run no-such-run" in unknown.stderr
