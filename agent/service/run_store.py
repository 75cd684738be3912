""" "Summarize now" runs as every API replica sees them, in the database they share.

A run executes on the replica that started it (agent.service.runs); its row here holds what
`GET /api/runs/{id}` reports, so the poll may reach any replica sharing the service's database
(agent.state_database: Postgres at `CHARTAGENT_CHECKPOINT_URL`, else `<state dir>/service.sqlite`):

- one run at a time per patient of a FHIR server, across replicas: a unique index over the running
  rows, so of two replicas starting one patient's run at once the database lets one in and the
  other answers that run;
- the run's replica beats (`beat`) while it runs; a running row whose beat is older than
  `BEAT_TTL_S` belongs to a replica that stopped, and reads as failed (what it wrote stays; a new
  run completes it), and a new start for its patient replaces it;
- rows are kept `KEPT_FOR_S` after their start.

The rows hold the patient's id, the node names and the written references, as the ledger and the
checkpoints do: no clinical text, no token.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Literal

from pydantic import BaseModel

from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings
from agent.state_database import Database, TablesOwner, failing_as, open_owner
from fhir_adapters.error_tree import ChartAgentError

__all__ = [
    "BEAT_TTL_S",
    "KEPT_FOR_S",
    "STOPPED",
    "RunRecord",
    "RunStatus",
    "RunStep",
    "RunStore",
    "RunView",
    "RunsUnavailable",
    "open_run_store",
]

RunStatus = Literal["running", "done", "failed"]
# A running run's replica beats every third of this; a beat older than it means the replica stopped.
BEAT_TTL_S: Final = 60.0
KEPT_FOR_S: Final = 7 * 24 * 3600.0
STOPPED: Final = "the server running it stopped; what it wrote stays, and Summarize now again completes it"

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS summary_runs (
        run_id TEXT PRIMARY KEY,
        fhir_base TEXT NOT NULL,
        patient TEXT NOT NULL,
        status TEXT NOT NULL,
        steps TEXT NOT NULL,
        written TEXT NOT NULL,
        error TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        beat_at DOUBLE PRECISION NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS summary_runs_one_running ON summary_runs (fhir_base, patient)"
    " WHERE status = 'running'",
    "CREATE INDEX IF NOT EXISTS summary_runs_started ON summary_runs (started_at)",
)
# Serialises the schema's creation among replicas starting at once (Postgres's catalog).
_SETUP_LOCK: Final = 4242120017
_COLUMNS: Final = "run_id, fhir_base, patient, status, steps, written, error, beat_at"


class RunsUnavailable(ChartAgentError):
    """The shared record of summary runs could not be read or written."""


class RunStep(BaseModel):
    node: str
    at: str


class RunView(BaseModel):
    """What `GET /api/runs/{id}` answers."""

    run_id: str
    status: RunStatus
    steps: list[RunStep]
    written: list[str]
    error: str | None


class RunRecord(RunView):
    """A run as its row holds it (a stopped replica's run reads as failed), with whose it is."""

    fhir_base: str
    patient: str

    def view(self) -> RunView:
        return RunView.model_validate(self.model_dump(exclude={"fhir_base", "patient"}))


class RunStore(TablesOwner):
    """The summary runs' rows (see the module docstring)."""

    def __init__(self, db: Database, beat_ttl_s: float = BEAT_TTL_S) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)
        self.beat_ttl_s = beat_ttl_s

    async def start(self, run_id: str, fhir_base: str, patient: str) -> tuple[str, bool]:
        """Records `run_id` running for the patient, unless one runs already: (the running run's
        id, whether it is `run_id`)."""
        now = time.time()
        key = (fhir_base, patient)
        async with _failing("the summary run could not be started"), self._tx() as tx:
            await tx.run("DELETE FROM summary_runs WHERE started_at < ?", (now - KEPT_FOR_S,))
            await tx.run(
                "UPDATE summary_runs SET status = 'failed', error = ? WHERE fhir_base = ? AND patient = ?"
                " AND status = 'running' AND beat_at < ?",
                (STOPPED, *key, now - self.beat_ttl_s),
            )
            inserted = await tx.run(
                "INSERT INTO summary_runs"
                " (run_id, fhir_base, patient, status, steps, written, started_at, beat_at)"
                " VALUES (?, ?, ?, 'running', '[]', '[]', ?, ?)"
                " ON CONFLICT (fhir_base, patient) WHERE status = 'running' DO NOTHING",
                (run_id, *key, now, now),
            )
            if inserted == 1:
                return run_id, True
            rows = await tx.fetch(
                "SELECT run_id FROM summary_runs WHERE fhir_base = ? AND patient = ? AND status = 'running'",
                key,
            )
        return str(rows[0][0]), False

    async def beat(self, run_id: str, steps: Sequence[RunStep] | None = None) -> None:
        """The run's replica is alive (and, with `steps`, the nodes it has run)."""
        async with _failing("the summary run could not be updated"), self._tx() as tx:
            if steps is None:
                await tx.run(
                    "UPDATE summary_runs SET beat_at = ? WHERE run_id = ? AND status = 'running'",
                    (time.time(), run_id),
                )
            else:
                await tx.run(
                    "UPDATE summary_runs SET beat_at = ?, steps = ? WHERE run_id = ? AND status = 'running'",
                    (time.time(), _steps_json(steps), run_id),
                )

    async def finish(
        self,
        run_id: str,
        status: Literal["done", "failed"],
        steps: Sequence[RunStep],
        written: Sequence[str],
        error: str | None,
    ) -> None:
        async with _failing("the summary run could not be finished"), self._tx() as tx:
            await tx.run(
                "UPDATE summary_runs SET status = ?, steps = ?, written = ?, error = ?, beat_at = ?"
                " WHERE run_id = ?",
                (status, _steps_json(steps), json.dumps(list(written)), error, time.time(), run_id),
            )

    async def get(self, run_id: str) -> RunRecord | None:
        async with _failing("the summary runs could not be read"), self._reads() as tx:
            rows = await tx.fetch(f"SELECT {_COLUMNS} FROM summary_runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        run_id, fhir_base, patient, status, steps, written, error, beat_at = rows[0]
        if status == "running" and beat_at < time.time() - self.beat_ttl_s:
            status, error = "failed", STOPPED
        return RunRecord(
            run_id=run_id,
            fhir_base=fhir_base,
            patient=patient,
            status=status,
            steps=[RunStep.model_validate(s) for s in json.loads(steps)],
            written=json.loads(written),
            error=error,
        )


def _failing(what: str) -> AbstractAsyncContextManager[None]:
    return failing_as(RunsUnavailable, what)


def _steps_json(steps: Sequence[RunStep]) -> str:
    return json.dumps([s.model_dump() for s in steps])


@asynccontextmanager
async def open_run_store(settings: Settings, beat_ttl_s: float = BEAT_TTL_S) -> AsyncIterator[RunStore]:
    """The shared summary runs, their table created if new."""
    async with open_owner(settings, SERVICE_DATABASE_FILE, lambda db: RunStore(db, beat_ttl_s)) as store:
        yield store
