#!/usr/bin/env python3
"""Benchmark: gathering one patient's record, concurrent per-type searches vs one type after another.

Starts the embedded FHIR server (sekmet, via `agent.testbed.stack`, as the test fixtures do) on a free
loopback port, loads one patient with about 2,000 resources over 10 types, then times
`gather_record(concurrent=True)` (ours) against `gather_record(concurrent=False)` (baseline:
one request after another, as an LLM-driven EHR navigator fetches).

On loopback the server is the bottleneck and concurrency gains little; a real EHR is tens of
milliseconds away, so every request goes through a transport that adds a fixed latency
(default 30 ms) before forwarding it. Both modes use the same page size (1000) and the same
client (max 8 requests in flight).

    .venv/bin/python bench/bench_fhir_gather.py [--latency-ms 30] [--repeats 5]

Last line: `bench fhir-gather: <ratio>x (<ours> vs <baseline>)`, ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.testbed.stack import FhirServer, FhirServerSpec
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient
from tools.record import DEFAULT_TYPES, build_record, gather_record

PATIENT_ID = "bench-patient"
# resources per type: ~2,000 in all, Observations dominate as in real charts
COUNTS = {
    "Observation": 1200,
    "Encounter": 200,
    "MedicationRequest": 150,
    "DiagnosticReport": 120,
    "Condition": 100,
    "Procedure": 80,
    "Immunization": 60,
    "DocumentReference": 60,
    "ImagingStudy": 20,
    "AllergyIntolerance": 10,
}


class LatencyTransport(httpx.AsyncBaseTransport):
    """Adds a fixed network latency to every request, then forwards it to the real server."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.inner = httpx.AsyncHTTPTransport()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.sleep(self.latency_s)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextmanager
def embedded_server(**spec: Any) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-fhir-") as tmp:
        server = FhirServer(FhirServerSpec(port=free_port(), state_dir=Path(tmp), **spec))
        server.start()
        try:
            yield server.base_url
        finally:
            server.stop()


def synthetic_resource(rtype: str, i: int, pid: str) -> dict[str, Any]:
    ref = {"reference": f"Patient/{pid}"}
    day = f"{2000 + i % 24}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    concept = {"coding": [{"system": "http://example.org/codes", "code": f"{rtype[:3].lower()}-{i % 25}"}]}
    common: dict[str, Any] = {"resourceType": rtype, "id": f"{pid}-{rtype.lower()}-{i}"}
    body: dict[str, Any]
    match rtype:
        case "Observation":
            body = {"status": "final", "code": concept, "subject": ref, "effectiveDateTime": day,
                    "valueQuantity": {"value": round(4 + (i % 50) / 10, 1), "unit": "mmol/L",
                                      "system": "http://unitsofmeasure.org", "code": "mmol/L"}}  # fmt: skip
        case "Encounter":
            body = {"status": "finished", "class": {"code": "AMB"}, "subject": ref, "period": {"start": day}}
        case "MedicationRequest":
            body = {"status": "active", "intent": "order", "subject": ref,
                    "medicationCodeableConcept": concept, "authoredOn": day}  # fmt: skip
        case "DiagnosticReport":
            body = {"status": "final", "code": concept, "subject": ref, "effectiveDateTime": day}
        case "Condition":
            body = {"subject": ref, "code": concept, "onsetDateTime": day}
        case "Procedure":
            body = {"status": "completed", "subject": ref, "code": concept, "performedDateTime": day}
        case "Immunization":
            body = {"status": "completed", "patient": ref, "vaccineCode": concept, "occurrenceDateTime": day}
        case "DocumentReference":
            attachment = {"contentType": "text/plain", "data": "bm90ZQ=="}
            body = {"status": "current", "subject": ref, "type": concept, "date": f"{day}T00:00:00Z",
                    "content": [{"attachment": attachment}]}  # fmt: skip
        case "ImagingStudy":
            modality = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
            body = {"status": "available", "subject": ref, "started": day, "modality": [modality]}
        case "AllergyIntolerance":
            body = {"patient": ref, "code": concept, "recordedDate": day}
        case _:
            raise ValueError(rtype)
    return {**common, **body}


async def load(client: FhirClient, pid: str) -> int:
    resources = [{"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01"}]
    resources += [synthetic_resource(t, i, pid) for t, n in COUNTS.items() for i in range(n)]
    for start in range(0, len(resources), 500):
        chunk = resources[start : start + 500]
        await client.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in chunk
                ],
            }
        )
    return len(resources)


async def timed_gather(base_url: str, latency_s: float, *, concurrent: bool) -> tuple[float, int, int]:
    transport = LatencyTransport(latency_s)
    async with FhirClient(base_url, transport=transport, flavour="sekmet") as client:
        t0 = time.perf_counter()
        record = await gather_record(client, PATIENT_ID, concurrent=concurrent)
        elapsed = time.perf_counter() - t0
    if record.rejected:
        raise SystemExit(f"unexpected rejected resources: {record.rejected[:3]}")
    return elapsed, record.manifest.total, transport.requests


async def run(latency_ms: float, repeats: int) -> None:
    with embedded_server() as base_url:
        async with FhirClient(base_url, flavour="sekmet") as client:
            loaded = await load(client, PATIENT_ID)
            raws = [await client.read("Patient", PATIENT_ID)]
            for rtype in DEFAULT_TYPES:
                raws += await client.search_patient(rtype, PATIENT_ID, count=1000)
        t0 = time.perf_counter()
        build_record(PATIENT_ID, raws)
        parse_s = time.perf_counter() - t0
        print(f"loaded {loaded} resources over {len(COUNTS)} types + Patient into sekmet at {base_url}")
        print(f"injected latency: {latency_ms:.0f} ms per request (transport wrapper); page size 1000; "
              f"max 8 requests in flight; median of {repeats} runs after one warm-up each")  # fmt: skip
        latency_s = latency_ms / 1000
        await timed_gather(base_url, latency_s, concurrent=True)  # warm-up (server caches, imports)
        await timed_gather(base_url, latency_s, concurrent=False)
        ours: list[float] = []
        base: list[float] = []
        for _ in range(repeats):  # interleaved so drift hits both equally
            t, n_ours, req_ours = await timed_gather(base_url, latency_s, concurrent=True)
            ours.append(t)
            t, n_base, req_base = await timed_gather(base_url, latency_s, concurrent=False)
            base.append(t)
        if n_ours != n_base or n_ours != loaded - 1:
            raise SystemExit(f"record sizes differ: {n_ours} vs {n_base} (loaded {loaded - 1})")
        o, b = statistics.median(ours), statistics.median(base)
        print(f"client-side R4B parsing + manifest of the {len(raws)} resources alone: {parse_s:.3f} s "
              "(paid by both modes; it bounds the concurrent time from below)")  # fmt: skip
        print(f"concurrent:  {o:.3f} s median ({req_ours} requests, {n_ours} resources), runs {_fmt(ours)}")
        print(f"sequential:  {b:.3f} s median ({req_base} requests, {n_base} resources), runs {_fmt(base)}")
        print(f"bench fhir-gather: {b / o:.1f}x ({o:.3f} s vs {b:.3f} s)")


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.latency_ms, args.repeats))


if __name__ == "__main__":
    main()
