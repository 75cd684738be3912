"""`python -m agent serve` (as `chartagent stack up` starts it) serves /healthz, /readyz and the
offline /docs, and prints the app's URL; with CHARTAGENT_METRICS_PORT, Prometheus metrics on that
port, labelled by route template, never by a path's patient id."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.testbed.stack.ports import free_port

pytestmark = pytest.mark.integration


METRICS_PORT = free_port()


@pytest.fixture
def served(fhir_base_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {
        **os.environ,
        "CHARTAGENT_STATE_DIR": str(tmp_path / "state"),
        "CHARTAGENT_METRICS_PORT": str(METRICS_PORT),
    }
    env.pop("CHARTAGENT_FHIR_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "serve", "--port", str(port), "--fhir-url", fhir_base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.2)
        else:
            pytest.fail("chartagent serve did not answer /healthz within 60 s")
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_answers_health_and_prints_the_app_url(served: tuple[str, subprocess.Popen[str]]) -> None:
    base, process = served
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz", timeout=10)
    # FHIR answers; no PACS is configured here and the model is "none": both count as ready.
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["fhir"]["ok"] is True
    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200
    assert "/api/patients/{patient_id}/summary" in docs.text
    assert "<script" not in docs.text  # offline: nothing loaded from a CDN
    assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "ChartAgent"
    process.terminate()
    out, _ = process.communicate(timeout=30)
    assert f"ChartAgent app: {base}/app/" in out


def test_metrics_count_requests_by_route_template_on_their_own_port(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    base, process = served
    patient = "metrics-patient-7f3a"
    assert httpx.get(f"{base}/api/patients/{patient}/summary").status_code == 401  # no session
    assert httpx.get(f"{base}/no/such/{patient}").status_code == 404
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 404  # not on the service's port
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
    summary = 'method="GET",route="/api/patients/{patient_id}/summary",status="401"'
    assert f"chartagent_http_requests_total{{{summary}}} 1.0" in text
    assert 'chartagent_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert 'chartagent_http_request_seconds_count{method="GET",route="/healthz"}' in text
    assert "process_resident_memory_bytes" in text
    assert patient not in text
    process.terminate()
    out, _ = process.communicate(timeout=30)
    assert f"Metrics: http://127.0.0.1:{METRICS_PORT}/metrics" in out


def test_a_metrics_port_it_cannot_listen_on_stops_it_with_a_clear_error(
    fhir_base_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "CHARTAGENT_STATE_DIR": str(tmp_path / "state"),
            "CHARTAGENT_METRICS_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "agent", "serve", "--port", str(free_port()), "--fhir-url", fhir_base_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 2
    assert f"error: CHARTAGENT_METRICS_PORT={port} on 127.0.0.1: cannot listen" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ChartAgent app:" not in done.stdout  # it never said it was serving
