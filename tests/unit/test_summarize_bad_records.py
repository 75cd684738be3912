"""The summarization graph over a record full of bad results (in-memory FHIR handler): the good
results still make trends, every bad one is reported by reference with a reason that carries
no value, no control or bidi character reaches the output, and the same record gives the same
bytes. The same corpus runs against the real embedded server in
tests/integration/test_bad_records.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from agent.context import RunContext
from agent.graphs.summarize import summarize_graph
from agent.jobs.summarize import summarize_many
from agent.state import SummarizeState
from fhir_adapters import FhirClient

BASE = "http://ehr.test/fhir"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
LOCAL = "urn:oid:1.2.3.4.local-lab"
UNSAFE = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + [
    "\x7f",
    "\x9b",
    *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c",
]
DIRTY_DISPLAY = "Vit\x1b[31mamin\x07 D\x00 \u202e25-OH\u202c total" + "\u0301" * 50 + "x" * 1_000_000


def observation(
    oid: str,
    patient: str,
    when: str | None,
    quantity: dict[str, Any] | None,
    *,
    code: str = "2160-0",
    system: str = LOINC,
    display: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [coding]},
        **extra,
    }
    if when is not None:
        body["effectiveDateTime"] = when
    if quantity is not None:
        body["valueQuantity"] = quantity
    return body


def mg_dl(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}


def good(patient: str) -> list[dict[str, Any]]:
    return [
        observation(f"{patient}-cr1", patient, "2024-01-10T08:00:00Z", mg_dl(1.0)),
        observation(f"{patient}-cr2", patient, "2024-06-10T08:00:00Z", mg_dl(1.3)),
        observation(f"{patient}-cr3", patient, "2025-01-10T08:00:00Z", mg_dl(1.6)),
        observation(
            f"{patient}-vd1",
            patient,
            "2024-02-01",
            {"value": 18.0, "unit": "ng/mL\x1b\u202e"},
            code="VITD25",
            system=LOCAL,
            display=DIRTY_DISPLAY,
        ),
        observation(
            f"{patient}-vd2",
            patient,
            "2024-09-01",
            {"value": 34.0, "unit": "ng/mL\x1b\u202e"},
            code="VITD25",
            system=LOCAL,
            display=DIRTY_DISPLAY,
        ),
    ]


# id suffix -> (the Observation's changes, expected reason)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "year1": ({"effectiveDateTime": "0001-01-01"}, "implausible-time"),
    "year9999": ({"effectiveDateTime": "9999-12-31T23:59:59-05:00"}, "implausible-time"),
    "future": ({"effectiveDateTime": "2099-01-01"}, "implausible-time"),
    "old": ({"effectiveDateTime": "1850-03-01"}, "implausible-time"),
    "negative": ({"valueQuantity": mg_dl(-5.0)}, "implausible-value"),
    "huge": ({"valueQuantity": mg_dl(1e308)}, "implausible-value"),
    "tiny": ({"valueQuantity": mg_dl(1e-300)}, "implausible-value"),
    "banana": ({"valueQuantity": {"value": 1.2, "unit": "banana"}}, "unit"),
    "kg": ({"valueQuantity": {"value": 1.2, "unit": "kg", "code": "kg"}}, "unit"),
    "novalue": ({"valueQuantity": {"unit": "mg/dL"}}, "no-value"),
    "approx": ({"valueQuantity": mg_dl(1.2) | {"comparator": "~"}}, "censored"),
    "yearonly": ({"effectiveDateTime": "2024"}, "no-time"),
}


def bad(patient: str) -> list[dict[str, Any]]:
    base = observation("", patient, "2024-03-01T08:00:00Z", mg_dl(1.2))
    return [base | {"id": f"{patient}-{suffix}"} | change for suffix, (change, _) in BAD.items()]


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


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


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

    bundle = state["bundle"]
    texts = strings(bundle)
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
    assert json.dumps(first["bundle"], sort_keys=True) == json.dumps(second["bundle"], sort_keys=True)
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
