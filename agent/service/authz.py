"""Authorization of every API call: resolve the caller to a `Principal` before any FHIR call.

In this order:
1. the SMART app's session cookie -> `kind="session"`: the launch's patient, fhirUser and
   granted scopes; FHIR at the launch's `iss` with the session's (refreshing) tokens.
2. `Authorization: Bearer <service key>` (CHARTAGENT_SERVICE_KEYS, compared in constant time)
   -> `kind="service"`, no patient, the key's scopes, the service's own FHIR settings. Keys are
   checked before any token handling so that a key is never sent to an issuer's introspection.
3. `Authorization: Bearer <SMART access token>` -> `kind="token"`. A JWT must be signed by a
   trusted issuer (CHARTAGENT_APP_ISSUERS) with a key of its JWKS; an opaque token is asked of
   the issuer's introspection endpoint (RFC 7662, with the app's client credentials). Checked:
   `exp`, `aud`, scopes. Two audiences are accepted, and they decide where FHIR calls go:
   - the issuer's FHIR base (what SMART tokens name: the EHR's own app and backend tokens): the
     service relays the same token to that FHIR base, which enforces its scopes and compartment
     again, so accepting it grants nothing the token does not already grant there;
   - this service's public URL (a token minted for us, e.g. client_credentials with
     `resource`/`aud` = the service): it cannot be relayed (the FHIR server would refuse its
     audience), so the service's own FHIR settings serve it, within the token's scopes and
     patient as this service enforces them.
   A token for any other audience is refused. The `patient` claim is the bound patient; a token
   without one keeps only its `user/` and `system/` scopes (patient scopes without a patient
   cannot be honoured and must not turn into a system grant).
Otherwise 401. No token, key or patient id is ever logged or put in an error.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import HTTPException, Request, status
from pydantic import SecretStr

from agent.service.issuers import issuer_key, local_reference, trusted_issuers
from agent.service.principal import Principal
from agent.service.runtime import ServiceRuntime, runtime_of
from agent.service.sessions import Session, SessionAuth, opaque_label
from fhir_adapters.auth import StaticBearer
from fhir_adapters.error_tree import ServiceError
from fhir_adapters.smart_jwt import (
    SmartTransportError,
    TokenInvalid,
    check_issuer_and_audience,
    looks_like_jwt,
    read_unverified,
    verify_jwt,
)
from fhir_adapters.smart_scopes import ScopeSet

__all__ = ["callback_url", "current_principal", "session_cookie_name", "session_of"]

log = logging.getLogger(__name__)


def session_cookie_name(runtime: ServiceRuntime) -> str:
    # __Host-: the browser accepts it only Secure, Path=/ and without Domain (no subdomain can
    # plant or overwrite it). Plain http (local) cannot use the prefix.
    return "__Host-chartagent-session" if is_https(runtime) else "chartagent-session"


def is_https(runtime: ServiceRuntime) -> bool:
    return runtime.public_url.startswith("https://")


def callback_url(runtime: ServiceRuntime) -> str:
    """The app's registered redirect URI."""
    return f"{runtime.public_url}/app/callback"


def session_of(request: Request) -> Session | None:
    runtime = runtime_of(request)
    return runtime.sessions.get(request.cookies.get(session_cookie_name(runtime)))


def _unauthorized(detail: str, *, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}", error_description="{detail}"'
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


async def current_principal(request: Request) -> Principal:
    runtime = runtime_of(request)
    session = session_of(request)
    if session is not None:
        return _session_principal(runtime, session)
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized("no session or access token")
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("the Authorization header is not a Bearer credential", error="invalid_request")
    keyed = _service_key_principal(runtime, token)
    if keyed is not None:
        return keyed
    try:
        return await _token_principal(runtime, token)
    except TokenInvalid as exc:
        log.info("bearer token refused: %s", exc)
        raise _unauthorized(str(exc), error="invalid_token") from None
    except ServiceError as exc:
        # The issuer could not be asked (down, broken discovery): not the caller's fault.
        log.warning("bearer token not verifiable now: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the token's issuer cannot be reached"
        ) from None


def _session_principal(runtime: ServiceRuntime, session: Session) -> Principal:
    settings = runtime.settings
    auth = SessionAuth(
        session,
        runtime.sessions,
        client_id=settings.app_client_id,
        client_secret=settings.app_client_secret,
        redirect_uri=callback_url(runtime),
    )
    return Principal(
        kind="session",
        patient_id=session.patient_id,
        fhir_user=session.fhir_user,
        scopes=session.scopes,
        label=session.label,
        fhir_base_url=session.iss,
        fhir_auth=auth,
    )


def _service_key_principal(runtime: ServiceRuntime, token: str) -> Principal | None:
    given = token.encode()
    found: str | None = None
    # Every key is compared (constant time each), so timing tells neither which key nor how many.
    for name, spec in runtime.settings.service_keys.items():
        if hmac.compare_digest(given, spec.key.get_secret_value().encode()):
            found = name
    if found is None:
        return None
    spec = runtime.settings.service_keys[found]
    return Principal(
        kind="service", patient_id=None, scopes=ScopeSet.parse(spec.scopes), label=f"service:{found}"
    )


async def _token_principal(runtime: ServiceRuntime, token: str) -> Principal:
    trusted = trusted_issuers(runtime.settings)
    if not trusted:
        raise TokenInvalid("this service trusts no token issuer")
    if looks_like_jwt(token):
        base, claims = await _verified_jwt(runtime, token, trusted)
    else:
        base, claims = await _introspected(runtime, token, trusted)
    for_us = _audience_is(claims, runtime.public_url)
    scopes = ScopeSet.parse(claims.get("scope") if isinstance(claims.get("scope"), str) else None)
    patient = claims.get("patient")
    patient_id = patient if isinstance(patient, str) and patient else None
    if patient_id is None:
        scopes = ScopeSet(names=frozenset(n for n in scopes.names if not n.startswith("patient/")))
    fhir_user = claims.get("fhirUser")
    client_id = claims.get("client_id") or claims.get("azp")
    label = (
        f"token:{client_id}" if isinstance(client_id, str) else opaque_label(str(claims.get("sub")), "token")
    )
    return Principal(
        kind="token",
        patient_id=patient_id,
        fhir_user=local_reference(base, fhir_user) if isinstance(fhir_user, str) else None,
        scopes=scopes,
        label=label,
        fhir_base_url=None if for_us else base,
        fhir_auth=None if for_us else StaticBearer(SecretStr(token)),
    )


def _audience_is(claims: Mapping[str, Any], url: str) -> bool:
    aud = claims.get("aud")
    given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return any(isinstance(a, str) and issuer_key(a) == issuer_key(url) for a in given)


def _audiences(runtime: ServiceRuntime, base: str) -> tuple[str, ...]:
    return (runtime.public_url, base)


async def _verified_jwt(
    runtime: ServiceRuntime, token: str, trusted: tuple[str, ...]
) -> tuple[str, dict[str, Any]]:
    registry = runtime.issuers
    leeway = runtime.settings.token_leeway_s
    known = registry.verified.recall(token, leeway_s=leeway)
    if known is not None:
        return known
    header, unverified = read_unverified(token)
    claimed = unverified.get("iss")
    if not isinstance(claimed, str):
        raise TokenInvalid("token names no issuer")
    base = await registry.base_for_token_issuer(claimed, trusted)
    if base is None:
        raise TokenInvalid("token issuer is not trusted by this service")
    config = await registry.configuration(base)
    key = await registry.jwks(base, config).key_for_header(header)
    claims = verify_jwt(token, key, issuer=claimed, audiences=_audiences(runtime, base), leeway_s=leeway)
    registry.verified.remember(token, base, claims)
    return base, claims


async def _introspected(
    runtime: ServiceRuntime, token: str, trusted: tuple[str, ...]
) -> tuple[str, dict[str, Any]]:
    """RFC 7662 at the trusted issuers that offer it (an opaque token does not say whose it is)."""
    settings = runtime.settings
    asked = False
    async with runtime.issuers.http() as http:
        for base in trusted:
            config = await runtime.issuers.configuration(base, http)
            if config.introspection_endpoint is None:
                continue
            asked = True
            claims = await _introspect(
                http, config.introspection_endpoint, token, settings.app_client_id, settings.app_client_secret
            )
            if claims is None:
                continue
            if claims.get("iss") is None:
                claims = {**claims, "iss": config.issuer or base}
            if "aud" not in claims:
                # RFC 7662 makes aud optional; an issuer that omits it vouches for its own base.
                claims = {**claims, "aud": base}
            check_issuer_and_audience(claims, issuer=str(claims["iss"]), audiences=_audiences(runtime, base))
            exp = claims.get("exp")
            if not isinstance(exp, int | float) or exp + settings.token_leeway_s < time.time():
                raise TokenInvalid("token has expired")
            return base, claims
    raise TokenInvalid("token is not active" if asked else "opaque token and no issuer offers introspection")


async def _introspect(
    http: httpx.AsyncClient, url: str, token: str, client_id: str, secret: SecretStr | None
) -> dict[str, Any] | None:
    auth: httpx.Auth = httpx.BasicAuth(client_id, secret.get_secret_value()) if secret else httpx.Auth()
    form = {"token": token, **({} if secret else {"client_id": client_id})}
    try:
        resp = await http.post(url, data=form, auth=auth, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise SmartTransportError(f"introspection: no answer ({type(exc).__name__})") from exc
    if resp.status_code != 200:
        return None
    try:
        doc = resp.json()
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("active") is not True:
        return None
    return doc
