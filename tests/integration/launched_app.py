"""The real service (create_app on uvicorn) behind an EHR stand-in that launches it, and a
cookie-keeping httpx "browser" that follows the launch's redirects.

Used by test_smart_launch.py and test_service_security.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from ehr_fixtures import EhrStandin, EhrStandinFactory
from live_app import serve_on
from pydantic import SecretStr

from agent.service.app import create_app
from agent.service.runtime import ServiceRuntime
from agent.settings import ServiceKey, Settings
from agent.testbed.stack.ports import free_port

SERVICE_KEY = "service-key-of-the-security-tests-" + "0" * 8


@dataclass(frozen=True)
class LaunchedApp:
    url: str
    ehr: EhrStandin
    runtime: ServiceRuntime

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=True, timeout=30)

    def ehr_launch(self, browser: httpx.Client, patient_id: str) -> httpx.Response:
        """The EHR's launcher for `patient_id`, followed to the app's page."""
        return browser.get(f"{self.ehr.base_url}/launch", params={"patient": patient_id})


@contextmanager
def launched_app(
    factory: EhrStandinFactory, *, access_token_lifetime_s: int = 3600, **settings: object
) -> Iterator[LaunchedApp]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ehr = factory(app_url=url, access_token_lifetime_s=access_token_lifetime_s)
    config = Settings(
        app_client_id=ehr.app_client_id,
        app_client_secret=SecretStr(ehr.app_client_secret),
        app_issuers=(ehr.fhir_url,),
        service_keys={"jobs": ServiceKey(key=SecretStr(SERVICE_KEY), scopes="system/*.rs")},
        token_leeway_s=0,
        **settings,  # type: ignore[arg-type]
    )
    app = create_app(config, public_url=url, fhir_url=ehr.upstream_fhir_url)
    with serve_on(app, port, name="chartagent-smart-tests"):
        yield LaunchedApp(url=url, ehr=ehr, runtime=app.state.runtime)


def new_patient(fhir_url: str) -> str:
    """A nameless Patient on the FHIR server (no demographics: nothing to leak)."""
    pid = f"smart-{uuid.uuid4().hex[:12]}"
    resp = httpx.put(
        f"{fhir_url}/Patient/{pid}",
        json={"resourceType": "Patient", "id": pid, "gender": "unknown"},
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.status_code
    return pid
