"""Claims on chat threads on Postgres, as API replicas share them: of three replicas claiming the
same threads at once, exactly one holds each; a released claim is taken by another; an expired
one too (the statements tests/unit/test_thread_runs.py runs on SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from postgres_server import postgres_cluster

from agent.service.thread_runs import open_thread_runs
from agent.service.threads import BusyThreads, checkpoint_thread
from agent.settings import Settings

pytestmark = pytest.mark.integration

EHR = "https://ehr.example/fhir"


async def test_replicas_on_postgres_run_each_thread_once(tmp_path: Path) -> None:
    threads = [f"t{i}" for i in range(10)]
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with (
            open_thread_runs(settings) as one,
            open_thread_runs(settings) as two,
            open_thread_runs(settings, ttl_s=0.5) as short,
        ):
            replicas = [BusyThreads(), BusyThreads(), BusyThreads()]
            for busy, shared in zip(replicas, (one, two, short), strict=True):
                busy.shared = shared
            leases = await asyncio.gather(
                *(r.claim(checkpoint_thread(EHR, "p1", t)) for t in threads for r in replicas)
            )
            held = [lease for lease in leases if lease is not None]
            assert len(held) == len(threads)  # one replica's lease per thread
            assert not any(
                await asyncio.gather(
                    *(r.claim(checkpoint_thread(EHR, "p1", t)) for t in threads for r in replicas)
                )
            )
            for lease in held:
                await lease.release()
            taken = await replicas[1].claim(checkpoint_thread(EHR, "p1", threads[0]))
            assert taken is not None
            await taken.release()

            # A replica that dies mid-run leaves its claim to expire.
            assert await short.claim(checkpoint_thread(EHR, "p1", "orphan"), "dead-replica")
            assert await replicas[0].claim(checkpoint_thread(EHR, "p1", "orphan")) is None
            await asyncio.sleep(0.7)
            revived = await replicas[0].claim(checkpoint_thread(EHR, "p1", "orphan"))
            assert revived is not None
            await revived.release()
    assert not (tmp_path / "service.sqlite").exists()  # Postgres, not the SQLite fallback
