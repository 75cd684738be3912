"""The EHR issuers this service trusts: their SMART configuration and signing keys, cached.

An issuer is named by its FHIR base URL (the `iss` of an EHR launch). Only the issuers in the
settings (`CHARTAGENT_APP_ISSUERS`, plus the default issuer) may launch the app or sign bearer
tokens for the API; a token's `iss` may be that base or the `issuer` its configuration declares.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx

from agent.settings import Settings
from fhir_adapters.smart_app_launch import SmartConfiguration, discover
from fhir_adapters.smart_jwt import JwksCache, SmartProtocolError

# Discovery documents change rarely; re-read them hourly so a rotated endpoint is picked up.
_CONFIG_TTL_S = 3600.0


def issuer_key(url: str) -> str:
    return url.rstrip("/")


def local_reference(fhir_base: str, url: str | None) -> str | None:
    """`fhirUser` as a reference on its own FHIR server: `{base}/Practitioner/1` -> `Practitioner/1`
    (what a Provenance on that server names); another server's URL stays absolute."""
    if url is None:
        return None
    prefix = issuer_key(fhir_base) + "/"
    return url[len(prefix) :] if url.startswith(prefix) else url


def trusted_issuers(settings: Settings) -> tuple[str, ...]:
    """The allowed issuers in settings order, the default issuer included."""
    named = [*settings.app_issuers]
    if settings.app_default_issuer:
        named.append(settings.app_default_issuer)
    return tuple(dict.fromkeys(issuer_key(u) for u in named))


def default_issuer(settings: Settings) -> str | None:
    """The standalone launch's issuer: the configured default, else the first allowed one."""
    if settings.app_default_issuer:
        return issuer_key(settings.app_default_issuer)
    return issuer_key(settings.app_issuers[0]) if settings.app_issuers else None


def new_http_client() -> httpx.AsyncClient:
    """A client for the service's own calls to an issuer (discovery, token, JWKS, introspection)."""
    return httpx.AsyncClient(timeout=10.0)


class VerifiedTokens:
    """Bearer JWTs already verified, by digest, until they expire: a caller reusing its token
    (a job, an MCP client) is not re-verified on every request. Revocation is not seen either
    way: a JWT is valid until its `exp` unless the issuer is asked (introspection)."""

    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, str, dict[str, Any]]] = {}

    def recall(self, token: str, *, leeway_s: float) -> tuple[str, dict[str, Any]] | None:
        entry = self._entries.get(_digest(token))
        if entry is None:
            return None
        exp, base, claims = entry
        if exp + leeway_s < self._clock():
            del self._entries[_digest(token)]
            return None
        return base, claims

    def remember(self, token: str, base: str, claims: dict[str, Any]) -> None:
        if len(self._entries) >= self._max:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
            while len(self._entries) >= self._max:  # still full: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries[_digest(token)] = (float(claims["exp"]), base, claims)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class IssuerRegistry:
    """Per issuer: its SMART configuration (TTL cache) and its JWKS cache."""

    def __init__(
        self,
        *,
        http_factory: Callable[[], httpx.AsyncClient] = new_http_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http_factory = http_factory
        self._clock = clock
        self._configs: dict[str, tuple[float, SmartConfiguration]] = {}
        self._jwks: dict[str, JwksCache] = {}
        self._lock = asyncio.Lock()
        self.verified = VerifiedTokens()

    def http(self) -> httpx.AsyncClient:
        """A new client for a call to an issuer (the token endpoint, introspection)."""
        return self._http_factory()

    async def configuration(self, iss: str, http: httpx.AsyncClient | None = None) -> SmartConfiguration:
        key = issuer_key(iss)
        cached = self._configs.get(key)
        if cached is not None and self._clock() - cached[0] < _CONFIG_TTL_S:
            return cached[1]
        async with self._lock:
            cached = self._configs.get(key)
            if cached is not None and self._clock() - cached[0] < _CONFIG_TTL_S:
                return cached[1]
            if http is None:
                async with self._http_factory() as own:
                    config = await discover(own, key)
            else:
                config = await discover(http, key)
            self._configs[key] = (self._clock(), config)
            return config

    def jwks(self, iss: str, config: SmartConfiguration) -> JwksCache:
        key = issuer_key(iss)
        if config.jwks_uri is None:
            raise SmartProtocolError("SMART discovery: the issuer publishes no jwks_uri")
        cache = self._jwks.get(key)
        if cache is None or cache.jwks_uri != config.jwks_uri:
            cache = JwksCache(config.jwks_uri, http_factory=self._http_factory)
            self._jwks[key] = cache
        return cache

    async def base_for_token_issuer(self, token_iss: str, trusted: tuple[str, ...]) -> str | None:
        """The trusted FHIR base whose tokens carry `iss` = `token_iss`, or None."""
        wanted = issuer_key(token_iss)
        if wanted in trusted:
            return wanted
        for base in trusted:
            config = await self.configuration(base)
            if config.issuer is not None and issuer_key(config.issuer) == wanted:
                return base
        return None
