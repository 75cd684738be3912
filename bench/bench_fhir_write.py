#!/usr/bin/env python3
"""Benchmark: writing 200 Observations as one transaction Bundle vs 200 single POSTs.

Starts the embedded FHIR server (sekmet, via `agent.testbed.stack`) on a free loopback port. Every
request goes through a transport that adds a fixed latency (default 30 ms, an EHR tens of
milliseconds away) before forwarding it to the real server. Baseline: 200 `POST /Observation`
one after another. Ours: one `POST /` transaction with 200 entries (atomic, as write-back does).
For reference it also prints 200 POSTs with 8 in flight (not atomic). Each mode writes under a
fresh tag and the count on the server is checked afterwards.

    .venv/bin/python bench/bench_fhir_write.py [--latency-ms 30] [--repeats 3] [-n 200]

Last line: `bench fhir-write: <ratio>x (<ours> vs <baseline>)`, ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_fhir_gather import LatencyTransport, embedded_server

from fhir_adapters import FhirClient

TAG_SYSTEM = "urn:chartagent:bench"
PATIENT_ID = "bench-write-patient"


def observations(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Observation",
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]},
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]
            },
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": f"20{10 + i % 15}-01-01",
            "valueQuantity": {
                "value": 5 + i % 40 / 10,
                "unit": "%",
                "system": "http://unitsofmeasure.org",
                "code": "%",
            },
        }
        for i in range(n)
    ]


async def as_transaction(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": r,
            "request": {"method": "POST", "url": "Observation"},
        }
        for r in resources
    ]
    await client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


async def one_by_one(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    for r in resources:
        await client.create(r)


async def eight_in_flight(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(client.create(r) for r in resources))  # the client's semaphore caps it at 8


Mode = Callable[[FhirClient, list[dict[str, Any]]], Awaitable[None]]


async def timed(base_url: str, latency_s: float, n: int, mode: Mode) -> tuple[float, int]:
    tag = uuid.uuid4().hex
    resources = observations(n, tag)
    transport = LatencyTransport(latency_s)
    async with FhirClient(base_url, transport=transport, flavour="sekmet", max_concurrency=8) as client:
        t0 = time.perf_counter()
        await mode(client, resources)
        elapsed = time.perf_counter() - t0
    async with FhirClient(base_url, flavour="sekmet") as check:
        written = len(await check.search("Observation", [("_tag", f"{TAG_SYSTEM}|{tag}")], count=1000))
    if written != n:
        raise SystemExit(f"{mode.__name__}: {written} of {n} Observations on the server")
    return elapsed, transport.requests


async def run(latency_ms: float, repeats: int, n: int) -> None:
    latency_s = latency_ms / 1000
    with embedded_server() as base_url:
        async with FhirClient(base_url, flavour="sekmet") as client:
            await client.transaction(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": {"resourceType": "Patient", "id": PATIENT_ID},
                            "request": {"method": "PUT", "url": f"Patient/{PATIENT_ID}"},
                        }
                    ],
                }
            )
        print(f"sekmet at {base_url}; {n} Observations per run; injected latency {latency_ms:.0f} ms "
              f"per request (transport wrapper); median of {repeats} runs after a warm-up")  # fmt: skip
        results: dict[str, list[float]] = {}
        requests: dict[str, int] = {}
        modes: list[Mode] = [as_transaction, one_by_one, eight_in_flight]
        for mode in modes:
            await timed(base_url, latency_s, min(n, 20), mode)  # warm-up
        for _ in range(repeats):  # interleaved so drift hits every mode
            for mode in modes:
                elapsed, reqs = await timed(base_url, latency_s, n, mode)
                results.setdefault(mode.__name__, []).append(elapsed)
                requests[mode.__name__] = reqs
        med = {name: statistics.median(ts) for name, ts in results.items()}
        for name, ts in results.items():
            runs = ", ".join(f"{t:.3f}" for t in ts)
            print(f"{name:16s} {med[name]:.3f} s median ({requests[name]} requests), runs {runs}")
        ours, base = med["as_transaction"], med["one_by_one"]
        print(f"bench fhir-write: {base / ours:.1f}x ({ours:.3f} s vs {base:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.latency_ms, args.repeats, args.n))


if __name__ == "__main__":
    main()
