"""The summarization graph with a model (ScriptedBackend) against an in-memory FHIR handler:
the narrative is the model's, the Device names the model, a rerun writes nothing new, and an
answer with numbers that are not in the facts is not written."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.nodes.synthesize import NO_MODEL_NOTE
from agent.prompts.summary import PROMPT_VERSION, facts_text
from agent.state import SummarizeState
from agent.testbed.cohort import generate_cohort
from fhir_adapters import FhirClient
from tools.medgemma.fake_backend import ScriptedBackend
from tools.medgemma.types import ModelBackend, ModelRequest, TextPart
from tools.narrative import HEADER
from tools.writeback.pending import WriteKind, of_kind

BASE = "http://ehr.test/fhir"
# After the cohort's last results (agent.testbed.cohort.REFERENCE_DATE): none of them lies in the future.
NOW = datetime(2026, 7, 2, 3, 4, 5, tzinfo=UTC)
MODEL = "google/medgemma-1.5-4b-it"
ANSWER = "Kidney function worsened; the other series are stable. Review the source results."


class FakeEhr:
    """Reads and searches one cohort patient's resources; transactions are conditional creates."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources
        self.stored: dict[str, dict[str, Any]] = {}  # ifNoneExist -> resource
        self.transactions = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir").strip("/")
        if request.method == "POST" and not path:
            return httpx.Response(200, json=self.transaction(request))
        rtype, _, rid = path.partition("/")
        if rid:
            match = [r for r in self.resources if r["resourceType"] == rtype and r["id"] == rid]
            return httpx.Response(200, json=match[0]) if match else httpx.Response(404)
        entries = [{"resource": r} for r in self.resources if r["resourceType"] == rtype]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries})

    def transaction(self, request: httpx.Request) -> dict[str, Any]:
        self.transactions += 1
        out = []
        for entry in json.loads(request.content)["entry"]:
            key = entry["request"]["ifNoneExist"]
            status = "200 OK" if key in self.stored else "201 Created"
            self.stored.setdefault(key, entry["resource"])
            out.append({"response": {"status": status}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}


@pytest.fixture
def ehr() -> FakeEhr:
    # Lab-report PDFs have tests of their own; here the record is the lab feed only.
    patient = generate_cohort(1, 11, lab_documents=False).patients[0]
    return FakeEhr(list(patient.resources))


async def run(ehr: FakeEhr, model: ModelBackend | None, *, dry_run: bool = False) -> SummarizeState:
    patient_id = next(r["id"] for r in ehr.resources if r["resourceType"] == "Patient")
    async with FhirClient(BASE, transport=httpx.MockTransport(ehr)) as fhir:
        ctx = RunContext(fhir=fhir, dry_run=dry_run, now=NOW, model=model)
        state: SummarizeState = await summarize_graph.ainvoke({"patient_id": patient_id}, context=ctx)  # type: ignore[assignment]
    return state


def of_type(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


async def test_the_model_writes_the_narrative_and_the_device_names_it(ehr: FakeEhr) -> None:
    model = ScriptedBackend([ANSWER], cycle=True, name=MODEL, revision="rev1", dtype="bfloat16")
    state = await run(ehr, model)

    (request,) = model.requests
    prompt = request.messages[0].content[0]
    assert isinstance(prompt, TextPart)
    # The facts as text, then the instruction; the facts are the computed ones only.
    facts = facts_text(state["trends"], as_of=max(t.latest.time for t in state["trends"]))
    assert facts in prompt.text
    assert prompt.text.index(facts) < prompt.text.index("TASK:")
    assert request.settings.temperature == 0.0

    narrative = state["narrative"]
    assert narrative.startswith(f"AI-generated lab trend summary, written by the language model {MODEL}")
    assert narrative.rstrip().endswith(ANSWER)
    assert "synthesis_note" not in state

    (summary,) = of_kind(state["pending"], WriteKind.LONGITUDINAL_SUMMARY)
    bundle = summary.bundle
    # Two authors: the trend engine computed the trends, the model wrote the report's text.
    engine, device = of_type(bundle, "Device")
    assert engine["deviceName"][0]["name"] != MODEL
    assert device["deviceName"][0]["name"] == MODEL
    assert [v["value"] for v in device["version"]] == ["rev1", PROMPT_VERSION]
    (report,) = of_type(bundle, "DiagnosticReport")
    assert report["conclusion"] == narrative
    # The text attachment is the header, the narrative and the trend table.
    assert narrative in base64.b64decode(report["presentedForm"][0]["data"]).decode()
    assert report["meta"]["security"][0]["code"] == "AIAST"
    trend_provenance, provenance = of_type(bundle, "Provenance")
    assert trend_provenance["agent"][0]["who"]["display"] != MODEL
    assert all(t["reference"] != report_url(bundle) for t in trend_provenance["target"])
    assert [t["reference"] for t in provenance["target"]] == [report_url(bundle)]
    assert provenance["agent"][0]["who"]["display"] == MODEL
    assert MODEL in provenance["entity"][-1]["what"]["display"]
    (written,) = state["writes"]
    assert (written.key, written.status) == (summary.key, "written")
    assert written.created["DiagnosticReport"] == 1

    rerun = await run(ehr, model)
    assert rerun["narrative"] == narrative
    (again,) = rerun["writes"]
    assert again.created == {}
    assert sum(again.existing.values()) == len(bundle["entry"])
    assert ehr.transactions == 2


def report_url(bundle: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")


async def test_without_a_model_the_templated_narrative_and_trend_engine_stay(ehr: FakeEhr) -> None:
    state = await run(ehr, None, dry_run=True)
    assert state["narrative"].startswith(HEADER)
    assert state["synthesis_note"] == NO_MODEL_NOTE
    assert "narrative_identity" not in state
    (summary,) = of_kind(state["pending"], WriteKind.LONGITUDINAL_SUMMARY)
    (device,) = of_type(summary.bundle, "Device")
    assert device["deviceName"][0]["name"] != MODEL
    assert ehr.transactions == 0


def invent_a_number(request: ModelRequest) -> str:
    return "Creatinine rose by 37.25 percent."


def echo_facts_numbers(request: ModelRequest) -> str:
    text = request.messages[0].content[0].text  # type: ignore[union-attr]
    numbers = re.findall(r"\d+\.\d+", text)[:2]
    return f"Values {' and '.join(numbers)} were seen."


@pytest.mark.parametrize(
    ("answer", "used", "note"),
    [
        (invent_a_number, False, "number(s) that are not in the computed facts"),
        (" ".join(["word"] * 500), False, "cut at max_new_tokens"),
        ("   ", False, "empty"),
        ("<unused94>thought hidden<unused95>Stable.", False, "control tokens"),
        (echo_facts_numbers, True, None),
    ],
)
async def test_answers_that_fail_the_checks_are_not_written(
    ehr: FakeEhr, answer: str | Callable[[ModelRequest], str], used: bool, note: str | None
) -> None:
    state = await run(ehr, ScriptedBackend([answer], name=MODEL), dry_run=True)
    assert state["narrative"].startswith(HEADER) is not used
    if note is None:
        assert "synthesis_note" not in state
    else:
        assert note in state["synthesis_note"]
        assert "37.25" not in state["synthesis_note"]
        assert "narrative_identity" not in state
