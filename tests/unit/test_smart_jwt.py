"""JWT checks against a published key: the algorithm comes from the JWK when it names one, else
from the token (asymmetric only). pyjwt alone would take any RSA key without `alg` for RS256."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fhir_adapters.smart_jwt import TokenInvalid, verify_jwt

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISS = "https://ehr.example/fhir"


def token(alg: str) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "aud": "https://app.example", "exp": now + 60, "iat": now}
    return jwt.encode(claims, KEY, algorithm=alg, headers={"kid": "k1"})


def published(**extra: str) -> jwt.PyJWK:
    return jwt.PyJWK(RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": "k1", **extra})


@pytest.mark.parametrize("alg", ["RS256", "RS384"])
def test_a_key_without_alg_verifies_the_tokens_asymmetric_algorithm(alg: str) -> None:
    claims = verify_jwt(token(alg), published(), issuer=ISS, audiences=["https://app.example"])
    assert claims["iss"] == ISS


def test_a_key_that_names_its_algorithm_refuses_another() -> None:
    with pytest.raises(TokenInvalid):
        verify_jwt(token("RS384"), published(alg="RS256"), issuer=ISS, audiences=["https://app.example"])


def test_a_symmetric_token_never_verifies() -> None:
    forged = jwt.encode({"iss": ISS, "aud": "https://app.example", "exp": int(time.time()) + 60}, "k" * 32)
    with pytest.raises(TokenInvalid):
        verify_jwt(forged, published(), issuer=ISS, audiences=["https://app.example"])
