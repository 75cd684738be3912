"""The chat endpoint served by uvicorn (the real app, `create_app`) over the seeded cohort in a
real FHIR server, planned by a scripted OpenAI-compatible server through native tool calls:
the SSE stream carries the tool calls with cited results and the answer; a note is proposed
(outcome interrupt), written once on approval; a busy thread is refused, by a second replica of
the app sharing its state database too; a client that leaves
cancels its run; threads belong to one patient; errors carry no patient data."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ehr_fixtures import EhrStandin, EhrStandinFactory
from fhir_reads import count, get, search, server_with
from live_app import serve_on
from planner_server import ScriptedPlanner, answer, call, question, references, tool_answers
from prometheus_client import REGISTRY

from agent.chat.retrieval import NO_MODEL_NOTE
from agent.service.agui import WRITE_REFUSED
from agent.service.agui_events import INTERRUPT_REASON
from agent.service.app import create_app
from agent.settings import Settings
from agent.testbed.cohort import Cohort, generate_cohort
from agent.testbed.stack.ports import free_port

pytestmark = pytest.mark.integration

A1C = "4548-4"
READS = "launch openid fhirUser patient/*.rs"
NOTE_SCOPES = "patient/DocumentReference.c patient/Device.c patient/Provenance.c"
SAVE = "save this as a note"
NOTE_TEXT = "HbA1c reviewed in chat."


def script(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A planner that reads the HbA1c trend, answers citing its first reference, or proposes."""
    asked = question(messages)
    if SAVE in asked:
        return call("propose_note", {"text": NOTE_TEXT})
    trends = tool_answers(messages, "lab_trend")
    if not trends:
        return call("lab_trend", {"analyte": "HbA1c"})
    cited = references(trends[-1])
    return answer(f"The latest HbA1c is in the record [{cited[0]}]." if cited else "No HbA1c found.")


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(3, 11)


@pytest.fixture(scope="module")
def fhir(fhir_server_factory: Callable[..., str], cohort: Cohort) -> str:
    return server_with(fhir_server_factory, cohort)


@pytest.fixture(scope="module")
def planner() -> ScriptedPlanner:
    return ScriptedPlanner(script)


@dataclass(frozen=True)
class Stack:
    url: str
    ehr: EhrStandin
    # A second EHR whose FHIR proxy the error test stops (its tokens stay valid: JWKS cached).
    failing_ehr: EhrStandin
    # A second replica of the app: the same settings and state database, its own process state.
    replica_url: str


@pytest.fixture(scope="module")
def stack(
    fhir: str,
    planner: ScriptedPlanner,
    ehr_standin_factory: EhrStandinFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    ehr = ehr_standin_factory(app_url=public, fhir_url=fhir)
    failing = ehr_standin_factory(app_url=public, fhir_url=fhir)
    with serve_on(planner.app, free_port(), "scripted-planner") as planner_url:
        settings = Settings(
            state_dir=tmp_path_factory.mktemp("agui-state"),
            app_issuers=(ehr.fhir_url, failing.fhir_url),
            planner_url=f"{planner_url}/v1",
            planner_model="scripted-planner",
            planner_protocol="tools",
        )
        app = create_app(settings, public_url=public, fhir_url=fhir)
        replica = create_app(settings, public_url=public, fhir_url=fhir)
        with serve_on(app, port) as url, serve_on(replica, free_port(), "replica") as replica_url:
            yield Stack(url=url, ehr=ehr, failing_ehr=failing, replica_url=replica_url)


@pytest.fixture(scope="module")
def app_url(stack: Stack) -> str:
    return stack.url


def chat_runs(outcome: str) -> float:
    """Chat runs that ended so, as this process's metrics count them (the apps run in it)."""
    return REGISTRY.get_sample_value("chartagent_chat_runs_total", {"outcome": outcome}) or 0.0


def bearer(ehr: EhrStandin, patient: str, scopes: str) -> dict[str, str]:
    """The headers of a SMART access token of a real EHR launch for `patient` with `scopes`."""
    token = ehr.token_for(patient, scopes).access_token.get_secret_value()
    return {"Authorization": f"Bearer {token}"}


async def patient_with_a1c(base: str, cohort: Cohort) -> tuple[str, str]:
    """A cohort patient with HbA1c results and the reference of the newest."""
    for p in cohort.patients:
        found = await search(base, "Observation", patient=p.id, code=f"http://loinc.org|{A1C}")
        if found:
            newest = max(found, key=lambda o: o["effectiveDateTime"])
            return p.id, f"Observation/{newest['id']}"
    raise AssertionError("no cohort patient has HbA1c results")


def run_body(thread: str, text: str | None = None, **extra: Any) -> dict[str, Any]:
    messages = [{"id": str(uuid.uuid4()), "role": "user", "content": text}] if text else []
    return {"threadId": thread, "runId": str(uuid.uuid4()), "messages": messages, **extra}


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


async def run(url: str, headers: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{url}/api/agent", json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return [e async for e in sse_events(resp)]


async def aget(url: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.get(url, headers=headers)


async def apost(url: str, json: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(url, json=json, headers=headers)


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")


async def test_tool_calls_stream_with_their_citations_and_the_answer(
    stack: Stack, app_url: str, fhir: str, cohort: Cohort
) -> None:
    me, newest = await patient_with_a1c(fhir, cohort)
    other = next(p.id for p in cohort.patients if p.id != me)
    headers = bearer(stack.ehr, me, READS)
    # A body naming another patient changes nothing: the patient is the principal's.
    body = run_body(
        "t-cited", "What is the latest HbA1c?", state={"patient": other}, forwardedProps={"patient": other}
    )
    answered = chat_runs("answered")
    events = await run(app_url, headers, body)
    assert chat_runs("answered") == answered + 1  # the app's metrics (agent.metrics) count it
    kinds = [e["type"] for e in events]
    assert kinds[0] == "RUN_STARTED"
    assert kinds[-1] == "RUN_FINISHED"
    assert "RUN_ERROR" not in kinds
    starts = [e for e in events if e["type"] == "TOOL_CALL_START"]
    assert [s["toolCallName"] for s in starts] == ["record_manifest", "lab_trend"]
    for s in starts:  # each call: START, ARGS, END, then its RESULT
        mine = [e["type"] for e in events if e.get("toolCallId") == s["toolCallId"]]
        assert mine == ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"]
    trend = next(
        json.loads(e["content"])
        for e in events
        if e["type"] == "TOOL_CALL_RESULT" and e["toolCallId"] == starts[1]["toolCallId"]
    )
    cited = {c["reference"] for f in trend["facts"] for c in f["citations"]}
    assert newest in cited
    assert text_of(events) == f"The latest HbA1c is in the record [{newest}]."
    finished = events[-1]
    assert "outcome" not in finished
    assert [c["reference"] for c in finished["result"]["citations"]] == [newest]
    assert finished["result"]["model"] == "scripted-planner"
    history = (await aget(f"{app_url}/api/threads/t-cited", headers=headers)).json()
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "What is the latest HbA1c?"),
        ("assistant", text_of(events)),
    ]
    assert [c["reference"] for c in history["messages"][1]["citations"]] == [newest]
    assert history["pending"] is None


async def test_a_note_waits_for_approval_and_is_written_once(
    stack: Stack, app_url: str, fhir: str, cohort: Cohort
) -> None:
    me = cohort.patients[0].id
    headers = bearer(stack.ehr, me, f"{READS} {NOTE_SCOPES}")
    before = await count(fhir, "DocumentReference", patient=me)
    proposed = await run(app_url, headers, run_body("t-note", f"Please {SAVE}."))
    finished = proposed[-1]
    assert finished["type"] == "RUN_FINISHED"
    (interrupt,) = finished["outcome"]["interrupts"]
    assert finished["outcome"]["type"] == "interrupt"
    assert interrupt["reason"] == INTERRUPT_REASON
    assert interrupt["message"] == NOTE_TEXT
    assert NOTE_TEXT in text_of(proposed)
    assert await count(fhir, "DocumentReference", patient=me) == before  # nothing before the yes
    pending = (await aget(f"{app_url}/api/threads/t-note", headers=headers)).json()["pending"]
    assert pending == {"interruptId": interrupt["id"], "proposal": NOTE_TEXT}

    # An approval naming another (stale) proposal approves nothing.
    stale = [{"interruptId": "not-this-one", "status": "resolved", "payload": "approve"}]
    refused = await apost(f"{app_url}/api/agent", json=run_body("t-note", resume=stale), headers=headers)
    assert refused.status_code == 409
    assert await count(fhir, "DocumentReference", patient=me) == before
    # AG-UI 1.0's own resume form, naming the proposal that waits.
    current = [{"interruptId": interrupt["id"], "status": "resolved", "payload": "approve"}]
    approved = await run(app_url, headers, run_body("t-note", resume=current))
    assert "outcome" not in approved[-1]
    assert text_of(approved).startswith("Saved the note as DocumentReference/")
    assert await count(fhir, "DocumentReference", patient=me) == before + 1
    again = await apost(
        f"{app_url}/api/agent",
        json=run_body("t-note", forwardedProps={"command": {"resume": "approve"}}),
        headers=headers,
    )
    assert again.status_code == 409
    assert await count(fhir, "DocumentReference", patient=me) == before + 1
    history = (await aget(f"{app_url}/api/threads/t-note", headers=headers)).json()
    assert history["pending"] is None
    assert history["messages"][-1]["content"].startswith("Saved the note as DocumentReference/")


async def test_without_the_create_scope_the_proposal_is_refused(
    stack: Stack, app_url: str, fhir: str, cohort: Cohort
) -> None:
    me = cohort.patients[1].id
    headers = bearer(stack.ehr, me, READS)
    before = await count(fhir, "DocumentReference", patient=me)
    events = await run(app_url, headers, run_body("t-refused", SAVE))
    assert "outcome" not in events[-1]
    assert text_of(events) == WRITE_REFUSED
    assert await count(fhir, "DocumentReference", patient=me) == before
    resume = await apost(
        f"{app_url}/api/agent",
        json=run_body("t-refused", forwardedProps={"command": {"resume": "approve"}}),
        headers=headers,
    )
    assert resume.status_code == 403
    # And a principal without the chat's read scopes gets no run at all.
    narrow = bearer(stack.ehr, me, "launch openid patient/Observation.rs")
    assert (
        await apost(f"{app_url}/api/agent", json=run_body("t-x", "hi"), headers=narrow)
    ).status_code == 403


async def test_a_busy_thread_is_refused_and_a_client_that_leaves_cancels_its_run(
    stack: Stack, app_url: str, planner: ScriptedPlanner, cohort: Cohort
) -> None:
    me = cohort.patients[2].id
    headers = bearer(stack.ehr, me, f"{READS} {NOTE_SCOPES}")
    planner.delay_s = 5.0  # the planner thinks long: the run is in progress
    try:
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream(
                "POST", f"{app_url}/api/agent", json=run_body("t-busy", SAVE), headers=headers
            ) as resp,
        ):
            assert resp.status_code == 200
            seen = []
            # Read without closing the stream (leaving a loop over it would close it): the client
            # stays while the run is in progress.
            events_of = sse_events(resp)
            while not seen or seen[-1] != "TOOL_CALL_RESULT":  # the manifest: the planner is asked now
                seen.append((await anext(events_of))["type"])
            second = await http.post(
                f"{app_url}/api/agent", json=run_body("t-busy", "again"), headers=headers
            )
            assert second.status_code == 409
            # Another replica sharing the state database refuses it too (its own process has no
            # run on the thread: the shared claim says so).
            elsewhere = await http.post(
                f"{stack.replica_url}/api/agent", json=run_body("t-busy", "again"), headers=headers
            )
            assert elsewhere.status_code == 409
            assert "in progress" in elsewhere.text
            # The stream is closed: the client left mid-run.
        planner.delay_s = 0.0
        reject = run_body("t-busy", forwardedProps={"command": {"resume": "reject"}})
        async with httpx.AsyncClient(timeout=60) as http:
            for _ in range(100):  # the server sees the disconnect, cancels the run, releases the thread
                probe = await http.post(f"{app_url}/api/agent", json=reject, headers=headers)
                if "in progress" not in probe.text:
                    break
                await asyncio.sleep(0.1)
            assert "in progress" not in probe.text
            # The cancelled run never reached its proposal: no turn finished, nothing waits.
            thread = await http.get(f"{app_url}/api/threads/t-busy", headers=headers)
            assert thread.status_code in (200, 404)
            if thread.status_code == 200:
                assert thread.json()["pending"] is None
                assert thread.json()["messages"] == []
        # Released: the other replica runs the thread's next turn.
        events = await run(stack.replica_url, headers, run_body("t-busy", "What is the latest HbA1c?"))
        assert events[-1]["type"] == "RUN_FINISHED"
    finally:
        planner.delay_s = 0.0


async def test_another_patients_thread_is_not_found_and_another_patient_is_refused(
    stack: Stack, app_url: str, fhir: str, cohort: Cohort
) -> None:
    a, b = cohort.patients[0].id, cohort.patients[1].id
    as_a, as_b = bearer(stack.ehr, a, READS), bearer(stack.ehr, b, f"{READS} {NOTE_SCOPES}")
    await run(app_url, as_a, run_body("t-of-a", "What is the latest HbA1c?"))
    assert (await aget(f"{app_url}/api/threads/t-of-a", headers=as_a)).status_code == 200
    foreign = await aget(f"{app_url}/api/threads/t-of-a", headers=as_b)
    assert foreign.status_code == 404
    assert a not in foreign.text
    # The same patient id at another EHR (the second stand-in: another FHIR base URL) is another
    # patient: the thread is not found there either.
    elsewhere = bearer(stack.failing_ehr, a, READS)
    assert (await aget(f"{app_url}/api/threads/t-of-a", headers=elsewhere)).status_code == 404
    resume = await apost(
        f"{app_url}/api/agent",
        json=run_body("t-of-a", forwardedProps={"command": {"resume": "approve"}}),
        headers=as_b,
    )
    assert resume.status_code == 404
    events = await run(app_url, as_b, run_body("t-of-b", f"What is the HbA1c of Patient/{a}?"))
    assert [e for e in events if e["type"] == "TOOL_CALL_START"] == []
    assert events[-1]["result"]["flags"] == ["refused: another patient"]


async def test_run_error_carries_no_patient_data_when_fhir_is_down(
    stack: Stack, app_url: str, fhir: str, cohort: Cohort
) -> None:
    me = cohort.patients[0].id
    patient = await get(f"{fhir}/Patient/{me}")
    family = patient["name"][0]["family"]
    headers = bearer(stack.failing_ehr, me, f"{READS} {NOTE_SCOPES}")
    await run(app_url, headers, run_body("t-down", SAVE))
    before = await count(fhir, "DocumentReference", patient=me)
    # The EHR's FHIR proxy goes away; the token stays valid: the approved write cannot be made.
    stack.failing_ehr.server.stop()
    failed = chat_runs("failed")
    events = await run(
        app_url, headers, run_body("t-down", forwardedProps={"command": {"resume": "approve"}})
    )
    assert chat_runs("failed") == failed + 1
    error = events[-1]
    assert error["type"] == "RUN_ERROR"
    assert error["code"] in ("service_unreachable", "service_error")
    raw = json.dumps(events)
    for secret in (me, family, f"Patient/{me}"):
        assert secret not in error["message"]
        assert secret not in raw
    assert await count(fhir, "DocumentReference", patient=me) == before


async def test_without_a_planner_the_retrieval_answer_streams(
    stack: Stack, fhir: str, cohort: Cohort, tmp_path_factory: pytest.TempPathFactory
) -> None:
    me, newest = await patient_with_a1c(fhir, cohort)
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("agui-retrieval"), app_issuers=(stack.ehr.fhir_url,)
    )
    port = free_port()
    app = create_app(settings, public_url=f"http://127.0.0.1:{port}", fhir_url=fhir)
    with serve_on(app, port) as url:
        events = await run(
            url, bearer(stack.ehr, me, READS), run_body("t-plain", "What is the latest HbA1c?")
        )
    assert [e["toolCallName"] for e in events if e["type"] == "TOOL_CALL_START"] == [
        "record_manifest",
        "lab_trend",
    ]
    assert text_of(events).startswith(NO_MODEL_NOTE)
    assert newest in text_of(events)
    assert events[-1]["result"]["model"] is None
    assert [c["reference"] for c in events[-1]["result"]["citations"]] == [newest]
