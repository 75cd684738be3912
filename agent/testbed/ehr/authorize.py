"""`GET {ehr}/auth/authorize` (SMART App Launch 2.2, authorization code with PKCE S256) and the
standalone launch's patient picker (`POST {ehr}/auth/pick`).

The client and its exact redirect URI are checked first: until both are known, errors are a 400
page (never a redirect to an unchecked URI). After that, errors go back to the redirect URI as
`error=...&state=...`. An EHR launch (`launch` issued by the launcher) is approved automatically;
a standalone launch asking for `launch/patient` shows the picker; granted scopes are the requested
ones the client is registered for.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from agent.testbed.ehr.grants import AuthorizationRequest, Grant
from agent.testbed.ehr.pages import error_page, picker_page
from agent.testbed.ehr.patients import ensure_demo_practitioner, patient_list
from agent.testbed.ehr.scope_grant import grantable
from agent.testbed.ehr.state import EhrState, ehr_of
from fhir_adapters.error_tree import BadInputError
from fhir_adapters.smart_scopes import ScopeSet

router = APIRouter()

# RFC 7636: BASE64URL(SHA256(verifier)) is 43 characters.
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


class AuthorizeError(BadInputError):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def redirect_with(redirect_uri: str, params: dict[str, str | None]) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(
        f"{redirect_uri}{sep}{query}", status_code=302, headers={"Cache-Control": "no-store"}
    )


@router.get("/auth/authorize")
async def authorize(request: Request) -> Response:
    ehr = ehr_of(request)
    q = request.query_params
    client = ehr.config.client(q.get("client_id", ""))
    if client is None or "authorization_code" not in client.grant_types:
        return error_page("Unknown client.")
    redirect_uri = q.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        return error_page("The redirect URI is not registered for this client.")
    state = q.get("state")
    try:
        return await _authorize(ehr, request, client.client_id, client.allowed, redirect_uri, state)
    except AuthorizeError as exc:
        return redirect_with(
            redirect_uri, {"error": exc.error, "error_description": exc.description, "state": state}
        )


async def _authorize(
    ehr: EhrState, request: Request, client_id: str, allowed: ScopeSet, redirect_uri: str, state: str | None
) -> Response:
    q = request.query_params
    if q.get("response_type") != "code":
        raise AuthorizeError("unsupported_response_type", "response_type must be code")
    if q.get("aud") != ehr.config.fhir_url:
        raise AuthorizeError("invalid_request", "aud must be this server's FHIR base URL")
    if q.get("code_challenge_method") != "S256" or not _CHALLENGE.match(q.get("code_challenge", "")):
        raise AuthorizeError("invalid_request", "PKCE with code_challenge_method S256 is required")
    granted = grantable(allowed, ScopeSet.parse(q.get("scope", "")))
    if not granted.names:
        raise AuthorizeError("invalid_scope", "none of the requested scopes is allowed for this client")
    pending = AuthorizationRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=granted.text,
        state=state,
        code_challenge=q["code_challenge"],
        nonce=q.get("nonce"),
        fhir_user=await ensure_demo_practitioner(ehr),
    )
    launch_id = q.get("launch")
    if launch_id is not None:
        launch = ehr.grants.launches.get(launch_id)
        if launch is None:
            raise AuthorizeError("invalid_request", "unknown or expired launch")
        if not granted.has("launch"):
            raise AuthorizeError("invalid_scope", "an EHR launch needs the launch scope")
        return issue_code(ehr, pending, launch.patient_id, fhir_user=launch.fhir_user)
    if granted.has("launch/patient"):
        return picker_page(ehr.grants.requests.issue(pending), await patient_list(ehr))
    return issue_code(ehr, pending, None, fhir_user=pending.fhir_user)


@router.post("/auth/pick")
async def pick(request: Request, handle: str = Form(alias="request"), patient: str = Form()) -> Response:
    """The picker's choice: the pending request (single use) gets its code for that patient."""
    ehr = ehr_of(request)
    pending = ehr.grants.requests.take(handle)
    if pending is None:
        return error_page("This authorization request is unknown or has expired.")
    if patient not in {pid for pid, _ in await patient_list(ehr)}:
        return redirect_with(
            pending.redirect_uri,
            {"error": "invalid_request", "error_description": "unknown patient", "state": pending.state},
        )
    return issue_code(ehr, pending, patient, fhir_user=pending.fhir_user, status_code=303)


def issue_code(
    ehr: EhrState,
    pending: AuthorizationRequest,
    patient_id: str | None,
    *,
    fhir_user: str,
    status_code: int = 302,
) -> RedirectResponse:
    code = ehr.grants.codes.issue(
        Grant(
            client_id=pending.client_id,
            scope=pending.scope,
            patient_id=patient_id,
            fhir_user=fhir_user,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            nonce=pending.nonce,
        )
    )
    response = redirect_with(pending.redirect_uri, {"code": code, "state": pending.state})
    response.status_code = status_code
    return response
