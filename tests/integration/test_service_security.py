"""Who may call the real service (uvicorn, behind the EHR stand-in): sessions, bearer tokens of
the stand-in and service keys; patient binding before any FHIR call; CSRF; tokens refused for
their signature, expiry, audience or issuer, with nothing secret in the answer or the logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from ehr_fixtures import EhrStandinFactory
from launched_app import SERVICE_KEY, LaunchedApp, launched_app, new_patient

from agent.connections import open_fhir_client
from fhir_adapters import FhirClient

pytestmark = pytest.mark.integration

READS = "launch openid fhirUser patient/*.rs"


@pytest.fixture(scope="module")
def app(ehr_standin_factory: EhrStandinFactory) -> Iterator[LaunchedApp]:
    with launched_app(ehr_standin_factory) as launched:
        yield launched


@pytest.fixture(scope="module")
def patients(app: LaunchedApp) -> tuple[str, str]:
    return new_patient(app.ehr.upstream_fhir_url), new_patient(app.ehr.upstream_fhir_url)


@pytest.fixture
def fhir_clients(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every FHIR client the service opens for a request (the app runs in this process)."""
    opened: list[str] = []

    def client(base_url: str, **kwargs: Any) -> Any:
        opened.append("relay")
        return FhirClient(base_url, **kwargs)

    def open_service(url: str, settings: Any) -> Any:
        opened.append("service")
        return open_fhir_client(url, settings)

    monkeypatch.setattr("agent.service.fhir_access.FhirClient", client)
    monkeypatch.setattr("agent.service.fhir_access.open_fhir_client", open_service)
    return opened


def _read(app: LaunchedApp, patient: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(
        f"{app.url}/api/patients/{patient}/resources/Patient/{patient}", headers=headers, timeout=30
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_credentials_is_401(app: LaunchedApp, patients: tuple[str, str], fhir_clients: list[str]) -> None:
    resp = _read(app, patients[0])
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert fhir_clients == []


def test_a_session_reaches_its_patient_only_and_is_refused_before_any_fhir_call(
    app: LaunchedApp, patients: tuple[str, str], fhir_clients: list[str]
) -> None:
    a, b = patients
    with app.browser() as browser:
        app.ehr_launch(browser, a)
        other = browser.get(f"{app.url}/api/patients/{b}/resources/Patient/{b}")
        assert other.status_code == 403
        assert b not in other.text
        assert fhir_clients == []
        own = browser.get(f"{app.url}/api/patients/{a}/resources/Patient/{a}")
        assert own.status_code == 200
        assert fhir_clients == ["relay"]  # the session's own tokens, at the EHR


def test_csrf_guards_a_sessions_unsafe_requests(app: LaunchedApp, patients: tuple[str, str]) -> None:
    with app.browser() as browser:
        app.ehr_launch(browser, patients[0])
        csrf = browser.get(f"{app.url}/api/session").json()["csrf"]
        assert browser.post(f"{app.url}/app/logout").status_code == 403
        assert browser.post(f"{app.url}/app/logout", headers={"X-CSRF-Token": "forged"}).status_code == 403
        assert browser.get(f"{app.url}/api/session").status_code == 200  # still signed in
        assert browser.post(f"{app.url}/app/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get(f"{app.url}/api/session").status_code == 401


def test_a_patient_token_of_the_ehr_is_relayed_for_its_patient_only(
    app: LaunchedApp, patients: tuple[str, str], fhir_clients: list[str]
) -> None:
    a, b = patients
    token = app.ehr.token_for(a, READS).access_token.get_secret_value()
    assert _read(app, b, _bearer(token)).status_code == 403
    assert fhir_clients == []
    assert _read(app, a, _bearer(token)).status_code == 200
    assert fhir_clients == ["relay"]


def test_a_service_key_is_a_system_caller_on_the_services_own_fhir(
    app: LaunchedApp, patients: tuple[str, str], fhir_clients: list[str]
) -> None:
    assert _read(app, patients[1], _bearer(SERVICE_KEY)).status_code == 200
    assert fhir_clients == ["service"]


def test_a_token_minted_for_this_service_is_served_by_its_own_fhir(
    app: LaunchedApp, patients: tuple[str, str], fhir_clients: list[str]
) -> None:
    token = app.ehr.system_token("system/*.rs", audience=app.url)
    assert _read(app, patients[0], _bearer(token)).status_code == 200
    assert fhir_clients == ["service"]


def _resigned(token: str, key: rsa.RSAPrivateKey, **changes: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    return jwt.encode({**claims, **changes}, key, algorithm="RS256", headers={"kid": header["kid"]})


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("foreign-signed", "signature"),
        ("wrong-audience", "audience"),
        ("other-issuer", "not trusted"),
    ],
)
def test_refused_bearer_tokens(
    app: LaunchedApp,
    patients: tuple[str, str],
    fhir_clients: list[str],
    caplog: pytest.LogCaptureFixture,
    forge: str,
    reason: str,
) -> None:
    a = patients[0]
    real = app.ehr.token_for(a, READS).access_token.get_secret_value()
    if forge == "foreign-signed":  # same claims and kid, another key
        token = _resigned(real, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    elif forge == "wrong-audience":  # a real token of the EHR, for another resource server
        token = app.ehr.system_token("system/*.rs", audience="http://127.0.0.1:9/other-fhir")
    else:  # signed by a key we hold, claiming an issuer we do not trust
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = _resigned(real, key, iss="http://127.0.0.1:9/fhir")
    caplog.set_level(logging.DEBUG, logger="agent")
    resp = _read(app, a, _bearer(token))
    assert resp.status_code == 401
    assert reason in resp.json()["detail"]
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert token not in resp.text
    assert token not in caplog.text
    assert fhir_clients == []


@pytest.fixture(scope="module")
def short_lived(ehr_standin_factory: EhrStandinFactory) -> Iterator[LaunchedApp]:
    with launched_app(ehr_standin_factory, access_token_lifetime_s=2) as launched:
        yield launched


def test_an_expired_bearer_token_is_401(short_lived: LaunchedApp, fhir_clients: list[str]) -> None:
    patient = new_patient(short_lived.ehr.upstream_fhir_url)
    token = short_lived.ehr.token_for(patient, READS).access_token.get_secret_value()
    assert _read(short_lived, patient, _bearer(token)).status_code == 200
    time.sleep(2.2)
    resp = _read(short_lived, patient, _bearer(token))
    assert resp.status_code == 401
    assert "expired" in resp.json()["detail"]
    assert fhir_clients == ["relay"]
