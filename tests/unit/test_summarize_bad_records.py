"""The summarization graph over a record full of bad results (in-memory FHIR handler): the good
results still make trends, every bad one is reported by reference with a reason that carries
no value, no control or bidi character reaches the output, and the same record gives the same
bytes. The same corpus runs against the real embedded server in
tests/integration/test_bad_records.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import bad_records
import httpx
from bad_records import NOW, UNSAFE, changed, mg_dl, observation, strings

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.jobs.summarize import summarize_many
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from tools.writeback.pending import WriteKind, of_kind

BASE = "http://ehr.test/fhir"
DIRTY_DISPLAY = "Vit\x1b[31mamin\x07 D\x00 \u202e25-OH\u202c total" + "\u0301" * 50 + "x" * 1_000_000

# id suffix -> (the Observation's changes, expected reason)
BAD: dict[str, tuple[dict[str, Any], str]] = bad_records.BAD | {
    "year9999": ({"effectiveDateTime": "9999-12-31T23:59:59-05:00"}, "implausible-time"),
}


def good(patient: str) -> list[dict[str, Any]]:
    return bad_records.good(patient, DIRTY_DISPLAY)


def bad(patient: str) -> list[dict[str, Any]]:
    return changed(patient, {suffix: change for suffix, (change, _) in BAD.items()})


class Ehr:
    """Reads and per-patient searches over fixed resources; transactions are conditional creates."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir").strip("/")
        if request.method == "POST" and not path:
            entries = json.loads(request.content)["entry"]
            return httpx.Response(
                200,
                json={
                    "resourceType": "Bundle",
                    "type": "transaction-response",
                    "entry": [{"response": {"status": "201 Created"}} for _ in entries],
                },
            )
        rtype, _, rid = path.partition("/")
        if rid:
            match = [r for r in self.resources if r["resourceType"] == rtype and r["id"] == rid]
            return httpx.Response(200, json=match[0]) if match else httpx.Response(404)
        patient = request.url.params.get("patient") or request.url.params.get("subject") or ""
        ref = patient if "/" in patient else f"Patient/{patient}"
        entries = [
            {"resource": r}
            for r in self.resources
            if r["resourceType"] == rtype and r.get("subject", {}).get("reference") == ref
        ]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries})


def record(*patients: str, with_bad: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in patients:
        out += [{"resourceType": "Patient", "id": p}, *good(p), *(bad(p) if with_bad else [])]
    return out


async def run(resources: list[dict[str, Any]], patient: str) -> SummarizeState:
    async with FhirClient(BASE, transport=httpx.MockTransport(Ehr(resources))) as fhir:
        ctx = RunContext(fhir=fhir, dry_run=True, now=NOW)
        state: SummarizeState = await summarize_graph.ainvoke({"patient_id": patient}, context=ctx)  # type: ignore[assignment]
    return state


def summary_bundle(state: SummarizeState) -> dict[str, Any]:
    (summary,) = of_kind(state["pending"], WriteKind.LONGITUDINAL_SUMMARY)
    return summary.bundle


async def test_bad_results_are_reported_and_the_good_ones_still_trend() -> None:
    state = await run(record("p1"), "p1")
    facts = state["facts"]
    got = {e.reference: e.reason.value for e in facts.excluded}
    assert got == {f"Observation/p1-{suffix}": reason for suffix, (_, reason) in BAD.items()}
    for e in facts.excluded:
        assert e.code == "2160-0"
        assert not any(v in e.detail for v in ("-5", "1e+308", "1e-300", "0001", "9999", "2099", "1850"))
    creatinine = next(f for f in facts.labs if f.code == "2160-0")
    assert (creatinine.n, creatinine.latest.value) == (3, 1.6)
    assert creatinine.latest.time == datetime(2025, 1, 10, 8, 0, tzinfo=UTC)
    assert creatinine.direction == "worsened"
    vitamin_d = next(f for f in facts.labs if f.code == "VITD25")
    assert vitamin_d.display.startswith("Vit[31mamin D 25-OH total")  # ESC gone, the rest is text
    assert len(vitamin_d.display) <= 160
    assert vitamin_d.unit == "ng/mL"

    narrative = state["narrative"]
    assert "Results up to 2025-01-10." in narrative
    assert "2099" not in narrative
    assert f"Results not used in the trends ({len(BAD)})" in narrative
    assert "- Observation/p1-banana (2160-0): cannot convert 'banana' to 'mg/dL'" in narrative

    bundle = summary_bundle(state)
    texts = strings(bundle, attachments=False)
    assert not [s for s in texts if any(c in s for c in UNSAFE)]
    dumped = json.dumps(bundle, ensure_ascii=False)
    assert "x" * 500 not in dumped  # the megabyte name is capped
    (report,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert "Observation/p1-year1" in report["text"]["div"]
    assert "Observation/p1-year1" in report["conclusion"]


async def test_the_same_bad_record_gives_the_same_bytes() -> None:
    resources = record("p1")
    first = await run(resources, "p1")
    second = await run(list(reversed(resources)), "p1")
    assert json.dumps(summary_bundle(first), sort_keys=True) == json.dumps(
        summary_bundle(second), sort_keys=True
    )
    assert first["facts"] == second["facts"]


async def test_a_batch_with_a_year_one_result_in_the_middle_goes_on() -> None:
    resources = record("a", "c", with_bad=False) + record("b", with_bad=False)
    resources.append(observation("b-year1", "b", "0001-01-01", mg_dl(1.4)))
    async with FhirClient(BASE, transport=httpx.MockTransport(Ehr(resources))) as fhir:
        outcomes = await summarize_many(RunContext(fhir=fhir, now=NOW), ["a", "b", "c"])
    assert [(o.patient_id, o.status) for o in outcomes] == [
        ("a", "written"),
        ("b", "written"),
        ("c", "written"),
    ]
