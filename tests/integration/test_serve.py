"""`python -m agent serve` (as `chartagent stack up` starts it) serves /healthz, /readyz and the
offline /docs, and prints the app's URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.testbed.stack.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def served(fhir_base_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "CHARTAGENT_STATE_DIR": str(tmp_path / "state")}
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
