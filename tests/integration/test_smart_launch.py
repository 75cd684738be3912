"""SMART App Launch of the real service from the EHR stand-in, driven by httpx following
redirects (launcher -> /app/launch -> authorize -> /app/callback -> /app/): the session it
creates, what the URLs and logs never carry, and the launches that must fail."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from ehr_fixtures import EhrStandinFactory
from launched_app import LaunchedApp, launched_app, new_patient

from agent.service.sessions import Session
from fhir_adapters.smart_app_launch import Pkce

pytestmark = pytest.mark.integration

COOKIE = "chartagent-session"


@pytest.fixture(scope="module")
def app(ehr_standin_factory: EhrStandinFactory) -> Iterator[LaunchedApp]:
    with launched_app(ehr_standin_factory) as launched:
        yield launched


@pytest.fixture(scope="module")
def patient(app: LaunchedApp) -> str:
    return new_patient(app.ehr.upstream_fhir_url)


def _session(app: LaunchedApp, browser: httpx.Client) -> Session:
    session = app.runtime.sessions.get(browser.cookies.get(COOKIE))
    assert session is not None
    return session


def _service_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the service's own loggers wrote (httpx's request lines are left out: the test's
    "browser" logs the launcher and callback URLs through them, and a deployment's root logger,
    with no handler under `chartagent serve`, does not print them)."""
    ours = ("agent", "fhir_adapters", "tools", "uvicorn")
    return "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours)


def test_ehr_launch_creates_a_session_and_no_url_or_log_carries_a_secret(
    app: LaunchedApp, patient: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name in ("agent", "fhir_adapters"):
        caplog.set_level(logging.DEBUG, logger=name)
    with app.browser() as browser:
        page = app.ehr_launch(browser, patient)
        assert page.status_code == 200
        assert str(page.url) == f"{app.url}/app/"
        hops = [*page.history, page]
        paths = [r.url.path for r in hops]
        assert paths == ["/launch", "/app/launch", "/auth/authorize", "/app/callback", "/app/"]
        callback = hops[3]
        assert callback.status_code == 303
        assert callback.headers["location"] == "/app/"
        cookie = callback.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        assert "Path=/" in cookie
        # The authorize request: PKCE S256, state, aud = iss, the launch id.
        asked = parse_qs(urlsplit(str(hops[2].url)).query)
        assert asked["code_challenge_method"] == ["S256"]
        assert asked["aud"] == [app.ehr.fhir_url]
        assert "launch" in asked["scope"][0].split()
        code = parse_qs(urlsplit(str(callback.url)).query)["code"][0]

        session = _session(app, browser)
        assert session.patient_id == patient
        # The id_token's absolute fhirUser, as a reference on the EHR's FHIR server.
        assert session.fhir_user == "Practitioner/chartagent-demo-clinician"
        assert session.scopes.allows("Observation", "r")
        info = browser.get(f"{app.url}/api/session").json()
        assert info["patient"] == patient
        assert info["need_patient_banner"] is True
        # The session reads FHIR through the EHR's proxy with its own token.
        read = browser.get(f"{app.url}/api/patients/{patient}/resources/Patient/{patient}")
        assert read.status_code == 200
        assert read.json()["id"] == patient

    secrets = [session.access_token.get_secret_value(), code]
    if session.refresh_token is not None:
        secrets.append(session.refresh_token.get_secret_value())
    after_callback = [str(page.url), callback.headers["location"]]
    for value in [*secrets, patient]:
        assert all(value not in url for url in after_callback)
    service_logs = _service_log(caplog)
    assert "SMART launch: session:" in service_logs  # the capture works
    for value in [*secrets, patient]:
        assert value not in service_logs


def test_standalone_launch_asks_for_a_patient_and_uses_the_default_issuer(
    app: LaunchedApp, patient: str
) -> None:
    with app.browser() as browser:
        picker = browser.get(f"{app.url}/app/launch")
        assert picker.status_code == 200
        asked = parse_qs(urlsplit(str(picker.url)).query)
        scopes = asked["scope"][0].split()
        assert "launch/patient" in scopes
        assert "launch" not in scopes
        assert "launch" not in asked
        handle = re.search(r'name=request value="([^"]+)"', picker.text)
        assert handle is not None
        page = browser.post(
            f"{app.ehr.base_url}/auth/pick", data={"request": handle.group(1), "patient": patient}
        )
        assert str(page.url) == f"{app.url}/app/"
        assert _session(app, browser).patient_id == patient


def _to_authorize(app: LaunchedApp, browser: httpx.Client, patient: str) -> httpx.Response:
    """The app's redirect to the EHR's authorize endpoint (not followed)."""
    launch = app.ehr.launch(patient)
    resp = browser.get(
        f"{app.url}/app/launch", params={"iss": app.ehr.fhir_url, "launch": launch}, follow_redirects=False
    )
    assert resp.status_code == 302
    return resp


def _callback_url(browser: httpx.Client, authorize: httpx.Response) -> str:
    resp = browser.get(authorize.headers["location"], follow_redirects=False)
    assert resp.status_code == 302
    location: str = resp.headers["location"]
    return location


def test_state_is_bound_to_the_browser_and_single_use(app: LaunchedApp, patient: str) -> None:
    with app.browser() as browser, app.browser() as other:
        callback = _callback_url(browser, _to_authorize(app, browser, patient))
        wrong_state = re.sub(r"state=[^&]+", "state=not-the-state", callback)
        refused = browser.get(wrong_state)
        assert refused.status_code == 400
        assert "This sign-in is not valid" in refused.text
        assert COOKIE not in browser.cookies
        # The right state from another browser (no pre-session cookie) is refused, and spends it.
        assert other.get(callback).status_code == 400
        again = browser.get(callback)
        assert again.status_code == 400
        assert COOKIE not in browser.cookies


def test_a_wrong_pkce_verifier_ends_in_a_clear_page_without_secrets(app: LaunchedApp, patient: str) -> None:
    with app.browser() as browser:
        authorize = _to_authorize(app, browser, patient)
        state = parse_qs(urlsplit(authorize.headers["location"]).query)["state"][0]
        # The verifier the service will send is not the one the challenge was made from.
        launches = app.runtime.launches._launches
        launches[state] = dataclasses.replace(launches[state], pkce=Pkce.new())
        callback = _callback_url(browser, authorize)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        page = browser.get(callback)
        assert page.status_code == 400
        assert "The EHR refused the sign-in" in page.text
        assert "invalid_grant" in page.text
        assert code not in page.text
        assert COOKIE not in browser.cookies
        assert page.headers["cache-control"] == "no-store"


def test_an_issuer_not_in_the_settings_may_not_launch(app: LaunchedApp) -> None:
    with app.browser() as browser:
        resp = browser.get(
            f"{app.url}/app/launch",
            params={"iss": "http://127.0.0.1:9/fhir", "launch": "x"},
            follow_redirects=False,
        )
    assert resp.status_code == 400
    assert "may not launch" in resp.text


def test_pages_carry_the_content_security_policy(app: LaunchedApp) -> None:
    origin = app.ehr.base_url
    for path in ("/app/", "/app/launch"):
        resp = httpx.get(f"{app.url}{path}", follow_redirects=False)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert f"frame-ancestors 'self' {origin}" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def short_lived(ehr_standin_factory: EhrStandinFactory) -> Iterator[LaunchedApp]:
    """An EHR whose access tokens live 2 s."""
    with launched_app(ehr_standin_factory, access_token_lifetime_s=2) as launched:
        yield launched


def test_an_expired_access_token_is_refreshed_before_use(short_lived: LaunchedApp) -> None:
    patient = new_patient(short_lived.ehr.upstream_fhir_url)
    read = f"{short_lived.url}/api/patients/{patient}/resources/Patient/{patient}"
    with short_lived.browser() as browser:
        short_lived.ehr_launch(browser, patient)
        session = _session(short_lived, browser)
        first_refresh = session.refresh_token
        assert first_refresh is not None
        assert browser.get(read).status_code == 200
        time.sleep(2.2)
        assert browser.get(read).status_code == 200
        assert session.generation == 1
        assert session.refresh_token is not None
        assert session.refresh_token.get_secret_value() != first_refresh.get_secret_value()  # rotated


def test_a_401_from_fhir_refreshes_once_and_retries(short_lived: LaunchedApp) -> None:
    patient = new_patient(short_lived.ehr.upstream_fhir_url)
    read = f"{short_lived.url}/api/patients/{patient}/resources/Patient/{patient}"
    with short_lived.browser() as browser:
        short_lived.ehr_launch(browser, patient)
        session = _session(short_lived, browser)
        # The service believes the token fresh; the EHR knows it expired: FHIR answers 401.
        session.access_expires_at = time.time() + 3600
        session.access_lifetime_s = 3600
        time.sleep(2.2)
        assert browser.get(read).status_code == 200
        assert session.generation == 1


def test_an_authorize_request_with_a_wrong_aud_comes_back_as_an_error_page(
    app: LaunchedApp, patient: str
) -> None:
    with app.browser() as browser:
        authorize = _to_authorize(app, browser, patient)
        # The request as an attacker (or a misconfigured proxy) would alter it: another audience.
        tampered = re.sub(
            r"aud=[^&]+", "aud=http%3A%2F%2F127.0.0.1%3A9%2Ffhir", authorize.headers["location"]
        )
        page = browser.get(tampered)
        assert page.url.path == "/app/callback"
        assert "error" in page.url.params
        assert page.status_code == 400
        assert "The EHR did not authorize ChartAgent" in page.text
        assert COOKIE not in browser.cookies
