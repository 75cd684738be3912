"""The SMART app's launch, callback, session and logout routes (backend-for-frontend).

    GET  /app/launch?iss=..&launch=..   EHR launch (iss must be a trusted issuer)
    GET  /app/launch[?iss=..]           standalone launch (default issuer; scope + launch/patient)
         -> 302 to the EHR's authorize endpoint (PKCE S256, state, nonce, aud = iss)
    GET  /app/callback?code=..&state=.. -> 303 /app/ with the session cookie (no token, code or
                                           patient id in that URL or any later one)
    GET  /api/session                   the page's view of its session: patient, fhirUser, csrf
    POST /app/logout                    ends the session (X-CSRF-Token)

`state` is single use and bound to the launching browser by a short-lived pre-session cookie, so
a callback URL replayed or planted in another browser fails. Cookies are HttpOnly, Path=/,
Secure (and `__Host-`) when the public URL is https. SameSite=Lax by default: the launch is a
chain of top-level redirects (EHR -> /app/launch -> authorize -> /app/callback), and Lax cookies
ride along on top-level GET navigations while staying off cross-site subrequests and POSTs. An
EHR that frames the app from another site needs SameSite=None (CHARTAGENT_APP_COOKIE_SAMESITE=none,
https only): a Lax cookie is not sent inside a cross-site iframe.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from agent.service.authz import callback_url, current_principal, is_https, session_cookie_name, session_of
from agent.service.csrf import require_csrf
from agent.service.headers import SecurityHeaders
from agent.service.issuers import default_issuer, issuer_key, local_reference, trusted_issuers
from agent.service.lifespans import add_lifespan
from agent.service.principal import Principal
from agent.service.runtime import ServiceRuntime, runtime_of
from agent.service.sessions import LAUNCH_TTL_S, PendingLaunch, browser_binding
from agent.service.shared_sessions import SessionSync, open_shared_sessions
from agent.state_database import database_errors
from fhir_adapters.error_tree import ChartAgentError, ServiceError
from fhir_adapters.smart_app_launch import (
    Pkce,
    SmartAppClient,
    SmartConfiguration,
    SmartTokenRefused,
    TokenResponse,
    authorize_url,
    new_state,
)
from fhir_adapters.smart_jwt import SmartError, TokenInvalid
from fhir_adapters.smart_scopes import ScopeSet

log = logging.getLogger(__name__)

_OAUTH_CODE = re.compile(r"[a-z_]{1,40}")
_AGAIN = "Launch ChartAgent again from the EHR."


def launch_cookie_name(runtime: ServiceRuntime) -> str:
    return "__Host-chartagent-launch" if is_https(runtime) else "chartagent-launch"


def requested_scopes(configured: str, *, standalone: bool) -> str:
    """The scopes to ask for: the settings' list; a standalone launch asks the EHR to pick a
    patient (`launch/patient`) instead of bringing an EHR launch context (`launch`)."""
    names = configured.split()
    if standalone:
        names = [n for n in names if n != "launch"]
        if "launch/patient" not in names:
            names.insert(0, "launch/patient")
    return " ".join(dict.fromkeys(names))


class LaunchProblem(ChartAgentError):
    """Ends a launch with an HTML page (internal control flow, never leaves this module);
    `title` and `text` are fixed sentences, never request values."""

    def __init__(self, status_code: int, title: str, text: str) -> None:
        self.status_code = status_code
        self.title = title
        self.text = text
        super().__init__(title)


def problem_page(problem: LaunchProblem) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>ChartAgent: {html.escape(problem.title)}</title></head><body>"
        f'<h1 data-testid="launch-error">{html.escape(problem.title)}</h1>'
        f"<p>{html.escape(problem.text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=problem.status_code)


async def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    try:
        issuer = _launch_issuer(runtime, iss, ehr_launch=launch is not None)
        config = await _configuration(runtime, issuer)
    except LaunchProblem as problem:
        return problem_page(problem)
    pkce = Pkce.new()
    state = new_state()
    nonce = new_state()
    browser = secrets.token_urlsafe(32)
    pending = PendingLaunch(
        iss=issuer,
        config=config,
        pkce=pkce,
        nonce=nonce,
        browser_binding=browser_binding(browser),
        created_at=runtime.launches.now(),
    )
    try:
        await runtime.launches.put(state, pending)
    except database_errors() as exc:
        log.warning("SMART launch: the launch store failed: %s", type(exc).__name__)
        return problem_page(LaunchProblem(503, "ChartAgent could not start the sign-in", "Try again later."))
    target = authorize_url(
        config,
        client_id=settings.app_client_id,
        redirect_uri=callback_url(runtime),
        scope=requested_scopes(settings.app_scopes, standalone=launch is None),
        state=state,
        aud=issuer,
        pkce=pkce,
        launch=launch,
        nonce=nonce,
    )
    response = RedirectResponse(target, status_code=status.HTTP_302_FOUND)
    # The callback may come back inside the EHR's iframe: same SameSite as the session cookie.
    _set_cookie(runtime, response, launch_cookie_name(runtime), browser, max_age=int(LAUNCH_TTL_S))
    return response


def _launch_issuer(runtime: ServiceRuntime, iss: str | None, *, ehr_launch: bool) -> str:
    trusted = trusted_issuers(runtime.settings)
    if iss is None:
        fallback = None if ehr_launch else default_issuer(runtime.settings)
        if fallback is None:
            raise LaunchProblem(400, "No EHR to launch from", "The launch names no EHR (iss). " + _AGAIN)
        return fallback
    if issuer_key(iss) not in trusted:
        raise LaunchProblem(
            400, "This EHR may not launch ChartAgent", "The launching EHR is not one this service trusts."
        )
    return issuer_key(iss)


async def _configuration(runtime: ServiceRuntime, issuer: str) -> SmartConfiguration:
    try:
        return await runtime.issuers.configuration(issuer)
    except SmartError as exc:
        log.warning("SMART launch: discovery failed: %s", exc)
        raise LaunchProblem(
            502,
            "The EHR's SMART configuration could not be read",
            "Try again later or ask your administrator.",
        ) from None


async def callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    try:
        pending = await _pending_launch(request, runtime, state)
        if error is not None:
            shown = error if _OAUTH_CODE.fullmatch(error) else "unknown error"
            raise LaunchProblem(
                400, "The EHR did not authorize ChartAgent", f"The EHR answered {shown}. {_AGAIN}"
            )
        if not code:
            raise LaunchProblem(400, "The sign-in answer has no code", _AGAIN)
        async with runtime.issuers.http() as http:
            client = SmartAppClient(
                http,
                pending.config,
                iss=pending.iss,
                client_id=settings.app_client_id,
                redirect_uri=callback_url(runtime),
                client_secret=settings.app_client_secret,
                jwks=runtime.issuers.jwks(pending.iss, pending.config) if pending.config.jwks_uri else None,
                leeway_s=settings.token_leeway_s,
            )
            tokens = await _exchange(client, code, pending)
            fhir_user = None
            if tokens.id_token is not None:
                claims = await client.verify_id_token(tokens.id_token, nonce=pending.nonce)
                fhir_user = local_reference(pending.iss, claims.fhir_user)
        if not tokens.patient:
            raise LaunchProblem(
                400, "The EHR gave no patient", "ChartAgent needs a patient in context. " + _AGAIN
            )
    except LaunchProblem as problem:
        return _without_launch_cookie(runtime, problem_page(problem))
    except TokenInvalid as exc:
        log.warning("SMART launch: id_token refused: %s", exc)
        page = problem_page(LaunchProblem(400, "The EHR's identity token was not valid", _AGAIN))
        return _without_launch_cookie(runtime, page)
    except ServiceError as exc:
        log.warning("SMART launch: the EHR failed: %s", exc)
        page = problem_page(LaunchProblem(502, "The EHR could not be reached", "Try again later. " + _AGAIN))
        return _without_launch_cookie(runtime, page)
    previous = session_of(request)
    if previous is not None:
        await runtime.sessions.end(previous.id)
    session = runtime.sessions.create(
        iss=pending.iss,
        config=pending.config,
        patient_id=tokens.patient,
        fhir_user=fhir_user,
        scopes=ScopeSet.parse(tokens.scope),
        need_patient_banner=tokens.need_patient_banner,
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        lifetime_s=settings.app_session_lifetime_s,
    )
    try:
        await runtime.sessions.share(session)
    except database_errors() as exc:
        runtime.sessions.drop(session.id)  # known to this replica only: no session at all
        log.warning("SMART launch: the session store failed: %s", type(exc).__name__)
        page = problem_page(
            LaunchProblem(503, "ChartAgent could not keep the session", "Try again later. " + _AGAIN)
        )
        return _without_launch_cookie(runtime, page)
    log.info("SMART launch: %s started", session.label)
    response = RedirectResponse("/app/", status_code=status.HTTP_303_SEE_OTHER)
    _set_cookie(
        runtime,
        response,
        session_cookie_name(runtime),
        session.id,
        max_age=int(settings.app_session_lifetime_s),
    )
    return _without_launch_cookie(runtime, response)


async def _pending_launch(request: Request, runtime: ServiceRuntime, state: str | None) -> PendingLaunch:
    try:
        pending = await runtime.launches.take(state) if state else None
    except database_errors() as exc:
        log.warning("SMART launch: the launch store failed: %s", type(exc).__name__)
        raise LaunchProblem(
            503, "ChartAgent could not finish the sign-in", "Try again later. " + _AGAIN
        ) from None
    cookie = request.cookies.get(launch_cookie_name(runtime))
    if pending is None or cookie is None or browser_binding(cookie) != pending.browser_binding:
        raise LaunchProblem(
            400, "This sign-in is not valid", "It has expired or was started elsewhere. " + _AGAIN
        )
    return pending


async def _exchange(client: SmartAppClient, code: str, pending: PendingLaunch) -> TokenResponse:
    try:
        return await client.exchange_code(code, pending.pkce)
    except SmartTokenRefused as exc:
        log.warning("SMART launch: %s", exc)
        shown = exc.error if exc.error and _OAUTH_CODE.fullmatch(exc.error) else "an error"
        raise LaunchProblem(
            400, "The EHR refused the sign-in", f"Its token endpoint answered {shown}. {_AGAIN}"
        ) from None


async def session_info(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> JSONResponse:
    session = session_of(request) if principal.kind == "session" else None
    if session is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this caller has no app session")
    return JSONResponse(
        {
            "patient": session.patient_id,
            "fhirUser": session.fhir_user,
            "need_patient_banner": session.need_patient_banner,
            "scope": session.scopes.text,
            "csrf": session.csrf_token,
        }
    )


async def logout(request: Request, principal: Annotated[Principal, Depends(require_csrf)]) -> Response:
    runtime = runtime_of(request)
    session = session_of(request)
    if session is not None:
        await runtime.sessions.end(session.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(session_cookie_name(runtime), path="/", secure=is_https(runtime), httponly=True)
    return response


def _set_cookie(
    runtime: ServiceRuntime,
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int,
) -> None:
    # SameSite=None is honoured only with Secure, so plain http (local) stays Lax.
    same_site = runtime.settings.app_cookie_samesite if is_https(runtime) else "lax"
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=is_https(runtime),
        httponly=True,
        samesite=same_site,
    )


def _without_launch_cookie(runtime: ServiceRuntime, response: Response) -> Response:
    response.delete_cookie(launch_cookie_name(runtime), path="/", secure=is_https(runtime), httponly=True)
    return response


def install(app: FastAPI) -> None:
    """The launch, callback, session and logout routes, and the security headers."""
    runtime = runtime_of_app(app)
    key = runtime.settings.app_session_key
    if key is not None:
        # Sessions shared by the replicas (agent.service.shared_sessions); inside the security
        # headers' middleware (the last added runs first), so its 503 carries them too.
        app.add_middleware(SessionSync)

        @asynccontextmanager
        async def share_sessions(_: FastAPI) -> AsyncIterator[None]:
            async with open_shared_sessions(runtime.settings, key) as shared:
                runtime.sessions.mirror = runtime.launches.mirror = shared
                try:
                    yield
                finally:
                    runtime.sessions.mirror = runtime.launches.mirror = None

        add_lifespan(app, share_sessions)
    app.add_middleware(SecurityHeaders, settings=runtime.settings)
    app.add_api_route("/app/launch", launch, methods=["GET"], include_in_schema=False)
    app.add_api_route("/app/callback", callback, methods=["GET"], include_in_schema=False)
    app.add_api_route("/app/logout", logout, methods=["POST"], tags=["app"], summary="End the app session")
    app.add_api_route(
        "/api/session",
        session_info,
        methods=["GET"],
        tags=["app"],
        summary="The app session's patient and CSRF",
    )


def runtime_of_app(app: FastAPI) -> ServiceRuntime:
    runtime: ServiceRuntime = app.state.runtime
    return runtime
