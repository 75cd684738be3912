"""The store of notes proposed over MCP (agent.service.note_proposals) on SQLite: a proposal kept by
one connection (one replica) is listed by another; the same note proposed twice is one proposal;
a written one stays written and says so, a discarded one waits again when proposed again; a
patient sees only their own, on their own FHIR server; old proposals are forgotten; a database
that fails is an error, never an empty answer."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.service.note_proposals import (
    PROPOSAL_DAYS,
    NewProposal,
    ProposalsUnavailable,
    open_proposals,
)
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings

EHR = "https://ehr.example/fhir"
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
USER = "Practitioner/7"


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, checkpoint_url=None)


def _proposal(
    pid: str = "a" * 64, *, patient: str = "p1", base: str = EHR, text: str = "Follow up."
) -> NewProposal:
    return NewProposal(
        fhir_base=base,
        id=pid,
        patient=patient,
        text=text,
        sources=["Observation/1"],
        proposer="client-x",
        transaction={"resourceType": "Bundle", "type": "transaction", "entry": []},
    )


async def test_a_proposal_kept_by_one_replica_is_listed_by_another(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with open_proposals(settings) as one, open_proposals(settings) as two:
        kept = await one.propose(_proposal(), NOW)
        assert kept.status == "pending"
        listed = await two.pending(EHR, "p1", NOW)
    assert [(p.id, p.text, p.sources, p.proposer) for p in listed] == [
        ("a" * 64, "Follow up.", ["Observation/1"], "client-x")
    ]
    assert listed[0].transaction["type"] == "transaction"
    assert listed[0].proposed_at == NOW


async def test_the_same_note_proposed_twice_is_one_proposal(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal(), NOW)
        again = await store.propose(_proposal(), NOW + timedelta(minutes=5))
        assert again.status == "pending"
        assert len(await store.pending(EHR, "p1", NOW)) == 1


async def test_a_written_note_proposed_again_stays_written(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal(), NOW)
        done = await store.decide(EHR, "a" * 64, "written", by=USER, now=NOW, reference="DocumentReference/9")
        assert done is not None
        assert (done.status, done.decided_by, done.reference) == ("written", USER, "DocumentReference/9")
        again = await store.propose(_proposal(), NOW + timedelta(hours=1))
        assert (again.status, again.reference) == ("written", "DocumentReference/9")
        assert await store.pending(EHR, "p1", NOW) == []
        # A written note is not discarded after the fact.
        late = await store.decide(EHR, "a" * 64, "discarded", by=USER, now=NOW)
        assert late is not None
        assert late.status == "written"


async def test_a_discarded_note_proposed_again_waits_again(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal(), NOW)
        gone = await store.decide(EHR, "a" * 64, "discarded", by=USER, now=NOW)
        assert gone is not None
        assert gone.status == "discarded"
        assert await store.pending(EHR, "p1", NOW) == []
        again = await store.propose(_proposal(), NOW + timedelta(hours=1))
        assert (again.status, again.decided_by) == ("pending", None)
        assert [p.id for p in await store.pending(EHR, "p1", NOW)] == ["a" * 64]


async def test_a_patient_sees_only_their_own_on_their_own_fhir_server(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal("a" * 64, patient="p1"), NOW)
        await store.propose(_proposal("b" * 64, patient="p2"), NOW)
        # The same patient id on another FHIR server is another patient.
        await store.propose(_proposal("c" * 64, patient="p1", base="https://other.example/fhir"), NOW)
        assert [p.id for p in await store.pending(EHR, "p1", NOW)] == ["a" * 64]
        assert await store.get(EHR, "c" * 64, NOW) is None
        assert await store.decide(EHR, "c" * 64, "discarded", by=USER, now=NOW) is None


async def test_old_proposals_are_forgotten(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal("a" * 64), NOW)
        later = NOW + timedelta(days=PROPOSAL_DAYS, seconds=1)
        assert await store.pending(EHR, "p1", later) == []
        assert await store.get(EHR, "a" * 64, later) is None  # not written once it expired
        assert await store.get(EHR, "a" * 64, NOW) is not None
        await store.propose(_proposal("b" * 64), later)  # a new proposal clears the old rows
        assert await store.get(EHR, "a" * 64, later) is None
        assert [p.id for p in await store.pending(EHR, "p1", later)] == ["b" * 64]


async def test_a_failing_database_is_an_error_not_an_empty_answer(tmp_path: Path) -> None:
    async with open_proposals(_settings(tmp_path)) as store:
        await store.propose(_proposal(), NOW)
        with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
            db.execute("DROP TABLE note_proposals")
        with pytest.raises(ProposalsUnavailable):
            await store.pending(EHR, "p1", NOW)
        with pytest.raises(ProposalsUnavailable):
            await store.propose(_proposal(), NOW)
        with pytest.raises(ProposalsUnavailable):
            await store.decide(EHR, "a" * 64, "written", by=USER, now=NOW, reference="DocumentReference/1")
