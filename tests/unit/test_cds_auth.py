"""The CDS Hooks request JWT, checked against the trusted EHR's JWKS (served on loopback here), and
the checks of a verified call's body."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from agent.service.cds_auth import CdsRequestVerifier, TokenInvalid
from agent.service.cds_hooks import PatientViewRequest, call_refusal
from agent.service.token_uses import MemoryTokenUses

ISS = "https://ehr.example"
AUD = "https://chartagent.example/cds-services/chartagent-summary"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RS256_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
FOREIGN_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    # Each key names its algorithm (fhir_adapters.smart_jwt verifies with the JWK's `alg`).
    keys = [
        RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
        | {"kid": "rsa-1", "use": "sig", "alg": "RS384"},
        RSAAlgorithm.to_jwk(RS256_KEY.public_key(), as_dict=True)
        | {"kid": "rsa-256", "use": "sig", "alg": "RS256"},
        ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True) | {"kid": "ec-1", "use": "sig", "alg": "ES384"},
    ]
    body = json.dumps({"keys": keys}).encode()

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
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()
    server.server_close()


def sign(
    *,
    key: Any = RSA_KEY,
    alg: str = "RS384",
    kid: str = "rsa-1",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": ISS,
        "aud": AUD,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "sub": "ehr-client",
    }
    body |= claims
    for name in drop:
        body.pop(name)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def verifier(jwks_url: str) -> CdsRequestVerifier:
    return CdsRequestVerifier({ISS: jwks_url})


async def test_a_signed_call_of_a_trusted_ehr_passes(jwks_url: str) -> None:
    v = verifier(jwks_url)
    claims = await v.verify(f"Bearer {sign()}", audience=AUD)
    assert claims["iss"] == ISS
    es = sign(key=EC_KEY, alg="ES384", kid="ec-1")
    assert (await v.verify(f"Bearer {es}", audience=AUD))["sub"] == "ehr-client"
    rs256 = sign(key=RS256_KEY, alg="RS256", kid="rsa-256")
    assert (await v.verify(f"bearer {rs256}", audience=AUD + "/"))["iss"] == ISS


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "no bearer JWT"),
        ("", "no bearer JWT"),
        ("Basic dXNlcjpwYXNz", "no bearer JWT"),
        ("Bearer not-a-jwt", "not a readable JWT"),
    ],
)
async def test_a_call_without_a_bearer_jwt_is_refused(
    jwks_url: str, authorization: str | None, reason: str
) -> None:
    with pytest.raises(TokenInvalid, match=reason):
        await verifier(jwks_url).verify(authorization, audience=AUD)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: sign(aud="https://other.example/cds-services/x"), "audience"),
        (lambda: sign(iat=int(time.time()) - 120, exp=int(time.time()) - 60), "expired"),
        (lambda: sign(key=FOREIGN_KEY), "signature"),
        (lambda: sign(kid="unknown"), "does not publish"),
        (lambda: sign(iss="https://rogue.example"), "not a trusted CDS client"),
        (lambda: sign(drop=("jti",)), "jti"),
        (lambda: sign(drop=("iat",)), "iat"),
        (lambda: sign(drop=("exp",)), "exp"),
        (lambda: sign(exp=int(time.time()) + 3600), "five minutes"),
        (lambda: sign(iat=int(time.time()) + 600, exp=int(time.time()) + 660), "ImmatureSignature|future"),
        (lambda: sign(key=RS256_KEY, alg="RS512", kid="rsa-256"), "algorithm"),
        (
            lambda: jwt.encode(
                {"iss": ISS, "aud": AUD}, "secret-of-32-bytes-or-more-0123456789", algorithm="HS256"
            ),
            "algorithm",
        ),
    ],
    ids=[
        "wrong-aud",
        "expired",
        "foreign-key",
        "unknown-kid",
        "untrusted-issuer",
        "no-jti",
        "no-iat",
        "no-exp",
        "too-long-lived",
        "issued-in-the-future",
        "rs512",
        "hs256",
    ],
)
async def test_a_token_failing_a_check_is_refused(jwks_url: str, token: Any, reason: str) -> None:
    with pytest.raises(TokenInvalid, match=reason) as caught:
        await verifier(jwks_url).verify(f"Bearer {token()}", audience=AUD)
    # The message names the check, never the token.
    assert "eyJ" not in str(caught.value)


async def test_a_replayed_jti_is_refused(jwks_url: str) -> None:
    v = verifier(jwks_url)
    token = sign()
    await v.verify(f"Bearer {token}", audience=AUD)
    with pytest.raises(TokenInvalid, match="replayed"):
        await v.verify(f"Bearer {token}", audience=AUD)
    # The same jti from a fresh token is a replay too.
    jti = str(uuid.uuid4())
    await v.verify(f"Bearer {sign(jti=jti)}", audience=AUD)
    with pytest.raises(TokenInvalid, match="replayed"):
        await v.verify(f"Bearer {sign(jti=jti)}", audience=AUD)


async def test_seen_jtis_are_forgotten_once_their_tokens_expired(jwks_url: str) -> None:
    now = [time.time()]
    uses = MemoryTokenUses()
    v = CdsRequestVerifier({ISS: jwks_url}, clock=lambda: now[0], uses=uses)
    for _ in range(5):
        await v.verify(f"Bearer {sign()}", audience=AUD)
    assert len(uses._seen) == 5
    now[0] += 3600  # an hour on, every token above has expired: the next check prunes them
    await v.verify(f"Bearer {sign()}", audience=AUD)
    assert len(uses._seen) == 1


def hook_call(**extra: Any) -> PatientViewRequest:
    body = {
        "hook": "patient-view",
        "hookInstance": "h-1",
        "context": {"patientId": "p1", "userId": "Practitioner/1"},
    }
    return PatientViewRequest.model_validate(body | extra)


def test_a_verified_call_is_still_refused_for_another_patients_token_or_plain_http() -> None:
    token = {"access_token": "t" * 20, "token_type": "Bearer", "scope": "patient/*.rs", "subject": "cds"}
    assert call_refusal(hook_call(), environment="production") is None
    own = hook_call(fhirServer="https://ehr.example/fhir", fhirAuthorization=token | {"patient": "p1"})
    assert call_refusal(own, environment="production") is None
    theirs = hook_call(fhirServer="https://ehr.example/fhir", fhirAuthorization=token | {"patient": "p2"})
    assert call_refusal(theirs, environment="local") == "fhirAuthorization.patient is not context.patientId"
    plain = hook_call(fhirServer="http://ehr.example/fhir", fhirAuthorization=token)
    assert call_refusal(plain, environment="local") is None
    assert "https" in str(call_refusal(plain, environment="production"))


@pytest.mark.parametrize(
    "body",
    [
        {"hook": "order-select", "hookInstance": "h", "context": {"patientId": "p1"}},
        {"hook": "patient-view", "hookInstance": "h", "context": {}},
        {"hook": "patient-view", "hookInstance": "h", "context": {"patientId": "../Patient/p1"}},
        {"hook": "patient-view", "context": {"patientId": "p1"}},
    ],
)
def test_other_hooks_and_malformed_contexts_are_not_a_patient_view(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PatientViewRequest.model_validate(body)
