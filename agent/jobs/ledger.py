"""The job ledger: per run and patient, what is pending, running, done, unchanged or failed (with a
PHI-free reason), attempts, what was written and timings; per run, the cohort, the export's status
URL and transaction time; and per patient a lease, so that at most one writer per patient runs at a
time across runs, processes and executors.

Where it lives (agent.state_database): `CHARTAGENT_CHECKPOINT_URL` when that is `postgresql://...`
(the checkpoints, the change marks and the ledger then share one database, which every worker
reaches); otherwise SQLite at `<state dir>/jobs.sqlite` (WAL, one writer transaction at a time
across processes).

Every claim runs in one transaction (SQLite: `BEGIN IMMEDIATE`; Postgres: `FOR UPDATE SKIP LOCKED`
and a conditional upsert of the lease), so two processes never claim the same patient, and a lease
is taken only when it is free, ours, or expired (its holder crashed).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

from pydantic import BaseModel

from agent.metrics import JobOutcome, job_outcome
from agent.settings import Settings
from agent.state_database import Database, TablesOwner, Tx, create_tables, open_owner

__all__ = [
    "LEDGER_FILE",
    "RUN_ID_RE",
    "Ledger",
    "PatientResult",
    "PatientRow",
    "PatientStatus",
    "Pruned",
    "RunRow",
    "RunStatus",
    "open_ledger",
]

LEDGER_FILE: Final = "jobs.sqlite"
# A run id names the ledger's run, its Temporal workflow (`chartagent-run-<run id>`) and the tag
# on what the run creates (a FHIR `code`: no whitespace at either end, none doubled): letters,
# digits and ". _ : -", a letter or digit first, at most 64.
RUN_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

RunStatus = Literal["running", "done", "cancelled"]
PatientStatus = Literal["pending", "running", "done", "unchanged", "failed"]
# What one patient's run ended as (the activity's answer; `pending`/`running` are the ledger's own),
# as the metrics count it.
ResultStatus = JobOutcome


class PatientResult(BaseModel):
    """What summarizing one patient did: the activity's return value and the ledger row's update."""

    patient_id: str
    status: ResultStatus
    # Failed: the failing step and the problem (no patient data); else a note or None.
    reason: str | None = None
    # "Type/id" of every resource the patient's transactions stored (created or already there).
    written: list[str] = []
    seconds: float = 0.0
    # False: a failed attempt that will be tried again (Temporal's retries): the ledger records it,
    # but it is no patient's outcome yet, so the metrics do not count it.
    final: bool = True


class RunRow(BaseModel):
    run_id: str
    cohort: str
    since: str | None
    executor: str
    fhir_url: str
    created_at: float
    status: RunStatus
    export_status_url: str | None
    # The server time the cohort was resolved at: the next `--since last` starts there.
    transaction_time: str | None


class PatientRow(BaseModel):
    run_id: str
    patient_id: str
    status: PatientStatus
    attempts: int
    reason: str | None
    written: list[str]
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    # Attempts its worker stopped in (the process killed or crashed while the patient was being
    # summarized), counted when the run is resumed; `retry_failed` starts it again from 0.
    interrupted: int = 0


class Pruned(BaseModel):
    """What `Ledger.prune` deleted (counted by the deletes themselves), and the runs old enough
    that it kept as the latest successful run of their cohort."""

    runs: int = 0
    patient_rows: int = 0
    kept: list[str] = []


_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS job_runs (
        run_id TEXT PRIMARY KEY,
        cohort TEXT NOT NULL,
        since TEXT,
        executor TEXT NOT NULL,
        fhir_url TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        export_status_url TEXT,
        transaction_time TEXT)""",
    """CREATE TABLE IF NOT EXISTS job_patients (
        run_id TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        written TEXT NOT NULL DEFAULT '[]',
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        seconds DOUBLE PRECISION,
        PRIMARY KEY (run_id, patient_id))""",
    "CREATE INDEX IF NOT EXISTS job_patients_status ON job_patients (run_id, status)",
    # scope: the FHIR base URL (the same id on two servers is two patients).
    """CREATE TABLE IF NOT EXISTS job_leases (
        scope TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (scope, patient_id))""",
)

# A successful run (alias r): done, with its transaction time, and no patient failed.
_SUCCESSFUL: Final = (
    "r.status = 'done' AND r.transaction_time IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM job_patients p WHERE p.run_id = r.run_id AND p.status = 'failed')"
)

# The ledger's advisory lock while it creates its tables (Postgres).
_SETUP_LOCK: Final = 4242120012

_RUN_COLUMNS: Final = (
    "run_id, cohort, since, executor, fhir_url, created_at, status, export_status_url, transaction_time"
)
_PATIENT_COLUMNS: Final = (
    "run_id, patient_id, status, attempts, reason, written, started_at, finished_at, seconds, interrupted"
)
# Columns added after the first release, with their definition: a ledger made before gets them
# when it is opened.
_ADDED_COLUMNS: Final = (("job_patients", "interrupted", "INTEGER NOT NULL DEFAULT 0"),)


class Ledger(TablesOwner):
    """The ledger's one interface over either database. One connection per process: its
    transactions are serialised by a lock (asyncio tasks of one executor share it)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)

    async def setup(self) -> None:
        """The tables, and the columns later versions added, in one transaction (under the
        schema's lock on Postgres: replicas starting at once add each column once)."""
        async with self._tx() as tx:
            await create_tables(self._db, tx, self._schema, self._lock_key)
            for table, column, definition in _ADDED_COLUMNS:
                if not (await tx.fetch(self._db.count_columns, (table, column)))[0][0]:
                    await tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    # Runs

    async def create_run(
        self, run_id: str, *, cohort: str, since: str | None, executor: str, fhir_url: str
    ) -> RunRow:
        """The run `run_id`, created if new; an existing run is returned as it is (a resume)."""
        async with self._tx() as tx:
            await tx.run(
                f"INSERT INTO job_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'running', NULL, NULL)"
                " ON CONFLICT (run_id) DO NOTHING",
                (run_id, cohort, since, executor, fhir_url, time.time()),
            )
            rows = await tx.fetch(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE run_id = ?", (run_id,))
        return _run_row(rows[0])

    async def get_run(self, run_id: str) -> RunRow | None:
        async with self._tx() as tx:
            rows = await tx.fetch(f"SELECT {_RUN_COLUMNS} FROM job_runs WHERE run_id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    async def set_export_status(self, run_id: str, status_url: str | None) -> None:
        """Saved as soon as the export is kicked off: a resumed run polls it instead of a new one."""
        async with self._tx() as tx:
            await tx.run("UPDATE job_runs SET export_status_url = ? WHERE run_id = ?", (status_url, run_id))

    async def set_transaction_time(self, run_id: str, transaction_time: str | None) -> None:
        async with self._tx() as tx:
            await tx.run(
                "UPDATE job_runs SET transaction_time = ? WHERE run_id = ?", (transaction_time, run_id)
            )

    async def set_run_status(self, run_id: str, status: RunStatus) -> None:
        async with self._tx() as tx:
            await tx.run("UPDATE job_runs SET status = ? WHERE run_id = ?", (status, run_id))

    async def finish_run(self, run_id: str) -> RunStatus:
        """`done` when no patient is left pending or running (and the run was not cancelled)."""
        async with self._tx() as tx:
            await tx.run(
                "UPDATE job_runs SET status = 'done' WHERE run_id = ? AND status = 'running' AND NOT EXISTS"
                " (SELECT 1 FROM job_patients WHERE run_id = ? AND status IN ('pending', 'running'))",
                (run_id, run_id),
            )
            rows = await tx.fetch("SELECT status FROM job_runs WHERE run_id = ?", (run_id,))
        return rows[0][0]  # type: ignore[no-any-return]

    async def cancel(self, run_id: str) -> bool:
        """Marks the run cancelled: executors stop claiming its patients. False: no such run."""
        async with self._tx() as tx:
            n = await tx.run("UPDATE job_runs SET status = 'cancelled' WHERE run_id = ?", (run_id,))
        return n > 0

    async def last_transaction_time(self, cohort: str, fhir_url: str) -> str | None:
        """The transaction time of the latest successful run of `cohort` on `fhir_url`: done, and no
        patient failed (a failed patient must be looked at again by the next incremental run)."""
        async with self._tx() as tx:
            rows = await tx.fetch(
                f"SELECT transaction_time FROM job_runs r WHERE cohort = ? AND fhir_url = ? AND {_SUCCESSFUL}"
                " ORDER BY created_at DESC, run_id DESC LIMIT 1",
                (cohort, fhir_url),
            )
        return rows[0][0] if rows else None

    async def prune(self, before: float) -> Pruned:
        """Deletes the finished runs (done or cancelled) created before `before` (epoch seconds),
        with their patient rows and expired leases, in one transaction. Kept whatever its age: per
        cohort and FHIR server the latest successful run (`--since last` starts from it), and any
        run still running (it may be resumed)."""
        async with self._tx() as tx:
            old = await tx.fetch(
                "SELECT run_id FROM job_runs WHERE status IN ('done', 'cancelled') AND created_at < ?"
                " ORDER BY created_at",
                (before,),
            )
            latest = await tx.fetch(
                f"SELECT cohort, fhir_url, run_id FROM job_runs r WHERE {_SUCCESSFUL}"
                " ORDER BY created_at, run_id"
            )
            # Per cohort and server, the last one in that order wins (as `last_transaction_time`).
            last = set({(cohort, url): run_id for cohort, url, run_id in latest}.values())
            pruned = Pruned()
            for (run_id,) in old:
                if run_id in last:
                    pruned.kept.append(run_id)
                    continue
                pruned.patient_rows += await tx.run("DELETE FROM job_patients WHERE run_id = ?", (run_id,))
                await tx.run(
                    "DELETE FROM job_leases WHERE run_id = ? AND expires_at < ?", (run_id, time.time())
                )
                pruned.runs += await tx.run("DELETE FROM job_runs WHERE run_id = ?", (run_id,))
        return pruned

    # Patients

    async def add_patients(self, run_id: str, patient_ids: Sequence[str]) -> int:
        """Adds the patients as pending; those already in the run are kept as they are. The number added."""
        added = 0
        async with self._tx() as tx:
            for patient_id in dict.fromkeys(patient_ids):
                added += await tx.run(
                    "INSERT INTO job_patients (run_id, patient_id, status) VALUES (?, ?, 'pending')"
                    " ON CONFLICT (run_id, patient_id) DO NOTHING",
                    (run_id, patient_id),
                )
        return added

    async def claim_next(self, run_id: str, holder: str, n: int) -> list[str]:
        """Up to `n` pending patients of a running run, marked running (in one transaction: no two
        claimers get the same patient). Patients leased to someone else are left for later."""
        now = time.time()
        async with self._tx() as tx:
            run = await tx.fetch("SELECT status, fhir_url FROM job_runs WHERE run_id = ?", (run_id,))
            if not run or run[0][0] != "running" or n <= 0:
                return []
            rows = await tx.fetch(
                "SELECT p.patient_id FROM job_patients p WHERE p.run_id = ? AND p.status = 'pending'"
                " AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.scope = ?"
                " AND l.patient_id = p.patient_id AND l.expires_at >= ? AND l.holder <> ?)"
                " ORDER BY p.patient_id LIMIT ?" + self._db.lock_rows,
                (run_id, run[0][1], now, holder, n),
            )
            claimed = [str(r[0]) for r in rows]
            for patient_id in claimed:
                await tx.run(
                    "UPDATE job_patients SET status = 'running' WHERE run_id = ? AND patient_id = ?",
                    (run_id, patient_id),
                )
        return claimed

    async def take_lease(self, run_id: str, patient_id: str, holder: str, ttl_s: float) -> int:
        """Lease the patient to `holder` for `ttl_s` (free, already `holder`'s, or expired) and mark
        it running with one more attempt: the number of that attempt in this run (1: the first).
        0: another holder's live lease: retry later."""
        now = time.time()
        async with self._tx() as tx:
            scope = await self._scope(tx, run_id)
            await tx.run(
                "INSERT INTO job_leases (scope, patient_id, run_id, holder, expires_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, patient_id) DO UPDATE SET run_id = excluded.run_id,"
                " holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < ?",
                (scope, patient_id, run_id, holder, now + ttl_s, now),
            )
            rows = await tx.fetch(
                "SELECT holder FROM job_leases WHERE scope = ? AND patient_id = ?", (scope, patient_id)
            )
            if not rows or rows[0][0] != holder:
                return 0
            await tx.run(
                "INSERT INTO job_patients (run_id, patient_id, status) VALUES (?, ?, 'running')"
                " ON CONFLICT (run_id, patient_id) DO NOTHING",
                (run_id, patient_id),
            )
            await tx.run(
                "UPDATE job_patients SET status = 'running', attempts = attempts + 1, started_at = ?,"
                " finished_at = NULL, seconds = NULL WHERE run_id = ? AND patient_id = ?",
                (now, run_id, patient_id),
            )
            attempts = await tx.fetch(
                "SELECT attempts FROM job_patients WHERE run_id = ? AND patient_id = ?", (run_id, patient_id)
            )
        return int(attempts[0][0])

    async def renew_lease(self, run_id: str, patient_id: str, holder: str, ttl_s: float) -> bool:
        """Extends `holder`'s lease (while a long patient runs). False: it was lost (expired and taken)."""
        async with self._tx() as tx:
            scope = await self._scope(tx, run_id)
            n = await tx.run(
                "UPDATE job_leases SET expires_at = ? WHERE scope = ? AND patient_id = ? AND holder = ?",
                (time.time() + ttl_s, scope, patient_id, holder),
            )
        return n > 0

    async def release_lease(self, run_id: str, patient_id: str, holder: str) -> None:
        async with self._tx() as tx:
            scope = await self._scope(tx, run_id)
            await tx.run(
                "DELETE FROM job_leases WHERE scope = ? AND patient_id = ? AND holder = ?",
                (scope, patient_id, holder),
            )

    async def mark(self, run_id: str, result: PatientResult) -> None:
        """Record a patient's result (done, unchanged or failed), counted as an outcome if final."""
        async with self._tx() as tx:
            await tx.run(
                "UPDATE job_patients SET status = ?, reason = ?, written = ?, finished_at = ?, seconds = ?"
                " WHERE run_id = ? AND patient_id = ?",
                (
                    result.status,
                    result.reason,
                    json.dumps(result.written),
                    time.time(),
                    result.seconds,
                    run_id,
                    result.patient_id,
                ),
            )
        if result.final:
            job_outcome(result.status, result.seconds or None)

    async def mark_unchanged(self, run_id: str, patient_ids: Sequence[str]) -> list[str]:
        """Records those of `patient_ids` still pending and never attempted in this run as
        `unchanged` (a batch change check found them so), in one transaction; the others are left
        as they are (an earlier attempt may have written: see `attempts`). The ids recorded."""
        now = time.time()
        recorded: list[str] = []
        async with self._tx() as tx:
            for patient_id in dict.fromkeys(patient_ids):
                if await tx.run(
                    "UPDATE job_patients SET status = 'unchanged', attempts = attempts + 1, reason = NULL,"
                    " written = '[]', started_at = ?, finished_at = ?, seconds = 0"
                    " WHERE run_id = ? AND patient_id = ? AND status = 'pending' AND attempts = 0",
                    (now, now, run_id, patient_id),
                ):
                    recorded.append(patient_id)
        job_outcome("unchanged", count=len(recorded))
        return recorded

    async def attempts(self, run_id: str, patient_id: str) -> int:
        """How many attempts at the patient this run has begun (0: none, or not in the run). An
        attempt that began and recorded no result may still have written (killed, cancelled)."""
        async with self._tx() as tx:
            rows = await tx.fetch(
                "SELECT attempts FROM job_patients WHERE run_id = ? AND patient_id = ?", (run_id, patient_id)
            )
        return int(rows[0][0]) if rows else 0

    async def requeue(self, run_id: str, patient_id: str) -> None:
        """Back to pending (its lease was held elsewhere, or its worker stopped before it ran)."""
        async with self._tx() as tx:
            await tx.run(
                "UPDATE job_patients SET status = 'pending' WHERE run_id = ? AND patient_id = ?"
                " AND status = 'running'",
                (run_id, patient_id),
            )

    async def reset_running(self, run_id: str) -> int:
        """After a crash: the run's `running` patients back to pending and the leases it held
        released; a patient whose lease was held (its graph was running: not only claimed) counts
        one more `interrupted` attempt. Only for a run that nobody else is executing now (the same
        run id resumed). The number reset."""
        async with self._tx() as tx:
            reset = await tx.run(
                "UPDATE job_patients SET status = 'pending', interrupted = interrupted + CASE WHEN EXISTS"
                " (SELECT 1 FROM job_leases l WHERE l.run_id = job_patients.run_id"
                " AND l.patient_id = job_patients.patient_id) THEN 1 ELSE 0 END"
                " WHERE run_id = ? AND status = 'running'",
                (run_id,),
            )
            await tx.run("DELETE FROM job_leases WHERE run_id = ?", (run_id,))
            return reset

    async def retry_failed(self, run_id: str) -> int:
        """Failed patients back to pending and the run running again. The number reset."""
        async with self._tx() as tx:
            n = await tx.run(
                "UPDATE job_patients SET status = 'pending', interrupted = 0"
                " WHERE run_id = ? AND status = 'failed'",
                (run_id,),
            )
            if n:
                await tx.run("UPDATE job_runs SET status = 'running' WHERE run_id = ?", (run_id,))
        return n

    async def counts(self, run_id: str) -> dict[PatientStatus, int]:
        """Patients per status (every status present, zero when none)."""
        async with self._tx() as tx:
            rows = await tx.fetch(
                "SELECT status, COUNT(*) FROM job_patients WHERE run_id = ? GROUP BY status", (run_id,)
            )
        found = {str(r[0]): int(r[1]) for r in rows}
        statuses: tuple[PatientStatus, ...] = ("pending", "running", "done", "unchanged", "failed")
        return {s: found.get(s, 0) for s in statuses}

    async def patients(self, run_id: str, *, offset: int = 0, limit: int | None = None) -> list[PatientRow]:
        """The run's patients in patient-id order; `offset` and `limit`: a window of them (a
        Temporal chunk reads its own window, not the whole run: a run holds 100,000 patients)."""
        if limit is None and offset:
            raise ValueError("an offset needs a limit")
        window = "" if limit is None else " LIMIT ? OFFSET ?"
        params = (run_id,) if limit is None else (run_id, limit, offset)
        async with self._tx() as tx:
            rows = await tx.fetch(
                f"SELECT {_PATIENT_COLUMNS} FROM job_patients WHERE run_id = ? ORDER BY patient_id{window}",
                params,
            )
        return [_patient_row(r) for r in rows]

    async def _scope(self, tx: Tx, run_id: str) -> str:
        rows = await tx.fetch("SELECT fhir_url FROM job_runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise KeyError(f"no run {run_id!r} in the ledger")
        return str(rows[0][0])


def _run_row(row: tuple[Any, ...]) -> RunRow:
    return RunRow.model_validate(dict(zip(_RUN_COLUMNS.split(", "), row, strict=True)))


def _patient_row(row: tuple[Any, ...]) -> PatientRow:
    values = dict(zip(_PATIENT_COLUMNS.split(", "), row, strict=True))
    values["written"] = json.loads(values["written"] or "[]")
    return PatientRow.model_validate(values)


@asynccontextmanager
async def open_ledger(settings: Settings) -> AsyncIterator[Ledger]:
    async with open_owner(settings, LEDGER_FILE, Ledger) as ledger:
        yield ledger
