"""Change marks against the real FHIR server: after a complete run, a patient with nothing new costs
one search per watched type (no record read); a new result, or a person retiring ChartAgent's
summary, sends the next run down the full path; the run after that is cheap again."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir_reads import search, server_with

from agent.checkpoints import open_change_marks
from agent.context import RunContext
from agent.jobs.summarize import summarize_many, summarize_patient
from agent.planning.change_marks import WATCHED, ChangeMarks
from agent.settings import Settings
from agent.state import SummarizeState
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from tools.writeback import is_ai_asserted

pytestmark = pytest.mark.integration


class Wire(httpx.AsyncBaseTransport):
    """The real network, every request's method, path and query recorded."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path, request.url.query.decode()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 33)


@pytest.fixture
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


@asynccontextmanager
async def run_with_marks(server: str, state_dir: Path) -> AsyncIterator[tuple[Wire, RunContext]]:
    wire = Wire()
    async with (
        open_change_marks(Settings(state_dir=state_dir), server) as marks,
        FhirClient(server, transport=wire) as client,
    ):
        yield wire, RunContext(fhir=client, change_marks=marks)


async def run(
    server: str, state_dir: Path, patient: str
) -> tuple[SummarizeState, list[tuple[str, str, str]]]:
    async with run_with_marks(server, state_dir) as (wire, ctx):
        state = await summarize_patient(ctx, patient)
    return state, wire.requests


def unchanged_probe(requests: list[tuple[str, str, str]]) -> bool:
    """Only the change check ran: one `_lastUpdated` search per watched type, nothing else."""
    return len(requests) == len(WATCHED) and all(
        method == "GET" and "_lastUpdated=gt" in query for method, _, query in requests
    )


async def test_nothing_new_costs_one_round_of_change_searches(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    patient = cohort.patients[0].id
    first, _ = await run(server, tmp_path, patient)
    assert first["writes"]
    again, requests = await run(server, tmp_path, patient)
    assert again.get("unchanged_since")
    assert "record" not in again  # the record was not even read
    assert unchanged_probe(requests), requests
    async with run_with_marks(server, tmp_path) as (_, ctx):
        (outcome,) = await summarize_many(ctx, [patient])
    assert outcome.status == "unchanged"


async def test_a_new_result_sends_the_run_down_the_full_path(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    patient = cohort.patients[0].id
    await run(server, tmp_path, patient)
    results = [
        o
        for o in await search(server, "Observation", subject=f"Patient/{patient}")
        if not is_ai_asserted_json(o)
    ]
    newest = max(results, key=lambda o: str(o.get("effectiveDateTime")))
    fresh = new_result_after(newest)
    async with httpx.AsyncClient() as http:
        (await http.post(f"{server}/Observation", json=fresh)).raise_for_status()
    state, requests = await run(server, tmp_path, patient)
    assert "unchanged_since" not in state
    assert "record" in state  # read again
    assert [i.kind.value for i in state["worklist"].items] == ["lab-summary"]
    assert any(w.stored for w in state["writes"])
    # The run after it finds nothing new again, cheaply.
    _, requests = await run(server, tmp_path, patient)
    assert unchanged_probe(requests), requests


async def test_a_retired_summary_is_noticed_and_the_run_after_is_cheap_again(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    patient = cohort.patients[1].id
    await run(server, tmp_path, patient)
    summaries = [
        r
        for r in await search(server, "DiagnosticReport", subject=f"Patient/{patient}")
        if is_ai_asserted_json(r) and not r.get("imagingStudy") and r["status"] == "preliminary"
    ]
    assert len(summaries) == 1
    retired = {**summaries[0], "status": "entered-in-error"}
    async with httpx.AsyncClient() as http:
        (await http.put(f"{server}/DiagnosticReport/{retired['id']}", json=retired)).raise_for_status()
    state, _ = await run(server, tmp_path, patient)
    assert "record" in state  # a person's change to ChartAgent's own output is a change
    # Without a current summary its read set is gone too: the documents are read again (their
    # transcriptions are already stored) and the summary is rewritten.
    assert "lab-summary" in [i.kind.value for i in state["worklist"].items]
    _, requests = await run(server, tmp_path, patient)
    assert unchanged_probe(requests), requests


async def test_without_the_check_every_run_reads_the_record(
    server: str, cohort: Cohort, tmp_path: Path
) -> None:
    patient = cohort.patients[0].id
    await run(server, tmp_path, patient)
    async with run_with_marks(server, tmp_path) as (_, ctx):
        full = RunContext(fhir=ctx.fhir, change_marks=ctx.change_marks, check_changes=False)
        state = await summarize_patient(full, patient)
    assert "record" in state
    assert state["worklist"].items == ()


async def test_a_failed_write_leaves_no_mark(server: str, cohort: Cohort, tmp_path: Path) -> None:
    patient = cohort.patients[0].id
    await run(server, tmp_path, patient)
    async with open_change_marks(Settings(state_dir=tmp_path), server) as marks:
        assert await marks.get(patient) is not None
        await marks.forget(patient)
        assert await marks.get(patient) is None
    # Without a mark the run reads the record (and, nothing being new, writes a mark again).
    state, _ = await run(server, tmp_path, patient)
    assert "record" in state
    async with open_change_marks(Settings(state_dir=tmp_path), server) as marks:
        assert isinstance(marks, ChangeMarks)
        assert await marks.get(patient) is not None


def is_ai_asserted_json(resource: dict[str, Any]) -> bool:
    from fhir_adapters.parsing import parse_resource

    return is_ai_asserted(parse_resource(resource))


def new_result_after(observation: dict[str, Any]) -> dict[str, Any]:
    """The same analyte, a day later, another value: a new result of the lab feed."""
    fresh = copy.deepcopy(observation)
    for key in ("id", "meta", "text", "identifier"):
        fresh.pop(key, None)
    when = str(observation["effectiveDateTime"])
    fresh["effectiveDateTime"] = f"{int(when[:4]) + 1}{when[4:]}"
    quantity = fresh.get("valueQuantity") or {}
    if "value" in quantity:
        quantity["value"] = float(quantity["value"]) * 1.1
    return fresh
