"""SMART app sessions shared by replicas (CHARTAGENT_APP_SESSION_KEY; agent.service.shared_sessions):
two real apps (uvicorn) behind one public URL and one state dir, as the Helm chart runs them, and
the EHR stand-in that launches the app and rotates refresh tokens. A session started on one
replica is served by the other and by a restarted one; a launch may complete on another replica
than it began on; a logout on one ends it on both; two
replicas refreshing the same expired token at once keep the session (the stand-in refuses a
rotated refresh token used twice, so without the row lock one of them logs the user out)."""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ehr_fixtures import EhrStandin, EhrStandinFactory
from launched_app import new_patient
from live_app import serve_on
from pydantic import SecretStr

from agent.service.app import create_app
from agent.service.runtime import ServiceRuntime
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings
from agent.testbed.stack.ports import free_port

pytestmark = pytest.mark.integration

COOKIE = "chartagent-session"


@dataclass
class Replicas:
    public: str
    ehr: EhrStandin
    settings: Settings
    urls: list[str]
    runtimes: list[ServiceRuntime]
    stack: ExitStack

    def start(self) -> str:
        """One more replica (a fresh process's memory) on its own port; its URL."""
        app = create_app(self.settings, public_url=self.public, fhir_url=self.ehr.upstream_fhir_url)
        url = self.stack.enter_context(serve_on(app, free_port(), name=f"replica-{len(self.urls)}"))
        self.urls.append(url)
        self.runtimes.append(app.state.runtime)
        return url


@contextmanager
def replicas(
    factory: EhrStandinFactory, state_dir: Path, *, access_token_lifetime_s: int = 3600
) -> Iterator[Replicas]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    ehr = factory(app_url=public, access_token_lifetime_s=access_token_lifetime_s)
    settings = Settings(
        state_dir=state_dir,
        app_client_id=ehr.app_client_id,
        app_client_secret=SecretStr(ehr.app_client_secret),
        app_issuers=(ehr.fhir_url,),
        app_session_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        token_leeway_s=0,
    )
    with ExitStack() as stack:
        first = create_app(settings, public_url=public, fhir_url=ehr.upstream_fhir_url)
        url = stack.enter_context(serve_on(first, port, name="replica-0"))
        group = Replicas(public, ehr, settings, [url], [first.state.runtime], stack)
        group.start()
        yield group


def a_browser() -> httpx.Client:
    return httpx.Client(timeout=30, follow_redirects=True)


def launch(group: Replicas, browser: httpx.Client, patient: str) -> str:
    """The EHR launch through the public URL (replica 0); the session cookie."""
    page = browser.get(f"{group.ehr.base_url}/launch", params={"patient": patient})
    assert page.status_code == 200, page.text
    cookie = browser.cookies.get(COOKIE)
    assert cookie
    return cookie


def test_a_session_is_served_by_every_replica_and_survives_a_restart(
    ehr_standin_factory: EhrStandinFactory, tmp_path: Path
) -> None:
    with (
        replicas(ehr_standin_factory, tmp_path) as group,
        a_browser() as browser,
    ):
        patient = new_patient(group.ehr.upstream_fhir_url)
        session_id = launch(group, browser, patient)
        restarted = group.start()  # a replica that was not running when the session began
        for url in [*group.urls[1:], restarted]:
            info = browser.get(f"{url}/api/session")
            assert info.status_code == 200, info.text
            assert info.json()["patient"] == patient
            read = browser.get(f"{url}/api/patients/{patient}/resources/Patient/{patient}")
            assert read.status_code == 200
            assert read.json()["id"] == patient
        # What the database holds opens only with the key: no token, session id or patient in it.
        raw = (tmp_path / SERVICE_DATABASE_FILE).read_bytes()
        wal = tmp_path / f"{SERVICE_DATABASE_FILE}-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        session = group.runtimes[0].sessions.get(session_id)
        assert session is not None
        for secret in (session.access_token.get_secret_value(), session_id, patient):
            assert secret.encode() not in raw


def test_a_logout_on_one_replica_ends_the_session_on_all(
    ehr_standin_factory: EhrStandinFactory, tmp_path: Path
) -> None:
    with (
        replicas(ehr_standin_factory, tmp_path) as group,
        a_browser() as browser,
    ):
        patient = new_patient(group.ehr.upstream_fhir_url)
        session_id = launch(group, browser, patient)
        csrf = browser.get(f"{group.urls[1]}/api/session").json()["csrf"]  # both replicas hold it now
        assert browser.post(f"{group.urls[0]}/app/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        # The browser dropped its cookie; a copy of it (a stolen one) is refused on every replica.
        for url in group.urls:
            resp = httpx.get(f"{url}/api/session", cookies={COOKIE: session_id}, timeout=30)
            assert resp.status_code == 401, url


def test_two_replicas_refreshing_one_expired_token_at_once_keep_the_session(
    ehr_standin_factory: EhrStandinFactory, tmp_path: Path
) -> None:
    with (
        replicas(ehr_standin_factory, tmp_path, access_token_lifetime_s=2) as group,
        a_browser() as browser,
    ):
        patient = new_patient(group.ehr.upstream_fhir_url)
        session_id = launch(group, browser, patient)
        paths = [f"{url}/api/patients/{patient}/resources/Patient/{patient}" for url in group.urls]
        assert [browser.get(p).status_code for p in paths] == [200, 200]  # both hold the session
        time.sleep(2.2)  # the access token has expired: each replica's next read refreshes first
        cookies = {COOKIE: session_id}
        answers: list[int] = []
        go = threading.Barrier(len(paths))

        def read(path: str) -> None:
            go.wait()
            answers.append(httpx.get(path, cookies=cookies, timeout=30).status_code)

        threads = [threading.Thread(target=read, args=(p,)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200, 200]
        assert [browser.get(p).status_code for p in paths] == [200, 200]  # and the session lives on
        generations = [r.sessions.get(session_id) for r in group.runtimes]
        assert [s.generation if s is not None else None for s in generations] == [1, 1]  # one refresh


def test_a_launch_whose_session_cannot_be_stored_ends_on_an_error_page_without_a_session(
    ehr_standin_factory: EhrStandinFactory, tmp_path: Path
) -> None:
    with replicas(ehr_standin_factory, tmp_path) as group, a_browser() as browser:
        patient = new_patient(group.ehr.upstream_fhir_url)
        with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
            db.execute("DROP TABLE app_sessions")
        page = browser.get(f"{group.ehr.base_url}/launch", params={"patient": patient})
        assert page.status_code == 503
        assert "could not keep the session" in page.text
        assert browser.cookies.get(COOKIE) is None
        assert all(len(r.sessions) == 0 for r in group.runtimes)


def test_a_launch_started_on_one_replica_completes_on_another(
    ehr_standin_factory: EhrStandinFactory, tmp_path: Path
) -> None:
    """The EHR's redirect back (the callback) reaches another replica than the launch, as a
    non-sticky route may send it: that replica finds the launch in the shared database, once."""
    with (
        replicas(ehr_standin_factory, tmp_path) as group,
        httpx.Client(timeout=30, follow_redirects=False) as browser,
    ):
        patient = new_patient(group.ehr.upstream_fhir_url)
        callback = ""
        response = browser.get(f"{group.ehr.base_url}/launch", params={"patient": patient})
        while response.next_request is not None:
            target = str(response.next_request.url)
            if target.startswith(f"{group.public}/app/callback"):
                callback = target.removeprefix(group.public)
                target = group.urls[1] + callback  # the other replica
            response = browser.get(target)
        assert response.status_code == 200, response.text
        assert callback
        cookie = browser.cookies.get(COOKIE)
        assert cookie
        assert group.runtimes[0].sessions.get(cookie) is None  # made by the other replica
        info = browser.get(f"{group.urls[0]}/api/session")  # and served by this one too
        assert info.status_code == 200, info.text
        assert info.json()["patient"] == patient
        # Taken once: the same callback again is refused on either replica.
        for url in group.urls:
            again = browser.get(url + callback)
            assert again.status_code == 400
            assert "This sign-in is not valid" in again.text
