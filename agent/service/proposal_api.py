"""The app's routes for notes proposed over MCP: a person writes them to the chart or discards them.

    GET  /api/patients/{id}/proposals       {"proposals": [{id, text, sources, proposed_at, proposer}]}
    POST /api/proposals/{id}/write           {"id", "status": "written", "reference"}
    POST /api/proposals/{id}/discard         {"id", "status": "discarded"}

The proposals are kept by agent.service.note_proposals (opened here, in the app's lifespan, and
shared with agent.service.mcp_server through the runtime). A proposal is reached only through the
caller's own patient on the caller's own FHIR server: another patient's answers 404, as an
unknown one does. Writing and discarding are a person's decisions: they need a patient-bound
caller with a `fhirUser` (recorded as who decided) and, for a session, the CSRF token; writing
needs the create scopes of what a note writes (`threads.NOTE_WRITES`).

On the wire, a write is the proposal's transaction, posted with the caller's own grant
(`fhir_adapters.confirmed.post_transaction`: conditional creates, read back when the answer is
lost): `POST {fhir}` (Bundle: DocumentReference, Device, Provenance, each `ifNoneExist` on its
identifier). Written twice, or by two replicas at once, the note is one DocumentReference. When
the outcome stays unknown the proposal keeps waiting and the answer says that the note may be in
the chart: writing it again completes it without a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, HTTPException, Request, status
from pydantic import BaseModel

from agent.metrics import proposal_event
from agent.service.authz import current_principal
from agent.service.csrf import require_csrf
from agent.service.fhir_access import fhir_base_of, fhir_for
from agent.service.lifespans import add_lifespan
from agent.service.note_proposals import (
    ProposalStatus,
    ProposalStore,
    ProposalsUnavailable,
    StoredProposal,
    open_proposals,
)
from agent.service.patient_api import fhir_failure
from agent.service.principal import Principal
from agent.service.runtime import runtime_of
from agent.service.threads import NOTE_WRITES, may_save_notes
from fhir_adapters import FhirError
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown, post_transaction
from tools.writeback.chat_note import note_reference

__all__ = ["ProposalDecision", "ProposalList", "ProposalView", "install"]

log = logging.getLogger(__name__)

_NOT_FOUND: Final = "no such proposal for this patient"
_UNAVAILABLE: Final = "the proposed notes could not be read or recorded; try again"


class ProposalView(BaseModel):
    id: str
    text: str
    sources: list[str]
    proposed_at: datetime
    # Who proposed it: the MCP caller's label (a token's client id, a service key's name).
    proposer: str


class ProposalList(BaseModel):
    proposals: list[ProposalView]


class ProposalDecision(BaseModel):
    id: str
    status: ProposalStatus
    # What the note was written as (DocumentReference/123); None when discarded.
    reference: str | None = None


def _unavailable() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=_UNAVAILABLE)


def _store(request: Request) -> ProposalStore:
    store = runtime_of(request).proposals
    if store is None:
        raise _unavailable()
    return store


async def list_proposals(
    request: Request, patient_id: str, principal: Annotated[Principal, Depends(current_principal)]
) -> ProposalList:
    patient_id = principal.require_patient(patient_id)
    principal.require("Patient", "r")
    try:
        waiting = await _store(request).pending(
            fhir_base_of(request, principal), patient_id, datetime.now(UTC)
        )
    except ProposalsUnavailable:
        raise _unavailable() from None
    return ProposalList(
        proposals=[
            ProposalView(
                id=p.id, text=p.text, sources=p.sources, proposed_at=p.proposed_at, proposer=p.proposer
            )
            for p in waiting
        ]
    )


async def _decider(
    request: Request, principal: Principal, proposal_id: str
) -> tuple[str, str, StoredProposal]:
    """A person's decision on a proposal of their own patient: (FHIR base, fhirUser, the proposal)."""
    patient_id = principal.bound_patient()
    if principal.fhir_user is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a decision needs a user (fhirUser) to record")
    base = fhir_base_of(request, principal)
    try:
        proposal = await _store(request).get(base, proposal_id, datetime.now(UTC))
    except ProposalsUnavailable:
        raise _unavailable() from None
    if proposal is None or proposal.patient != patient_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    return base, principal.fhir_user, proposal


async def write_proposal(
    request: Request, proposal_id: str, principal: Annotated[Principal, Depends(require_csrf)]
) -> ProposalDecision:
    base, user, proposal = await _decider(request, principal, proposal_id)
    if proposal.status == "discarded":
        raise HTTPException(status.HTTP_409_CONFLICT, detail="this proposal was discarded")
    if proposal.status == "written":
        return ProposalDecision(id=proposal.id, status="written", reference=proposal.reference)
    if not may_save_notes(principal):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"scope does not allow creating {', '.join(NOTE_WRITES)}"
        )
    async with fhir_for(request, principal) as fhir:
        try:
            result = await post_transaction(fhir, proposal.transaction)
        except WriteNotStored:
            raise HTTPException(
                status.HTTP_502_BAD_GATEWAY,
                detail="the EHR did not store the note (a read shows none of it); the proposal still waits",
            ) from None
        except WriteOutcomeUnknown:
            raise HTTPException(
                status.HTTP_504_GATEWAY_TIMEOUT,
                detail=(
                    "the write's outcome is unknown: the EHR may hold the note. Write it again: "
                    "that completes it without a duplicate"
                ),
            ) from None
        except FhirError as exc:
            raise fhir_failure(exc) from None
    reference = note_reference(result, proposal.id)
    try:
        await _store(request).decide(
            base, proposal.id, "written", by=user, now=datetime.now(UTC), reference=reference
        )
    except ProposalsUnavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=(
                f"the note was written as {reference}, but the proposal could not be marked written: "
                "it may be shown again, and writing it again finds the note without a duplicate"
            ),
        ) from None
    log.info("proposal api: a proposed note was written")
    proposal_event("written")
    return ProposalDecision(id=proposal.id, status="written", reference=reference)


async def discard_proposal(
    request: Request, proposal_id: str, principal: Annotated[Principal, Depends(require_csrf)]
) -> ProposalDecision:
    base, user, proposal = await _decider(request, principal, proposal_id)
    try:
        after = await _store(request).decide(base, proposal.id, "discarded", by=user, now=datetime.now(UTC))
    except ProposalsUnavailable:
        raise _unavailable() from None
    if after is None:  # forgotten meanwhile
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=_NOT_FOUND)
    if after.status == "written":
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"this note was written already, as {after.reference}"
        )
    proposal_event("discarded")
    return ProposalDecision(id=after.id, status="discarded")


def install(app: FastAPI) -> None:
    """Add the routes, and open the proposals' store for the life of the app."""

    @asynccontextmanager
    async def open_store(_: FastAPI) -> AsyncIterator[None]:
        runtime = app.state.runtime
        async with open_proposals(runtime.settings) as store:
            runtime.proposals = store
            try:
                yield
            finally:
                runtime.proposals = None

    add_lifespan(app, open_store)
    tags: list[str | Any] = ["proposals"]
    app.add_api_route(
        "/api/patients/{patient_id}/proposals",
        list_proposals,
        methods=["GET"],
        response_model=ProposalList,
        summary="Notes proposed over MCP for this patient, waiting for a person",
        tags=tags,
    )
    for action, endpoint in (("write", write_proposal), ("discard", discard_proposal)):
        app.add_api_route(
            f"/api/proposals/{{proposal_id}}/{action}",
            endpoint,
            methods=["POST"],
            response_model=ProposalDecision,
            summary=f"{action.capitalize()} a proposed note (idempotent)",
            tags=tags,
        )
