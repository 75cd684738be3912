"""Access tokens and id_tokens: RS256 JWTs signed with the stand-in's key.

Access tokens are self-contained (the proxy and the service verify them against the JWKS;
`/auth/introspect` answers for them too): iss, sub, aud, exp, iat, jti, scope, client_id,
patient (when bound), fhirUser.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from agent.testbed.ehr.grants import Grant
from agent.testbed.ehr.state import EhrState
from fhir_adapters.smart_scopes import ScopeSet


def subject_of(fhir_user: str | None, client_id: str) -> str:
    """A stable, opaque `sub`: a hash of the user (or the client, for backend clients)."""
    return hashlib.sha256((fhir_user or f"client:{client_id}").encode()).hexdigest()[:32]


def mint_access_token(
    ehr: EhrState,
    *,
    client_id: str,
    scope: str,
    patient_id: str | None,
    fhir_user: str | None,
    audience: str | None = None,
) -> tuple[str, int]:
    """(token, expires_in)."""
    now = int(time.time())
    lifetime = ehr.config.access_token_lifetime_s
    claims: dict[str, Any] = {
        "iss": ehr.issuer,
        "sub": subject_of(fhir_user, client_id),
        "aud": audience or ehr.config.fhir_url,
        "exp": now + lifetime,
        "iat": now,
        "jti": secrets.token_hex(16),
        "scope": scope,
        "client_id": client_id,
    }
    if patient_id is not None:
        claims["patient"] = patient_id
    if fhir_user is not None:
        claims["fhirUser"] = fhir_user
    return ehr.key.sign(claims, typ="at+jwt"), lifetime


def mint_id_token(ehr: EhrState, grant: Grant) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ehr.issuer,
        "sub": subject_of(grant.fhir_user, grant.client_id),
        "aud": grant.client_id,
        "exp": now + ehr.config.access_token_lifetime_s,
        "iat": now,
    }
    if grant.fhir_user is not None and ScopeSet.parse(grant.scope).has("fhirUser"):
        claims["fhirUser"] = f"{ehr.config.fhir_url}/{grant.fhir_user}"
    if grant.nonce is not None:
        claims["nonce"] = grant.nonce
    return ehr.key.sign(claims)


def user_token_response(ehr: EhrState, grant: Grant) -> dict[str, Any]:
    """The token endpoint's answer to a code or refresh exchange (SMART 2.2 fields)."""
    scopes = ScopeSet.parse(grant.scope)
    access, expires_in = mint_access_token(
        ehr,
        client_id=grant.client_id,
        scope=grant.scope,
        patient_id=grant.patient_id,
        fhir_user=grant.fhir_user,
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": grant.scope,
        "need_patient_banner": True,
    }
    if grant.patient_id is not None:
        body["patient"] = grant.patient_id
    if scopes.has("openid"):
        body["id_token"] = mint_id_token(ehr, grant)
    if scopes.has("offline_access") or scopes.has("online_access"):
        # Rotating: each refresh answers with a new one and the used one is gone.
        body["refresh_token"] = ehr.grants.refresh_tokens.issue(
            Grant(
                client_id=grant.client_id,
                scope=grant.scope,
                patient_id=grant.patient_id,
                fhir_user=grant.fhir_user,
                nonce=None,
            )
        )
    return body
