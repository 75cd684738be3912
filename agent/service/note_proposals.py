"""Notes proposed over MCP, kept until a person writes them to the chart or discards them.

An MCP client's `propose_note` writes nothing to FHIR: the proposal (its text, its sources and the
FHIR transaction that would write it) waits here, in the service's shared database
(agent.state_database: Postgres at `CHARTAGENT_CHECKPOINT_URL`, else `<state dir>/service.sqlite`,
beside the chat's checkpoints, which hold patient data too), so that any API replica shows it in
the SMART app of a person who opens that patient (agent.service.proposal_api).

A proposal is named by the note's business identifier (`chat_note.build_note_transaction`: the
patient, the text and the sources), within its FHIR server: the same note proposed twice is one
proposal, and written twice is one DocumentReference. Its states:

- `pending`: waits for a person; proposed again, it stays one proposal;
- `written`: a person wrote it (the reference it got); proposed again, the client is told so;
- `discarded`: a person discarded it; proposed again, it waits again (a new request).

A proposal not decided within `PROPOSAL_DAYS`, and a decision older than that, are forgotten.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings
from agent.state_database import Database, TablesOwner, database_errors, open_owner
from fhir_adapters.error_tree import ChartAgentError

__all__ = [
    "PROPOSAL_DAYS",
    "NewProposal",
    "ProposalStatus",
    "ProposalStore",
    "ProposalsUnavailable",
    "StoredProposal",
    "open_proposals",
]

PROPOSAL_DAYS: Final = 14
_KEPT_FOR: Final = timedelta(days=PROPOSAL_DAYS)

ProposalStatus = Literal["pending", "written", "discarded"]

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS note_proposals (
        fhir_base TEXT NOT NULL,
        id TEXT NOT NULL,
        patient TEXT NOT NULL,
        status TEXT NOT NULL,
        proposed_at DOUBLE PRECISION NOT NULL,
        proposer TEXT NOT NULL,
        decided_at DOUBLE PRECISION,
        decided_by TEXT,
        reference TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (fhir_base, id))""",
    "CREATE INDEX IF NOT EXISTS note_proposals_patient ON note_proposals (fhir_base, patient, status)",
)
# Serialises the schema's creation among replicas starting at once (Postgres's catalog).
_SETUP_LOCK: Final = 4242120015
_COLUMNS: Final = "id, patient, status, proposed_at, proposer, decided_at, decided_by, reference, body"
_ONE: Final = f"SELECT {_COLUMNS} FROM note_proposals WHERE fhir_base = ? AND id = ?"


class ProposalsUnavailable(ChartAgentError):
    """The proposals' database could not be read or written."""


class NewProposal(BaseModel):
    """What an MCP client proposed (agent.service.mcp_server)."""

    model_config = ConfigDict(frozen=True)

    # The FHIR server the patient id belongs to (the caller's launch `iss`, else the service's own).
    fhir_base: str
    # The note's business identifier token.
    id: str
    patient: str
    text: str
    sources: list[str]
    # Who proposed it: the caller's PHI-free label (a token's client id, a service key's name).
    proposer: str
    # The transaction a person's "write" posts, as the client was shown it.
    transaction: dict[str, Any]


class StoredProposal(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    patient: str
    status: ProposalStatus
    proposed_at: datetime
    proposer: str
    text: str
    sources: list[str] = Field(default_factory=list)
    transaction: dict[str, Any] = Field(default_factory=dict)
    decided_at: datetime | None = None
    # fhirUser of the person who decided (Practitioner/123).
    decided_by: str | None = None
    # What the write created or found (DocumentReference/123).
    reference: str | None = None


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _stored(row: Sequence[Any]) -> StoredProposal:
    pid, patient, status, proposed_at, proposer, decided_at, decided_by, reference, body = row
    content = json.loads(body)
    return StoredProposal(
        id=pid,
        patient=patient,
        status=status,
        proposed_at=datetime.fromtimestamp(proposed_at, UTC),
        proposer=proposer,
        text=content["text"],
        sources=content["sources"],
        transaction=content["transaction"],
        decided_at=_instant(decided_at),
        decided_by=decided_by,
        reference=reference,
    )


class ProposalStore(TablesOwner):
    """Proposals in the shared database; one connection, its transactions serialised."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)

    async def propose(self, proposal: NewProposal, now: datetime) -> StoredProposal:
        """Keeps the proposal (see the module docstring for one proposed again); its state now."""
        body = json.dumps(
            {"text": proposal.text, "sources": proposal.sources, "transaction": proposal.transaction},
            separators=(",", ":"),
        )
        stamp = now.timestamp()
        try:
            async with self._tx() as tx:
                await tx.run(
                    "DELETE FROM note_proposals WHERE COALESCE(decided_at, proposed_at) < ?",
                    ((now - _KEPT_FOR).timestamp(),),
                )
                await tx.run(
                    "INSERT INTO note_proposals (fhir_base, id, patient, status, proposed_at, proposer, body)"
                    " VALUES (?, ?, ?, 'pending', ?, ?, ?)"
                    " ON CONFLICT (fhir_base, id) DO UPDATE SET status = 'pending', proposed_at = ?,"
                    " proposer = ?, decided_at = NULL, decided_by = NULL"
                    " WHERE note_proposals.status = 'discarded'",
                    (proposal.fhir_base, proposal.id, proposal.patient, stamp, proposal.proposer, body,
                     stamp, proposal.proposer),
                )  # fmt: skip
                rows = await tx.fetch(_ONE, (proposal.fhir_base, proposal.id))
        except database_errors() as exc:
            raise ProposalsUnavailable(f"the proposal could not be kept ({type(exc).__name__})") from None
        return _stored(rows[0])

    async def pending(self, fhir_base: str, patient: str, now: datetime) -> list[StoredProposal]:
        """The patient's proposals waiting for a person, oldest first."""
        since = (now - _KEPT_FOR).timestamp()
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM note_proposals WHERE fhir_base = ? AND patient = ?"
            " AND status = 'pending' AND proposed_at >= ? ORDER BY proposed_at, id",
            (fhir_base, patient, since),
        )
        return [_stored(r) for r in rows]

    async def get(self, fhir_base: str, proposal_id: str, now: datetime) -> StoredProposal | None:
        """The proposal; None when there is none, or it waited past `PROPOSAL_DAYS` (forgotten)."""
        rows = await self._fetch(_ONE, (fhir_base, proposal_id))
        found = _stored(rows[0]) if rows else None
        if found is None or (found.status == "pending" and found.proposed_at < now - _KEPT_FOR):
            return None
        return found

    async def decide(
        self,
        fhir_base: str,
        proposal_id: str,
        status: Literal["written", "discarded"],
        *,
        by: str,
        now: datetime,
        reference: str | None = None,
    ) -> StoredProposal | None:
        """Records a person's decision; the proposal after it, None when there is none.

        Written is recorded whatever the state (the note is in the chart); discarded only over
        pending (a written note stays written)."""
        guard = "" if status == "written" else " AND status = 'pending'"
        try:
            async with self._tx() as tx:
                await tx.run(
                    "UPDATE note_proposals SET status = ?, decided_at = ?, decided_by = ?, reference = ?"
                    f" WHERE fhir_base = ? AND id = ?{guard}",
                    (status, now.timestamp(), by, reference, fhir_base, proposal_id),
                )
                rows = await tx.fetch(_ONE, (fhir_base, proposal_id))
        except database_errors() as exc:
            raise ProposalsUnavailable(f"the decision could not be recorded ({type(exc).__name__})") from None
        return _stored(rows[0]) if rows else None

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self._reads() as tx:
                return await tx.fetch(sql, params)
        except database_errors() as exc:
            raise ProposalsUnavailable(f"the proposals could not be read ({type(exc).__name__})") from None


@asynccontextmanager
async def open_proposals(settings: Settings) -> AsyncIterator[ProposalStore]:
    """The shared store of proposed notes, its table created if new."""
    async with open_owner(settings, SERVICE_DATABASE_FILE, ProposalStore) as store:
        yield store
