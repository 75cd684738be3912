"""The record of used hook tokens (agent.service.token_uses) on SQLite: what one connection (one
replica) records, another refuses; of a token inserted by two at once, one is let in; expired
records go; a database that fails refuses the call. The same race on Postgres:
tests/integration/test_token_uses_postgres.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent.service.token_uses import (
    SERVICE_DATABASE_FILE,
    DatabaseTokenUses,
    MemoryTokenUses,
    TokenUses,
    TokenUsesUnavailable,
    open_token_uses,
)
from agent.settings import Settings

ISS = "https://ehr.example"
NOW = 1_800_000_000.0


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, checkpoint_url=None)


def _rows(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
        return sorted(db.execute("SELECT issuer, jti FROM token_uses").fetchall())


async def _race(stores: list[DatabaseTokenUses], jtis: list[str]) -> list[list[bool]]:
    """Every store inserts every token at once: per token, what each store was told."""
    answers = await asyncio.gather(
        *(s.first_use(ISS, j, forget_at=NOW + 300, now=NOW) for j in jtis for s in stores)
    )
    n = len(stores)
    return [list(answers[i * n : (i + 1) * n]) for i in range(len(jtis))]


async def test_a_token_one_replica_accepted_is_refused_by_another(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with open_token_uses(settings) as one, open_token_uses(settings) as two:
        assert await one.first_use(ISS, "a", forget_at=NOW + 300, now=NOW)
        assert not await two.first_use(ISS, "a", forget_at=NOW + 300, now=NOW)
        assert not await one.first_use(ISS, "a", forget_at=NOW + 300, now=NOW + 1)
        # The same jti from another issuer is another token.
        assert await two.first_use("https://other.example", "a", forget_at=NOW + 300, now=NOW)
    # Kept across a restart: the record is in the database, not the process.
    async with open_token_uses(settings) as again:
        assert not await again.first_use(ISS, "a", forget_at=NOW + 300, now=NOW + 2)


async def test_of_a_token_inserted_by_several_at_once_one_is_let_in(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    jtis = [f"t{i}" for i in range(20)]
    async with open_token_uses(settings) as a, open_token_uses(settings) as b, open_token_uses(settings) as c:
        per_token = await _race([a, b, c], jtis)
    assert [sum(answers) for answers in per_token] == [1] * len(jtis)


async def test_records_go_once_their_tokens_have_expired(tmp_path: Path) -> None:
    async with open_token_uses(_settings(tmp_path)) as uses:
        assert await uses.first_use(ISS, "early", forget_at=NOW + 10, now=NOW)
        assert await uses.first_use(ISS, "late", forget_at=NOW + 300, now=NOW)
        assert _rows(tmp_path) == [(ISS, "early"), (ISS, "late")]
        assert await uses.first_use(ISS, "next", forget_at=NOW + 400, now=NOW + 11)
        assert _rows(tmp_path) == [(ISS, "late"), (ISS, "next")]


async def test_a_database_that_fails_refuses_the_call(tmp_path: Path) -> None:
    async with open_token_uses(_settings(tmp_path)) as uses:
        with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
            db.execute("DROP TABLE token_uses")
        with pytest.raises(TokenUsesUnavailable, match="could not be checked") as caught:
            await uses.first_use(ISS, "a", forget_at=NOW + 300, now=NOW)
    assert "a" not in str(caught.value).split()


@pytest.mark.parametrize("kind", ["memory", "database"])
async def test_both_stores_answer_alike(kind: str, tmp_path: Path) -> None:
    async def check(uses: TokenUses) -> list[bool]:
        return [
            await uses.first_use(ISS, "x", forget_at=NOW + 10, now=NOW),
            await uses.first_use(ISS, "x", forget_at=NOW + 10, now=NOW + 5),
            await uses.first_use(ISS, "y", forget_at=NOW + 10, now=NOW + 5),
            # Forgotten once expired (the verifier refuses an expired token before asking).
            await uses.first_use(ISS, "x", forget_at=NOW + 30, now=NOW + 11),
        ]

    if kind == "memory":
        got = await check(MemoryTokenUses())
    else:
        async with open_token_uses(_settings(tmp_path)) as uses:
            got = await check(uses)
    assert got == [True, False, True, True]
