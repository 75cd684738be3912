"""MCP at /mcp against the real app (uvicorn) over the seeded cohort, driven by the `mcp` package's
streamable HTTP client with real credentials: SMART tokens of the EHR stand-in (a full EHR launch,
their FHIR reads going through the stand-in's scope- and compartment-enforcing proxy) and a
service key. The token's patient only; another patient named -> a tool error; no credential ->
401; the note proposal needs the create scopes and never writes: it waits in the app's API
(agent.service.proposal_api) until a person writes it, once, or discards it."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as mt
import pytest
from ehr_fixtures import EhrStandin, EhrStandinFactory
from fhir_reads import count, server_with
from live_app import serve_on
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agent.service import proposal_api
from agent.service.app import create_app
from agent.service.mcp_server import NOT_WRITTEN, PROPOSE_NOTE
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import ServiceKey, Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.stack.ports import free_port
from fhir_adapters.confirmed import WriteNotStored, WriteOutcomeUnknown

pytestmark = pytest.mark.integration

READ_ONLY = "launch openid fhirUser patient/*.rs"
WITH_NOTES = f"{READ_ONLY} patient/DocumentReference.c patient/Device.c patient/Provenance.c"
SERVICE_KEY = "k" * 40


@dataclass(frozen=True)
class Stack:
    fhir: str
    app: str
    mcp: str
    state_dir: Path
    ehr: EhrStandin
    patient: str
    other: str


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(2, 31)


@pytest.fixture(scope="module")
def stack(
    fhir_server_factory: Callable[..., str],
    ehr_standin_factory: EhrStandinFactory,
    cohort: Cohort,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    fhir = server_with(fhir_server_factory, cohort)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    ehr = ehr_standin_factory(app_url=public, fhir_url=fhir)
    state_dir = tmp_path_factory.mktemp("mcp-state")
    settings = Settings(
        state_dir=state_dir,
        app_issuers=(ehr.fhir_url,),
        service_keys={"jobs": ServiceKey(key=SERVICE_KEY, scopes="system/*.rs")},
    )
    app = create_app(settings, public_url=public, fhir_url=fhir)
    patient, other = (p.id for p in cohort.patients)
    with serve_on(app, port) as url:
        yield Stack(
            fhir=fhir, app=url, mcp=f"{url}/mcp", state_dir=state_dir, ehr=ehr, patient=patient, other=other
        )


def bearer(stack: Stack, scopes: str) -> str:
    return stack.ehr.token_for(stack.patient, scopes).access_token.get_secret_value()


@asynccontextmanager
async def mcp_session(url: str, credential: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {credential}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def structured(result: mt.CallToolResult) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def text_of(result: mt.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, mt.TextContent))


async def test_a_patient_token_lists_the_read_tools_and_reads_its_patients_trend(stack: Stack) -> None:
    async with mcp_session(stack.mcp, bearer(stack, READ_ONLY)) as session:
        listed = await session.list_tools()
        names = {t.name for t in listed.tools}
        assert {"lab_trend", "record_manifest", "search_resources"} <= names
        assert PROPOSE_NOTE not in names  # read-only: no proposal offered
        trend = next(t for t in listed.tools if t.name == "lab_trend")
        assert trend.description
        assert "analyte" in trend.input_schema["properties"]

        result = await session.call_tool("lab_trend", {"analyte": "HbA1c"})
    assert not result.is_error, text_of(result)
    body = structured(result)
    assert body["ok"] is True
    assert body["facts"]
    citations = [c for f in body["facts"] for c in f["citations"]]
    assert citations
    assert all(c["reference"].startswith("Observation/") for c in citations)
    # The facts as a model reads them: each line starts with what it cites.
    assert text_of(result).startswith("[Observation/")


async def test_another_patient_named_is_a_tool_error(stack: Stack) -> None:
    async with mcp_session(stack.mcp, bearer(stack, READ_ONLY)) as session:
        result = await session.call_tool(
            "lab_trend", {"analyte": "HbA1c", "patient": f"Patient/{stack.other}"}
        )
        still = await session.call_tool("record_manifest", {})
    assert result.is_error
    assert "refused" in text_of(result)
    assert stack.other not in text_of(result)
    assert not still.is_error  # the session goes on


async def test_without_a_credential_401(stack: Stack) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient() as http:
        none = await http.post(stack.mcp, json=initialize, headers=headers)
        wrong = await http.post(
            stack.mcp, json=initialize, headers={**headers, "Authorization": "Bearer not-a-key-or-token"}
        )
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401


async def test_a_read_only_token_cannot_propose_a_note(stack: Stack) -> None:
    async with mcp_session(stack.mcp, bearer(stack, READ_ONLY)) as session:
        result = await session.call_tool(PROPOSE_NOTE, {"text": "Follow up HbA1c in 3 months."})
    assert result.is_error
    assert "refused" in text_of(result)


async def test_a_proposal_returns_the_pending_write_and_writes_nothing(stack: Stack) -> None:
    before = await count(stack.fhir, "DocumentReference")
    async with mcp_session(stack.mcp, bearer(stack, WITH_NOTES)) as session:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        assert PROPOSE_NOTE in listed
        # A proposal changes ChartAgent (it waits there), not the chart; the read tools change nothing.
        hints = listed[PROPOSE_NOTE].annotations
        assert hints is not None
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (False, False, True)
        assert all(
            t.annotations and t.annotations.read_only_hint for n, t in listed.items() if n != PROPOSE_NOTE
        )
        trend = structured(await session.call_tool("lab_trend", {"analyte": "HbA1c"}))
        cited = trend["facts"][0]["citations"][0]["reference"]
        result = await session.call_tool(
            PROPOSE_NOTE, {"text": "Follow up HbA1c in 3 months.", "sources": [cited]}
        )
        elsewhere = await session.call_tool(PROPOSE_NOTE, {"text": "x", "patient": stack.other})
    assert not result.is_error, text_of(result)
    proposal = structured(result)
    assert proposal["status"] == "proposed"
    assert proposal["written"] is False
    assert NOT_WRITTEN in text_of(result)
    assert proposal["subject"] == f"Patient/{stack.patient}"
    assert proposal["transaction"]["type"] == "transaction"
    doc = next(
        e["resource"]
        for e in proposal["transaction"]["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    )
    assert doc["docStatus"] == "preliminary"
    assert doc["subject"]["reference"] == f"Patient/{stack.patient}"
    assert elsewhere.is_error
    assert await count(stack.fhir, "DocumentReference") == before


async def test_a_service_key_names_the_patient_in_each_call(stack: Stack) -> None:
    async with mcp_session(stack.mcp, SERVICE_KEY) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        unnamed = await session.call_tool("lab_trend", {"analyte": "HbA1c"})
        named = await session.call_tool("lab_trend", {"analyte": "HbA1c", "patient": stack.other})
        proposal = await session.call_tool(PROPOSE_NOTE, {"text": "x", "patient": stack.other})
    assert "lab_trend" in names
    assert PROPOSE_NOTE not in names  # the key grants system/*.rs only
    assert unnamed.is_error
    assert "must name the patient" in text_of(unnamed)
    assert not named.is_error, text_of(named)
    refs = {c["reference"] for f in structured(named)["facts"] for c in f["citations"]}
    assert refs
    assert proposal.is_error


async def _propose(stack: Stack, text: str) -> dict[str, Any]:
    async with mcp_session(stack.mcp, bearer(stack, WITH_NOTES)) as session:
        result = await session.call_tool(PROPOSE_NOTE, {"text": text, "sources": []})
    assert not result.is_error, text_of(result)
    return structured(result)


async def _api(stack: Stack, method: str, path: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.app, timeout=60) as http:
        return await http.request(method, path, headers={"Authorization": f"Bearer {token}"})


async def _notes_with(stack: Stack, identifier: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as http:
        resp = await http.get(f"{stack.fhir}/DocumentReference", params={"identifier": identifier})
    resp.raise_for_status()
    return [e["resource"] for e in resp.json().get("entry", [])]


async def test_a_proposal_waits_for_a_person_and_is_written_once(stack: Stack) -> None:
    proposal = await _propose(stack, "Recheck potassium next week.")
    ident = proposal["identifier"]
    token = bearer(stack, WITH_NOTES)
    listed = await _api(stack, "GET", f"/api/patients/{stack.patient}/proposals", token)
    assert listed.status_code == 200, listed.text
    waiting = {p["id"]: p for p in listed.json()["proposals"]}
    assert waiting[ident]["text"] == "Recheck potassium next week."
    assert await _notes_with(stack, ident) == []  # proposed: nothing in the chart yet

    written = await _api(stack, "POST", f"/api/proposals/{ident}/write", token)
    assert written.status_code == 200, written.text
    assert written.json()["status"] == "written"
    reference = written.json()["reference"]
    notes = await _notes_with(stack, ident)
    assert [f"DocumentReference/{n['id']}" for n in notes] == [reference]
    assert notes[0]["docStatus"] == "preliminary"
    assert notes[0]["description"] == "AI-generated note proposed over MCP"
    body = base64.b64decode(notes[0]["content"][0]["attachment"]["data"]).decode()
    assert body.startswith("AI-generated note proposed by a tool connected to ChartAgent (MCP)")
    assert "Recheck potassium next week." in body

    again = await _api(stack, "POST", f"/api/proposals/{ident}/write", token)
    assert (again.status_code, again.json()["reference"]) == (200, reference)
    after = await _api(stack, "GET", f"/api/patients/{stack.patient}/proposals", token)
    assert ident not in {p["id"] for p in after.json()["proposals"]}
    # Proposed once more: the client is told it is written, and nothing new waits.
    repeat = await _propose(stack, "Recheck potassium next week.")
    assert (repeat["status"], repeat["written"], repeat["reference"]) == ("written", True, reference)
    assert len(await _notes_with(stack, ident)) == 1


async def test_a_discarded_proposal_writes_nothing(stack: Stack) -> None:
    proposal = await _propose(stack, "Consider statin.")
    ident = proposal["identifier"]
    token = bearer(stack, WITH_NOTES)
    discarded = await _api(stack, "POST", f"/api/proposals/{ident}/discard", token)
    assert (discarded.status_code, discarded.json()["status"]) == (200, "discarded")
    refused = await _api(stack, "POST", f"/api/proposals/{ident}/write", token)
    assert refused.status_code == 409
    assert await _notes_with(stack, ident) == []


async def test_another_patients_proposal_is_not_found_and_a_read_only_token_cannot_write(
    stack: Stack,
) -> None:
    proposal = await _propose(stack, "Refer to nephrology.")
    ident = proposal["identifier"]
    other = stack.ehr.token_for(stack.other, WITH_NOTES).access_token.get_secret_value()
    listed = await _api(stack, "GET", f"/api/patients/{stack.other}/proposals", other)
    assert listed.status_code == 200
    assert ident not in {p["id"] for p in listed.json()["proposals"]}
    for action in ("write", "discard"):
        answer = await _api(stack, "POST", f"/api/proposals/{ident}/{action}", other)
        assert answer.status_code == 404
        assert stack.patient not in answer.text
    # The proposal's own patient, without the create scopes: refused, still waiting.
    read_only = await _api(stack, "POST", f"/api/proposals/{ident}/write", bearer(stack, READ_ONLY))
    assert read_only.status_code == 403
    # A service key has no person to record: it neither writes nor discards.
    keyed = await _api(stack, "POST", f"/api/proposals/{ident}/discard", SERVICE_KEY)
    assert keyed.status_code == 403
    waiting = await _api(stack, "GET", f"/api/patients/{stack.patient}/proposals", bearer(stack, READ_ONLY))
    assert ident in {p["id"] for p in waiting.json()["proposals"]}
    assert await _notes_with(stack, ident) == []


@pytest.mark.parametrize(
    ("fault", "status_code", "says"),
    [
        (WriteOutcomeUnknown("ReadTimeout"), 504, "the EHR may hold the note"),
        (WriteNotStored("HTTP 500"), 502, "the proposal still waits"),
    ],
)
async def test_a_write_whose_outcome_is_unknown_or_failed_leaves_the_proposal_waiting(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: Exception, status_code: int, says: str
) -> None:
    """The EHR's answer lost after a possible commit, or a refusal that a read-back showed stored
    nothing: faults a real server does not produce on demand, so the transaction's poster raises them."""
    proposal = await _propose(stack, f"Repeat lipid panel ({status_code}).")
    ident = proposal["identifier"]
    token = bearer(stack, WITH_NOTES)

    async def failing(*_: object) -> None:
        raise fault

    with monkeypatch.context() as patched:
        patched.setattr(proposal_api, "post_transaction", failing)
        answer = await _api(stack, "POST", f"/api/proposals/{ident}/write", token)
    assert answer.status_code == status_code
    assert says in answer.json()["detail"]
    listed = await _api(stack, "GET", f"/api/patients/{stack.patient}/proposals", token)
    assert ident in {p["id"] for p in listed.json()["proposals"]}  # not marked written on a guess
    # Written again, the note lands once.
    again = await _api(stack, "POST", f"/api/proposals/{ident}/write", token)
    assert again.status_code == 200, again.text
    assert len(await _notes_with(stack, ident)) == 1


async def test_a_proposal_the_service_cannot_keep_is_a_tool_error_that_says_nothing_waits(
    stack: Stack,
) -> None:
    with sqlite3.connect(stack.state_dir / SERVICE_DATABASE_FILE) as db:
        db.execute("ALTER TABLE note_proposals RENAME TO note_proposals_away")
    try:
        async with mcp_session(stack.mcp, bearer(stack, WITH_NOTES)) as session:
            result = await session.call_tool(PROPOSE_NOTE, {"text": "Order an echocardiogram."})
        listed = await _api(
            stack, "GET", f"/api/patients/{stack.patient}/proposals", bearer(stack, WITH_NOTES)
        )
    finally:
        with sqlite3.connect(stack.state_dir / SERVICE_DATABASE_FILE) as db:
            db.execute("ALTER TABLE note_proposals_away RENAME TO note_proposals")
    assert result.is_error
    assert "Nothing was written and nothing waits for a person" in text_of(result)
    assert NOT_WRITTEN not in text_of(result)
    assert listed.status_code == 503  # the app says it cannot read them, not that none wait
