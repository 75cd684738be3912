"""Claims on chat threads shared by API replicas (agent.service.thread_runs) on the SQLite state
database: two replicas' registries (`BusyThreads`, each with its own connection to one file) never
run one thread at once; a released claim frees it at once, a claim left by a replica that died
frees it when it expires; a live run renews its claim; a database that cannot be written refuses
the run and leaves no claim behind in the process."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from agent.service.thread_runs import ThreadRunsUnavailable, open_thread_runs
from agent.service.threads import BusyThreads, checkpoint_thread
from agent.settings import Settings


def _key(patient: str, thread: str) -> str:
    return checkpoint_thread("https://ehr.example/fhir", patient, thread)


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[BusyThreads, BusyThreads]]:
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with AsyncExitStack() as stack:
        pair = (BusyThreads(), BusyThreads())
        for busy in pair:
            busy.shared = await stack.enter_async_context(open_thread_runs(settings))
        yield pair


async def test_a_thread_running_on_one_replica_is_refused_on_the_other(
    replicas: tuple[BusyThreads, BusyThreads],
) -> None:
    a, b = replicas
    lease = await a.claim(_key("p1", "t1"))
    assert lease is not None
    assert await b.claim(_key("p1", "t1")) is None
    assert await a.claim(_key("p1", "t1")) is None
    other = await b.claim(_key("p2", "t1"))  # another patient's thread of that name
    assert other is not None
    await lease.release()
    taken = await b.claim(_key("p1", "t1"))
    assert taken is not None
    assert await a.claim(_key("p1", "t1")) is None
    await taken.release()
    await other.release()


async def test_two_replicas_claiming_at_once_one_wins(replicas: tuple[BusyThreads, BusyThreads]) -> None:
    a, b = replicas
    leases = await asyncio.gather(*(busy.claim(_key("p1", "race")) for busy in (a, b, a, b)))
    held = [lease for lease in leases if lease is not None]
    assert len(held) == 1
    await held[0].release()


async def test_a_claim_left_by_a_dead_replica_expires_and_a_live_one_is_renewed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with open_thread_runs(settings, ttl_s=0.3) as runs:
        thread = _key("p1", "t1")
        assert await runs.claim(thread, "dead-replica")  # never released nor renewed
        assert not await runs.claim(thread, "live-replica")
        await asyncio.sleep(0.4)
        assert await runs.claim(thread, "live-replica")
        for _ in range(4):  # renewed every 0.1 s: outlives its first 0.3 s
            await asyncio.sleep(0.1)
            assert await runs.renew(thread, "live-replica")
        assert not await runs.claim(thread, "third")
        assert not await runs.renew(thread, "dead-replica")  # lost: another holds it now
        await runs.release(thread, "live-replica")
        assert await runs.claim(thread, "third")


async def test_a_run_renews_its_claim_until_it_is_released(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with open_thread_runs(settings, ttl_s=0.3) as one, open_thread_runs(settings, ttl_s=0.3) as two:
        a, b = BusyThreads(), BusyThreads()
        a.shared, b.shared = one, two
        lease = await a.claim(_key("p1", "long"))
        assert lease is not None
        await asyncio.sleep(1.0)  # more than three times the claim's life: its renewals keep it
        assert await b.claim(_key("p1", "long")) is None
        await lease.release()
        taken = await b.claim(_key("p1", "long"))
        assert taken is not None
        await taken.release()


async def test_an_unreachable_database_refuses_the_run_and_keeps_no_claim(
    replicas: tuple[BusyThreads, BusyThreads], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = replicas
    shared = a.shared
    assert shared is not None
    monkeypatch.setattr(shared, "_tx", _Failing)
    with pytest.raises(ThreadRunsUnavailable, match="could not be checked"):
        await a.claim(_key("p1", "t1"))
    monkeypatch.undo()
    lease = await a.claim(_key("p1", "t1"))  # nothing of the failed claim stayed in the process
    assert lease is not None
    await lease.release()


class _Failing:
    """A transaction the database refuses to begin."""

    async def __aenter__(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def __aexit__(self, *_: object) -> None:
        return None
