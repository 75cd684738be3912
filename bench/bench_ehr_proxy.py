#!/usr/bin/env python3
"""Benchmark: what the EHR stand-in's proxy adds to a patient's FHIR reads.

Starts the embedded FHIR server and the stand-in in front of it (both real loopback processes,
started as `chartagent stack up` starts them). One patient gets `--observations` Observations (plus
another patient's, which the proxy must keep out). A patient token comes from the real EHR-launch
code flow. Each sample, interleaved: the same requests straight to the FHIR server (baseline) and
through the proxy (token verified, scopes checked, the search pinned to the patient, every entry
of the answer checked against the compartment, URLs rewritten):

- `read`: `GET Patient/{id}`;
- `search`: `GET Observation?patient=...&_count=100`, every `next` page followed.

    .venv/bin/python bench/bench_ehr_proxy.py [--samples 60] [--observations 300]

Lines: `bench ehr-proxy-read: <ratio>x (...)` and `bench ehr-proxy-search: <ratio>x (...)`, ratio =
proxy p50 / direct p50 (the overhead factor; 1.0x is free).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import httpx
from bench_fhir_gather import embedded_server
from ehr_fixtures import EhrStandin

from agent.testbed.stack.ehr_server import EhrServer, ehr_config
from agent.testbed.stack.ports import free_port


def observation(patient_id: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0", "display": "Creatinine"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"20{10 + i % 15}-01-{1 + i % 28:02d}",
        "valueQuantity": {"value": 1 + i % 9 / 10, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                          "code": "mg/dL"},
    }  # fmt: skip


def seed(fhir_url: str, patient_id: str, other_id: str, n: int) -> None:
    for pid in (patient_id, other_id):
        httpx.put(f"{fhir_url}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    entries = [
        {"resource": observation(pid, i), "request": {"method": "POST", "url": "Observation"}}
        for pid in (patient_id, other_id)
        for i in range(n)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    httpx.post(fhir_url, json=bundle, timeout=120).raise_for_status()


def read_all_pages(client: httpx.Client, url: str, headers: dict[str, str]) -> int:
    count = 0
    next_url: str | None = url
    while next_url is not None:
        page = client.get(next_url, headers=headers).raise_for_status().json()
        count += len(page.get("entry", []))
        next_url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
    return count


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--observations", type=int, default=300)
    args = parser.parse_args()
    patient_id, other_id = f"bench-ehr-{uuid.uuid4().hex[:8]}", f"bench-other-{uuid.uuid4().hex[:8]}"
    with (
        embedded_server(validation="off") as fhir_url,
        tempfile.TemporaryDirectory(prefix="bench-ehr-") as tmp,
    ):
        seed(fhir_url, patient_id, other_id, args.observations)
        config = ehr_config(
            port=free_port(), state_dir=Path(tmp), upstream_fhir_url=fhir_url, app_url="http://127.0.0.1:9"
        )
        server = EhrServer(Path(tmp))
        server.start(config)
        try:
            standin = EhrStandin(config=config, server=server)
            token = standin.token_for(patient_id, "launch patient/*.rs").access_token.get_secret_value()
            auth = {"Authorization": f"Bearer {token}"}
            search = f"Observation?patient=Patient/{patient_id}&_count=100"
            cases: dict[str, tuple[Callable[[httpx.Client], object], Callable[[httpx.Client], object]]] = {
                "read": (
                    lambda c: c.get(f"{fhir_url}/Patient/{patient_id}").raise_for_status(),
                    lambda c: c.get(
                        f"{config.fhir_url}/Patient/{patient_id}", headers=auth
                    ).raise_for_status(),
                ),
                "search": (
                    lambda c: read_all_pages(c, f"{fhir_url}/{search}", {}),
                    lambda c: read_all_pages(c, f"{config.fhir_url}/{search}", auth),
                ),
            }
            with httpx.Client(timeout=60) as client:
                direct_n = read_all_pages(client, f"{fhir_url}/{search}", {})
                proxied_n = read_all_pages(client, f"{config.fhir_url}/{search}", auth)
                assert direct_n == proxied_n == args.observations, (direct_n, proxied_n)
                for name, (direct, proxied) in cases.items():
                    times: dict[str, list[float]] = {"direct": [], "proxy": []}
                    for _ in range(3):  # warm-up
                        direct(client)
                        proxied(client)
                    for _ in range(args.samples):
                        for label, call in (("direct", direct), ("proxy", proxied)):
                            start = time.perf_counter()
                            call(client)
                            times[label].append(time.perf_counter() - start)
                    d50, x50 = statistics.median(times["direct"]), statistics.median(times["proxy"])
                    print(
                        f"bench ehr-proxy-{name}: {x50 / d50:.2f}x (proxy p50 {x50 * 1000:.1f} ms, "
                        f"p95 {p(times['proxy'], 95) * 1000:.1f} ms vs direct p50 {d50 * 1000:.1f} ms, "
                        f"p95 {p(times['direct'], 95) * 1000:.1f} ms; {args.samples} samples)"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
