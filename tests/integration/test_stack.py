"""`chartagent stack` against real processes: up, status, idempotent up, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.testbed import stack
from agent.testbed.stack.ports import free_port

pytestmark = pytest.mark.integration


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHARTAGENT_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_stack_up_status_down_through_the_cli(tmp_path: Path) -> None:
    port, orthanc_port, ehr_port, app_port = free_port(), free_port(), free_port(), free_port()
    try:
        up = _cli(
            tmp_path, "stack", "up", "--fhir-port", str(port), "--orthanc-port", str(orthanc_port),
            "--ehr-port", str(ehr_port), "--app-port", str(app_port), "--json",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        urls = json.loads(up.stdout)
        assert urls == {
            "fhir": f"http://127.0.0.1:{port}/fhir",
            "dicomweb": f"http://127.0.0.1:{orthanc_port}/dicom-web",
            "app": f"http://127.0.0.1:{app_port}",
            "ehr": f"http://127.0.0.1:{ehr_port}",
        }
        meta = httpx.get(f"{urls['fhir']}/metadata", timeout=5)
        assert meta.json()["resourceType"] == "CapabilityStatement"
        assert httpx.get(f"{urls['dicomweb']}/studies", timeout=5).status_code == 200
        assert httpx.get(f"{urls['app']}/healthz", timeout=5).status_code == 200
        # The stand-in fronts the stack's FHIR server and launches the stack's app.
        smart = httpx.get(f"{urls['ehr']}/fhir/.well-known/smart-configuration", timeout=5).json()
        assert smart["issuer"] == f"{urls['ehr']}/fhir"
        assert (
            httpx.get(f"{urls['ehr']}/fhir/metadata", timeout=5).json()["resourceType"]
            == "CapabilityStatement"
        )
        patient = {"resourceType": "Patient", "id": "stack-launch"}
        assert httpx.put(f"{urls['fhir']}/Patient/stack-launch", json=patient, timeout=5).status_code in (
            200,
            201,
        )
        launch = httpx.get(f"{urls['ehr']}/launch", params={"patient": "stack-launch"}, timeout=5)
        assert launch.headers["location"].startswith(f"{urls['app']}/app/launch?iss=")

        text = _cli(tmp_path, "stack", "status")
        assert text.returncode == 0
        assert f"DICOMweb http://127.0.0.1:{orthanc_port}/dicom-web  healthy" in text.stdout
        assert f"EHR      http://127.0.0.1:{ehr_port}  healthy" in text.stdout
        assert f"App      http://127.0.0.1:{app_port}  healthy" in text.stdout

        status = _cli(tmp_path, "stack", "status", "--json")
        assert status.returncode == 0
        assert json.loads(status.stdout) == urls

        # A second `up` keeps the healthy servers (same pids).
        before = stack.status(tmp_path)
        assert _cli(tmp_path, "stack", "up").returncode == 0
        after = stack.status(tmp_path)
        assert (after.fhir.pid, after.dicomweb.pid) == (before.fhir.pid, before.dicomweb.pid)
        assert (after.ehr.pid, after.app.pid) == (before.ehr.pid, before.app.pid)
    finally:
        down = _cli(tmp_path, "stack", "down")
    assert down.returncode == 0
    status = _cli(tmp_path, "stack", "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout) == {}
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{orthanc_port}/system", timeout=2)
    for front in (ehr_port, app_port):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{front}/healthz", timeout=2)


def test_stack_restarts_a_dead_server(tmp_path: Path) -> None:
    first = stack.up(tmp_path, fhir_port=free_port())
    assert first.fhir.pid is not None
    try:
        os.kill(first.fhir.pid, 9)
        assert not stack.status(tmp_path).fhir.healthy
        second = stack.up(tmp_path, fhir_port=free_port())
        assert second.fhir.healthy
        assert second.fhir.pid != first.fhir.pid
    finally:
        stack.down(tmp_path)


def test_stack_restarts_a_dead_orthanc_and_keeps_the_fhir_server(tmp_path: Path) -> None:
    first = stack.up(tmp_path, fhir_port=free_port(), orthanc_port=free_port())
    assert first.healthy
    assert first.dicomweb.pid is not None
    try:
        os.kill(first.dicomweb.pid, 9)
        dead = stack.status(tmp_path)
        assert not dead.dicomweb.healthy
        assert dead.fhir.healthy
        assert not dead.healthy
        assert stack.current_dicomweb_url(tmp_path) is None
        second = stack.up(tmp_path)
        assert second.healthy
        assert second.dicomweb.pid != first.dicomweb.pid
        assert second.fhir.pid == first.fhir.pid
        assert stack.current_dicomweb_url(tmp_path) == second.dicomweb.url
        # The service was started with the old PACS URL: it is restarted with the new one.
        assert second.app.pid != first.app.pid
    finally:
        stack.down(tmp_path)


def test_state_file_from_before_orthanc_still_loads(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text('{"fhir": null}')
    st = stack.status(tmp_path)
    assert not st.fhir.running
    assert not st.dicomweb.running
    assert st.urls() == {}
