"""Job workers that start together open the change marks at once: the SQLite store's migrations
(ALTER TABLE) must not race ("duplicate column name", "UNIQUE constraint failed")."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.checkpoints import open_change_marks
from agent.settings import Settings


def test_workers_opening_the_marks_at_once_all_succeed(tmp_path: Path) -> None:
    async def open_once() -> None:
        async with open_change_marks(Settings(state_dir=tmp_path), "http://fhir.example/fhir") as marks:
            assert await marks.get("p1") is None

    async def many() -> None:
        # Each in a thread of its own with its own event loop and connection, as processes do.
        await asyncio.gather(*(asyncio.to_thread(asyncio.run, open_once()) for _ in range(6)))

    asyncio.run(many())
