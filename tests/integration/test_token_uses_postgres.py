"""The record of used hook tokens on Postgres, as replicas of the service share it: of a token that
several connections insert at once, exactly one is let in, and a later use anywhere is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from postgres_server import postgres_cluster

from agent.service.token_uses import open_token_uses
from agent.settings import Settings

pytestmark = pytest.mark.integration

ISS = "https://ehr.example"
NOW = 1_800_000_000.0


async def test_replicas_on_postgres_let_each_token_in_once(tmp_path: Path) -> None:
    jtis = [f"t{i}" for i in range(30)]
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with (
            open_token_uses(settings) as a,
            open_token_uses(settings) as b,
            open_token_uses(settings) as c,
        ):
            stores = [a, b, c]
            answers = await asyncio.gather(
                *(s.first_use(ISS, j, forget_at=NOW + 300, now=NOW) for j in jtis for s in stores)
            )
            per_token = [answers[i * 3 : (i + 1) * 3] for i in range(len(jtis))]
            later = [await c.first_use(ISS, j, forget_at=NOW + 300, now=NOW + 1) for j in jtis[:3]]
    assert [sum(x) for x in per_token] == [1] * len(jtis)
    assert later == [False] * 3
    assert not (tmp_path / "service.sqlite").exists()  # Postgres, not the SQLite fallback
