"""Reliability suite (issue 9): what ChartAgent leaves on a real FHIR server after faults,
crashes and reruns. Every claim a run makes is checked against a read of the server.

- a newer summary retires the older current one (one current summary per patient);
- ``kill -9`` in the middle of ``summarize --all``, then a rerun: nothing lost, nothing twice;
- a fault-injecting proxy in front of the server (429, 500, 503, timeouts, cut bodies, link
  rewriting) during a 30-patient run: every patient ends written, unchanged or failed/unknown
  with a reason that a read of the server agrees with; no duplicate, no partial transaction.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import ALL_KINDS, FaultPlan, FaultProxy
from fhir_reads import count, duplicate_identifiers, get, post_newer_creatinine, search, server_with

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from tools.writeback import AIAST
from tools.writeback.lab_results import DOCUMENT_EXTRACTION_TAG
from tools.writeback.supersede import SUPERSEDED_BY_URL

pytestmark = pytest.mark.integration

AIAST_TOKEN = f"{AIAST['system']}|{AIAST['code']}"
SUMMARY_CODE = "http://loinc.org|11502-2"


async def current_summaries(base: str, patient_id: str) -> list[dict[str, Any]]:
    reports = await search(base, "DiagnosticReport", subject=f"Patient/{patient_id}", code=SUMMARY_CODE)
    return [r for r in reports if r["status"] in ("preliminary", "final")]


async def assert_complete_summary(base: str, patient_id: str) -> None:
    """One current summary, every result and derivedFrom of it on the server (no partial write)."""
    (report,) = await current_summaries(base, patient_id)
    for ref in report.get("result", []):
        trend = await get(f"{base}/{ref['reference']}")
        assert trend["subject"]["reference"] == f"Patient/{patient_id}"
    provenances = await search(base, "Provenance", target=f"DiagnosticReport/{report['id']}")
    assert provenances, "the report's Provenance is written with it"


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, 11)


async def test_a_newer_summary_retires_the_older_one(
    fhir_server_factory: Callable[..., str], cohort: Cohort
) -> None:
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    patient = cohort.patients[0].id
    async with FhirClient(base) as client:
        (first,) = await summarize_many(RunContext(fhir=client), [patient])
        assert first.status == "written"
        (old,) = await current_summaries(base, patient)
        # A new result arrives: the next run's summary differs and replaces the first.
        await post_newer_creatinine(client, base, patient)
        (second,) = await summarize_many(RunContext(fhir=client), [patient])
        assert second.status == "written"
        assert second.superseded == [f"DiagnosticReport/{old['id']}"]
        (current,) = await current_summaries(base, patient)
        assert current["id"] != old["id"]
        retired = await get(f"{base}/DiagnosticReport/{old['id']}")
        assert retired["status"] == "cancelled"
        links = [
            e["valueReference"]["reference"] for e in retired["extension"] if e["url"] == SUPERSEDED_BY_URL
        ]
        assert links == [f"DiagnosticReport/{current['id']}"]
        assert retired["meta"]["security"][0]["code"] == AIAST["code"]  # still labelled AI output
        # Nothing new: nothing written, nothing retired.
        (third,) = await summarize_many(RunContext(fhir=client), [patient])
        assert third.status == "unchanged"
        assert third.superseded == []
    assert await count(base, "DiagnosticReport", subject=f"Patient/{patient}") == 2


def summarize_all(base: str, log: Path) -> subprocess.Popen[str]:
    """``chartagent summarize --all`` in its own process group; output to a file (a pipe nobody
    reads would stall it)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "summarize", "--all", "--json", "--fhir-url", base],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


async def test_kill_9_mid_run_then_rerun_loses_nothing_and_writes_nothing_twice(
    fhir_server_factory: Callable[..., str], tmp_path: Path
) -> None:
    cohort = generate_cohort(8, 12)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    run = summarize_all(base, tmp_path / "first-run.log")
    deadline = time.monotonic() + 180
    try:
        # Kill as soon as some, not all, patients have their summary.
        # (The cohort holds no DiagnosticReport of its own; polls are spaced so as not to slow the
        # server-bound run down.)
        while (done := await count(base, "DiagnosticReport")) < 2:
            assert run.poll() is None, (tmp_path / "first-run.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no summary written in time"
            await asyncio.sleep(0.3)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert done < len(cohort.patients), "killed mid-run, not after it"
    rerun = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "summarize", "--all", "--json", "--fhir-url", base],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert await duplicate_identifiers(base) == {}
    for patient in cohort.patients:
        await assert_complete_summary(base, patient.id)
    # A third run finds everything there.
    before = {t: await count(base, t) for t in ("Observation", "DiagnosticReport", "Provenance", "Device")}
    async with FhirClient(base) as client:
        outcomes = await summarize_many(RunContext(fhir=client), [p.id for p in cohort.patients])
    assert {o.status for o in outcomes} == {"unchanged"}
    assert {t: await count(base, t) for t in before} == before


async def transcriptions_of(base: str, patient_id: str) -> list[dict[str, Any]]:
    tag = f"{DOCUMENT_EXTRACTION_TAG['system']}|{DOCUMENT_EXTRACTION_TAG['code']}"
    return await search(base, "Observation", subject=f"Patient/{patient_id}", _tag=tag)


def document_of(error: str) -> str:
    return error.split(":", 1)[0]


async def test_thirty_patients_through_a_faulty_link_every_outcome_is_true(
    fhir_server_factory: Callable[..., str],
) -> None:
    """20 % of requests get 429, 503, 500 (before or after the server saw them), answers later than
    the client's timeout, bodies cut short, dropped connections or paging links to another
    origin. Every patient ends written, unchanged, failed or unknown, and what each outcome says
    is checked against a direct read of the server; then a clean rerun completes everything."""
    cohort = generate_cohort(30, 13)
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    ids = [p.id for p in cohort.patients]
    plan = FaultPlan(seed=20261204, rate=0.2, kinds=ALL_KINDS, slow_s=1.5)
    with FaultProxy(base, plan) as proxy:
        # The sekmet flavour maps the server's own (upstream-port) links onto the proxy.
        async with FhirClient(proxy.base_url, flavour="sekmet", timeout=1.0) as client:
            outcomes = await summarize_many(RunContext(fhir=client), ids)
        faults = proxy.counts()
    assert faults["faulted"] >= 0.1 * faults["requests"], faults
    assert {kind.value for kind in ALL_KINDS} <= set(faults), faults  # every kind was exercised
    assert {o.status for o in outcomes} <= {"written", "failed", "unknown"}
    assert sum(o.status == "written" for o in outcomes) >= len(ids) // 2, [o.status for o in outcomes]

    assert await duplicate_identifiers(base) == {}
    for o in outcomes:
        summaries = await current_summaries(base, o.patient_id)
        if o.status == "written":
            await assert_complete_summary(base, o.patient_id)
        elif o.status == "failed":
            assert o.error, o
            assert summaries == [], f"{o.patient_id} reported failed, but its summary is stored"
        else:  # unknown: it may or may not be there, and the message must not pretend otherwise
            assert o.error is not None
            assert "unknown" in o.error
        stored_from = {
            d["reference"] for t in await transcriptions_of(base, o.patient_id) for d in t["derivedFrom"]
        }
        for error in o.document_errors:
            if "none stored" in error or "nothing written" in error:
                assert document_of(error) not in stored_from, error

    # A clean rerun writes what is missing, retires nothing current, and duplicates nothing.
    async with FhirClient(base) as client:
        rerun = await summarize_many(RunContext(fhir=client), ids)
    assert {o.status for o in rerun} <= {"written", "unchanged"}, [(o.status, o.error) for o in rerun]
    assert await duplicate_identifiers(base) == {}
    for patient_id in ids:
        await assert_complete_summary(base, patient_id)
