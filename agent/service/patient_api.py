"""The app's patient API: the summary view, attachments, Approve/Reject, and a run of the planning
graph now.

    GET  /api/patients/{id}/summary                                   the summary JSON (summary_view)
    GET  /api/patients/{id}/attachments/{type}/{rid}/{index}          a report's presentedForm or a
                                                                      document's PDF, streamed
    POST /api/results/{type}/{rid}/approve                            status final + a Provenance
    POST /api/results/{type}/{rid}/reject   {"reason": ...}           status entered-in-error
    POST /api/patients/{id}/summarize                                 202 {"run_id"}
    GET  /api/runs/{run_id}                                           the run's progress

Every route resolves the caller first and checks the patient and the scopes before any FHIR call;
FHIR is reached with the caller's own grant (`fhir_for`). The POST routes are CSRF-protected for
session callers (`require_csrf`). On the wire, the summary is five searches at once:

    GET {fhir}/Patient/{id}
    GET {fhir}/Observation?patient={id}&_count=1000        GET {fhir}/DiagnosticReport?patient=...
    GET {fhir}/DocumentReference?patient={id}&_count=1000  GET {fhir}/ImagingStudy?patient=...

(the last two only when the caller's scopes allow them: without them the PDF links and study UIDs
are left out).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import BaseModel, Field, ValidationError

from agent.service.authz import current_principal, session_of
from agent.service.csrf import require_csrf
from agent.service.fhir_access import fhir_base_of, fhir_for
from agent.service.lifespans import add_lifespan
from agent.service.pages import in_compartment
from agent.service.principal import Principal
from agent.service.run_store import RunsUnavailable, RunView, open_run_store
from agent.service.runs import RunRegistry, context_opener
from agent.service.runtime import runtime_of
from agent.service.summary_view import (
    SERVED_CONTENT_TYPES,
    PatientResources,
    SummaryView,
    build_summary_view,
)
from fhir_adapters import FhirClient, FhirError, FhirHttpError, FhirNotFound
from tools.documents.attachments import DocumentFetchError, fetch_pdfs
from tools.writeback.approval import (
    REVIEWABLE_TYPES,
    ReviewAction,
    ReviewConflict,
    ReviewOutcome,
    ReviewRefused,
    apply_review,
)

__all__ = ["fhir_failure", "install", "runs_of"]

_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ATTACHMENT_TYPES: Final = frozenset({"DiagnosticReport", "DocumentReference"})
_NOT_FOUND: Final = "no such resource in this patient's record"
_NO_STORE: Final = {"Cache-Control": "no-store"}
# The summary's searches of the patient, each asked for large pages (the flavour may cap them).
SUMMARY_SEARCHES: Final = ("Observation", "DiagnosticReport", "DocumentReference", "ImagingStudy")
SEARCH_COUNT: Final = 1000


class RejectBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, pattern=r"\S")


class RunStarted(BaseModel):
    run_id: str


def _runs_unavailable() -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail="the summary runs cannot be reached now; try again"
    )


def runs_of(request: Request) -> RunRegistry:
    registry: RunRegistry = request.app.state.summary_runs
    return registry


def fhir_failure(exc: FhirError) -> HTTPException:
    """A FHIR failure as the API reports it: the status class, never the server's text."""
    if isinstance(exc, FhirNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    if isinstance(exc, FhirHttpError) and exc.status in (401, 403):
        return HTTPException(status.HTTP_403_FORBIDDEN, detail="the EHR refused this request")
    return HTTPException(status.HTTP_502_BAD_GATEWAY, detail="the FHIR server failed")


def _check_id(resource_id: str) -> None:
    if not _FHIR_ID.fullmatch(resource_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)


def attachment_path(patient_id: str, resource_type: str, resource_id: str, index: int) -> str:
    """The same-origin URL that streams an attachment (what the summary's links point at)."""
    return f"/api/patients/{patient_id}/attachments/{resource_type}/{resource_id}/{index}"


async def read_patient_resources(fhir: FhirClient, patient_id: str, principal: Principal) -> PatientResources:
    """The summary's five requests, at once (the optional two only where scopes allow them)."""

    async def search(resource_type: str, *, required: bool) -> list[dict[str, Any]]:
        if not required and not principal.may(resource_type, "s"):
            return []
        return await fhir.search_patient(resource_type, patient_id, count=SEARCH_COUNT)

    patient, observations, reports, documents, studies = await asyncio.gather(
        fhir.read("Patient", patient_id),
        *(search(t, required=t in ("Observation", "DiagnosticReport")) for t in SUMMARY_SEARCHES),
    )
    return PatientResources(
        patient=patient, observations=observations, reports=reports, documents=documents, studies=studies
    )


async def patient_summary(
    request: Request, patient_id: str, principal: Annotated[Principal, Depends(current_principal)]
) -> SummaryView:
    patient_id = principal.require_patient(patient_id)
    _check_id(patient_id)
    principal.require("Patient", "r")
    for resource_type in ("Observation", "DiagnosticReport"):
        principal.require(resource_type, "s")
    session = session_of(request)
    async with fhir_for(request, principal) as fhir:
        try:
            resources = await read_patient_resources(fhir, patient_id, principal)
        except FhirError as exc:
            raise fhir_failure(exc) from None
    if resources.patient.get("resourceType") != "Patient" or resources.patient.get("id") != patient_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    # Off the event loop: parsing a long record's sources takes a while the first time.
    return await asyncio.to_thread(
        build_summary_view,
        resources,
        # SMART: without the launch's answer, the app shows the banner.
        need_patient_banner=session.need_patient_banner if session is not None else True,
        attachment_url=lambda rtype, rid, index: attachment_path(patient_id, rtype, rid, index),
    )


def _inline_form(report: dict[str, Any], index: int) -> tuple[bytes, str]:
    forms = report.get("presentedForm") or []
    if not 0 <= index < len(forms):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such attachment")
    form = forms[index]
    content_type = str(form.get("contentType") or "")
    # Only ChartAgent's own inline attachments of the kinds the app opens; a URL is not followed.
    if content_type.split(";")[0].strip().lower() not in SERVED_CONTENT_TYPES or not form.get("data"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such attachment")
    try:
        return base64.b64decode(str(form["data"]), validate=True), content_type
    except (binascii.Error, ValueError):
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, detail="the attachment is not valid base64"
        ) from None


async def _document_pdf(fhir: FhirClient, document: dict[str, Any], index: int) -> bytes:
    try:
        doc = DocumentReference.model_validate(document)
    except ValidationError:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail="the document could not be read") from None
    try:
        pdfs = await fetch_pdfs(doc, fhir)
    except DocumentFetchError:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, detail="the document's PDF could not be read"
        ) from None
    found = next((p for p in pdfs if p.index == index), None)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such attachment")
    return found.data


async def patient_attachment(
    request: Request,
    patient_id: str,
    resource_type: str,
    resource_id: str,
    index: int,
    principal: Annotated[Principal, Depends(current_principal)],
) -> Response:
    patient_id = principal.require_patient(patient_id)
    if resource_type not in _ATTACHMENT_TYPES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    _check_id(resource_id)
    principal.require(resource_type, "r")
    async with fhir_for(request, principal) as fhir:
        try:
            resource = await fhir.read(resource_type, resource_id)
            # Another patient's resource answers like a missing one: its existence is not revealed.
            if resource.get("resourceType") != resource_type or not in_compartment(resource, patient_id):
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
            if resource_type == "DiagnosticReport":
                data, content_type = _inline_form(resource, index)
            else:
                principal.require("Binary", "r")
                data, content_type = await _document_pdf(fhir, resource, index), "application/pdf"
        except FhirError as exc:
            raise fhir_failure(exc) from None
    headers = {**_NO_STORE, "Content-Disposition": "inline", "X-Content-Type-Options": "nosniff"}
    return Response(content=data, media_type=content_type, headers=headers)


async def _review(
    request: Request,
    principal: Principal,
    resource_type: str,
    resource_id: str,
    action: ReviewAction,
    reason: str | None,
) -> ReviewOutcome:
    if resource_type not in REVIEWABLE_TYPES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="only AI Observations and DiagnosticReports")
    _check_id(resource_id)
    patient_id = principal.bound_patient()
    for rtype, interaction in ((resource_type, "r"), (resource_type, "u"), ("Provenance", "c")):
        principal.require(rtype, interaction)  # type: ignore[arg-type]  # literal pairs above
    if principal.fhir_user is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a review needs a user (fhirUser) to record")
    async with fhir_for(request, principal) as fhir:
        try:
            return await apply_review(
                fhir,
                resource_type,
                resource_id,
                patient_id=patient_id,
                action=action,
                reviewer=principal.fhir_user,
                now=datetime.now(UTC),
                reason=reason,
            )
        except ReviewRefused as exc:
            if exc.other_patient:
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not this session's patient") from None
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)) from None
        except ReviewConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        except FhirError as exc:
            raise fhir_failure(exc) from None


async def approve_result(
    request: Request,
    resource_type: str,
    resource_id: str,
    principal: Annotated[Principal, Depends(require_csrf)],
) -> ReviewOutcome:
    return await _review(request, principal, resource_type, resource_id, "approve", None)


async def reject_result(
    request: Request,
    resource_type: str,
    resource_id: str,
    body: Annotated[RejectBody, Body()],
    principal: Annotated[Principal, Depends(require_csrf)],
) -> ReviewOutcome:
    return await _review(request, principal, resource_type, resource_id, "reject", body.reason)


# What a run reads and writes (the summary's transactions: the engine's Device, Observations, a
# DiagnosticReport that may retire an older one, their Provenance). Refused up front when one is
# missing: the EHR would refuse that transaction after the work (Device.c is not in the app's
# default scopes: CHARTAGENT_APP_SCOPES must add patient/Device.c for "Summarize now").
_RUN_SCOPES: Final[tuple[tuple[str, Literal["r", "s", "c", "u"]], ...]] = (
    ("Patient", "r"),
    ("Observation", "s"),
    ("DiagnosticReport", "s"),
    ("Observation", "c"),
    ("DiagnosticReport", "c"),
    ("Provenance", "c"),
    ("Device", "c"),
)


async def start_summary(
    request: Request, patient_id: str, principal: Annotated[Principal, Depends(require_csrf)]
) -> JSONResponse:
    patient_id = principal.require_patient(patient_id)
    _check_id(patient_id)
    for rtype, interaction in _RUN_SCOPES:
        principal.require(rtype, interaction)
    runtime = runtime_of(request)
    opener = context_opener(runtime.settings, lambda: fhir_for(request, principal), runtime.dicomweb_url)
    try:
        run_id, _ = await runs_of(request).start(fhir_base_of(request, principal), patient_id, opener)
    except RunsUnavailable:
        raise _runs_unavailable() from None
    return JSONResponse(RunStarted(run_id=run_id).model_dump(), status_code=status.HTTP_202_ACCEPTED)


async def run_progress(
    request: Request, run_id: str, principal: Annotated[Principal, Depends(current_principal)]
) -> RunView:
    try:
        run = await runs_of(request).get(run_id)
    except RunsUnavailable:
        raise _runs_unavailable() from None
    # Another patient's run, or another FHIR server's, answers like an unknown one.
    if (
        run is None
        or run.fhir_base != fhir_base_of(request, principal)
        or (principal.patient_id is not None and run.patient != principal.patient_id)
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such run")
    return run.view()


def install(app: FastAPI) -> None:
    """Add the patient API's routes to `app`; the run registry lives on `app.state.summary_runs`,
    its shared store open for the app's life."""
    registry = app.state.summary_runs = RunRegistry()

    @asynccontextmanager
    async def runs_lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with open_run_store(app.state.runtime.settings) as store:
            registry.store = store
            try:
                yield
            finally:
                await registry.aclose()
                registry.store = None

    add_lifespan(app, runs_lifespan)
    tags: list[str | Any] = ["patient"]
    app.add_api_route(
        "/api/patients/{patient_id}/summary",
        patient_summary,
        methods=["GET"],
        response_model=SummaryView,
        summary="The patient's AI summary, trends, PDF values, imaging and pending results",
        tags=tags,
    )
    app.add_api_route(
        "/api/patients/{patient_id}/attachments/{resource_type}/{resource_id}/{index}",
        patient_attachment,
        methods=["GET"],
        summary="A report's presentedForm attachment or a document's PDF, streamed",
        tags=tags,
    )
    for action, endpoint in (("approve", approve_result), ("reject", reject_result)):
        app.add_api_route(
            f"/api/results/{{resource_type}}/{{resource_id}}/{action}",
            endpoint,
            methods=["POST"],
            response_model=ReviewOutcome,
            summary=f"{action.capitalize()} a preliminary AI result (idempotent)",
            tags=tags,
        )
    app.add_api_route(
        "/api/patients/{patient_id}/summarize",
        start_summary,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=RunStarted,
        summary="Run the planning graph for this patient now",
        tags=tags,
    )
    app.add_api_route(
        "/api/runs/{run_id}",
        run_progress,
        methods=["GET"],
        response_model=RunView,
        summary="A summary run's progress",
        tags=tags,
    )
