"""MCP at `/mcp` (streamable HTTP, `mcp` SDK): the tool registry's read tools and the note proposal.

Every HTTP request is authorized first, by the same `current_principal` as the API (a SMART
access token or a service key in `Authorization: Bearer`; 401 otherwise). The SMART app's session
cookie is not accepted here: MCP is for programs, and a cookie would make a cross-site POST
carry the browser's session (the API guards those with CSRF tokens, which an MCP client has not).
The transport is stateless: no MCP session outlives a request, so no request acts on a grant
checked for another.

- A patient-bound caller (a token with a `patient`) reaches only its patient: a tool call naming
  another one is refused by the registry and comes back as a tool error. A system caller (a
  service key, a `system/` token) names the patient in each call's `patient` argument.
- Scopes per tool: every read tool reads the patient's record (the Patient and the record's
  types, `threads.CHAT_READS`), so it needs `.r` and `.s` on each; `propose_note` needs `.c` on
  what a confirmed note writes (`threads.NOTE_WRITES`).
- `propose_note` never writes to FHIR: the proposal waits in ChartAgent's shared database
  (agent.service.note_proposals) until a person who opens the patient in the SMART app writes it
  to the chart or discards it (agent.service.proposal_api). The answer is the transaction that
  write would post (the chat's note: tools.writeback.chat_note), marked not written; a proposal
  that could not be kept is a tool error, so the client is never told a person will see it.
- No model runs here: tools that would ask MedGemma (image analysis) report it as skipped; the
  MCP client brings its own model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import mcp_types as mt
from fastapi import FastAPI, HTTPException, status
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agent.connections import open_dicomweb_client
from agent.metrics import proposal_event
from agent.service.authz import current_principal
from agent.service.fhir_access import fhir_base_of, fhir_for
from agent.service.lifespans import add_lifespan
from agent.service.note_proposals import NewProposal, ProposalsUnavailable, StoredProposal
from agent.service.principal import Principal
from agent.service.record_reuse import reused_record
from agent.service.runtime import runtime_of
from agent.service.threads import CHAT_READS, NOTE_WRITES, may_save_notes
from tools.registry import PatientScoped, ToolContext, ToolRegistry, ToolResult, read_tools
from tools.registry.registry import scope_refusal
from tools.writeback.ai_labels import ModelIdentity, chartagent_version
from tools.writeback.builders import is_patient_subject
from tools.writeback.chat_note import build_note_transaction

__all__ = ["MCP_PATH", "PROPOSE_NOTE", "NoteProposal", "ProposeNoteInput", "install"]

log = logging.getLogger(__name__)

MCP_PATH: Final = "/mcp"
PROPOSE_NOTE: Final = "propose_note"
# The engine a proposed note is credited to: the MCP client's model wrote its text.
MCP_ENGINE: Final = "chartagent-mcp-client"
_PRINCIPAL: Final = "chartagent.principal"
_REFERENCE: Final = r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$"
_PATIENT_HELP: Final = (
    "The patient (an id or Patient/<id>). Required with a service key or a system token; a "
    "patient-bound token reaches only its own patient and may omit it."
)
NOT_WRITTEN: Final = (
    "Proposed, not written: it waits in ChartAgent's app, where a person who opens this patient "
    "writes it to the chart or discards it."
)


class ProposeNoteInput(PatientScoped):
    text: str = Field(min_length=1, max_length=6000, description="The note to propose for the chart.")
    sources: list[Annotated[str, Field(pattern=_REFERENCE)]] = Field(
        default_factory=list,
        max_length=200,
        description="FHIR references the note rests on (Observation/1, ...), as tool results cited them.",
    )


class NoteProposal(BaseModel):
    # "proposed": it waits for a person; "written": a person wrote this same note already
    # (`reference`), and nothing new waits.
    status: Literal["proposed", "written"] = "proposed"
    written: bool = False
    message: str = NOT_WRITTEN
    subject: str
    text: str
    sources: list[str]
    # The note's business identifier: confirming the same proposal twice writes it once.
    identifier: str
    # The FHIR transaction a confirmation would post (an AI-labelled, preliminary DocumentReference
    # with its Device and Provenance).
    transaction: dict[str, Any]
    # What the note was written as, when a person wrote it already.
    reference: str | None = None


@dataclass
class _Running:
    """The session manager of the app's current lifespan (one per start: it cannot be restarted)."""

    manager: StreamableHTTPSessionManager | None = None
    registry: ToolRegistry = field(default_factory=read_tools)


def install(app: FastAPI) -> None:
    """Serve MCP at `/mcp`; its session manager runs inside the app's lifespan."""
    running = _Running()
    server: Server[Any] = Server(
        "chartagent",
        version=chartagent_version(),
        instructions=(
            "ChartAgent's tools over one patient's FHIR record: facts with citations (FHIR references). "
            "propose_note only proposes a note: it waits in ChartAgent's app for a person to write it "
            "to the chart or discard it."
        ),
        on_list_tools=_list_tools(running),
        on_call_tool=_call_tool(running),
    )

    @asynccontextmanager
    async def run_mcp(_: FastAPI) -> AsyncIterator[None]:
        manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
        async with manager.run():
            running.manager = manager
            try:
                yield
            finally:
                running.manager = None

    add_lifespan(app, run_mcp)
    # An ASGI endpoint (the transport answers every method itself), not a FastAPI route.
    app.router.routes.append(Route(MCP_PATH, endpoint=_AuthorizedMcp(running), include_in_schema=False))


class _AuthorizedMcp:
    """The ASGI endpoint: the caller's principal first, then the MCP transport."""

    def __init__(self, running: _Running) -> None:
        self._running = running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            principal = await current_principal(request)
            if principal.kind == "session":
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    detail="MCP takes a bearer token or a service key, not the app's session",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        except HTTPException as exc:
            await JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)(
                scope, receive, send
            )
            return
        manager = self._running.manager
        if manager is None:
            await JSONResponse({"detail": "MCP is not running"}, status.HTTP_503_SERVICE_UNAVAILABLE)(
                scope, receive, send
            )
            return
        scope[_PRINCIPAL] = principal  # the tool handlers read it from the request's scope
        await manager.handle_request(scope, receive, send)


def _caller(ctx: ServerRequestContext[Any, Any]) -> tuple[Request, Principal]:
    request = ctx.request
    principal = request.scope.get(_PRINCIPAL) if isinstance(request, Request) else None
    if not isinstance(request, Request) or not isinstance(principal, Principal):
        raise RuntimeError("an MCP request reached a handler without its principal")
    return request, principal


def _may_read(principal: Principal) -> bool:
    return all(principal.may(t, "r") and principal.may(t, "s") for t in CHAT_READS)


def _with_patient_help(schema: dict[str, Any]) -> dict[str, Any]:
    patient = schema.get("properties", {}).get("patient")
    if isinstance(patient, dict):
        patient["description"] = _PATIENT_HELP
    return schema


def _list_tools(running: _Running) -> Any:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListToolsResult:
        _, principal = _caller(ctx)
        tools: list[mt.Tool] = []
        if _may_read(principal):
            tools += [
                mt.Tool(
                    name=f["name"],
                    description=f["description"],
                    input_schema=_with_patient_help(f["parameters"]),
                    annotations=mt.ToolAnnotations(read_only_hint=True, open_world_hint=False),
                )
                for f in (t["function"] for t in running.registry.openai_tools())
            ]
        if may_save_notes(principal):
            tools.append(
                mt.Tool(
                    name=PROPOSE_NOTE,
                    description=(
                        "Propose a note for the patient's chart. Nothing is written: the proposal waits "
                        "in ChartAgent's app, where a person who opens this patient writes it to the "
                        "chart or discards it; the answer is the write it would make."
                    ),
                    input_schema=_with_patient_help(ProposeNoteInput.model_json_schema()),
                    # It changes ChartAgent (a proposal waits), not the chart; the same note
                    # proposed again is the same proposal.
                    annotations=mt.ToolAnnotations(
                        read_only_hint=False,
                        destructive_hint=False,
                        idempotent_hint=True,
                        open_world_hint=False,
                    ),
                )
            )
        return mt.ListToolsResult(tools=tools)

    return list_tools


def _error(text: str) -> mt.CallToolResult:
    return mt.CallToolResult(content=[mt.TextContent(type="text", text=text)], is_error=True)


def _patient_of(principal: Principal, args: Mapping[str, Any]) -> str | None:
    """The patient the call works on: a bound caller's own; a system caller's `patient` argument."""
    if principal.patient_id is not None:
        return principal.patient_id
    named = args.get("patient")
    if not isinstance(named, str) or not named.strip():
        return None
    return named.strip().removeprefix("Patient/")


def _call_tool(running: _Running) -> Any:
    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult:
        request, principal = _caller(ctx)
        name = params.name
        args = dict(params.arguments or {})
        if name == PROPOSE_NOTE:
            if not may_save_notes(principal):
                return _error(f"refused: the token's scopes do not allow creating {', '.join(NOTE_WRITES)}")
        elif name in running.registry.names:
            if not _may_read(principal):
                return _error("refused: the token's scopes do not allow reading this patient's record")
        else:
            return _error(f"unknown tool {name!r}")
        patient = _patient_of(principal, args)
        if patient is None:
            return _error("a service key or system token must name the patient (the `patient` argument)")
        if name == PROPOSE_NOTE:
            return await _proposal(request, principal, args, patient)
        runtime = runtime_of(request)
        async with AsyncExitStack() as stack:
            fhir = await stack.enter_async_context(fhir_for(request, principal))
            pacs = None
            if runtime.dicomweb_url is not None:
                pacs = await stack.enter_async_context(
                    open_dicomweb_client(runtime.dicomweb_url, runtime.settings)
                )
            tools = ToolContext(
                fhir=fhir,
                patient_id=patient,
                dicomweb=pacs,
                model=None,
                lab_timezone=runtime.settings.lab_zone,
                record_source=reused_record(
                    runtime.records, principal, fhir_base_of(request, principal), fhir, patient
                ),
            )
            result = await running.registry.call(name, args, tools)
        if not result.ok:
            log.info("mcp: tool %s refused or failed", name)
        return _tool_result(result)

    return call_tool


def _tool_result(result: ToolResult) -> mt.CallToolResult:
    """The facts as a model reads them (`[Observation/1] text`) and the whole result, citations
    included, as structured content."""
    lines = result.fact_lines()
    if result.note:
        lines.append(f"Note: {result.note}")
    if result.error:
        lines.append(result.error)
    return mt.CallToolResult(
        content=[mt.TextContent(type="text", text="\n".join(lines) or "(no facts)")],
        structured_content=result.model_dump(mode="json"),
        is_error=not result.ok,
    )


async def _proposal(
    request: Request, principal: Principal, args: Mapping[str, Any], patient: str
) -> mt.CallToolResult:
    try:
        parsed = ProposeNoteInput.model_validate(dict(args))
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "input" for e in exc.errors()})
        return _error(f"invalid input: {', '.join(fields)}")
    refusal = scope_refusal(parsed.patient, patient)
    if refusal is not None:
        return _error(refusal)
    if not is_patient_subject(f"Patient/{patient}"):  # the sources' form is checked by the input model
        return _error("invalid input: the patient is not a FHIR id")
    store = runtime_of(request).proposals
    if store is None:
        return _error(f"not proposed: this service keeps no proposals (not started). {_NOTHING}")
    now = datetime.now(UTC)
    bundle, token = build_note_transaction(
        subject=f"Patient/{patient}",
        text=parsed.text,
        sources=parsed.sources,
        identity=ModelIdentity(name=MCP_ENGINE, version=chartagent_version()),
        created=now,
        origin="mcp",
    )
    sources = sorted(set(parsed.sources))
    try:
        kept = await store.propose(
            NewProposal(
                fhir_base=fhir_base_of(request, principal),
                id=token,
                patient=patient,
                text=parsed.text,
                sources=sources,
                proposer=principal.label,
                transaction=bundle,
            ),
            now,
        )
    except ProposalsUnavailable:
        log.warning("mcp: a note proposal could not be kept")
        return _error(f"not proposed: the service's database could not keep it. {_NOTHING}")
    if kept.status == "pending":
        proposal_event("proposed")
    return _proposed(kept, f"Patient/{patient}")


# After a proposal that was not kept: what is true of the chart and of the app.
_NOTHING: Final = "Nothing was written and nothing waits for a person; propose it again later."


def _proposed(kept: StoredProposal, subject: str) -> mt.CallToolResult:
    """The answer for a kept proposal: waiting for a person, or written already by one."""
    written = kept.status == "written"
    proposal = NoteProposal(
        status="written" if written else "proposed",
        written=written,
        message=f"A person wrote this same note already, as {kept.reference}." if written else NOT_WRITTEN,
        subject=subject,
        text=kept.text,
        sources=kept.sources,
        identifier=kept.id,
        transaction=kept.transaction,
        reference=kept.reference,
    )
    head = json.dumps({"status": proposal.status, "written": written})
    return mt.CallToolResult(
        content=[mt.TextContent(type="text", text=f"{head}\n{proposal.message}")],
        structured_content=proposal.model_dump(mode="json"),
        is_error=False,
    )
