"""Authentication for the FHIR client: a static bearer token, or SMART Backend Services.

SMART Backend Services (SMART App Launch 2.2, "client-confidential-asymmetric"):
    POST {token_url}
      grant_type=client_credentials
      scope=system/*.rs ...
      client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
      client_assertion=<JWT signed RS384|ES384: iss=sub=client_id, aud=token_url, exp<=5 min, jti>
The token URL comes from `{fhir_base}/.well-known/smart-configuration` unless given.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from fhir_adapters.errors import FhirAuthError, FhirProtocolError, FhirTransportError, outcome_issues

__all__ = [
    "ASSERTION_TYPE",
    "AuthProvider",
    "SmartBackendServices",
    "StaticBearer",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SmartAlg = Literal["RS384", "ES384"]
# The spec caps exp at 5 minutes; stay under it so a server clock a little ahead still accepts.
_ASSERTION_LIFETIME_S = 240


@runtime_checkable
class AuthProvider(Protocol):
    """Supplies the Authorization header; the client calls `refresh` once after a 401."""

    async def authorization(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        """The Authorization header value, or None for anonymous requests."""
        ...

    async def refresh(self, http: httpx.AsyncClient, base_url: str) -> bool:
        """Drop cached credentials; True if a retry with fresh ones could succeed."""
        ...


class StaticBearer:
    """A fixed bearer token (e.g. from CHARTAGENT_FHIR_TOKEN)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticBearer(token=**********)"

    async def authorization(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        return f"Bearer {self._token.get_secret_value()}"

    async def refresh(self, http: httpx.AsyncClient, base_url: str) -> bool:
        return False  # the same token would be refused again


class SmartBackendServices:
    """client_credentials with a private_key_jwt assertion; the access token is cached until
    `refresh_margin_s` before it expires."""

    def __init__(
        self,
        client_id: str,
        private_key_pem: SecretStr,
        *,
        alg: SmartAlg = "RS384",
        kid: str,
        token_url: str | None = None,
        scopes: str = "system/*.rs",
        refresh_margin_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is required")
        if not kid:
            raise ValueError("kid is required (the server picks the key from its JWKS by kid)")
        self.client_id = client_id
        self.alg: SmartAlg = alg
        self.kid = kid
        self.token_url = token_url
        self.scopes = scopes
        self.refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._key = _load_signing_key(private_key_pem, alg)
        self._access_token: SecretStr | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.token_requests = 0  # observable for tests and metrics

    def __repr__(self) -> str:
        return f"SmartBackendServices(client_id={self.client_id!r}, alg={self.alg!r}, kid={self.kid!r})"

    async def authorization(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        token = await self._token(http, base_url)
        return f"Bearer {token.get_secret_value()}"

    async def refresh(self, http: httpx.AsyncClient, base_url: str) -> bool:
        self._access_token = None
        self._expires_at = 0.0
        return True

    def client_assertion(self, token_url: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME_S,
            "jti": secrets.token_urlsafe(24),  # servers refuse a replayed jti
        }
        return jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})

    def _fresh(self) -> bool:
        return self._access_token is not None and self._clock() < self._expires_at - self.refresh_margin_s

    async def _token(self, http: httpx.AsyncClient, base_url: str) -> SecretStr:
        if self._fresh() and self._access_token is not None:
            return self._access_token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent requests share one token request
            if self._fresh() and self._access_token is not None:
                return self._access_token
            token_url = self.token_url or await discover_token_url(http, base_url)
            self.token_url = token_url
            token, lifetime = await self._request_token(http, token_url)
            self._access_token = token
            self._expires_at = self._clock() + lifetime
            return token

    async def _request_token(self, http: httpx.AsyncClient, token_url: str) -> tuple[SecretStr, float]:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scopes,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        self.token_requests += 1
        try:
            resp = await http.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise FhirTransportError("POST", "token endpoint", type(exc).__name__) from exc
        if resp.status_code != 200:
            # The body is an OAuth error (error, error_description); no token in it.
            raise FhirAuthError(resp.status_code, "POST", "token endpoint", outcome_issues(resp.content))
        unusable = "token endpoint answered without a usable access_token"
        try:
            doc = resp.json()
        except ValueError as exc:
            raise FhirProtocolError(unusable) from exc
        if not isinstance(doc, dict) or "access_token" not in doc:
            raise FhirProtocolError(unusable)
        access = doc["access_token"]
        token_type = str(doc.get("token_type", "bearer"))
        try:
            lifetime = float(doc.get("expires_in", 300))
        except (TypeError, ValueError) as exc:
            raise FhirProtocolError(unusable) from exc
        if token_type.lower() != "bearer" or not isinstance(access, str) or not access:
            raise FhirProtocolError(f"token endpoint answered with an unusable token_type {token_type!r}")
        return SecretStr(access), lifetime


async def discover_token_url(http: httpx.AsyncClient, base_url: str) -> str:
    url = f"{base_url.rstrip('/')}/.well-known/smart-configuration"
    try:
        resp = await http.get(url, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise FhirTransportError("GET", ".well-known/smart-configuration", type(exc).__name__) from exc
    if resp.status_code != 200:
        raise FhirProtocolError(
            f"SMART discovery failed: GET .well-known/smart-configuration -> {resp.status_code}"
        )
    try:
        token_url = resp.json()["token_endpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FhirProtocolError("SMART configuration has no token_endpoint") from exc
    if not isinstance(token_url, str) or not token_url.startswith(("https://", "http://")):
        raise FhirProtocolError("SMART configuration has an invalid token_endpoint")
    return token_url


def _load_signing_key(pem: SecretStr, alg: SmartAlg) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(pem.get_secret_value().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("private_key_pem is not an unencrypted PEM private key") from exc
    if alg == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("RS384 needs an RSA private key")
        if key.key_size < 2048:
            raise ValueError("RS384 needs an RSA key of at least 2048 bits")
        return key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ValueError("ES384 needs an EC private key on P-384")
    return key
