"""`POST {ehr}/auth/token` (authorization_code with PKCE, rotating refresh_token,
client_credentials) and `POST {ehr}/auth/introspect` (RFC 7662).

Client authentication: client_secret_basic for confidential clients; a public client names
itself with `client_id` in the form and proves nothing but the PKCE verifier.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any
from urllib.parse import unquote

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError

from agent.testbed.ehr.config import ClientRegistration
from agent.testbed.ehr.grants import Grant
from agent.testbed.ehr.scope_grant import grantable
from agent.testbed.ehr.state import EhrState, ehr_of
from agent.testbed.ehr.tokens import mint_access_token, user_token_response
from fhir_adapters.error_tree import BadInputError
from fhir_adapters.smart_app_launch import Pkce
from fhir_adapters.smart_scopes import ScopeSet

router = APIRouter()

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class TokenError(BadInputError):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="chartagent-ehr"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


def authenticate_client(request: Request, form_client_id: str | None) -> ClientRegistration:
    ehr = ehr_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise TokenError("invalid_client", "malformed client credentials", 401) from exc
        client_id, _, secret = raw.partition(":")
        client = ehr.config.client(unquote(client_id))
        if (
            client is None
            or client.secret is None
            or not secrets.compare_digest(unquote(secret).encode(), client.secret.get_secret_value().encode())
        ):
            raise TokenError("invalid_client", "client authentication failed", 401)
        if form_client_id is not None and form_client_id != client.client_id:
            raise TokenError("invalid_client", "client_id does not match the authenticated client", 401)
        return client
    client = ehr.config.client(form_client_id or "")
    if client is None or client.kind != "public":
        raise TokenError("invalid_client", "client authentication failed", 401)
    return client


def pkce_matches(verifier: str, challenge: str) -> bool:
    try:
        pkce = Pkce(verifier=SecretStr(verifier))  # refuses a malformed verifier (RFC 7636)
    except ValidationError:
        return False
    return secrets.compare_digest(pkce.challenge, challenge)


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    ehr = ehr_of(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        client = authenticate_client(request, form.get("client_id"))
        grant_type = form.get("grant_type", "")
        if grant_type not in client.grant_types:
            raise TokenError(
                "unauthorized_client", f"grant_type {grant_type!r} is not allowed for this client"
            )
        if grant_type == "authorization_code":
            body = _code_exchange(ehr, client, form)
        elif grant_type == "refresh_token":
            body = _refresh(ehr, client, form)
        else:
            body = _client_credentials(ehr, client, form)
    except TokenError as exc:
        return exc.response()
    return JSONResponse(body, headers=_NO_STORE)


def _code_exchange(ehr: EhrState, client: ClientRegistration, form: dict[str, str]) -> dict[str, Any]:
    # Taken before any check: a code is spent by its first use, right or wrong.
    grant = ehr.grants.codes.take(form.get("code", ""))
    if grant is None or grant.client_id != client.client_id:
        raise TokenError("invalid_grant", "unknown, used or expired code")
    if form.get("redirect_uri") != grant.redirect_uri:
        raise TokenError("invalid_grant", "redirect_uri does not match the authorization request")
    if grant.code_challenge is None or not pkce_matches(form.get("code_verifier", ""), grant.code_challenge):
        raise TokenError("invalid_grant", "PKCE verification failed")
    return user_token_response(ehr, grant)


def _refresh(ehr: EhrState, client: ClientRegistration, form: dict[str, str]) -> dict[str, Any]:
    grant = ehr.grants.refresh_tokens.take(form.get("refresh_token", ""))
    if grant is None or grant.client_id != client.client_id:
        raise TokenError("invalid_grant", "unknown, used or expired refresh token")
    scope = grant.scope
    if form.get("scope"):
        scope = grantable(ScopeSet.parse(grant.scope), ScopeSet.parse(form["scope"])).text
    return user_token_response(
        ehr,
        Grant(client_id=grant.client_id, scope=scope, patient_id=grant.patient_id, fhir_user=grant.fhir_user),
    )


def _client_credentials(ehr: EhrState, client: ClientRegistration, form: dict[str, str]) -> dict[str, Any]:
    requested = ScopeSet.parse(form["scope"]) if form.get("scope") else client.allowed
    granted = grantable(client.allowed, requested)
    if not granted.names:
        raise TokenError("invalid_scope", "none of the requested scopes is allowed for this client")
    access, expires_in = mint_access_token(
        ehr,
        client_id=client.client_id,
        scope=granted.text,
        patient_id=None,
        fhir_user=None,
        audience=form.get("resource") or form.get("aud") or None,
    )
    return {"access_token": access, "token_type": "Bearer", "expires_in": expires_in, "scope": granted.text}


@router.post("/auth/introspect")
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662 for the access tokens this server signed; the caller is a confidential client."""
    ehr = ehr_of(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        client = authenticate_client(request, None)
    except TokenError as exc:
        return exc.response()
    if client.kind != "confidential":
        return TokenError("invalid_client", "introspection needs a confidential client", 401).response()
    try:
        claims = jwt.decode(
            form.get("token", ""),
            ehr.key.private_key.public_key(),
            algorithms=["RS256"],
            issuer=ehr.issuer,
            options={"verify_aud": False, "require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.InvalidTokenError:
        return JSONResponse({"active": False}, headers=_NO_STORE)
    keep = ("scope", "patient", "exp", "iat", "client_id", "sub", "fhirUser", "aud", "iss", "jti")
    body = {"active": True, "token_type": "Bearer", **{k: claims[k] for k in keep if k in claims}}
    return JSONResponse(body, headers=_NO_STORE)
