"""Notes proposed over MCP on Postgres, as the service's replicas share them: one note proposed by
several replicas at once is one proposal; a discarded one proposed again waits again; a written
one stays written (the upsert's conditions, which SQLite runs in tests/unit/test_note_proposals.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from postgres_server import postgres_cluster

from agent.service.note_proposals import NewProposal, open_proposals
from agent.settings import Settings

pytestmark = pytest.mark.integration

EHR = "https://ehr.example/fhir"
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _proposal(pid: str) -> NewProposal:
    return NewProposal(
        fhir_base=EHR,
        id=pid,
        patient="p1",
        text=f"note {pid[:4]}",
        sources=[],
        proposer="client-x",
        transaction={"resourceType": "Bundle", "type": "transaction", "entry": []},
    )


async def test_replicas_on_postgres_keep_one_proposal_per_note_and_its_decision(tmp_path: Path) -> None:
    ids = [f"{i:064x}" for i in range(10)]
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with (
            open_proposals(settings) as a,
            open_proposals(settings) as b,
            open_proposals(settings) as c,
        ):
            kept = await asyncio.gather(*(s.propose(_proposal(i), NOW) for i in ids for s in (a, b, c)))
            assert {k.status for k in kept} == {"pending"}
            assert [p.id for p in await c.pending(EHR, "p1", NOW)] == sorted(ids)

            await a.decide(EHR, ids[0], "discarded", by="Practitioner/7", now=NOW)
            await b.decide(
                EHR, ids[1], "written", by="Practitioner/7", now=NOW, reference="DocumentReference/9"
            )
            later = NOW + timedelta(minutes=1)
            again = await c.propose(_proposal(ids[0]), later)
            still = await c.propose(_proposal(ids[1]), later)
            not_discarded = await a.decide(EHR, ids[1], "discarded", by="Practitioner/8", now=later)
    assert (again.status, again.decided_by) == ("pending", None)
    assert (still.status, still.reference) == ("written", "DocumentReference/9")
    assert not_discarded is not None
    assert not_discarded.status == "written"
    assert not (tmp_path / "service.sqlite").exists()  # Postgres, not the SQLite fallback
