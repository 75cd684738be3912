"""SMART Backend Services against the embedded server's real token endpoint (keys made at test time)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import SecretStr

from fhir_adapters import FhirAuthError, FhirClient, SmartBackendServices
from fhir_adapters.auth import SmartAlg

pytestmark = pytest.mark.integration

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def pem(key: Key) -> SecretStr:
    raw = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SecretStr(raw.decode())


def jwk(key: Key, kid: str, alg: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {
        "RS384": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
    }


@pytest.fixture(scope="module")
def smart_base_url(fhir_server_factory: Callable[..., str], keys: dict[str, Key]) -> str:
    return fhir_server_factory(
        auth_types=["smart"],
        smart_clients=[
            {
                "client_id": "chartagent-rs",
                "jwks": {"keys": [jwk(keys["RS384"], "rs-1", "RS384")]},
                "scopes": "system/*.*",
            },
            {
                "client_id": "chartagent-es",
                "jwks": {"keys": [jwk(keys["ES384"], "es-1", "ES384")]},
                "scopes": "system/*.rs",
            },
        ],
    )


@pytest.mark.parametrize(
    ("alg", "client_id", "kid"), [("RS384", "chartagent-rs", "rs-1"), ("ES384", "chartagent-es", "es-1")]
)
async def test_token_flow_with_discovery(
    smart_base_url: str, keys: dict[str, Key], alg: SmartAlg, client_id: str, kid: str
) -> None:
    auth = SmartBackendServices(client_id, pem(keys[alg]), alg=alg, kid=kid, scopes="system/*.rs")
    async with FhirClient(smart_base_url, auth=auth) as client:
        for _ in range(3):
            assert await client.search("Patient", {"_count": "1"}, max_pages=1) == []
    assert auth.token_requests == 1  # cached
    assert auth.token_url is not None
    assert auth.token_url.endswith("/auth/token")


async def test_scopes_are_enforced_by_the_server(smart_base_url: str, keys: dict[str, Key]) -> None:
    auth = SmartBackendServices(
        "chartagent-es", pem(keys["ES384"]), alg="ES384", kid="es-1", scopes="system/*.rs"
    )
    patient = {"resourceType": "Patient", "id": "scoped-write"}
    async with FhirClient(smart_base_url, auth=auth) as client:
        with pytest.raises(FhirAuthError) as info:
            await client.create(patient)
    assert info.value.status == 403


async def test_wrong_key_is_an_auth_error(smart_base_url: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    auth = SmartBackendServices("chartagent-rs", pem(other), alg="RS384", kid="rs-1")
    async with FhirClient(smart_base_url, auth=auth) as client:
        with pytest.raises(FhirAuthError, match="invalid_client") as info:
            await client.read("Patient", "x")
    assert info.value.status == 401


async def test_no_credentials_is_an_auth_error(smart_base_url: str) -> None:
    async with FhirClient(smart_base_url) as client:
        with pytest.raises(FhirAuthError) as info:
            await client.read("Patient", "x")
    assert info.value.status == 401


async def test_stale_token_is_refreshed_once(smart_base_url: str, keys: dict[str, Key]) -> None:
    auth = SmartBackendServices(
        "chartagent-rs", pem(keys["RS384"]), alg="RS384", kid="rs-1", scopes="system/*.*"
    )
    async with FhirClient(smart_base_url, auth=auth) as client:
        await client.search("Patient", {"_count": "1"}, max_pages=1)
        # Simulate a token the server no longer accepts (e.g. its signing secret rotated).
        auth._access_token = SecretStr("not-a-valid-token")
        await client.search("Patient", {"_count": "1"}, max_pages=1)
    assert auth.token_requests == 2
