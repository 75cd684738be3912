"""A malformed or unreadable model answer gives the templated narrative with a `synthesis_note`
saying why; only an unreachable or failing model server fails the patient."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from langgraph.runtime import Runtime
from trend_samples import lab_trend

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.nodes.synthesize import synthesize
from agent.state import SummarizeState
from agent.testbed.cohort import generate_cohort
from fhir_adapters import FhirClient
from tools.medgemma.errors import ModelProtocolError, ModelServerError, ModelTransportError
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.types import ModelRequest
from tools.narrative import HEADER
from tools.writeback.pending import WriteKind, of_kind

BASE = "http://ehr.test/fhir"
NOW = datetime(2026, 7, 2, 3, 4, 5, tzinfo=UTC)
GOOD = "Creatinine worsened over the period; haemoglobin is stable. Review the source results."


def _unreadable(request: ModelRequest) -> str:
    raise ModelProtocolError(
        "POST /chat/completions answered 200 with no chat completion (bad or missing: choices)"
    )


def _down(request: ModelRequest) -> str:
    raise ModelTransportError("/chat/completions", "could not connect to the model server (ConnectError)")


def _overloaded(request: ModelRequest) -> str:
    raise ModelServerError(503, "/chat/completions", "overloaded")


async def _synthesize(answer: str | Callable[[ModelRequest], str]) -> SummarizeState:
    trends = [lab_trend("creatinine", [1.0, 1.3, 1.7]), lab_trend("hemoglobin", [13.1, 13.0, 13.2])]
    fhir = FhirClient(BASE, transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    try:
        ctx = RunContext(fhir=fhir, dry_run=True, now=NOW, model=ScriptedBackend([answer], name="m"))
        return await synthesize({"patient_id": "p1", "trends": trends}, Runtime(context=ctx))
    finally:
        await fhir.aclose()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('{"choices": [{"message": ', "not plain text"),
        ("[1, 2", "not plain text"),
        ("```json\nStable results overall here\n```", "not plain text"),
        ("<start_of_image> The results are stable.", "control tokens"),
        ("<end_of_image>", "control tokens"),
        ("\ud800 The results are stable here.", "control or invalid characters"),
        ("The results \x00 are stable here.", "control or invalid characters"),
        ("The results \x1b[31m are stable.", "control or invalid characters"),
        ("\ufffd\ufffd The results are stable.", "control or invalid characters"),
        ("\u202e\u2066" * 50, "not prose"),
        (". , ; ...", "not prose"),
        ("Stable.", "not prose"),
        ("a" * 500, "not prose"),
        ("Consistently unchanged measurements throughout. " * 70, "longer than"),
        (_unreadable, "could not be read: POST /chat/completions answered 200 with no chat completion"),
    ],
    ids=lambda v: re.sub(r"[^a-z]+", "-", v.__name__ if callable(v) else repr(v)[:24].lower()).strip("-"),
)
async def test_an_unusable_answer_gives_the_templated_narrative(
    answer: str | Callable[[ModelRequest], str], why: str
) -> None:
    out = await _synthesize(answer)
    assert out["narrative"].startswith(HEADER)
    assert "narrative_identity" not in out
    note = out["synthesis_note"]
    assert note.startswith("model summary not used (")
    assert note.endswith("): templated narrative")
    assert why in note


async def test_a_readable_answer_is_still_used() -> None:
    out = await _synthesize(GOOD)
    assert not out["narrative"].startswith(HEADER)
    assert GOOD in out["narrative"]
    assert "synthesis_note" not in out


@pytest.mark.parametrize("answer", [_down, _overloaded])
async def test_an_unreachable_or_failing_server_still_fails(answer: Callable[[ModelRequest], str]) -> None:
    with pytest.raises((ModelTransportError, ModelServerError)):
        await _synthesize(answer)


def _ehr(resources: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        rtype, _, rid = request.url.path.removeprefix("/fhir").strip("/").partition("/")
        found = [r for r in resources if r["resourceType"] == rtype and (not rid or r["id"] == rid)]
        if rid:
            return httpx.Response(200, json=found[0]) if found else httpx.Response(404)
        entries = [{"resource": r} for r in found]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries})

    return handle


@pytest.mark.parametrize("answer", ["\x00\x01\x02", _unreadable], ids=["garbage", "unreadable"])
async def test_the_graph_does_not_fail_the_patient_on_a_malformed_answer(
    answer: str | Callable[[ModelRequest], str],
) -> None:
    patient = generate_cohort(1, 11, lab_documents=False).patients[0]
    patient_id = next(r["id"] for r in patient.resources if r["resourceType"] == "Patient")
    async with FhirClient(BASE, transport=httpx.MockTransport(_ehr(list(patient.resources)))) as fhir:
        ctx = RunContext(fhir=fhir, dry_run=True, now=NOW, model=ScriptedBackend([answer], name="m"))
        state: SummarizeState = await summarize_graph.ainvoke({"patient_id": patient_id}, context=ctx)  # type: ignore[assignment]
    assert state["narrative"].startswith(HEADER)
    assert "model summary not used" in state["synthesis_note"]
    (summary,) = of_kind(state["pending"], WriteKind.LONGITUDINAL_SUMMARY)
    assert summary.bundle["entry"]  # the rest of the summary is built as without a model
