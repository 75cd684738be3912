#!/usr/bin/env python3
"""Benchmark: a chat follow-up's or an MCP tool call's record, kept and checked vs read again.

The embedded FHIR server (sekmet) holds one patient with about 2,000 resources over 10 types
(`bench_fhir_gather`'s record: Observations dominate, as in real charts). Each sample asks for
the patient's record as the service's chat and MCP tools do after their first run:

- reused: `agent.service.record_reuse.RecordReuse.record` with the record kept from an earlier
  read and nothing changed since: one `_lastUpdated` search per type and the Patient, first page;
- read: `gather_record`, what every run did before (every page of every type, each resource
  validated).

Both through the same client and a transport that adds a fixed latency per request (default
30 ms, as a remote EHR), interleaved; wall time and this process's CPU per sample. Then a write
to the patient, which the next check must find (the bench stops otherwise).

    .venv/bin/python bench/bench_record_reuse.py [--latency-ms 30] [--samples 15] [--scale 1]

(`--scale 0.25`: a 500-resource record, the smallest that is kept, `record_reuse.MIN_RESOURCES`.)

Line: `bench record-reuse: <ratio>x (...)`, ratio = p50 read / p50 reused.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_fhir_gather import COUNTS, PATIENT_ID, LatencyTransport, embedded_server, synthetic_resource

from agent.service.record_reuse import RecordKey, RecordReuse
from fhir_adapters import FhirClient
from tools.record import gather_record

# The embedded server stamps and commits every write under one lock: no margin is needed.
MARGIN = timedelta(0)


async def load(client: FhirClient, pid: str, scale: float) -> int:
    """`bench_fhir_gather`'s record with every type's count scaled by `scale` (1: about 2,000)."""
    resources = [{"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01"}]
    resources += [
        synthetic_resource(t, i, pid) for t, n in COUNTS.items() for i in range(max(1, round(n * scale)))
    ]
    for start in range(0, len(resources), 500):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources[start : start + 500]
        ]
        await client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return len(resources)


async def run(latency_ms: float, samples: int, scale: float) -> None:
    with embedded_server() as base_url:
        async with FhirClient(base_url, flavour="sekmet") as seeder:
            resources = await load(seeder, PATIENT_ID, scale)
        transport = LatencyTransport(latency_ms / 1000)
        reuse = RecordReuse(margin=MARGIN)
        key = RecordKey(
            caller="bench", user=None, scopes="patient/*.rs", fhir_base=base_url, patient_id=PATIENT_ID
        )
        async with FhirClient(base_url, transport=transport, flavour="sekmet") as client:
            kept = await reuse.record(key, client)
            times: dict[str, list[tuple[float, float, int]]] = {"reused": [], "read": []}
            for _ in range(samples):
                for mode in ("reused", "read"):
                    sent, wall, cpu = transport.requests, time.perf_counter(), time.process_time()
                    record = await (
                        reuse.record(key, client) if mode == "reused" else gather_record(client, PATIENT_ID)
                    )
                    times[mode].append(
                        (time.perf_counter() - wall, time.process_time() - cpu, transport.requests - sent)
                    )
                    if record.manifest.total != kept.manifest.total:
                        raise SystemExit(
                            f"{mode}: {record.manifest.total} resources, not {kept.manifest.total}"
                        )
            if reuse.reused != samples:
                raise SystemExit(f"reused {reuse.reused} of {samples} samples: the check found a change")
            await client.create(synthetic_resource("Observation", 99999, PATIENT_ID) | {"id": None})
            changed = await reuse.record(key, client)
            if changed.manifest.total != kept.manifest.total + 1:
                raise SystemExit("the write was not found by the check")
    p50 = {m: statistics.median(t[0] for t in v) * 1000 for m, v in times.items()}
    cpu50 = {m: statistics.median(t[1] for t in v) * 1000 for m, v in times.items()}
    requests = {m: v[0][2] for m, v in times.items()}
    print(f"patient with {resources} resources; {latency_ms:g} ms added per request; {samples} samples "
          "each, interleaved")  # fmt: skip
    print(f"bench record-reuse: {p50['read'] / p50['reused']:.1f}x (p50 {p50['reused']:.1f} ms reused vs "
          f"{p50['read']:.1f} ms read; CPU {cpu50['reused']:.1f} vs {cpu50['read']:.1f} ms; "
          f"{requests['reused']} vs {requests['read']} requests); a write to the patient was found by the "
          "next check")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--scale", type=float, default=1.0, help="record size vs about 2,000 resources")
    args = parser.parse_args()
    asyncio.run(run(args.latency_ms, args.samples, args.scale))


if __name__ == "__main__":
    main()
