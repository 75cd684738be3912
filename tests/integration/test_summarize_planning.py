"""The planning summarization graph against the real FHIR server: a patient with nothing new costs
one record read and no recomputation; a run killed between fan-out items resumes from its
checkpoint, reads only what it had not read, and writes nothing twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fhir_reads import count, duplicate_identifiers, server_with
from langchain_core.runnables import RunnableConfig
from postgres_server import postgres_cluster

import tools.documents.ingest as ingest
from agent.checkpoints import checkpoint_serde, open_checkpointer, open_store
from agent.context import RunContext
from agent.jobs.summarize import Checkpointing, summarize_many, summarize_patient
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration


class Wire(httpx.AsyncBaseTransport):
    """The real network, every request's method and path recorded."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Killed(BaseException):
    """The process dies here (not an error of the run: nothing catches it)."""


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 21)


@pytest.fixture
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


def documents_of(cohort: Cohort, patient_id: str) -> int:
    return sum(
        1 for r in cohort.resources() if r["resourceType"] == "DocumentReference" and patient_id in str(r)
    )


def counting_reads(monkeypatch: pytest.MonkeyPatch, *, kill_at: int | None = None) -> list[int]:
    """Count the PDF readings (the costly step of a document); die at reading `kill_at`."""
    calls: list[int] = []
    real = ingest.extract_labs_async

    async def extract(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if kill_at is not None and len(calls) == kill_at:
            raise Killed
        return await real(*args, **kwargs)

    monkeypatch.setattr(ingest, "extract_labs_async", extract)
    return calls


async def test_nothing_new_costs_one_record_read_and_no_recomputation(
    server: str, cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = cohort.patients[0].id
    async with FhirClient(server) as client:
        (first,) = await summarize_many(RunContext(fhir=client), [patient])
    assert first.status == "written"
    reads = counting_reads(monkeypatch)
    wire = Wire()
    async with FhirClient(server, transport=wire) as client:
        state = await summarize_patient(RunContext(fhir=client), patient)
        (again,) = await summarize_many(RunContext(fhir=client), [patient])
    assert again.status == "unchanged"
    assert state["worklist"].items == ()
    assert reads == []  # no PDF read again
    assert "trends" not in state  # nothing recomputed
    assert all(method == "GET" for method, _ in wire.requests)  # one record read: searches only
    assert not any("/Binary/" in path for _, path in wire.requests)


@pytest.fixture(params=["sqlite", "postgres"])
def checkpoint_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The default SQLite checkpointer, and Postgres (a throwaway cluster) by setting."""
    root = tmp_path_factory.mktemp(f"checkpoints-{request.param}")
    if request.param == "sqlite":
        yield Settings(state_dir=root)
        return
    with postgres_cluster() as url:
        yield Settings(state_dir=root, checkpoint_url=url)


async def test_a_run_killed_between_documents_resumes_without_rereading_or_duplicates(
    server: str, cohort: Cohort, monkeypatch: pytest.MonkeyPatch, checkpoint_settings: Settings
) -> None:
    patient = next(p.id for p in cohort.patients if documents_of(cohort, p.id) >= 2)
    documents = documents_of(cohort, patient)
    settings = checkpoint_settings
    before = await count(server, "Observation")
    # One branch at a time, so that the kill falls between two documents.
    async with (
        FhirClient(server) as client,
        open_checkpointer(settings) as saver,
        open_store(settings) as store,
    ):
        ctx = RunContext(fhir=client, max_concurrency=1)
        checkpointing = Checkpointing(saver=saver, store=store, run_id="run-1")
        config: RunnableConfig = {"configurable": {"thread_id": checkpointing.thread_id(patient)}}
        first_reads = counting_reads(monkeypatch, kill_at=2)
        with pytest.raises(Killed):
            await summarize_many(ctx, [patient], checkpointing=checkpointing)
        assert len(first_reads) == 2
        assert await count(server, "Observation") == before  # nothing written before the kill
        assert await saver.aget_tuple(config) is not None  # the killed run's checkpoints stay
        assert await checkpointing.finished(patient) is None
        # The same run again: the first document's reading comes from the checkpoint.
        second_reads = counting_reads(monkeypatch)
        (resumed,) = await summarize_many(ctx, [patient], checkpointing=checkpointing)
        assert resumed.status == "written", resumed.error
        assert len(second_reads) == documents - 1
        # Finished, its checkpoints (the record at every step) give way to its outcome.
        assert await saver.aget_tuple(config) is None
        assert await checkpointing.finished(patient) == resumed
        # The same run id reports the patient from its outcome: nothing runs.
        third_reads = counting_reads(monkeypatch)
        (again,) = await summarize_many(ctx, [patient], checkpointing=checkpointing)
        assert again == resumed
        assert third_reads == []
        # Another run id (a period in it, as a store's namespace may not hold) runs the patient
        # again: nothing new on the server.
        other = Checkpointing(saver=saver, store=store, run_id="run.2")
        (rerun,) = await summarize_many(ctx, [patient], checkpointing=other)
        assert rerun.status == "unchanged", rerun.error
    assert await duplicate_identifiers(server) == {}


async def test_a_run_state_survives_the_checkpoint_serializer(server: str, cohort: Cohort) -> None:
    """Every value of a finished run comes back from a checkpoint as the same typed object."""
    async with FhirClient(server) as client:
        state = await summarize_patient(RunContext(fhir=client), cohort.patients[1].id)
    serde = checkpoint_serde()
    for key, value in state.items():
        back = serde.loads_typed(serde.dumps_typed(value))
        assert type(back) is type(value), key
        assert back == value, key


def test_the_checkpoint_types_are_ours_and_complete() -> None:
    from agent.checkpoints import checkpoint_types

    names = {t.__name__ for t in checkpoint_types()}
    assert {"PatientRecord", "Worklist", "PendingWrite", "WriteOutcome", "DocumentReading", "Trend"} <= names
    assert all(t.__module__.startswith(("agent.", "tools.", "fhir_adapters.")) for t in checkpoint_types())
