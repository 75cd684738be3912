#!/usr/bin/env python3
"""Benchmark: `GET /api/patients/{id}/summary` against a direct FHIR read of the same resources.

An embedded FHIR server holds a small synthetic cohort; one patient is summarized by the planning
graph (so the view has a summary, trends, PDF values and pending results). The real app
(`create_app`, security headers and all) is served by uvicorn on loopback and called with a
service key (the real authorization path). The baseline, measured in the same run and
interleaved with it, is what a client would do without the service: the same five requests
(`Patient/{id}` and the Observation, DiagnosticReport, DocumentReference and ImagingStudy
searches of the patient, same `_count`, every `next` page) sent at once with httpx and parsed
as JSON. The ratio is the service's p50 over the direct p50: what building the view costs.
Trend views are memoized by the versions they were built from (`summary_view.TREND_MEMO`), so
the line also gives the first view of a record (memo cleared before each such sample: every
trend's sources parsed, its series and judged range computed).

    .venv/bin/python bench/bench_service_summary.py [--samples 40]

Line: `bench service-summary: <ratio>x (p50 ..., p95 ...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import httpx
from bench_fhir_gather import embedded_server
from live_app import serve_on
from percentiles import percentile

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.service.app import create_app
from agent.service.patient_api import SEARCH_COUNT, SUMMARY_SEARCHES
from agent.service.summary_view import TREND_MEMO
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient
from fhir_adapters.search import patient_search_param


async def direct_read(http: httpx.AsyncClient, fhir_url: str, patient: str) -> int:
    """The summary's requests straight to FHIR, at once, every page; returns the resources read."""

    async def search(rtype: str) -> list[Any]:
        out: list[Any] = []
        resp = await http.get(
            f"{fhir_url}/{rtype}",
            params={patient_search_param(rtype): patient, "_count": str(SEARCH_COUNT)},
            headers={"Accept": "application/fhir+json"},
        )
        while True:
            resp.raise_for_status()
            bundle = resp.json()
            out += bundle.get("entry", [])
            nxt = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            if nxt is None:
                return out
            resp = await http.get(nxt, headers={"Accept": "application/fhir+json"})

    async def read() -> list[Any]:
        resp = await http.get(f"{fhir_url}/Patient/{patient}", headers={"Accept": "application/fhir+json"})
        resp.raise_for_status()
        return [resp.json()]

    results = await asyncio.gather(read(), *(search(t) for t in SUMMARY_SEARCHES))
    return sum(len(r) for r in results)


async def measure(url: str, fhir_url: str, key: str, patient: str, samples: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as http:
        view: dict[str, Any] = {}
        for _ in range(3):  # warm-up: connections, imports on first use
            resp = await http.get(f"{url}/api/patients/{patient}/summary", headers=headers)
            resp.raise_for_status()
            view = resp.json()
            read = await direct_read(http, fhir_url, patient)
        if not (view["summary"] and view["trends"] and view["pending"]):
            raise SystemExit("the summarize run wrote nothing to show")
        warm: list[float] = []
        cold: list[float] = []
        direct: list[float] = []
        for _ in range(samples):  # interleaved: all three see the same machine load
            start = time.perf_counter()
            resp = await http.get(f"{url}/api/patients/{patient}/summary", headers=headers)
            warm.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.status_code
            TREND_MEMO.clear()  # the app runs in this process: its next view builds every trend
            start = time.perf_counter()
            resp = await http.get(f"{url}/api/patients/{patient}/summary", headers=headers)
            cold.append(time.perf_counter() - start)
            assert resp.status_code == 200, resp.status_code
            start = time.perf_counter()
            await direct_read(http, fhir_url, patient)
            direct.append(time.perf_counter() - start)
    w50, c50, d50 = statistics.median(warm), statistics.median(cold), statistics.median(direct)
    print(
        f"bench service-summary: {w50 / d50:.2f}x (p50 {w50 * 1000:.1f} ms vs {d50 * 1000:.1f} ms direct, "
        f"p95 {percentile(warm, 0.95) * 1000:.1f} ms vs {percentile(direct, 0.95) * 1000:.1f} ms; "
        f"first view of a record (trend memo empty) {c50 / d50:.2f}x: p50 {c50 * 1000:.1f} ms, "
        f"p95 {percentile(cold, 0.95) * 1000:.1f} ms; {samples} samples; {read} resources read, "
        f"{len(view['trends'])} trends, {len(view['pdf_values'])} PDF values, {len(view['pending'])} pending)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()

    cohort = generate_cohort(3, 11)
    patient = cohort.patients[0].id
    key = secrets.token_urlsafe(24)
    with embedded_server() as fhir_url, tempfile.TemporaryDirectory(prefix="bench-summary-") as state:

        async def prepare() -> None:
            async with FhirClient(fhir_url) as client:
                await seed_cohort(client, cohort)
                (outcome,) = await summarize_many(RunContext(fhir=client), [patient])
                assert outcome.status == "written", outcome

        asyncio.run(prepare())
        settings = Settings(
            state_dir=Path(state), service_keys={"bench": {"key": key, "scopes": "system/*.rs"}}
        )
        app = create_app(settings, public_url="http://127.0.0.1", fhir_url=fhir_url)
        with serve_on(app, free_port()) as url:
            asyncio.run(measure(url, fhir_url, key, patient, args.samples))


if __name__ == "__main__":
    main()
