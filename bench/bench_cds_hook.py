#!/usr/bin/env python3
"""Benchmark: a CDS Hooks `patient-view` call against a direct FHIR search for the same reports.

An embedded FHIR server holds a small synthetic cohort; one patient is summarized by the planning
graph, so the hook has a card to show. The real app (`create_app`) is served by uvicorn on
loopback; each call is signed like an EHR's (RS384, a fresh `jti`, the hook URL as `aud`) with a
key whose JWKS a loopback server publishes, so the whole path runs: JWT checks, one FHIR search,
the card. Tokens are signed before the timing (signing is the EHR's cost). The baseline,
measured in the same run and interleaved with it, is the search the hook makes, sent straight to
FHIR with httpx and parsed as JSON: the ratio is what verifying, selecting and formatting cost.

    .venv/bin/python bench/bench_cds_hook.py [--samples 60]

Line: `bench cds-patient-view: <ratio>x (p50 ..., p95 ...)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import httpx
import jwt
from bench_fhir_gather import embedded_server
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from live_app import serve_on
from percentiles import percentile

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.service.app import create_app
from agent.service.cds_hooks import SERVICE_ID
from agent.settings import Settings
from agent.testbed.cohort import generate_cohort
from agent.testbed.cohort.load import seed_cohort
from agent.testbed.stack.ports import free_port
from fhir_adapters import FhirClient
from tools.writeback.builders import SUMMARY_REPORT_CODE

ISSUER = "https://ehr.bench.example"
KID = "bench-1"


@contextmanager
def jwks_server(key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": KID, "use": "sig", "alg": "RS384"}
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()


def sign(key: rsa.RSAPrivateKey, hook_url: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": hook_url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": KID})


async def measure(hook_url: str, fhir_url: str, key: rsa.RSAPrivateKey, patient: str, samples: int) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient},
    }
    search = {
        "subject": f"Patient/{patient}",
        "code": f"{SUMMARY_REPORT_CODE['system']}|{SUMMARY_REPORT_CODE['code']}",
        "_include": "DiagnosticReport:result",
        "_count": "50",
    }
    tokens = [sign(key, hook_url) for _ in range(samples + 5)]
    async with httpx.AsyncClient(timeout=60) as http:
        hook: list[float] = []
        direct: list[float] = []
        summary = ""
        for n, token in enumerate(tokens):
            start = time.perf_counter()
            resp = await http.post(hook_url, json=body, headers={"Authorization": f"Bearer {token}"})
            elapsed = time.perf_counter() - start
            resp.raise_for_status()
            (card,) = resp.json()["cards"]
            summary = card["summary"]
            start = time.perf_counter()
            found = await http.get(f"{fhir_url}/DiagnosticReport", params=search)
            found.raise_for_status()
            found.json()
            if n >= 5:  # the first calls warm connections and the key set
                hook.append(elapsed)
                direct.append(time.perf_counter() - start)
    h50, d50 = statistics.median(hook), statistics.median(direct)
    print(
        f"bench cds-patient-view: {h50 / d50:.2f}x (p50 {h50 * 1000:.1f} ms vs {d50 * 1000:.1f} ms direct, "
        f"p95 {percentile(hook, 0.95) * 1000:.1f} ms vs {percentile(direct, 0.95) * 1000:.1f} ms; "
        f"{samples} samples; card summary {len(summary)} chars)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args()

    cohort = generate_cohort(2, 21)
    patient = cohort.patients[0].id
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with (
        embedded_server() as fhir_url,
        jwks_server(key) as jwks_url,
        tempfile.TemporaryDirectory(prefix="bench-cds-") as state,
    ):

        async def prepare() -> None:
            async with FhirClient(fhir_url) as client:
                await seed_cohort(client, cohort)
                (outcome,) = await summarize_many(RunContext(fhir=client), [patient])
                assert outcome.status == "written", outcome

        asyncio.run(prepare())
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        settings = Settings(state_dir=Path(state), cds_trusted_issuers={ISSUER: jwks_url})
        app = create_app(settings, public_url=public, fhir_url=fhir_url)
        with serve_on(app, port) as url:
            asyncio.run(measure(f"{url}/cds-services/{SERVICE_ID}", fhir_url, key, patient, args.samples))


if __name__ == "__main__":
    main()
