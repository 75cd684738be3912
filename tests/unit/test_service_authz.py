"""current_principal, require_csrf and the security headers, against an in-memory SMART issuer
(tests/unit/fake_smart_issuer.py): which caller becomes which principal, and who is refused."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from fake_smart_issuer import ISS, FakeIssuer, new_key
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from agent.service import smart_launch
from agent.service.authz import current_principal, session_cookie_name
from agent.service.csrf import require_csrf
from agent.service.issuers import IssuerRegistry, VerifiedTokens
from agent.service.principal import Principal
from agent.service.runtime import ServiceRuntime
from agent.service.sessions import Session, SessionAuth
from agent.settings import ServiceKey, Settings
from fhir_adapters.smart_app_launch import SmartConfiguration
from fhir_adapters.smart_scopes import ScopeSet

PUBLIC_URL = "http://chartagent.test"
JOBS_KEY = secrets.token_urlsafe(32)


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def runtime(issuer: FakeIssuer) -> ServiceRuntime:
    settings = Settings(
        app_issuers=(ISS,),
        app_client_secret=SecretStr("app-secret-for-unit-tests"),
        service_keys={"jobs": ServiceKey(key=SecretStr(JOBS_KEY), scopes="system/*.rs")},
        token_leeway_s=0,
    )
    return ServiceRuntime(
        settings=settings,
        public_url=PUBLIC_URL,
        fhir_url="http://fhir.test/fhir",
        dicomweb_url=None,
        issuers=IssuerRegistry(http_factory=issuer.http),
    )


class FhirCalls:
    count = 0


@pytest.fixture
def client(runtime: ServiceRuntime) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.runtime = runtime
    smart_launch.install(app)
    FhirCalls.count = 0

    @app.get("/api/whoami")
    async def whoami(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, object]:
        return {
            "kind": principal.kind,
            "patient": principal.patient_id,
            "scopes": principal.scopes.text,
            "base": principal.fhir_base_url,
            "label": principal.label,
        }

    # Stands in for B2's patient routes: the patient check comes before any FHIR call.
    @app.get("/api/patients/{patient_id}/summary")
    async def summary(
        patient_id: str, principal: Annotated[Principal, Depends(current_principal)]
    ) -> dict[str, str]:
        principal.require_patient(patient_id)
        FhirCalls.count += 1
        return {"patient": patient_id}

    @app.post("/api/act")
    async def act(principal: Annotated[Principal, Depends(require_csrf)]) -> dict[str, str]:
        return {"kind": principal.kind}

    with TestClient(app, base_url=PUBLIC_URL) as test_client:
        yield test_client


def _session(runtime: ServiceRuntime, patient: str = "pat-a") -> Session:
    config = SmartConfiguration(
        authorization_endpoint="https://ehr.test/auth/authorize",
        token_endpoint="https://ehr.test/auth/token",
        code_challenge_methods_supported=("S256",),
    )
    return runtime.sessions.create(
        iss=ISS,
        config=config,
        patient_id=patient,
        fhir_user="Practitioner/p1",
        scopes=ScopeSet.parse("patient/*.rs patient/Observation.c"),
        need_patient_banner=True,
        access_token=SecretStr("access-token-of-the-session"),
        expires_in=300,
        refresh_token=None,
        lifetime_s=3600,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_credentials_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    resp = client.get("/api/whoami")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_a_session_cookie_is_a_session_principal_bound_to_its_patient(
    client: TestClient, runtime: ServiceRuntime
) -> None:
    session = _session(runtime)
    client.cookies.set(session_cookie_name(runtime), session.id)
    body = client.get("/api/whoami").json()
    assert body["kind"] == "session"
    assert body["patient"] == "pat-a"
    assert body["base"] == ISS
    assert session.id not in body["label"]
    assert client.get("/api/patients/pat-b/summary").status_code == 403
    assert FhirCalls.count == 0  # refused before any FHIR call
    assert client.get("/api/patients/pat-a/summary").status_code == 200


def test_an_unknown_or_expired_session_cookie_is_401(client: TestClient, runtime: ServiceRuntime) -> None:
    client.cookies.set(session_cookie_name(runtime), "no-such-session")
    assert client.get("/api/whoami").status_code == 401
    session = _session(runtime)
    session.expires_at = time.time() - 1
    client.cookies.set(session_cookie_name(runtime), session.id)
    assert client.get("/api/whoami").status_code == 401
    assert runtime.sessions.get(session.id) is None


def test_a_service_key_is_a_system_principal_and_never_reaches_the_issuer(
    client: TestClient, issuer: FakeIssuer
) -> None:
    body = client.get("/api/whoami", headers=_bearer(JOBS_KEY)).json()
    assert body == {
        "kind": "service",
        "patient": None,
        "scopes": "system/*.rs",
        "base": None,
        "label": "service:jobs",
    }
    assert issuer.requests == []
    # A wrong key is an opaque token: the issuer's introspection says it is not active.
    resp = client.get("/api/whoami", headers=_bearer(JOBS_KEY[:-2] + "xx"))
    assert resp.status_code == 401
    assert "not active" in resp.json()["detail"]


def test_a_patient_token_of_the_trusted_issuer(client: TestClient, issuer: FakeIssuer) -> None:
    token = issuer.mint({"scope": "patient/*.rs launch", "patient": "pat-a", "client_id": "some-app"})
    body = client.get("/api/whoami", headers=_bearer(token)).json()
    assert body["kind"] == "token"
    assert body["patient"] == "pat-a"
    assert body["base"] == ISS
    assert body["label"] == "token:some-app"
    assert client.get("/api/patients/pat-b/summary", headers=_bearer(token)).status_code == 403
    assert FhirCalls.count == 0
    # The JWKS is fetched once and reused.
    client.get("/api/whoami", headers=_bearer(token))
    assert issuer.paths().count("/auth/jwks") == 1


def test_a_token_for_this_service_is_accepted_and_patient_scopes_without_patient_are_dropped(
    client: TestClient, issuer: FakeIssuer
) -> None:
    token = issuer.mint({"aud": PUBLIC_URL, "scope": "system/*.rs patient/*.cruds"})
    body = client.get("/api/whoami", headers=_bearer(token)).json()
    assert body["patient"] is None
    assert body["scopes"] == "system/*.rs"
    assert body["base"] is None  # minted for this service: served by its own FHIR settings


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://elsewhere.test/fhir"}, "audience"),
        ({"exp": int(time.time()) - 5}, "expired"),
        ({"iss": "https://evil.test/fhir"}, "not trusted"),
    ],
)
def test_tokens_that_fail_a_check_are_401(
    client: TestClient,
    issuer: FakeIssuer,
    claims: dict[str, object],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = issuer.mint({"scope": "patient/*.rs", "patient": "pat-a", **claims})
    with caplog.at_level(logging.DEBUG):
        resp = client.get("/api/whoami", headers=_bearer(token))
    assert resp.status_code == 401
    assert reason in resp.json()["detail"]
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert token not in caplog.text
    assert token not in resp.text


def test_a_foreign_signed_token_is_401(client: TestClient, issuer: FakeIssuer) -> None:
    forged = issuer.mint({"scope": "system/*.cruds"}, key=new_key())  # same kid, another key
    resp = client.get("/api/whoami", headers=_bearer(forged))
    assert resp.status_code == 401
    assert "signature" in resp.json()["detail"]


def test_an_hmac_token_signed_with_anything_is_401(client: TestClient) -> None:

    now = int(time.time())
    claims = {"iss": ISS, "aud": ISS, "exp": now + 60, "scope": "system/*.cruds"}
    forged = jwt.encode(claims, "a-public-value-used-as-an-hmac-secret-32b", algorithm="HS256")
    resp = client.get("/api/whoami", headers=_bearer(forged))
    assert resp.status_code == 401
    assert "algorithm" in resp.json()["detail"]


def test_an_opaque_token_is_introspected(client: TestClient, issuer: FakeIssuer) -> None:
    opaque = secrets.token_urlsafe(24)
    issuer.active[opaque] = {
        "scope": "patient/*.rs",
        "patient": "pat-a",
        "exp": int(time.time()) + 60,
        "client_id": "some-app",
    }
    body = client.get("/api/whoami", headers=_bearer(opaque)).json()
    assert (body["kind"], body["patient"]) == ("token", "pat-a")
    # The app authenticated itself to the introspection endpoint (client_secret_basic).
    introspect = next(r for r in issuer.requests if r.url.path == "/auth/introspect")
    assert introspect.headers["authorization"].startswith("Basic ")


def test_not_a_bearer_scheme_is_401(client: TestClient) -> None:
    resp = client.get("/api/whoami", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert resp.status_code == 401


def test_csrf_is_required_of_sessions_only(client: TestClient, runtime: ServiceRuntime) -> None:
    assert client.post("/api/act", headers=_bearer(JOBS_KEY)).json() == {"kind": "service"}
    session = _session(runtime)
    client.cookies.set(session_cookie_name(runtime), session.id)
    assert client.post("/api/act").status_code == 403
    assert client.post("/api/act", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    resp = client.post("/api/act", headers={"X-CSRF-Token": session.csrf_token})
    assert resp.json() == {"kind": "session"}


def test_api_session_gives_the_page_its_patient_and_csrf_token(
    client: TestClient, runtime: ServiceRuntime
) -> None:
    session = _session(runtime)
    client.cookies.set(session_cookie_name(runtime), session.id)
    body = client.get("/api/session").json()
    assert body == {
        "patient": "pat-a",
        "fhirUser": "Practitioner/p1",
        "need_patient_banner": True,
        "scope": "patient/*.rs patient/Observation.c",
        "csrf": session.csrf_token,
    }


def test_logout_needs_the_csrf_token_and_ends_the_session(
    client: TestClient, runtime: ServiceRuntime
) -> None:
    session = _session(runtime)
    client.cookies.set(session_cookie_name(runtime), session.id)
    assert client.post("/app/logout").status_code == 403
    assert client.post("/app/logout", headers={"X-CSRF-Token": session.csrf_token}).status_code == 204
    assert runtime.sessions.get(session.id) is None


def test_security_headers(client: TestClient, runtime: ServiceRuntime) -> None:
    resp = client.get("/api/whoami", headers=_bearer(JOBS_KEY))
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "object-src 'none'" in csp
    assert "frame-ancestors 'self' https://ehr.test" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["cache-control"] == "no-store"
    # Headers come on errors too.
    assert "content-security-policy" in client.get("/api/whoami").headers


def test_request_from_a_browser_request(runtime: ServiceRuntime) -> None:
    # current_principal takes only the request: MCP and other ASGI mounts call it directly.
    app = FastAPI()
    app.state.runtime = runtime
    scope = {"type": "http", "app": app, "headers": [(b"authorization", f"Bearer {JOBS_KEY}".encode())]}

    principal = asyncio.run(current_principal(Request(scope)))
    assert principal.kind == "service"


def test_an_https_launch_sets_host_prefixed_secure_cookies(issuer: FakeIssuer) -> None:
    settings = Settings(
        app_issuers=(ISS,),
        app_client_secret=SecretStr("app-secret-for-unit-tests"),
        app_cookie_samesite="none",
        token_leeway_s=0,
    )
    runtime = ServiceRuntime(
        settings=settings,
        public_url="https://chartagent.test",
        fhir_url="http://fhir.test/fhir",
        dicomweb_url=None,
        issuers=IssuerRegistry(http_factory=issuer.http),
    )
    app = FastAPI()
    app.state.runtime = runtime
    smart_launch.install(app)
    with TestClient(app, base_url="https://chartagent.test") as browser:
        launch = browser.get("/app/launch", params={"iss": ISS, "launch": "L1"}, follow_redirects=False)
        assert launch.status_code == 302
        launch_cookie = launch.headers["set-cookie"]
        assert launch_cookie.startswith("__Host-chartagent-launch=")
        assert "Secure" in launch_cookie
        assert "SameSite=none" in launch_cookie
        asked = {k: v[0] for k, v in parse_qs(urlsplit(launch.headers["location"]).query).items()}
        id_token = issuer.mint(
            {"aud": "chartagent-app", "nonce": asked["nonce"], "fhirUser": f"{ISS}/Practitioner/p1"}
        )
        answer = {
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "launch openid fhirUser patient/*.rs",
            "patient": "pat-a",
            "id_token": id_token,
            "need_patient_banner": False,
        }
        issuer.token_handler = lambda _r: httpx.Response(200, json=answer)
        done = browser.get(
            "/app/callback", params={"code": "c1", "state": asked["state"]}, follow_redirects=False
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/app/"
        session_cookie = next(c for c in done.headers.get_list("set-cookie") if "chartagent-session" in c)
        assert session_cookie.startswith("__Host-chartagent-session=")
        for attribute in ("HttpOnly", "Secure", "Path=/", "SameSite=none"):
            assert attribute in session_cookie
        session = runtime.sessions.get(browser.cookies.get("__Host-chartagent-session"))
        assert session is not None
        assert (session.patient_id, session.fhir_user) == ("pat-a", "Practitioner/p1")


def test_a_callback_whose_id_token_has_another_nonce_makes_no_session(
    client: TestClient, issuer: FakeIssuer
) -> None:
    launch = client.get("/app/launch", params={"iss": ISS, "launch": "L1"}, follow_redirects=False)
    state = parse_qs(urlsplit(launch.headers["location"]).query)["state"][0]
    id_token = issuer.mint({"aud": "chartagent-app", "nonce": "not-the-launch-nonce"})
    answer = {"access_token": "at-1", "token_type": "Bearer", "patient": "pat-a", "id_token": id_token}
    issuer.token_handler = lambda _r: httpx.Response(200, json=answer)
    page = client.get("/app/callback", params={"code": "c1", "state": state}, follow_redirects=False)
    assert page.status_code == 400
    assert "identity token was not valid" in page.text
    assert "chartagent-session" not in page.headers.get("set-cookie", "")


def test_a_remembered_token_still_expires() -> None:
    now = [1000.0]
    verified = VerifiedTokens(max_entries=2, clock=lambda: now[0])
    verified.remember("t1", ISS, {"exp": 1010})
    assert verified.recall("t1", leeway_s=0) == (ISS, {"exp": 1010})
    assert verified.recall("t2", leeway_s=0) is None
    now[0] = 1011
    assert verified.recall("t1", leeway_s=5) is not None
    assert verified.recall("t1", leeway_s=0) is None
    # Full: the expired go first, then the oldest.
    verified.remember("t2", ISS, {"exp": 2000})
    verified.remember("t3", ISS, {"exp": 2000})
    verified.remember("t4", ISS, {"exp": 2000})
    assert verified.recall("t2", leeway_s=0) is None
    assert verified.recall("t4", leeway_s=0) is not None


def test_a_verified_token_is_not_verified_again(
    client: TestClient, issuer: FakeIssuer, runtime: ServiceRuntime
) -> None:
    token = issuer.mint({"scope": "patient/*.rs", "patient": "pat-a"})
    for _ in range(3):
        assert client.get("/api/whoami", headers=_bearer(token)).status_code == 200
    assert runtime.issuers.verified.recall(token, leeway_s=0) is not None
    # A token differing in one signature character is not the remembered one.
    assert (
        client.get(
            "/api/whoami", headers=_bearer(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
        ).status_code
        == 401
    )


def _refreshing_session(runtime: ServiceRuntime, issuer: FakeIssuer) -> Session:
    session = _session(runtime)
    session.config = SmartConfiguration.model_validate(issuer.configuration())
    session.refresh_token = SecretStr("rt-1")
    session.access_expires_at = time.time() - 1  # expired
    return session


def _auth(runtime: ServiceRuntime, session: Session) -> SessionAuth:
    return SessionAuth(
        session,
        runtime.sessions,
        client_id="chartagent-app",
        client_secret=SecretStr("app-secret-for-unit-tests"),
        redirect_uri=f"{PUBLIC_URL}/app/callback",
    )


def test_concurrent_requests_of_an_expired_session_refresh_once(
    runtime: ServiceRuntime, issuer: FakeIssuer
) -> None:
    session = _refreshing_session(runtime, issuer)
    answer = {"access_token": "at-2", "token_type": "Bearer", "expires_in": 300, "refresh_token": "rt-2"}
    issuer.token_handler = lambda _r: httpx.Response(200, json=answer)

    async def requests() -> list[str | None]:
        async with issuer.http() as http:
            auths = [_auth(runtime, session) for _ in range(5)]
            return await asyncio.gather(*(a.authorization(http, ISS) for a in auths))

    headers = asyncio.run(requests())
    assert headers == ["Bearer at-2"] * 5
    assert issuer.paths().count("/auth/token") == 1
    assert session.refresh_token is not None
    assert session.refresh_token.get_secret_value() == "rt-2"  # rotated
    assert session.generation == 1


def test_a_401_refreshes_unless_another_request_already_did(
    runtime: ServiceRuntime, issuer: FakeIssuer
) -> None:
    session = _refreshing_session(runtime, issuer)
    session.access_expires_at = time.time() + 3600  # looks fresh; the EHR says otherwise
    answer = {"access_token": "at-2", "token_type": "Bearer", "expires_in": 300}
    issuer.token_handler = lambda _r: httpx.Response(200, json=answer)

    async def go() -> tuple[bool, bool]:
        async with issuer.http() as http:
            first, second = _auth(runtime, session), _auth(runtime, session)
            await first.authorization(http, ISS)
            await second.authorization(http, ISS)
            return await first.refresh(http, ISS), await second.refresh(http, ISS)

    assert asyncio.run(go()) == (True, True)
    assert issuer.paths().count("/auth/token") == 1  # the second saw the first's refresh
    assert session.refresh_token is not None
    assert session.refresh_token.get_secret_value() == "rt-1"  # not rotated: kept


def test_a_refused_refresh_ends_the_session(runtime: ServiceRuntime, issuer: FakeIssuer) -> None:
    session = _refreshing_session(runtime, issuer)  # the fake issuer refuses with invalid_grant

    async def go() -> bool:
        async with issuer.http() as http:
            auth = _auth(runtime, session)
            await auth.authorization(http, ISS)
            return await auth.refresh(http, ISS)

    assert asyncio.run(go()) is False
    assert runtime.sessions.get(session.id) is None
