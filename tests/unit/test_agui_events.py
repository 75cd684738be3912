"""The chat graph's updates as AG-UI events (pure), and how a RunAgentInput is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from ag_ui.core import BaseEvent, RunAgentInput
from fastapi import HTTPException

from agent.service.agui import Resume, question_of, resume_of
from agent.service.agui_events import (
    INTERRUPT_REASON,
    PendingNote,
    RunEvents,
    ask_result,
    chunk_text,
    error_event,
)
from agent.service.threads import NOTE_WRITES, BusyThreads, checkpoint_thread, valid_thread_id
from fhir_adapters.confirmed import WriteOutcomeUnknown
from fhir_adapters.errors import FhirServerError, FhirTransportError
from tools.medgemma.errors import ModelTransportError
from tools.registry import Citation, ToolFact, ToolResult
from tools.writeback.ai_labels import ModelIdentity
from tools.writeback.chat_note import build_note_transaction

PATIENT_TEXT = "Jane Doe, born 1961-02-03, Patient/p-123"


def _trend() -> dict[str, Any]:
    fact = ToolFact(
        text="Latest HbA1c 7.1 % on 2024-01-02",
        citations=(Citation(reference="Observation/o1", value=7.1, unit="%", time="2024-01-02"),),
    )
    return ToolResult(tool="lab_trend", input={"analyte": "hba1c"}, ok=True, facts=[fact]).model_dump(
        mode="json"
    )


def _manifest() -> dict[str, Any]:
    return ToolResult(tool="record_manifest", input={}, ok=True, note="3 resources").model_dump(mode="json")


def wire(events: list[BaseEvent]) -> list[dict[str, Any]]:
    """The events as a client reads them (camelCase JSON)."""
    return [json.loads(e.model_dump_json(by_alias=True)) for e in events]


def test_a_turn_maps_to_tool_calls_with_cited_results_and_a_chunked_answer() -> None:
    run = RunEvents("t1", "r1")
    out = run.on_update("start_turn", {"results": [_manifest()], "steps": 0})
    out += run.on_update(
        "plan", {"action": {"action": "call", "tool": "lab_trend", "input": {"analyte": "hba1c"}}}
    )
    out += run.on_update("act", {"results": [_manifest(), _trend()], "steps": 1})
    answer = "The latest HbA1c is 7.1 % [Observation/o1]. " * 5
    out += run.on_update("plan", {"action": {"action": "answer", "answer": answer}})
    out += run.on_update("answer", {"answer": answer, "citations": []})
    events = wire(out)
    assert [e["type"] for e in events] == [
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
        "TEXT_MESSAGE_START", *["TEXT_MESSAGE_CONTENT"] * (len(out) - 10), "TEXT_MESSAGE_END",
    ]  # fmt: skip
    assert len(out) - 10 > 1  # the answer came in several deltas
    manifest_call, trend_call = events[0], events[4]
    assert manifest_call["toolCallName"] == "record_manifest"
    assert trend_call["toolCallName"] == "lab_trend"
    assert manifest_call["toolCallId"] != trend_call["toolCallId"]
    assert json.loads(events[5]["delta"]) == {"analyte": "hba1c"}
    result = events[7]
    assert result["toolCallId"] == trend_call["toolCallId"]
    assert result["role"] == "tool"
    content = json.loads(result["content"])
    assert content["ok"] is True
    assert content["facts"][0]["citations"] == [
        {"reference": "Observation/o1", "value": 7.1, "unit": "%", "time": "2024-01-02"}
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert text == answer
    assert len({e["messageId"] for e in events[8:]}) == 1


def test_a_refused_question_has_no_tool_call_and_a_failed_tool_reports_its_error() -> None:
    run = RunEvents("t", "r")
    assert run.on_update("start_turn", {"results": [], "action": {"action": "answer", "answer": "no"}}) == []
    run.on_update("plan", {"action": {"action": "call", "tool": "read_lab_report", "input": {}}})
    failed = ToolResult(tool="read_lab_report", input={}, ok=False, error="FhirTransportError: GET failed")
    (event,) = wire(run.on_update("act", {"results": [failed.model_dump(mode="json")]}))
    assert json.loads(event["content"]) == {
        "tool": "read_lab_report",
        "ok": False,
        "facts": [],
        "note": None,
        "error": "FhirTransportError: GET failed",
    }
    # An `act` without an announced call, or an unknown node, maps to nothing.
    assert run.on_update("act", {"results": [failed.model_dump(mode="json")]}) == []
    assert run.on_update("__interrupt__", {"x": 1}) == []


@pytest.mark.parametrize("text", ["", "one", "a  b\n\nc ", "x" * 300, "word " * 40, "\n lead"])
def test_chunks_join_to_the_text_and_stay_short(text: str) -> None:
    chunks = chunk_text(text, 16)
    assert "".join(chunks) == text
    assert all(chunks)
    assert all(len(c) <= 16 for c in chunks if " " in c.strip())


def test_an_interrupt_finishes_with_its_id_and_proposal_and_the_ask_result() -> None:
    run = RunEvents("t", "r")
    state = {"results": [_manifest()], "flags": ["f1"], "answer": "Proposed note"}
    result = ask_result(state, "m", ["write proposed: not saved until confirmed"])
    event = run.finished(result, PendingNote(interrupt_id="i-1", proposal="Reviewed."))
    wire = json.loads(event.model_dump_json(by_alias=True))
    assert wire["type"] == "RUN_FINISHED"
    assert (wire["threadId"], wire["runId"]) == ("t", "r")
    assert wire["outcome"]["type"] == "interrupt"
    (interrupt,) = wire["outcome"]["interrupts"]
    assert (interrupt["id"], interrupt["reason"]) == ("i-1", INTERRUPT_REASON)
    assert interrupt["message"] == "Reviewed."
    assert wire["result"]["flags"] == ["f1", "write proposed: not saved until confirmed"]
    assert wire["result"]["tool_calls"] == [{"tool": "record_manifest", "input": {}}]
    done = json.loads(run.finished(result).model_dump_json(by_alias=True))
    assert "outcome" not in done  # absent outcome: success


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (
            FhirTransportError("GET", f"Observation?patient=p-123 {PATIENT_TEXT}", "timeout"),
            "service_unreachable",
        ),
        (FhirServerError(500, "GET", f"Patient/p-123 {PATIENT_TEXT}"), "service_error"),
        (WriteOutcomeUnknown(f"POST Bundle for {PATIENT_TEXT}"), "outcome_unknown"),
        (ModelTransportError("/chat/completions", PATIENT_TEXT), "service_unreachable"),
        (KeyError(PATIENT_TEXT), "internal"),
    ],
)
def test_run_error_messages_are_fixed_per_error_class(exc: BaseException, code: str) -> None:
    event = error_event(exc)
    assert event.code == code
    for word in ("Jane", "p-123", "1961", "Patient/"):
        assert word not in event.message


def body(**extra: Any) -> RunAgentInput:
    return RunAgentInput.model_validate({"threadId": "t", "runId": "r", "messages": [], **extra})


def test_the_question_is_the_last_user_message_and_resume_is_read_in_both_forms() -> None:
    messages = [
        {"id": "1", "role": "user", "content": "first"},
        {"id": "2", "role": "assistant", "content": "answer"},
        {
            "id": "3",
            "role": "user",
            "content": [{"type": "text", "text": "latest"}, {"type": "text", "text": "a1c"}],
        },
    ]
    assert question_of(body(messages=messages)) == "latest\na1c"
    assert question_of(body(messages=messages[1:2])) is None
    assert resume_of(body()) is None
    # A patient named in the body's state or forwarded props is no resume and no question.
    assert resume_of(body(state={"patient": "other"}, forwardedProps={"patient": "other"})) is None
    assert resume_of(body(forwardedProps={"command": {"resume": "approve"}})) == Resume(True)
    assert resume_of(body(forwardedProps={"command": {"resume": "reject"}})) == Resume(False)
    named = {"command": {"resume": "approve", "interruptId": "i-7"}}
    assert resume_of(body(forwardedProps=named)) == Resume(True, "i-7")
    resolved = [{"interruptId": "i", "status": "resolved", "payload": "approve"}]
    assert resume_of(body(resume=resolved)) == Resume(True, "i")
    assert resume_of(body(resume=[{"interruptId": "i", "status": "cancelled"}])) == Resume(False, "i")
    with pytest.raises(HTTPException) as bad:
        resume_of(body(forwardedProps={"command": {"resume": "yes please"}}))
    assert bad.value.status_code == 422


async def test_threads_are_namespaced_by_server_and_patient_and_claimed_once() -> None:
    ehr, other_ehr = "https://ehr.example/fhir", "https://other.example/fhir"
    assert checkpoint_thread(ehr, "a", "t1") != checkpoint_thread(ehr, "b", "t1")
    assert checkpoint_thread(ehr, "a", "t1") != checkpoint_thread(other_ehr, "a", "t1")
    assert checkpoint_thread(ehr, "a", "t1") == checkpoint_thread(ehr + "/", "a", "t1")
    assert "example" not in checkpoint_thread(ehr, "a", "t1")  # a digest, not the URL
    assert valid_thread_id("3f2c-uuid_1:x.y")
    assert not any(valid_thread_id(t) for t in ("../other", "a/b", "x" * 129, ""))
    busy = BusyThreads()
    lease = await busy.claim(checkpoint_thread(ehr, "a", "t1"))
    assert lease is not None
    assert await busy.claim(checkpoint_thread(ehr, "a", "t1")) is None
    assert await busy.claim(checkpoint_thread(ehr, "b", "t1")) is not None  # another patient's
    assert await busy.claim(checkpoint_thread(other_ehr, "a", "t1")) is not None  # another server's
    await lease.release()
    await lease.release()  # idempotent
    assert await busy.claim(checkpoint_thread(ehr, "a", "t1")) is not None


def test_the_note_scope_check_names_every_type_the_note_writes() -> None:
    bundle, _ = build_note_transaction(
        subject="Patient/x",
        text="note",
        sources=["Observation/1"],
        identity=ModelIdentity(name="m", version="1"),
        created=datetime(2024, 1, 1, tzinfo=UTC),
    )
    written = {
        e["resource"]["resourceType"] for e in bundle["entry"] if e["request"]["method"] in ("POST", "PUT")
    }
    assert written == set(NOTE_WRITES)
