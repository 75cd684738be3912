"""Static bearer and SMART Backend Services against MockTransport token/FHIR endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from fhir_adapters import FhirAuthError, FhirClient, RetryPolicy, SmartBackendServices, StaticBearer
from fhir_adapters.auth import ASSERTION_TYPE, SmartAlg

BASE = "https://ehr.example/fhir"
TOKEN_URL = "https://auth.example/token"


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> SecretStr:
    raw = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SecretStr(raw.decode())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeEhr:
    """Discovery + token endpoint + a FHIR endpoint that accepts only the latest issued token."""

    def __init__(self, public_key: Any, *, lifetime: int = 300) -> None:
        self.public_key = public_key
        self.lifetime = lifetime
        self.issued: list[str] = []
        self.assertions: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.fhir_requests: list[httpx.Request] = []
        self.revoked = False
        self.reject_all = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/fhir/.well-known/smart-configuration":
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        if str(request.url) == TOKEN_URL:
            form = parse_qs(request.content.decode())
            assert form["grant_type"] == ["client_credentials"]
            assert form["client_assertion_type"] == [ASSERTION_TYPE]
            assertion = form["client_assertion"][0]
            try:
                claims = jwt.decode(
                    assertion, self.public_key, algorithms=["RS384", "ES384"], audience=TOKEN_URL, leeway=600
                )
            except jwt.PyJWTError:
                return httpx.Response(
                    401, json={"error": "invalid_client", "error_description": "bad signature"}
                )
            self.assertions.append(claims)
            self.headers.append(jwt.get_unverified_header(assertion))
            token = f"tok{len(self.issued)}"
            self.issued.append(token)
            return httpx.Response(
                200,
                json={
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": self.lifetime,
                    "scope": form["scope"][0],
                },
            )
        self.fhir_requests.append(request)
        if (
            self.reject_all
            or self.revoked
            or request.headers.get("authorization") != f"Bearer {self.issued[-1]}"
        ):
            self.revoked = False  # one revocation: the next token works
            return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"})
        return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})


def smart(
    key: Any, clock: Clock | None = None, *, alg: SmartAlg = "RS384", token_url: str | None = None
) -> SmartBackendServices:
    return SmartBackendServices(
        "chartagent",
        pem(key),
        alg=alg,
        kid="k1",
        token_url=token_url,
        scopes="system/*.rs",
        clock=clock or Clock(),
    )


def fhir(ehr: FakeEhr, auth: Any) -> FhirClient:
    return FhirClient(BASE, auth=auth, transport=httpx.MockTransport(ehr), retry=RetryPolicy(max_attempts=1))


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
async def test_discovery_assertion_and_token_use(
    alg: SmartAlg, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key = rsa_key if alg == "RS384" else ec_key
    ehr = FakeEhr(key.public_key())
    auth = smart(key, alg=alg)
    async with fhir(ehr, auth) as client:
        await client.read("Patient", "p1")
    claims = ehr.assertions[0]
    assert claims["iss"] == claims["sub"] == "chartagent"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert ehr.headers[0]["kid"] == "k1"
    assert ehr.headers[0]["alg"] == alg
    assert ehr.fhir_requests[0].headers["authorization"] == "Bearer tok0"
    assert auth.token_url == TOKEN_URL


async def test_token_is_cached_and_shared_by_concurrent_requests(rsa_key: rsa.RSAPrivateKey) -> None:
    ehr = FakeEhr(rsa_key.public_key())
    auth = smart(rsa_key, token_url=TOKEN_URL)
    async with fhir(ehr, auth) as client:
        await asyncio.gather(*(client.read("Patient", "p1") for _ in range(10)))
        await client.read("Patient", "p1")
    assert auth.token_requests == 1
    assert len(ehr.fhir_requests) == 11


async def test_token_refreshed_shortly_before_expiry(rsa_key: rsa.RSAPrivateKey) -> None:
    clock = Clock()
    ehr = FakeEhr(rsa_key.public_key(), lifetime=300)
    auth = smart(rsa_key, clock, token_url=TOKEN_URL)  # refresh margin 60 s
    async with fhir(ehr, auth) as client:
        await client.read("Patient", "p1")
        clock.now += 230
        await client.read("Patient", "p1")
        assert auth.token_requests == 1
        clock.now += 20  # 250 s: within the margin
        await client.read("Patient", "p1")
    assert auth.token_requests == 2
    assert ehr.assertions[0]["jti"] != ehr.assertions[1]["jti"]
    assert ehr.fhir_requests[-1].headers["authorization"] == "Bearer tok1"


async def test_401_refreshes_once_and_retries(rsa_key: rsa.RSAPrivateKey) -> None:
    ehr = FakeEhr(rsa_key.public_key())
    auth = smart(rsa_key, token_url=TOKEN_URL)
    async with fhir(ehr, auth) as client:
        await client.read("Patient", "p1")
        ehr.revoked = True  # e.g. the server restarted and forgot its tokens
        assert (await client.read("Patient", "p1"))["id"] == "p1"
    assert auth.token_requests == 2
    assert len(ehr.fhir_requests) == 3


async def test_401_after_refresh_is_an_auth_error(rsa_key: rsa.RSAPrivateKey) -> None:
    ehr = FakeEhr(rsa_key.public_key())
    ehr.reject_all = True
    auth = smart(rsa_key, token_url=TOKEN_URL)
    async with fhir(ehr, auth) as client:
        with pytest.raises(FhirAuthError) as info:
            await client.read("Patient", "p1")
    assert info.value.status == 401
    assert auth.token_requests == 2
    assert len(ehr.fhir_requests) == 2
    assert "tok" not in str(info.value)


async def test_wrong_key_is_refused_at_the_token_endpoint(rsa_key: rsa.RSAPrivateKey) -> None:
    ehr = FakeEhr(rsa_key.public_key())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with fhir(ehr, smart(other, token_url=TOKEN_URL)) as client:
        with pytest.raises(FhirAuthError, match="invalid_client") as info:
            await client.read("Patient", "p1")
    assert info.value.target == "token endpoint"
    assert ehr.fhir_requests == []


async def test_static_bearer_is_sent_and_not_retried_on_401() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401)

    auth = StaticBearer(SecretStr("s3cret"))
    async with FhirClient(BASE, auth=auth, transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(FhirAuthError):
            await client.read("Patient", "p1")
    assert len(seen) == 1
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(auth)


def test_key_must_match_alg(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ValueError, match="RSA"):
        smart(ec_key, alg="RS384")
    with pytest.raises(ValueError, match="P-384"):
        smart(rsa_key, alg="ES384")
    with pytest.raises(ValueError, match="P-384"):
        smart(ec.generate_private_key(ec.SECP256R1()), alg="ES384")
    with pytest.raises(ValueError, match="PEM"):
        SmartBackendServices("c", SecretStr("not a key"), kid="k")
    assert "BEGIN" not in repr(smart(rsa_key))
