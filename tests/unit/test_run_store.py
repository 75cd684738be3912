""" "Summarize now" runs in the shared database (agent.service.run_store) on SQLite, as two API
replicas (two stores over one file) see them: one running run per patient of a FHIR server, the
same patient id on another FHIR server apart; progress and the end read from either; a run whose
replica stopped beating reads as failed and a new start replaces it; old rows go; an unreachable
database is an error that names the store, not the patient."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from agent.context import RunContext
from agent.service import run_store
from agent.service.run_store import STOPPED, RunStep, RunStore, RunsUnavailable, open_run_store
from agent.service.runs import RunRegistry
from agent.settings import Settings
from fhir_adapters import FhirTransportError

EHR, OTHER_EHR = "https://ehr.example/fhir", "https://other.example/fhir"


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[RunStore, RunStore]]:
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with AsyncExitStack() as stack:
        yield (
            await stack.enter_async_context(open_run_store(settings, beat_ttl_s=0.5)),
            await stack.enter_async_context(open_run_store(settings, beat_ttl_s=0.5)),
        )


async def test_one_run_per_patient_across_replicas_and_its_progress_read_on_either(
    replicas: tuple[RunStore, RunStore],
) -> None:
    a, b = replicas
    assert await a.start("run-1", EHR, "p1") == ("run-1", True)
    assert await b.start("run-2", EHR, "p1") == ("run-1", False)  # the running one is answered
    assert await b.start("run-3", OTHER_EHR, "p1") == ("run-3", True)  # another server's patient
    steps = [RunStep(node="check_changes", at="2026-12-05T10:00:00+00:00")]
    await a.beat("run-1", steps)
    seen = await b.get("run-1")
    assert seen is not None
    assert (seen.status, seen.steps, seen.patient, seen.fhir_base) == ("running", steps, "p1", EHR)
    await a.finish("run-1", "done", steps, ["DiagnosticReport/9"], None)
    done = await b.get("run-1")
    assert done is not None
    assert done.view().model_dump() == {
        "run_id": "run-1",
        "status": "done",
        "steps": [s.model_dump() for s in steps],
        "written": ["DiagnosticReport/9"],
        "error": None,
    }
    assert await b.start("run-4", EHR, "p1") == ("run-4", True)  # the patient's next run
    assert await a.get("no-such-run") is None


async def test_replicas_starting_one_patient_at_once_start_one_run(
    replicas: tuple[RunStore, RunStore],
) -> None:
    a, b = replicas
    started = await asyncio.gather(*(s.start(f"run-{i}", EHR, "p2") for i, s in enumerate((a, b, a, b))))
    assert len({run_id for run_id, _ in started}) == 1
    assert sum(new for _, new in started) == 1


async def test_a_run_whose_replica_stopped_reads_failed_and_is_replaced(
    replicas: tuple[RunStore, RunStore],
) -> None:
    a, b = replicas
    await a.start("orphan", EHR, "p3")  # its replica dies: no beat, no finish
    await asyncio.sleep(0.3)
    await a.beat("orphan")  # alive so far
    await asyncio.sleep(0.3)
    alive = await b.get("orphan")
    assert alive is not None
    assert alive.status == "running"
    await asyncio.sleep(0.6)
    stopped = await b.get("orphan")
    assert stopped is not None
    assert (stopped.status, stopped.error) == ("failed", STOPPED)
    assert await b.start("next", EHR, "p3") == ("next", True)
    replaced = await a.get("orphan")
    assert replaced is not None
    assert (replaced.status, replaced.error) == ("failed", STOPPED)


async def test_rows_older_than_their_keeping_go_at_the_next_start(
    replicas: tuple[RunStore, RunStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    await a.start("old", EHR, "p4")
    await a.finish("old", "failed", [], [], "the FHIR server failed")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + run_store.KEPT_FOR_S + 1)
    await b.start("new", EHR, "p5")
    assert await b.get("old") is None


async def test_an_unreachable_database_is_a_clear_error(
    replicas: tuple[RunStore, RunStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = replicas
    monkeypatch.setattr(a, "_tx", _Failing)
    monkeypatch.setattr(a, "_reads", _Failing)
    with pytest.raises(RunsUnavailable, match=r"could not be started \(OperationalError\)"):
        await a.start("run-x", EHR, "patient-secret-id")
    with pytest.raises(RunsUnavailable, match="could not be read") as read:
        await a.get("run-x")
    assert "patient-secret-id" not in str(read.value)


class _Failing:
    """A transaction the database refuses to begin."""

    async def __aenter__(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def __aexit__(self, *_: object) -> None:
        return None


async def test_a_long_run_beats_while_it_runs_and_records_its_end(tmp_path: Path) -> None:
    """`RunRegistry` (agent.service.runs) keeps a long run alive in the store past its time to
    live, and records its end there: a context that fails to open is the run's error, in
    describe_failure's words."""
    settings = Settings(state_dir=tmp_path, checkpoint_url=None)
    async with open_run_store(settings, beat_ttl_s=0.3) as store:
        registry = RunRegistry()
        registry.store = store
        gate = asyncio.Event()

        async def slow_then_refused(_: AsyncExitStack) -> RunContext:
            await gate.wait()
            raise FhirTransportError("GET", "metadata", "ConnectError")

        failed_before = REGISTRY.get_sample_value("chartagent_summary_runs_total", {"status": "failed"})
        run_id, started = await registry.start(EHR, "p1", slow_then_refused)
        assert started
        await asyncio.sleep(1.0)  # three times the beat's time to live
        alive = await store.get(run_id)
        assert alive is not None
        assert alive.status == "running"
        gate.set()
        for _ in range(50):
            ended = await store.get(run_id)
            if ended is not None and ended.status != "running":
                break
            await asyncio.sleep(0.05)
        assert ended is not None
        assert ended.status == "failed"
        assert ended.error is not None
        assert "ConnectError" in ended.error
        failed_after = REGISTRY.get_sample_value("chartagent_summary_runs_total", {"status": "failed"})
        assert failed_after == (failed_before or 0) + 1  # counted for the metrics too
        await registry.aclose()
