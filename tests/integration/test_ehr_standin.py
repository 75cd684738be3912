"""The EHR stand-in as a real process in front of the session's FHIR server: SMART discovery, the
authorization code flow with PKCE and its refusals, refresh rotation, client credentials,
introspection, the launcher and picker, and the FHIR proxy's scope and compartment enforcement."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from ehr_fixtures import EhrStandin, EhrStandinFactory

from agent.testbed.ehr.cds_client import sign_hook_request
from fhir_adapters.smart_app_launch import Pkce

pytestmark = pytest.mark.integration

APP_SCOPES = "launch openid fhirUser patient/*.rs patient/Observation.c offline_access"
READ_ONLY = "launch openid fhirUser patient/*.rs"


def _observation(patient_id: str, value: float = 1.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {
            "value": value,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }


@pytest.fixture(scope="module")
def two_patients(ehr_standin: EhrStandin) -> tuple[str, str]:
    """Patients A and B (fresh ids), each with one Observation, written straight to FHIR."""
    ids = (f"ehr-a-{uuid.uuid4().hex[:8]}", f"ehr-b-{uuid.uuid4().hex[:8]}")
    for n, pid in enumerate(ids):
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "name": [{"family": f"Standin{n}", "given": ["Test"]}],
        }
        put = httpx.put(f"{ehr_standin.upstream_fhir_url}/Patient/{pid}", json=patient)
        assert put.status_code in (200, 201), put.text
        post = httpx.post(f"{ehr_standin.upstream_fhir_url}/Observation", json=_observation(pid))
        assert post.status_code == 201, post.text
    return ids


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _code_of(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code in (302, 303), response.text
    return parse_qs(urlsplit(response.headers["location"]).query)


# --- discovery and the code flow -------------------------------------------------------------


def test_discovery_document(ehr_standin: EhrStandin) -> None:
    doc = httpx.get(f"{ehr_standin.fhir_url}/.well-known/smart-configuration").json()
    assert doc["issuer"] == ehr_standin.fhir_url
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert doc["token_endpoint"] == f"{ehr_standin.base_url}/auth/token"
    assert doc["authorization_endpoint"] == f"{ehr_standin.base_url}/auth/authorize"
    assert doc["introspection_endpoint"] == f"{ehr_standin.base_url}/auth/introspect"
    assert {
        "launch-ehr",
        "launch-standalone",
        "permission-v2",
        "sso-openid-connect",
        "context-banner",
    } <= set(doc["capabilities"])
    assert "patient/*.rs" in doc["scopes_supported"]
    assert httpx.get(doc["jwks_uri"]).json()["keys"][0]["kty"] == "RSA"


def test_ehr_launch_code_flow_with_pkce(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    patient_a, _ = two_patients
    pkce = Pkce.new()
    params = ehr_standin.authorize_params(
        scope=f"{APP_SCOPES} system/*.rs", pkce=pkce, launch=ehr_standin.launch(patient_a), nonce="n-123"
    )
    query = _code_of(ehr_standin.authorize(params))
    assert query["state"] == [params["state"]]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": ehr_standin.redirect_uri,
        "code_verifier": pkce.verifier.get_secret_value(),
    }
    response = ehr_standin.exchange(form)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["patient"] == patient_a
    assert body["need_patient_banner"] is True
    assert body["expires_in"] > 0
    assert "refresh_token" in body
    # The client is not registered for system scopes: they are dropped, the rest granted.
    assert set(body["scope"].split()) == set(APP_SCOPES.split())

    jwks = httpx.get(f"{ehr_standin.base_url}/auth/jwks").json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    id_token = jwt.decode(
        body["id_token"],
        key,
        algorithms=["RS256"],
        audience=ehr_standin.app_client_id,
        issuer=ehr_standin.fhir_url,
    )
    assert id_token["nonce"] == "n-123"
    assert id_token["fhirUser"] == f"{ehr_standin.fhir_url}/Practitioner/chartagent-demo-clinician"
    access = jwt.decode(
        body["access_token"],
        key,
        algorithms=["RS256"],
        audience=ehr_standin.fhir_url,
        issuer=ehr_standin.fhir_url,
    )
    assert access["patient"] == patient_a
    assert access["client_id"] == ehr_standin.app_client_id
    assert access["fhirUser"] == "Practitioner/chartagent-demo-clinician"
    assert {"jti", "exp", "iat", "sub", "scope"} <= set(access)
    # The demo clinician exists on the FHIR server.
    assert (
        httpx.get(f"{ehr_standin.upstream_fhir_url}/Practitioner/chartagent-demo-clinician").status_code
        == 200
    )


def test_public_client_uses_pkce_alone(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    grant = ehr_standin.token_for(two_patients[0], READ_ONLY, client="public")
    assert grant.patient == two_patients[0]
    assert grant.refresh_token is None  # no offline_access asked


def _authorize_error(ehr: EhrStandin, params: dict[str, str]) -> dict[str, list[str]]:
    query = _code_of(ehr.authorize(params))
    assert "code" not in query
    assert query["state"] == [params["state"]]
    return query


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"aud": "http://127.0.0.1:1/fhir"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "system/*.rs"}, "invalid_scope"),
        ({"launch": "not-a-launch"}, "invalid_request"),
    ],
)
def test_authorize_refusals_go_back_to_the_app(
    ehr_standin: EhrStandin, two_patients: tuple[str, str], change: dict[str, str], error: str
) -> None:
    params = ehr_standin.authorize_params(
        scope=APP_SCOPES, pkce=Pkce.new(), launch=ehr_standin.launch(two_patients[0])
    )
    assert _authorize_error(ehr_standin, {**params, **change})["error"] == [error]


def test_authorize_without_pkce_is_refused(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    params = ehr_standin.authorize_params(
        scope=APP_SCOPES, pkce=Pkce.new(), launch=ehr_standin.launch(two_patients[0])
    )
    del params["code_challenge"], params["code_challenge_method"]
    assert _authorize_error(ehr_standin, params)["error"] == ["invalid_request"]


def test_unregistered_redirect_uri_is_never_redirected_to(ehr_standin: EhrStandin) -> None:
    params = ehr_standin.authorize_params(scope=APP_SCOPES, pkce=Pkce.new())
    response = ehr_standin.authorize({**params, "redirect_uri": "http://127.0.0.1:1/evil", "aud": "wrong"})
    assert response.status_code == 400
    assert "location" not in response.headers
    assert ehr_standin.authorize({**params, "client_id": "nobody"}).status_code == 400


def _code(ehr: EhrStandin, patient_id: str, pkce: Pkce, scope: str = APP_SCOPES) -> str:
    params = ehr.authorize_params(scope=scope, pkce=pkce, launch=ehr.launch(patient_id))
    return _code_of(ehr.authorize(params))["code"][0]


def test_token_refusals(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    pkce = Pkce.new()

    def form(code: str, **change: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": ehr_standin.redirect_uri,
            "code_verifier": pkce.verifier.get_secret_value(),
            **change,
        }

    wrong_verifier = ehr_standin.exchange(
        form(_code(ehr_standin, two_patients[0], pkce), code_verifier="x" * 64)
    )
    assert (wrong_verifier.status_code, wrong_verifier.json()["error"]) == (400, "invalid_grant")
    no_verifier = form(_code(ehr_standin, two_patients[0], pkce))
    del no_verifier["code_verifier"]
    assert ehr_standin.exchange(no_verifier).json()["error"] == "invalid_grant"
    wrong_redirect = ehr_standin.exchange(
        form(_code(ehr_standin, two_patients[0], pkce), redirect_uri=f"{ehr_standin.app_url}/other")
    )
    assert wrong_redirect.json()["error"] == "invalid_grant"

    code = _code(ehr_standin, two_patients[0], pkce)
    assert ehr_standin.exchange(form(code)).status_code == 200
    reused = ehr_standin.exchange(form(code))
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")

    # A confidential client must authenticate: its client_id in the form is not enough.
    unauthenticated = httpx.post(
        f"{ehr_standin.base_url}/auth/token",
        data={**form(_code(ehr_standin, two_patients[0], pkce)), "client_id": ehr_standin.app_client_id},
    )
    assert (unauthenticated.status_code, unauthenticated.json()["error"]) == (401, "invalid_client")
    wrong_secret = httpx.post(
        f"{ehr_standin.base_url}/auth/token",
        data=form(_code(ehr_standin, two_patients[0], pkce)),
        auth=(ehr_standin.app_client_id, "wrong"),
    )
    assert wrong_secret.status_code == 401


def test_refresh_tokens_rotate(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    first = ehr_standin.token_response(two_patients[0], APP_SCOPES)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = ehr_standin.exchange(form)
    assert second.status_code == 200, second.text
    refreshed = second.json()
    assert refreshed["patient"] == two_patients[0]
    assert refreshed["refresh_token"] != first["refresh_token"]
    used = ehr_standin.exchange(form)
    assert (used.status_code, used.json()["error"]) == (400, "invalid_grant")
    # A refresh may narrow the grant, never widen it.
    narrowed = ehr_standin.exchange(
        {
            "grant_type": "refresh_token",
            "refresh_token": refreshed["refresh_token"],
            "scope": "patient/*.rs user/*.rs",
        }
    ).json()
    assert narrowed["scope"] == "patient/*.rs"


def test_client_credentials_and_introspection(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    system = ehr_standin.system_token("system/*.rs patient/*.cruds")
    url = f"{ehr_standin.base_url}/auth/introspect"
    auth = ehr_standin.basic_auth(ehr_standin.jobs_client_id)
    claims = httpx.post(url, data={"token": system}, headers=auth).json()
    assert claims["active"] is True
    assert claims["scope"] == "system/*.rs"
    assert claims["client_id"] == ehr_standin.jobs_client_id
    assert "patient" not in claims

    user = ehr_standin.token_for(two_patients[0], APP_SCOPES).access_token.get_secret_value()
    user_claims = httpx.post(url, data={"token": user}, headers=auth).json()
    assert (user_claims["active"], user_claims["patient"]) == (True, two_patients[0])
    assert user_claims["aud"] == ehr_standin.fhir_url
    assert user_claims["fhirUser"] == "Practitioner/chartagent-demo-clinician"
    assert httpx.post(url, data={"token": "garbage"}, headers=auth).json() == {"active": False}
    assert httpx.post(url, data={"token": user}).status_code == 401

    other_aud = ehr_standin.system_token(audience="http://127.0.0.1:1/api")
    assert jwt.decode(other_aud, options={"verify_signature": False})["aud"] == "http://127.0.0.1:1/api"


# --- launcher and standalone picker ----------------------------------------------------------


def test_launcher_redirects_to_the_app(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    response = httpx.get(f"{ehr_standin.base_url}/launch", params={"patient": two_patients[0]})
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{ehr_standin.app_url}/app/launch"
    query = parse_qs(target.query)
    assert query["iss"] == [ehr_standin.fhir_url]
    assert query["launch"][0]
    assert two_patients[0] not in response.headers["location"]
    assert httpx.get(f"{ehr_standin.base_url}/launch", params={"patient": "no-such"}).status_code == 400
    index = httpx.get(f"{ehr_standin.base_url}/")
    assert f'href="/launch?patient={two_patients[0]}"' in index.text
    assert "default-src 'none'" in index.headers["content-security-policy"]
    framed = httpx.get(f"{ehr_standin.base_url}/frame", params={"patient": two_patients[0]})
    assert f'src="/launch?patient={two_patients[0]}"' in framed.text
    assert f"frame-src 'self' {ehr_standin.app_url}" in framed.headers["content-security-policy"]


def test_standalone_launch_picks_a_patient(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    pkce = Pkce.new()
    params = ehr_standin.authorize_params(scope="launch/patient openid fhirUser patient/*.rs", pkce=pkce)
    page = ehr_standin.authorize(params)
    assert page.status_code == 200
    assert f'data-testid="pick-{two_patients[1]}"' in page.text
    handle = page.text.split('name=request value="')[1].split('"')[0]
    picked = httpx.post(
        f"{ehr_standin.base_url}/auth/pick", data={"request": handle, "patient": two_patients[1]}
    )
    query = _code_of(picked)
    assert query["state"] == [params["state"]]
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": ehr_standin.redirect_uri,
        "code_verifier": pkce.verifier.get_secret_value(),
    }
    assert ehr_standin.exchange(form).json()["patient"] == two_patients[1]
    # The pending request is single-use.
    again = httpx.post(
        f"{ehr_standin.base_url}/auth/pick", data={"request": handle, "patient": two_patients[0]}
    )
    assert again.status_code == 400


# --- the FHIR proxy --------------------------------------------------------------------------


def test_proxy_refuses_missing_expired_and_foreign_tokens(
    ehr_standin: EhrStandin, ehr_standin_factory: EhrStandinFactory, two_patients: tuple[str, str]
) -> None:
    url = f"{ehr_standin.fhir_url}/Patient/{two_patients[0]}"
    assert httpx.get(f"{ehr_standin.fhir_url}/metadata").status_code == 200
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer ")
    assert missing.json()["resourceType"] == "OperationOutcome"

    valid = ehr_standin.token_for(two_patients[0], READ_ONLY).access_token.get_secret_value()
    claims = jwt.decode(valid, options={"verify_signature": False})
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(valid)["kid"]
    foreign = jwt.encode(claims, foreign_key, algorithm="RS256", headers={"kid": kid})
    assert httpx.get(url, headers=_bearer(foreign)).status_code == 401
    assert httpx.get(url, headers=_bearer(valid)).status_code == 200

    # A token of another stand-in (another key, another aud) is refused too.
    other = ehr_standin_factory(access_token_lifetime_s=1)
    short = other.token_for(two_patients[0], READ_ONLY).access_token.get_secret_value()
    assert httpx.get(url, headers=_bearer(short)).status_code == 401
    # Its own proxy refuses it once expired (no leeway).
    time.sleep(max(0.0, jwt.decode(short, options={"verify_signature": False})["exp"] - time.time()) + 1.1)
    expired = httpx.get(f"{other.fhir_url}/Patient/{two_patients[0]}", headers=_bearer(short))
    assert expired.status_code == 401
    assert "expired" in expired.headers["www-authenticate"]


def test_proxy_keeps_a_patient_token_in_its_compartment(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    patient_a, patient_b = two_patients
    token = ehr_standin.token_for(patient_a, READ_ONLY).access_token.get_secret_value()
    fhir, auth = ehr_standin.fhir_url, _bearer(token)
    assert httpx.get(f"{fhir}/Patient/{patient_a}", headers=auth).status_code == 200
    assert httpx.get(f"{fhir}/Patient/{patient_b}", headers=auth).status_code == 403
    b_obs = httpx.get(f"{ehr_standin.upstream_fhir_url}/Observation", params={"patient": patient_b}).json()
    b_obs_id = b_obs["entry"][0]["resource"]["id"]
    assert httpx.get(f"{fhir}/Observation/{b_obs_id}", headers=auth).status_code == 403

    # A search without a patient is pinned to the token's; one naming another patient is refused.
    pinned = httpx.get(f"{fhir}/Observation", params={"code": "2160-0"}, headers=auth)
    assert pinned.status_code == 200
    subjects = {e["resource"]["subject"]["reference"] for e in pinned.json()["entry"]}
    assert subjects == {f"Patient/{patient_a}"}
    assert all(link["url"].startswith(fhir) for link in pinned.json()["link"])
    assert (
        httpx.get(f"{fhir}/Observation", params={"subject": f"Patient/{patient_b}"}, headers=auth).status_code
        == 403
    )
    patients = httpx.get(f"{fhir}/Patient", headers=auth).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [patient_a]
    assert httpx.get(f"{fhir}/Patient", params={"_id": patient_b}, headers=auth).status_code == 403
    everything = httpx.get(f"{fhir}/Patient/{patient_b}/$everything", headers=auth)
    assert everything.status_code == 403
    # Operations across patients are not for a patient token.
    export = httpx.get(f"{fhir}/$export", headers={**auth, "Prefer": "respond-async"})
    assert export.status_code == 403


def test_proxy_enforces_write_scopes_and_compartment(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    patient_a, patient_b = two_patients
    fhir = ehr_standin.fhir_url
    read_only = _bearer(ehr_standin.token_for(patient_a, READ_ONLY).access_token.get_secret_value())
    refused = httpx.post(f"{fhir}/Observation", json=_observation(patient_a), headers=read_only)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"

    writer = _bearer(ehr_standin.token_for(patient_a, APP_SCOPES).access_token.get_secret_value())
    assert httpx.post(f"{fhir}/Observation", json=_observation(patient_b), headers=writer).status_code == 403
    created = httpx.post(f"{fhir}/Observation", json=_observation(patient_a, 2.0), headers=writer)
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith(f"{fhir}/Observation/")

    # A transaction is checked entry by entry, Provenance by its targets.
    obs_url = f"urn:uuid:{uuid.uuid4()}"
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": obs_url}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/chartagent-demo-clinician"}}],
    }

    def bundle(subject: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": obs_url,
                    "resource": _observation(subject),
                    "request": {"method": "POST", "url": "Observation"},
                },
                {"resource": provenance, "request": {"method": "POST", "url": "Provenance"}},
            ],
        }

    full_writer = _bearer(
        ehr_standin.token_for(patient_a, "launch patient/*.cruds").access_token.get_secret_value()
    )
    assert httpx.post(fhir, json=bundle(patient_b), headers=full_writer).status_code == 403
    # Observation.c alone does not cover the Provenance entry.
    assert httpx.post(fhir, json=bundle(patient_a), headers=writer).status_code == 403
    done = httpx.post(fhir, json=bundle(patient_a), headers=full_writer)
    assert done.status_code == 200, done.text
    prov_id = next(
        e["response"]["location"].split("/")[-3]
        for e in done.json()["entry"]
        if "Provenance/" in e["response"]["location"]
    )
    assert httpx.get(f"{fhir}/Provenance/{prov_id}", headers=full_writer).status_code == 200
    b_reader = _bearer(ehr_standin.token_for(patient_b, READ_ONLY).access_token.get_secret_value())
    assert httpx.get(f"{fhir}/Provenance/{prov_id}", headers=b_reader).status_code == 403
    assert prov_id not in httpx.get(f"{fhir}/Provenance", headers=b_reader).text

    # Updating or deleting another patient's resource is refused before the server sees it.
    b_obs = httpx.get(f"{ehr_standin.upstream_fhir_url}/Observation", params={"patient": patient_b}).json()
    b_resource = b_obs["entry"][0]["resource"]
    assert (
        httpx.put(
            f"{fhir}/Observation/{b_resource['id']}", json=_observation(patient_a), headers=full_writer
        ).status_code
        == 403
    )
    assert httpx.delete(f"{fhir}/Observation/{b_resource['id']}", headers=full_writer).status_code == 403


def test_system_token_passes_the_compartment(ehr_standin: EhrStandin, two_patients: tuple[str, str]) -> None:
    auth = _bearer(ehr_standin.system_token("system/*.rs"))
    for pid in two_patients:
        assert httpx.get(f"{ehr_standin.fhir_url}/Patient/{pid}", headers=auth).status_code == 200
    assert (
        httpx.post(
            f"{ehr_standin.fhir_url}/Observation", json=_observation(two_patients[0]), headers=auth
        ).status_code
        == 403
    )
    narrow = _bearer(ehr_standin.system_token("system/Patient.rs"))
    assert httpx.get(f"{ehr_standin.fhir_url}/Patient/{two_patients[1]}", headers=narrow).status_code == 200
    assert httpx.get(f"{ehr_standin.fhir_url}/Observation", headers=narrow).status_code == 403


def test_patient_scopes_need_a_patient_in_context(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    # A standalone launch without launch/patient: the token has no patient, so patient/ scopes grant nothing.
    pkce = Pkce.new()
    params = ehr_standin.authorize_params(
        scope="openid fhirUser patient/*.rs user/Practitioner.rs", pkce=pkce
    )
    form = {
        "grant_type": "authorization_code",
        "code": _code_of(ehr_standin.authorize(params))["code"][0],
        "redirect_uri": ehr_standin.redirect_uri,
        "code_verifier": pkce.verifier.get_secret_value(),
    }
    body = ehr_standin.exchange(form).json()
    assert "patient" not in body
    auth = _bearer(body["access_token"])
    assert httpx.get(f"{ehr_standin.fhir_url}/Patient/{two_patients[0]}", headers=auth).status_code == 403
    clinician = f"{ehr_standin.fhir_url}/Practitioner/chartagent-demo-clinician"
    assert httpx.get(clinician, headers=auth).status_code == 200


def test_hook_requests_verify_against_the_jwks(ehr_standin: EhrStandin) -> None:
    url = "http://127.0.0.1:1/cds-services/chartagent-summary"
    token = sign_hook_request(ehr_standin.hook_signer, url)
    jwks = httpx.get(ehr_standin.hook_signer.jwks_url).json()
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=url, issuer=ehr_standin.base_url
    )
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["jti"]


def test_paging_links_stay_pinned_and_on_the_proxy(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    patient_a, _ = two_patients
    for value in (3.0, 4.0):
        httpx.post(f"{ehr_standin.upstream_fhir_url}/Observation", json=_observation(patient_a, value))
    auth = _bearer(ehr_standin.token_for(patient_a, READ_ONLY).access_token.get_secret_value())
    url: str | None = f"{ehr_standin.fhir_url}/Observation?_count=1"
    subjects: list[str] = []
    while url is not None:
        page = httpx.get(url, headers=auth)
        assert page.status_code == 200, page.text
        subjects += [e["resource"]["subject"]["reference"] for e in page.json().get("entry", [])]
        url = next((link["url"] for link in page.json()["link"] if link["relation"] == "next"), None)
        assert url is None or url.startswith(ehr_standin.fhir_url)
    assert len(subjects) >= 3
    assert set(subjects) == {f"Patient/{patient_a}"}


def test_bulk_export_through_the_proxy_is_for_system_tokens(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    system = _bearer(ehr_standin.system_token("system/*.rs"))
    kick_off = httpx.get(
        f"{ehr_standin.fhir_url}/$export",
        params={"_type": "Patient"},
        headers={**system, "Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert kick_off.status_code == 202, kick_off.text
    status_url = kick_off.headers["content-location"]
    assert status_url.startswith(ehr_standin.fhir_url)
    patient_token = _bearer(ehr_standin.token_for(two_patients[0], READ_ONLY).access_token.get_secret_value())
    assert httpx.get(status_url, headers=patient_token).status_code == 403
    deadline = time.monotonic() + 30
    status = httpx.get(status_url, headers=system)
    while status.status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.3)
        status = httpx.get(status_url, headers=system)
    assert status.status_code == 200, status.text
    file_url = status.json()["output"][0]["url"]
    assert file_url.startswith(ehr_standin.fhir_url)
    assert httpx.get(file_url, headers=patient_token).status_code == 403
    ndjson = httpx.get(file_url, headers=system)
    assert ndjson.status_code == 200
    assert two_patients[0] in ndjson.text


def test_answers_hold_only_what_the_scopes_and_compartment_allow(
    ehr_standin: EhrStandin, two_patients: tuple[str, str]
) -> None:
    patient_a, patient_b = two_patients
    fhir = ehr_standin.fhir_url
    narrow = _bearer(
        ehr_standin.token_for(patient_a, "launch patient/Patient.rs").access_token.get_secret_value()
    )
    everything = httpx.get(f"{fhir}/Patient/{patient_a}/$everything", headers=narrow)
    assert everything.status_code == 200, everything.text
    assert {e["resource"]["resourceType"] for e in everything.json()["entry"]} == {"Patient"}
    wide = _bearer(ehr_standin.token_for(patient_a, READ_ONLY).access_token.get_secret_value())
    types = {
        e["resource"]["resourceType"]
        for e in httpx.get(f"{fhir}/Patient/{patient_a}/$everything", headers=wide).json()["entry"]
    }
    assert {"Patient", "Observation"} <= types

    # An _include of a type the token may not read is dropped.
    obs_only = _bearer(ehr_standin.system_token("system/Observation.rs"))
    included = httpx.get(
        f"{fhir}/Observation",
        params={"patient": patient_b, "_include": "Observation:subject"},
        headers=obs_only,
    )
    assert included.status_code == 200
    assert {e["resource"]["resourceType"] for e in included.json()["entry"]} == {"Observation"}
    assert (
        "Patient"
        in httpx.get(
            f"{ehr_standin.upstream_fhir_url}/Observation",
            params={"patient": patient_b, "_include": "Observation:subject"},
        ).text
    )

    # Another patient's resource history shows nothing of it.
    b_obs = httpx.get(f"{ehr_standin.upstream_fhir_url}/Observation", params={"patient": patient_b}).json()
    b_id = b_obs["entry"][0]["resource"]["id"]
    history = httpx.get(f"{fhir}/Observation/{b_id}/_history", headers=wide)
    assert patient_b not in history.text
