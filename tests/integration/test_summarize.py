"""The summarization graph end to end against a real embedded FHIR server: what it writes,
that a rerun writes nothing, that a dry run writes nothing, and that one failing patient
neither stops the batch nor leaves anything half-written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from fhir_reads import count, get, search, server_with, totals

from agent.checkpoints import open_checkpointer, open_store
from agent.cli.summarize import run_summaries
from agent.context import RunContext
from agent.jobs.summarize import Checkpointing, PatientOutcome, summarize_many
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.cohort.load import seed_cohort
from fhir_adapters import FhirClient
from tools.writeback import AI_OUTPUT_SYSTEM, AIAST
from tools.writeback.lab_results import DOCUMENT_EXTRACTION_TAG

pytestmark = pytest.mark.integration

AIAST_TOKEN = f"{AIAST['system']}|{AIAST['code']}"
DOCUMENT_TAG = (DOCUMENT_EXTRACTION_TAG["system"], DOCUMENT_EXTRACTION_TAG["code"])


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(4, 3)


@pytest.fixture(scope="module")
def server(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    """A server of its own holding only this cohort, so that counts are exact."""
    return server_with(fhir_server_factory, cohort)


async def test_dry_run_writes_nothing_and_prints_facts(server: str, cohort: Cohort) -> None:
    before = await totals(server)
    patient_id = cohort.patients[0].id
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "summarize", "--patient", patient_id, "--dry-run", "--json",
         "--fhir-url", server],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    labs = payload["facts"]["labs"]
    assert labs, "the cohort patient has lab series"
    for fact in labs:
        assert {
            "code",
            "display",
            "unit",
            "n",
            "latest",
            "previous",
            "delta",
            "slope_per_year",
            "direction",
        } <= set(fact)
        assert set(fact["latest"]) == {"value", "time"}
        assert fact["direction"] in ("improved", "stable", "worsened")
    creatinine = next(f for f in labs if f["code"] in ("2160-0", "14682-9", "CREAT"))
    assert creatinine["n"] >= 2
    assert payload["bundle"]["type"] == "transaction"
    assert all(e["request"]["ifNoneExist"] for e in payload["bundle"]["entry"])
    assert await totals(server) == before


async def test_summarize_writes_labelled_traceable_results_once(server: str, cohort: Cohort) -> None:
    ids = [p.id for p in cohort.patients]
    async with FhirClient(server) as client:
        first = await summarize_many(RunContext(fhir=client), ids)
        assert [o.status for o in first] == ["written"] * len(ids)
        after_first = await totals(server)
        second = await summarize_many(RunContext(fhir=client), ids)
    assert [o.status for o in second] == ["unchanged"] * len(ids)
    assert all(not o.created for o in second)
    assert await totals(server) == after_first
    # Two Devices: the trend engine and the lab-PDF extractor. One summary report per patient.
    assert await count(server, "Device") == 2
    assert await count(server, "DiagnosticReport") == len(ids)
    transcribed = sum(o.from_documents for o in first)
    assert transcribed > 0, "the cohort's lab-report PDFs hold results the lab feed does not"
    ai_observations = await count(server, "Observation", _security=AIAST_TOKEN)
    assert ai_observations == sum(o.series for o in first) + transcribed
    # One Provenance per patient's trends and report, one per PDF that gave new results.
    provenances = await search(server, "Provenance")
    from_pdfs = [
        p
        for p in provenances
        if any("DocumentReference/" in e["what"].get("reference", "") for e in p["entity"])
    ]
    assert len(provenances) - len(from_pdfs) == len(ids)
    assert from_pdfs

    patient_id = ids[0]
    reports = await search(
        server, "DiagnosticReport", subject=f"Patient/{patient_id}", _revinclude="Provenance:target"
    )
    report = next(r for r in reports if r["resourceType"] == "DiagnosticReport")
    provenance = next(r for r in reports if r["resourceType"] == "Provenance")
    assert report["status"] == "preliminary"
    assert {"system": AIAST["system"], "code": AIAST["code"]}.items() <= report["meta"]["security"][0].items()
    assert report["identifier"][0]["system"] == AI_OUTPUT_SYSTEM
    assert "AI-generated" in report["conclusion"]
    # Every result resolves to a trend Observation whose inputs exist on the server.
    trend_ids = [r["reference"].split("/")[1] for r in report["result"]]
    assert len(trend_ids) == first[0].series
    source_refs: set[str] = set()
    for trend_id in trend_ids:
        trend = await get(f"{server}/Observation/{trend_id}")
        assert trend["status"] == "preliminary"
        assert trend["subject"] == {"reference": f"Patient/{patient_id}"}
        source_refs |= {d["reference"] for d in trend["derivedFrom"]}
    for ref in sorted(source_refs)[:20]:
        source = await get(f"{server}/{ref}")
        assert source["subject"]["reference"] == f"Patient/{patient_id}"
        # Inputs are source data: the lab feed's results, or results transcribed from a lab
        # report PDF (labelled AI-asserted and tagged as a transcription); never AI analysis.
        tags = {(t["system"], t["code"]) for t in source.get("meta", {}).get("tag", [])}
        assert "security" not in source.get("meta", {}) or DOCUMENT_TAG in tags
    targets = {t["reference"] for t in provenance["target"]}
    assert f"DiagnosticReport/{report['id']}" in targets
    assert {f"Observation/{i}" for i in trend_ids} <= targets
    device_ref = provenance["agent"][0]["who"]["reference"]
    device = await get(f"{server}/{device_ref}")
    assert device["type"]["coding"][0]["code"] == "Artificial-Intelligence"
    entity_refs = {e["what"]["reference"] for e in provenance["entity"] if "reference" in e.get("what", {})}
    assert source_refs <= entity_refs


class FailTransactionsFor(httpx.AsyncBaseTransport):
    """Forwards to the real server, but answers 500 to the transaction of one patient: a
    server fault that the embedded server cannot produce on demand."""

    def __init__(self, patient_id: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.marker = f'"Patient/{patient_id}"'.encode()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self.marker in request.content:
            return httpx.Response(
                500, json={"resourceType": "OperationOutcome", "issue": []}, request=request
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_batch_goes_on_after_failing_patients(
    fhir_server_factory: Callable[..., str], cohort: Cohort
) -> None:
    base = fhir_server_factory()
    async with FhirClient(base) as client:
        await seed_cohort(client, cohort)
    broken, good = cohort.patients[0].id, cohort.patients[1].id
    async with FhirClient(base, transport=FailTransactionsFor(broken)) as client:
        outcomes = await summarize_many(RunContext(fhir=client), ["no-such-patient", broken, good])
    missing, failed_write, written = outcomes
    assert missing.status == "failed"
    assert missing.error is not None
    assert "404" in missing.error
    assert failed_write.status == "failed"
    assert failed_write.error is not None
    assert "500" in failed_write.error
    assert written.status == "written"
    # Nothing of the failed patient reached the server; the good one is complete.
    assert await count(base, "DiagnosticReport", subject=f"Patient/{broken}") == 0
    assert await count(base, "Observation", subject=f"Patient/{broken}", _security=AIAST_TOKEN) == 0
    assert await count(base, "DiagnosticReport", subject=f"Patient/{good}") == 1


async def test_a_run_that_reaches_every_patient_deletes_its_checkpoints(
    server: str, cohort: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARTAGENT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CHARTAGENT_CHECKPOINT_URL", raising=False)
    ids = [p.id for p in cohort.patients[:2]]
    database = tmp_path / "checkpoints.sqlite"

    def rows() -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(database)) as db:
            count = "SELECT COUNT(*) FROM {} WHERE thread_id LIKE 'run-x/%'"
            tables = ("checkpoints", "writes", "checkpoint_blobs")
            return {table: db.execute(count.format(table)).fetchone()[0] for table in tables}

    seen: list[tuple[dict[str, int], list[PatientOutcome | None]]] = []
    checkpointed: list[str] = []
    forget = Checkpointing.forget
    settle = Checkpointing.settle

    async def settled(self: Checkpointing, patient_id: str, outcome: PatientOutcome) -> None:
        if rows()["checkpoints"] and rows()["checkpoint_blobs"]:  # its steps, until it is settled
            checkpointed.append(patient_id)
        await settle(self, patient_id, outcome)

    async def counted(self: Checkpointing, patient_ids: Sequence[str]) -> None:
        # What the run kept, just before it is deleted: each patient's outcome, no checkpoint.
        seen.append((rows(), [await self.finished(p) for p in patient_ids]))
        await forget(self, patient_ids)

    monkeypatch.setattr(Checkpointing, "settle", settled)
    monkeypatch.setattr(Checkpointing, "forget", counted)
    outcomes = []
    for patient_id in ids:
        (outcome,), _ = await run_summaries(server, patient_id, False, False, run_id="run-x")
        assert outcome.status in ("written", "unchanged")
        outcomes.append(outcome)
    assert checkpointed == ids
    nothing = {"checkpoints": 0, "writes": 0, "checkpoint_blobs": 0}
    assert seen == [(nothing, [o]) for o in outcomes]
    assert rows() == nothing
    settings = Settings(state_dir=tmp_path)
    async with open_checkpointer(settings) as saver, open_store(settings) as store:
        left = Checkpointing(saver=saver, store=store, run_id="run-x")
        assert [await left.finished(p) for p in ids] == [None, None]
