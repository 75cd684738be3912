"""CDS Hooks 2.0: one `patient-view` service that shows ChartAgent's latest AI summary as a card.

`GET /cds-services` (discovery) and `POST /cds-services/chartagent-summary`. Each call is the
EHR's signed JWT first (agent.service.cds_auth; 401 otherwise), then one FHIR search: the
patient's summary reports with their trend results (`_include`), on the EHR's `fhirServer` with
its `fhirAuthorization` token when it sends them, else on the service's own FHIR server. A hook
must answer in well under a second, so this module never runs a model or a graph: it shows what a
run already wrote (tests/unit/test_cds_card.py checks that no model code is imported from here).
A FHIR failure answers `{"cards": []}` and logs the failure's type, never patient data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
from fastapi import FastAPI, HTTPException, Request, status
from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from agent.connections import auth_from_settings
from agent.service.cds_auth import CdsRequestVerifier, TokenInvalid
from agent.service.cds_card import CdsResponse, current_summary_of, summary_response
from agent.service.lifespans import add_lifespan
from agent.service.runtime import ServiceRuntime, runtime_of
from agent.service.token_uses import MemoryTokenUses, TokenUsesUnavailable, open_token_uses
from fhir_adapters import FhirClient, StaticBearer
from fhir_adapters.error_tree import ChartAgentError
from fhir_adapters.errors import ResourceParseError
from fhir_adapters.parsing import parse_resource
from fhir_adapters.search import patient_search_param
from tools.writeback.builders import SUMMARY_REPORT_CODE

__all__ = ["SERVICE_ID", "PatientViewRequest", "call_refusal", "install"]

log = logging.getLogger(__name__)

SERVICE_ID: Final = "chartagent-summary"
# Reports are few (one per run that changed something); the page size keeps one round trip.
_PAGE: Final = 50
# The EHR waits for the card: a slow FHIR server gives no card rather than a late one.
_FHIR_TIMEOUT_S: Final = 5.0
_FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# What the card does not use: the report's PNG plots and XHTML (most of its bytes; parsing them
# cost more than the search).
_UNUSED: Final = frozenset({"presentedForm", "text"})

_DISCOVERY: Final = {
    "services": [
        {
            "hook": "patient-view",
            "id": SERVICE_ID,
            "title": "ChartAgent AI summary",
            "description": (
                "The latest AI-generated laboratory trend summary ChartAgent wrote to the chart "
                "(MedGemma), with its review status and a link that opens the ChartAgent app."
            ),
            # No prefetch: the card needs only the summary reports, read with one targeted search.
        }
    ]
}


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="ignore")

    access_token: SecretStr
    token_type: str = "Bearer"
    scope: str = ""
    subject: str = ""
    # The patient a patient-scoped token is bound to (CDS Hooks 2.0: SHOULD be given then).
    patient: str | None = None


class PatientViewContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str | None = Field(default=None, alias="userId")
    patient_id: str = Field(alias="patientId", pattern=_FHIR_ID.pattern)
    encounter_id: str | None = Field(default=None, alias="encounterId")


class PatientViewRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hook: Literal["patient-view"]
    hook_instance: str = Field(alias="hookInstance", min_length=1)
    fhir_server: str | None = Field(default=None, alias="fhirServer")
    fhir_authorization: FhirAuthorization | None = Field(default=None, alias="fhirAuthorization")
    context: PatientViewContext


@dataclass
class _Clients:
    """Kept for the process (opened in the app's lifespan): one connection pool for every hook's
    FHIR reads, and the service's own FHIR client with its credentials (a backend-services token
    is fetched once, not per hook call). Without a lifespan (a bare ASGI test) each call opens its own."""

    http: httpx.AsyncClient | None = None
    own: FhirClient | None = None


def install(app: FastAPI) -> None:
    """Add the discovery and the service's routes to `app`."""
    runtime: ServiceRuntime = app.state.runtime
    verifier = CdsRequestVerifier(runtime.settings.cds_trusted_issuers)
    clients = _Clients()

    @asynccontextmanager
    async def open_clients(_: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=_FHIR_TIMEOUT_S))
            own = await stack.enter_async_context(_service_fhir(runtime, http))
            if runtime.settings.cds_trusted_issuers:  # else every call is refused before its jti
                verifier.uses = await stack.enter_async_context(open_token_uses(runtime.settings))
            clients.http, clients.own = http, own
            try:
                yield
            finally:
                clients.http = clients.own = None
                verifier.uses = MemoryTokenUses()

    add_lifespan(app, open_clients)

    @app.get("/cds-services", tags=["cds-hooks"])
    async def cds_discovery() -> dict[str, Any]:
        return _DISCOVERY

    @app.post(f"/cds-services/{SERVICE_ID}", tags=["cds-hooks"])
    async def cds_patient_view(request: Request) -> dict[str, Any]:
        audience = f"{runtime_of(request).public_url}/cds-services/{SERVICE_ID}"
        try:
            await verifier.verify(request.headers.get("authorization"), audience=audience)
        except TokenUsesUnavailable:
            # Not the EHR's fault, and a replay must not pass unchecked: the EHR may call again.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="the token's single use could not be checked"
            ) from None
        except ChartAgentError as exc:  # TokenInvalid, or the issuer's key set could not be read
            reason = str(exc) if isinstance(exc, TokenInvalid) else "the issuer's keys could not be read"
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail=reason, headers={"WWW-Authenticate": "Bearer"}
            ) from None
        not_a_hook = HTTPException(status.HTTP_400_BAD_REQUEST, detail="not a patient-view hook request")
        try:
            body = await request.json()
        except ValueError:  # not JSON
            raise not_a_hook from None
        try:
            call = PatientViewRequest.model_validate(body)
        except ValidationError:
            raise not_a_hook from None
        refusal = call_refusal(call, environment=runtime.settings.environment)
        if refusal is not None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=refusal)
        return (await _answer(runtime_of(request), clients, call)).as_json()


def call_refusal(call: PatientViewRequest, *, environment: str) -> str | None:
    """Why a verified call is still not answered, or None (the messages carry no identifiers)."""
    auth = call.fhir_authorization
    if auth is not None and auth.patient is not None and auth.patient != call.context.patient_id:
        return "fhirAuthorization.patient is not context.patientId"
    # The token and the patient's data never travel unencrypted to a real EHR (as for our settings).
    if (
        call.fhir_server is not None
        and environment != "local"
        and not call.fhir_server.startswith("https://")
    ):
        return "fhirServer must be https:// outside the local environment"
    return None


async def _answer(runtime: ServiceRuntime, clients: _Clients, call: PatientViewRequest) -> CdsResponse:
    patient_id = call.context.patient_id
    try:
        async with _fhir(runtime, clients, call) as fhir:
            raws = await fhir.search(
                "DiagnosticReport",
                [
                    (patient_search_param("DiagnosticReport"), f"Patient/{patient_id}"),
                    ("code", f"{SUMMARY_REPORT_CODE['system']}|{SUMMARY_REPORT_CODE['code']}"),
                ],
                count=_PAGE,
                include=["DiagnosticReport:result"],
            )
    except (ChartAgentError, OSError) as exc:
        log.warning("cds-hooks: the summary could not be read (%s); no card", type(exc).__name__)
        return CdsResponse()
    # Validating R4B models is most of a hook's time: the reports first, then only the trend
    # results of the one shown (the `_include` brings those of every earlier summary too).
    reports = _parsed(r for r in raws if r.get("resourceType") == "DiagnosticReport")
    shown = current_summary_of(reports, patient_id)
    if shown is None:
        return CdsResponse()
    wanted = {ref.reference for ref in shown.result or () if ref.reference}
    trends = _parsed(
        r for r in raws if r.get("resourceType") == "Observation" and f"Observation/{r.get('id')}" in wanted
    )
    return summary_response(
        [shown, *trends], patient_id=patient_id, launch_url=f"{runtime.public_url}/app/launch"
    )


def _parsed(raws: Iterable[Mapping[str, Any]]) -> list[Resource]:
    out = []
    for raw in raws:
        try:
            out.append(parse_resource({k: v for k, v in raw.items() if k not in _UNUSED}))
        except ResourceParseError:
            continue  # a malformed resource is no summary
    return out


def _service_fhir(runtime: ServiceRuntime, http: httpx.AsyncClient | None) -> FhirClient:
    settings = runtime.settings
    return FhirClient(
        runtime.fhir_url,
        auth=auth_from_settings(settings),
        http=http,
        flavour=settings.fhir_flavour,
        max_concurrency=settings.fhir_max_concurrency,
        timeout=_FHIR_TIMEOUT_S,
    )


def _fhir(
    runtime: ServiceRuntime, clients: _Clients, call: PatientViewRequest
) -> AbstractAsyncContextManager[FhirClient]:
    """The EHR's FHIR server with the token it granted for this call, else the service's own."""
    if call.fhir_server is None:
        return nullcontext(clients.own) if clients.own is not None else _service_fhir(runtime, None)
    auth = call.fhir_authorization
    return FhirClient(
        call.fhir_server,
        auth=StaticBearer(auth.access_token) if auth is not None else None,
        http=clients.http,
        flavour=runtime.settings.fhir_flavour,
        max_concurrency=1,
        timeout=_FHIR_TIMEOUT_S,
    )
