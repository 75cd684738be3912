"""Signed JWTs of a SMART issuer: its JWKS (fetched, cached, re-read once for an unknown `kid`)
and the one verification both the app's `id_token` and the service's bearer tokens go through.

Only asymmetric algorithms are accepted: a key set is public, so an HS256 token "signed" with a
public key, or `alg: none`, must never verify. Errors name the check that failed, never the token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx
import jwt

from fhir_adapters.error_tree import (
    BadInputError,
    ChartAgentError,
    ServiceProtocolError,
    ServiceTransportError,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JwksCache",
    "SmartError",
    "SmartProtocolError",
    "SmartTransportError",
    "TokenInvalid",
    "check_issuer_and_audience",
    "looks_like_jwt",
    "read_unverified",
    "unverified_issuer",
    "verify_jwt",
]

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# The EHR's clock and ours differ a little (both NTP-synced in a deployment).
LEEWAY_S = 10.0


class SmartError(ChartAgentError):
    """Base of the SMART App Launch client's errors (discovery, token endpoint, JWT checks)."""


class SmartTransportError(SmartError, ServiceTransportError):
    """The issuer (discovery, token, JWKS, introspection endpoint) did not answer."""


class SmartProtocolError(SmartError, ServiceProtocolError):
    """The issuer's answer is unusable: discovery without S256, a token response without a token."""


class TokenInvalid(SmartError, BadInputError):
    """A JWT (an id_token, a bearer token) fails a check: signature, issuer, audience, expiry, nonce."""


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: a JWS in compact form (an opaque token has another shape)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of `token` before any check (to pick whose keys verify it).

    A plain base64url + JSON read: `verify_jwt` parses the token again, strictly, with the
    signature (pyjwt's strict segment checks are most of a verification's cost; done once)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("token is not a readable JWT")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise TokenInvalid("token is not a readable JWT") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenInvalid("token is not a readable JWT")
    return header, claims


def unverified_issuer(token: str) -> str | None:
    """The `iss` the token claims, read before any check (to pick whose keys verify it)."""
    try:
        _, claims = read_unverified(token)
    except TokenInvalid:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


class JwksCache:
    """The public keys at one `jwks_uri`, kept `ttl_s`; an unknown `kid` re-reads the set once
    (key rotation), at most every `min_refetch_s` so forged kids cannot make us hammer the issuer."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        ttl_s: float = 3600.0,
        min_refetch_s: float = 30.0,
        http_factory: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_uri = jwks_uri
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._http_factory = http_factory or _default_http
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # observable for tests

    async def key_for(self, token: str, http: httpx.AsyncClient | None = None) -> jwt.PyJWK:
        """The published key that signed `token`; `http` (else a client of our own) for fetches."""
        header, _ = read_unverified(token)
        return await self.key_for_header(header, http)

    async def key_for_header(
        self, header: Mapping[str, Any], http: httpx.AsyncClient | None = None
    ) -> jwt.PyJWK:
        """The published key a token's (unverified) `header` names."""
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenInvalid("token algorithm is not an accepted asymmetric algorithm")
        kid = header.get("kid")
        key = await self._lookup(http, kid if isinstance(kid, str) else None)
        if key is None:
            raise TokenInvalid("token is signed with a key the issuer does not publish")
        return key

    async def _lookup(self, http: httpx.AsyncClient | None, kid: str | None) -> jwt.PyJWK | None:
        now = self._clock()
        if self._fetched_at is not None and now - self._fetched_at <= self._ttl_s:
            found = self._pick(kid)
            if found is not None:  # the common case: no lock, no I/O
                return found
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self._ttl_s
            if stale:
                await self._fetch(http)
            found = self._pick(kid)
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self._min_refetch_s
            if found is None and not stale and may_refetch:
                await self._fetch(http)
                found = self._pick(kid)
            return found

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        # No kid: usable only when the issuer publishes exactly one key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _fetch(self, http: httpx.AsyncClient | None) -> None:
        self.fetches += 1
        try:
            if http is None:
                async with self._http_factory() as own:
                    resp = await own.get(self.jwks_uri, headers={"Accept": "application/json"})
            else:
                resp = await http.get(self.jwks_uri, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            raise SmartTransportError(f"JWKS: no answer from the issuer ({type(exc).__name__})") from exc
        if resp.status_code != 200:
            raise SmartProtocolError(f"JWKS: the issuer answered HTTP {resp.status_code}")
        try:
            doc = resp.json()
        except ValueError as exc:
            raise SmartProtocolError("JWKS: the answer is not JSON") from exc
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise SmartProtocolError("JWKS: the answer has no keys list")
        keys: dict[str, jwt.PyJWK] = {}
        for i, entry in enumerate(entries):
            key = _public_key(entry)
            if key is not None:
                keys[str(entry.get("kid", f"#{i}"))] = key
        self._keys = keys
        self._fetched_at = self._clock()


def _default_http() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10.0)


def _public_key(entry: object) -> jwt.PyJWK | None:
    """One JWK as a verification key; None for keys we never verify with (symmetric, encryption)."""
    if (
        not isinstance(entry, dict)
        or entry.get("kty") not in ("RSA", "EC")
        or entry.get("use", "sig") != "sig"
    ):
        return None
    try:
        return jwt.PyJWK(entry)
    except jwt.PyJWTError:
        return None


def verify_jwt(
    token: str,
    key: jwt.PyJWK,
    *,
    issuer: str,
    audiences: Collection[str],
    leeway_s: float = LEEWAY_S,
) -> dict[str, Any]:
    """The claims of `token` after checking signature, `iss`, `aud` (one of `audiences`) and `exp`."""
    # The key's own `alg` when its JWK declares one; else the token's (asymmetric, checked before),
    # which pyjwt refuses when it does not fit the key's type. PyJWK itself would assume RS256 for
    # any RSA key without `alg`, and refuse the RS384 tokens SMART asks for.
    declared = key._jwk_data.get("alg")  # the JWK as published (pyjwt keeps it on the key)
    if isinstance(declared, str):
        algorithms = [declared] if declared in ASYMMETRIC_ALGORITHMS else []
    else:
        header_alg = jwt.get_unverified_header(token).get("alg")
        algorithms = [header_alg] if header_alg in ASYMMETRIC_ALGORITHMS else []
    if not algorithms:
        raise TokenInvalid("token algorithm is not an accepted asymmetric algorithm")
    # iss and aud are compared below (trailing slashes aside; several accepted audiences).
    options: jwt.types.Options = {"require": ["exp", "iss", "aud"], "verify_aud": False, "verify_iss": False}
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=algorithms, options=options, leeway=leeway_s
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenInvalid("token has expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenInvalid("token signature does not verify with the issuer's keys") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenInvalid(f"token lacks the {exc.claim!r} claim") from exc
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"token is not valid ({type(exc).__name__})") from exc
    check_issuer_and_audience(claims, issuer=issuer, audiences=audiences)
    return claims


def check_issuer_and_audience(claims: Mapping[str, Any], *, issuer: str, audiences: Collection[str]) -> None:
    if _norm(str(claims.get("iss", ""))) != _norm(issuer):
        raise TokenInvalid("token issuer is not the expected issuer")
    aud = claims.get("aud")
    given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    wanted = {_norm(a) for a in audiences}
    if not any(isinstance(a, str) and _norm(a) in wanted for a in given):
        raise TokenInvalid("token audience is not this service")


def _norm(url: str) -> str:
    return url.rstrip("/")
