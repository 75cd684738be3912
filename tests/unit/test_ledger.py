"""The job ledger on SQLite: idempotent runs and patients, exclusive claims and leases across
connections (as two processes would hold), crash recovery, retry, cancel and `--since last`.
The same behaviour on Postgres: tests/integration/test_jobs_local.py."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.jobs.ledger import Ledger, PatientResult, open_ledger
from agent.settings import Settings

URL = "http://fhir.test/fhir"


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, checkpoint_url=None)


async def _run(ledger: Ledger, run_id: str, patients: list[str], cohort: str = "all") -> None:
    await ledger.create_run(run_id, cohort=cohort, since=None, executor="local", fhir_url=URL)
    await ledger.add_patients(run_id, patients)


async def test_runs_and_patients_are_idempotent(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:
        first = await ledger.create_run("r1", cohort="all", since=None, executor="local", fhir_url=URL)
        again = await ledger.create_run("r1", cohort="group:g", since="x", executor="temporal", fhir_url=URL)
        assert again == first  # a resume keeps the run as created
        assert await ledger.add_patients("r1", ["b", "a", "a"]) == 2
        assert await ledger.add_patients("r1", ["a", "c"]) == 1
        assert await ledger.get_run("nope") is None
        assert [p.patient_id for p in await ledger.patients("r1")] == ["a", "b", "c"]
        assert (await ledger.counts("r1"))["pending"] == 3
    assert (tmp_path / "jobs.sqlite").exists()


async def test_two_connections_never_claim_the_same_patient(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ids = [f"p{i:03d}" for i in range(60)]
    async with open_ledger(settings) as one, open_ledger(settings) as two:
        await _run(one, "r", ids)

        async def drain(ledger: Ledger, holder: str) -> list[str]:
            got: list[str] = []
            while batch := await ledger.claim_next("r", holder, 3):
                got += batch
            return got

        a, b = await asyncio.gather(drain(one, "A"), drain(two, "B"))
    assert sorted(a + b) == ids
    assert not set(a) & set(b)


async def test_a_lease_admits_one_writer_until_released_or_expired(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r1", ["p"])
        await _run(ledger, "r2", ["p"])
        assert await ledger.take_lease("r1", "p", "A", ttl_s=60)
        assert not await ledger.take_lease("r2", "p", "B", ttl_s=60)
        # The other run's claim skips the leased patient instead of spinning on it.
        assert await ledger.claim_next("r2", "B", 5) == []
        assert await ledger.take_lease("r1", "p", "A", ttl_s=60)  # its own: renewed
        await ledger.release_lease("r1", "p", "A")
        assert await ledger.take_lease("r2", "p", "B", ttl_s=0.01)
        await asyncio.sleep(0.05)  # B crashed: its lease expires
        assert await ledger.take_lease("r1", "p", "A", ttl_s=60)
        assert not await ledger.renew_lease("r2", "p", "B", ttl_s=60)
        rows = {p.run_id: p for p in await ledger.patients("r1") + await ledger.patients("r2")}
        assert rows["r1"].attempts == 3
        assert rows["r1"].status == "running"


async def test_marks_counts_and_crash_recovery(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r", ["a", "b", "c", "d"])
        claimed = await ledger.claim_next("r", "A", 4)
        for pid in claimed:
            assert await ledger.take_lease("r", pid, "A", ttl_s=60)
        await ledger.mark(
            "r", PatientResult(patient_id="a", status="done", written=["DiagnosticReport/1"], seconds=0.5)
        )
        await ledger.mark("r", PatientResult(patient_id="b", status="unchanged"))
        await ledger.mark("r", PatientResult(patient_id="c", status="failed", reason="summary: HTTP 500"))
        assert await ledger.finish_run("r") == "running"  # d is still running
        counts = await ledger.counts("r")
        assert (counts["done"], counts["unchanged"], counts["failed"], counts["running"]) == (1, 1, 1, 1)
        # The process died: d's row and lease are left. Resuming the same run id resets them.
        assert await ledger.reset_running("r") == 1
        assert await ledger.claim_next("r", "A2", 5) == ["d"]
        assert await ledger.take_lease("r", "d", "A2", ttl_s=60)
        await ledger.mark("r", PatientResult(patient_id="d", status="done"))
        assert await ledger.finish_run("r") == "done"
        rows = {p.patient_id: p for p in await ledger.patients("r")}
        assert rows["a"].written == ["DiagnosticReport/1"]
        assert rows["a"].seconds == 0.5
        assert rows["c"].reason == "summary: HTTP 500"
        assert rows["d"].attempts == 2
        assert await ledger.retry_failed("r") == 1
        assert (await ledger.get_run("r")).status == "running"  # type: ignore[union-attr]
        assert await ledger.claim_next("r", "A2", 5) == ["c"]


async def test_a_resume_counts_interrupted_attempts_of_the_patients_being_summarized(tmp_path: Path) -> None:
    """Only a patient whose lease was held (its graph running) when the process died counts an
    interrupted attempt; one only claimed does not. `retry_failed` starts the count again."""
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r", ["a", "b", "c"])
        assert await ledger.claim_next("r", "A", 3) == ["a", "b", "c"]
        assert await ledger.take_lease("r", "a", "A", ttl_s=60)  # a runs; b and c only claimed
        assert await ledger.reset_running("r") == 3
        rows = {p.patient_id: p for p in await ledger.patients("r")}
        assert [(rows[p].status, rows[p].interrupted) for p in "abc"] == [
            ("pending", 1), ("pending", 0), ("pending", 0)
        ]  # fmt: skip
        for _ in range(2):  # twice more, a alone
            assert await ledger.take_lease("r", "a", "A", ttl_s=60)
            await ledger.reset_running("r")
        assert {p.patient_id: p.interrupted for p in await ledger.patients("r")}["a"] == 3
        await ledger.mark("r", PatientResult(patient_id="a", status="failed", reason="given up"))
        assert await ledger.retry_failed("r") == 1
        assert {p.patient_id: p.interrupted for p in await ledger.patients("r")}["a"] == 0


async def test_a_ledger_made_before_the_interrupted_column_gains_it(tmp_path: Path) -> None:
    import sqlite3

    with sqlite3.connect(tmp_path / "jobs.sqlite") as old:
        old.execute(
            "CREATE TABLE job_patients (run_id TEXT NOT NULL, patient_id TEXT NOT NULL, status TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, written TEXT NOT NULL DEFAULT '[]',"
            " started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, seconds DOUBLE PRECISION,"
            " PRIMARY KEY (run_id, patient_id))"
        )
        old.execute(
            "INSERT INTO job_patients (run_id, patient_id, status, attempts) VALUES ('r', 'a', 'done', 1)"
        )
    for _ in range(2):  # opened twice: the column is added once
        async with open_ledger(_settings(tmp_path)) as ledger:
            (row,) = await ledger.patients("r")
            assert (row.patient_id, row.status, row.attempts, row.interrupted) == ("a", "done", 1, 0)


async def test_cancel_stops_claims(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r", ["a", "b"])
        assert await ledger.cancel("r")
        assert not await ledger.cancel("missing")
        assert await ledger.claim_next("r", "A", 5) == []
        assert await ledger.finish_run("r") == "cancelled"


async def test_since_last_is_the_latest_successful_run_of_the_cohort(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:
        for run_id, cohort, when, outcome in [
            ("r1", "all", "2026-12-01T00:00:00Z", "done"),
            ("r2", "all", "2026-12-02T00:00:00Z", "failed"),
            ("r3", "group:g", "2026-12-03T00:00:00Z", "done"),
            ("r4", "all", "2026-12-04T00:00:00Z", None),  # still running
        ]:
            await _run(ledger, run_id, ["p"], cohort)
            await ledger.set_transaction_time(run_id, when)
            await asyncio.sleep(0.01)  # created_at orders the runs
            if outcome is None:
                continue
            await ledger.claim_next(run_id, "A", 1)
            await ledger.mark(run_id, PatientResult(patient_id="p", status=outcome))
            await ledger.finish_run(run_id)
        assert await ledger.last_transaction_time("all", URL) == "2026-12-01T00:00:00Z"
        assert await ledger.last_transaction_time("group:g", URL) == "2026-12-03T00:00:00Z"
        assert await ledger.last_transaction_time("all", "http://other/fhir") is None


async def test_prune_deletes_old_finished_runs_and_keeps_what_the_next_run_needs(tmp_path: Path) -> None:
    async with open_ledger(_settings(tmp_path)) as ledger:

        async def finished(run_id: str, cohort: str, outcome: str | None, patients: list[str]) -> None:
            await _run(ledger, run_id, patients, cohort)
            await ledger.set_transaction_time(run_id, f"2026-12-0{run_id[1]}T00:00:00Z")
            await asyncio.sleep(0.01)  # created_at orders the runs
            if outcome == "cancelled":
                await ledger.cancel(run_id)
            elif outcome is not None:
                for p in await ledger.claim_next(run_id, "A", len(patients)):
                    await ledger.mark(run_id, PatientResult(patient_id=p, status=outcome))  # type: ignore[arg-type]
                await ledger.finish_run(run_id)

        await finished("r1", "all", "done", ["a", "b"])
        assert await ledger.take_lease("r1", "b", "A", ttl_s=0.001)  # left behind, expired
        await finished("r2", "all", "failed", ["a"])
        await finished("r3", "group:g", "done", ["c"])
        await finished("r4", "all", None, ["d"])  # still running
        assert await ledger.take_lease("r4", "d", "A", ttl_s=60)
        await finished("r5", "all", "cancelled", ["e"])
        cutoff = time.time()
        await finished("r6", "all", "done", ["a"])

        pruned = await ledger.prune(cutoff)
        assert (pruned.runs, pruned.patient_rows, pruned.kept) == (3, 4, ["r3"])
        left = [r for r in ("r1", "r2", "r3", "r4", "r5", "r6") if await ledger.get_run(r)]
        assert left == ["r3", "r4", "r6"]
        assert await ledger.patients("r1") == []
        assert [p.patient_id for p in await ledger.patients("r4")] == ["d"]
        # `--since last` reads the same runs as before.
        assert await ledger.last_transaction_time("all", URL) == "2026-12-06T00:00:00Z"
        assert await ledger.last_transaction_time("group:g", URL) == "2026-12-03T00:00:00Z"
        # r1's expired lease went with it; r4's live lease stays.
        with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
            assert db.execute("SELECT run_id, patient_id FROM job_leases").fetchall() == [("r4", "d")]
        again = await ledger.prune(time.time())  # r6 is now the latest of "all": kept
        assert (again.runs, again.patient_rows, again.kept) == (0, 0, ["r3", "r6"])


async def test_a_window_of_a_runs_patients_is_read_in_patient_id_order(tmp_path: Path) -> None:
    ids = [f"p{i:02d}" for i in range(23)]
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r", list(reversed(ids)))
        await _run(ledger, "other", ["p00", "zz"])
        windows = [await ledger.patients("r", offset=o, limit=5) for o in range(0, 25, 5)]
        assert [[p.patient_id for p in w] for w in windows] == [ids[o : o + 5] for o in range(0, 25, 5)]
        assert await ledger.patients("r", offset=30, limit=5) == []
        assert [p.patient_id for p in await ledger.patients("r")] == ids
        with pytest.raises(ValueError, match="offset needs a limit"):
            await ledger.patients("r", offset=5)


async def test_temporal_chunks_read_their_own_window_of_the_run(tmp_path: Path) -> None:
    """The worker's plan and chunk activities (agent.jobs.temporal_worker): chunks of the run's
    patients in id order, each without its finished patients; their union is every patient to run."""
    from temporalio.testing import ActivityEnvironment

    from agent.jobs.temporal_worker import RunActivities
    from agent.jobs.temporal_workflows import ChunkRequest

    ids = [f"p{i:02d}" for i in range(23)]
    async with open_ledger(_settings(tmp_path)) as ledger:
        await _run(ledger, "r", ids)
        for pid in ("p03", "p11"):
            await ledger.mark("r", PatientResult(patient_id=pid, status="done"))
        await ledger.mark("r", PatientResult(patient_id="p20", status="failed", reason="x"))
        worker = SimpleNamespace(ledger=ledger, fhir_url=URL)
        activities = RunActivities(worker)  # type: ignore[arg-type]
        env = ActivityEnvironment()
        chunks = await env.run(activities.plan_run, ChunkRequest("r", 0, 10))
        got = [await env.run(activities.chunk_patients, ChunkRequest("r", i, 10)) for i in range(chunks)]
    assert chunks == 3
    finished = {"p03", "p11", "p20"}
    assert got == [[p for p in ids[i : i + 10] if p not in finished] for i in (0, 10, 20)]
