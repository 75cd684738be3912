"""Verification of the JWT an EHR signs each CDS Hooks call with (CDS Hooks 2.0, "Trusting CDS Clients").

`Authorization: Bearer <jwt>`: `iss` is one of the trusted EHRs of the settings (issuer -> JWKS
URL), the key is the one its JWKS publishes under the header's `kid`, `aud` is the URL of the
service being called, `exp`, `iat` and `jti` are present, the lifetime is at most five minutes
and a `jti` is never accepted twice (agent.service.token_uses: the service's shared database, so
that every replica knows it, until the token would have expired; a bare app without its lifespan
remembers in memory). Errors name the check, never the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import jwt

from agent.service.token_uses import MemoryTokenUses, TokenUses
from fhir_adapters.smart_jwt import JwksCache, TokenInvalid, unverified_issuer, verify_jwt

__all__ = ["HOOK_ALGORITHMS", "MAX_LIFETIME_S", "CdsRequestVerifier", "TokenInvalid"]

# The algorithms CDS Hooks 2.0 names (ES384, RS384) and RS256, which EHRs still use.
HOOK_ALGORITHMS: Final = frozenset({"RS256", "RS384", "ES384"})
# "exp ... SHOULD be no more than 5 minutes in the future" (of iat).
MAX_LIFETIME_S: Final = 300.0
LEEWAY_S: Final = 10.0


class CdsRequestVerifier:
    """Checks hook calls of the trusted EHRs; holds their key sets and where the used `jti`s are
    recorded (`uses`: this process's memory until the app's lifespan sets the shared store)."""

    def __init__(
        self,
        trusted: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
        leeway_s: float = LEEWAY_S,
        uses: TokenUses | None = None,
    ) -> None:
        self._jwks = {iss.rstrip("/"): JwksCache(url) for iss, url in trusted.items()}
        self._clock = clock
        self._leeway_s = leeway_s
        self.uses: TokenUses = uses if uses is not None else MemoryTokenUses()

    async def verify(self, authorization: str | None, *, audience: str) -> dict[str, Any]:
        """The claims of the call's JWT; `TokenInvalid` naming the failed check otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenInvalid("the hook call carries no bearer JWT")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalid("token is not a readable JWT") from exc
        if header.get("alg") not in HOOK_ALGORITHMS:
            raise TokenInvalid("token algorithm is not one CDS Hooks accepts (RS256, RS384, ES384)")
        issuer = (unverified_issuer(token) or "").rstrip("/")
        keys = self._jwks.get(issuer)
        if keys is None:
            raise TokenInvalid("token issuer is not a trusted CDS client")
        key = await keys.key_for(token)
        claims = verify_jwt(token, key, issuer=issuer, audiences=(audience,), leeway_s=self._leeway_s)
        self._check_times(claims)
        await self._remember(issuer, claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise TokenInvalid("token lacks the 'iat' claim")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenInvalid("token lacks the 'exp' claim")
        if iat > self._clock() + self._leeway_s:
            raise TokenInvalid("token is issued in the future")
        if exp - iat > MAX_LIFETIME_S:
            raise TokenInvalid("token lives longer than five minutes")

    async def _remember(self, issuer: str, claims: Mapping[str, Any]) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenInvalid("token lacks the 'jti' claim")
        forget_at = float(claims["exp"]) + self._leeway_s
        if not await self.uses.first_use(issuer, jti, forget_at=forget_at, now=self._clock()):
            raise TokenInvalid("token was already used (jti replayed)")
