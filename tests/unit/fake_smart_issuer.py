"""A SMART issuer in memory for unit tests: discovery, JWKS, token and introspection endpoints
answered by an `httpx.MockTransport` handler, and JWTs signed with its own RSA key.

The integration tests use the EHR stand-in (agent.testbed.ehr) instead; this one exists so the
pure checks (signature, iss, aud, exp, nonce, kid rotation) run without processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISS = "https://ehr.test/fhir"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


class FakeIssuer:
    def __init__(self, iss: str = ISS, *, code_challenge_methods: tuple[str, ...] = ("S256",)) -> None:
        self.iss = iss
        self.key = new_key()
        self.kid = "k1"
        self.code_challenge_methods = code_challenge_methods
        self.requests: list[httpx.Request] = []
        # Token endpoint: form -> (status, JSON body); default: refused.
        self.token_handler: Callable[[httpx.Request], httpx.Response] = lambda _r: httpx.Response(
            400, json={"error": "invalid_grant"}
        )
        # Introspection: token -> claims of an active token.
        self.active: dict[str, dict[str, Any]] = {}

    def mint(
        self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None
    ) -> str:
        now = int(time.time())
        body = {"iss": self.iss, "aud": self.iss, "iat": now, "exp": now + 300, "sub": "u1", **claims}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.iss,
            "authorization_endpoint": "https://ehr.test/auth/authorize",
            "token_endpoint": "https://ehr.test/auth/token",
            "jwks_uri": "https://ehr.test/auth/jwks",
            "introspection_endpoint": "https://ehr.test/auth/introspect",
            "code_challenge_methods_supported": list(self.code_challenge_methods),
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "capabilities": ["launch-ehr", "client-confidential-symmetric"],
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url == f"{self.iss}/.well-known/smart-configuration":
            return httpx.Response(200, json=self.configuration())
        if url == "https://ehr.test/auth/jwks":
            return httpx.Response(200, json={"keys": [public_jwk(self.key, self.kid)]})
        if url == "https://ehr.test/auth/token":
            return self.token_handler(request)
        if url == "https://ehr.test/auth/introspect":
            token = parse_qs(request.content.decode()).get("token", [""])[0]
            claims = self.active.get(token)
            return httpx.Response(200, json={"active": True, **claims} if claims else {"active": False})
        return httpx.Response(404)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]
