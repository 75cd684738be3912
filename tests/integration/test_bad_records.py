"""The bad-record corpus against the real embedded FHIR server: a patient whose Observations
hold impossible dates and values, units that do not convert, malformed quantities, control and
bidi characters, a megabyte name and odd unicode is still summarized and written; every bad
result is reported by reference with a reason; nothing written carries a control or bidi
character; the good results still make trends; a rerun writes nothing. And a batch whose
middle patient has a result dated 0001-01-01 processes all three patients.

The corpus is seeded with validation off: a strict R4 server refuses some of it at write time,
while real EHRs hold such data. A resource that fails R4B parsing in the client is reported
under `facts.rejected`, not `facts.excluded`."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir_reads import search

from agent.context import RunContext
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from tools.writeback import AIAST

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
LOCAL = "urn:oid:1.2.3.4.local-lab"
AIAST_TOKEN = f"{AIAST['system']}|{AIAST['code']}"
UNSAFE = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + [
    "\x7f",
    "\x85",
    "\x9b",
    *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\ufeff",
]
DIRTY = "Vit\x1b[31mamin\x07 D\x00 \u202e25-OH\u202c \u2066total\u2069\x1b]0;owned\x07"
HUGE = "Ferritin " + "x" * 1_000_000
ODD = (
    "\u05e4\u05e8\u05d9\u05d8\u05d9\u05df Ferritin\u0301\u0301\u0301 \U0001f9ea caf\u00e9 \u0645\u0635\u0644"
)


def mg_dl(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}


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
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [coding]},
        **extra,
    }
    if when is not None:
        body["effectiveDateTime"] = when
    if quantity is not None:
        body["valueQuantity"] = quantity
    return body


def local_pair(p: str, prefix: str, code: str, display: str, unit: str) -> list[dict[str, Any]]:
    """Two results of a local code the analyte table does not know: its name and unit come
    from the record into the output."""
    return [
        observation(
            f"{p}-{prefix}{i}", p, when, {"value": v, "unit": unit}, code=code, system=LOCAL, display=display
        )
        for i, (v, when) in enumerate([(18.0, "2024-02-01"), (34.0, "2024-09-01")])
    ]


def good(p: str) -> list[dict[str, Any]]:
    return [
        observation(f"{p}-cr1", p, "2024-01-10T08:00:00Z", mg_dl(1.0)),
        observation(f"{p}-cr2", p, "2024-06-10T08:00:00Z", mg_dl(1.3)),
        observation(f"{p}-cr3", p, "2025-01-10T08:00:00Z", mg_dl(1.6)),
        *local_pair(p, "vd", "VITD25", DIRTY, "ng/mL\x1b\u202e"),
        *local_pair(p, "fe", "FERR", HUGE, "ng/mL"),
        *local_pair(p, "od", "ODD", ODD, "U/L"),
    ]


# id suffix -> (changes to a good creatinine result, the reason reported)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "year1": ({"effectiveDateTime": "0001-01-01"}, "implausible-time"),
    "year1tz": ({"effectiveDateTime": "0001-01-01T00:00:00+05:00"}, "implausible-time"),
    # 9999-12-31T23:59:59-05:00 has no UTC time: the server itself fails on it (500).
    "year9999": ({"effectiveDateTime": "9999-12-31T12:00:00+00:00"}, "implausible-time"),
    "future": ({"effectiveDateTime": "2099-01-01"}, "implausible-time"),
    "old": ({"effectiveDateTime": "1850-03-01"}, "implausible-time"),
    "negative": ({"valueQuantity": mg_dl(-5.0)}, "implausible-value"),
    "huge": ({"valueQuantity": mg_dl(1e308)}, "implausible-value"),
    "tiny": ({"valueQuantity": mg_dl(1e-300)}, "implausible-value"),
    "banana": ({"valueQuantity": {"value": 1.2, "unit": "banana"}}, "unit"),
    "kg": ({"valueQuantity": {"value": 1.2, "unit": "kg", "code": "kg"}}, "unit"),
    "hugeunit": ({"valueQuantity": {"value": 1.2, "unit": "mg/dL" + "\u202e" * 10 + "y" * 100_000}}, "unit"),
    "novalue": ({"valueQuantity": {"unit": "mg/dL"}}, "no-value"),
    "approx": ({"valueQuantity": mg_dl(1.2) | {"comparator": "~"}}, "censored"),
    "yearonly": ({"effectiveDateTime": "2024"}, "no-time"),
    "esccode": ({"code": {"coding": [{"system": LOINC, "code": "2160\x1b-0"}]}}, "no-code"),
}  # fmt: skip
# Malformed beyond what the R4B models accept: reported by the client as rejected resources.
REJECTED: dict[str, dict[str, Any]] = {
    "textvalue": {"valueQuantity": {"value": "one point two", "unit": "mg/dL"}},
    "listvalue": {"valueQuantity": [mg_dl(1.2)]},
}


def bad(p: str) -> list[dict[str, Any]]:
    base = observation("", p, "2024-03-01T08:00:00Z", mg_dl(1.2))
    changed = [base | {"id": f"{p}-{suffix}"} | change for suffix, (change, _) in BAD.items()]
    return changed + [base | {"id": f"{p}-{suffix}"} | change for suffix, change in REJECTED.items()]


def patient(p: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": p}


async def put_all(base: str, resources: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        for r in resources:
            resp = await http.put(f"{base}/{r['resourceType']}/{r['id']}", json=r)
            assert resp.status_code in (200, 201), (r["id"], resp.status_code, resp.text[:300])


@pytest.fixture(scope="module")
def server(fhir_server_factory: Callable[..., str]) -> str:
    base = fhir_server_factory(validation="off")
    corpus = [patient("bad-1"), *good("bad-1"), *bad("bad-1")]
    for p in ("batch-a", "batch-b", "batch-c"):
        corpus += [patient(p), *good(p)]
    corpus.append(observation("batch-b-year1", "batch-b", "0001-01-01", mg_dl(1.4)))
    asyncio.run(put_all(base, corpus))
    return base


def strings(node: Any) -> list[str]:
    """Every string in a JSON value, with text attachments decoded."""
    if isinstance(node, dict):
        found = [s for k, v in node.items() if k != "data" for s in strings(v)]
        if str(node.get("contentType", "")).startswith("text/") and "data" in node:
            found.append(base64.b64decode(node["data"]).decode("utf-8"))
        return found
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


async def summarize(base: str, ids: list[str]) -> tuple[list[PatientOutcome], dict[str, SummarizeState]]:
    states: dict[str, SummarizeState] = {}

    def keep(outcome: PatientOutcome, state: SummarizeState | None) -> None:
        if state is not None:
            states[outcome.patient_id] = state

    async with FhirClient(base) as client:
        outcomes = await summarize_many(RunContext(fhir=client, now=NOW), ids, on_done=keep)
    return outcomes, states


async def written(base: str, p: str) -> list[dict[str, Any]]:
    ours = await search(base, "Observation", subject=f"Patient/{p}", _security=AIAST_TOKEN)
    reports = await search(base, "DiagnosticReport", subject=f"Patient/{p}", _revinclude="Provenance:target")
    devices = await search(base, "Device")
    return [*ours, *reports, *devices]


async def test_the_bad_record_is_summarized_and_every_bad_result_reported(server: str) -> None:
    (outcome,), states = await summarize(server, ["bad-1"])
    assert outcome.status == "written", outcome.error
    facts = states["bad-1"]["facts"]

    excluded = {e.reference: e for e in facts.excluded}
    assert {ref: e.reason.value for ref, e in excluded.items()} == {
        f"Observation/bad-1-{suffix}": reason for suffix, (_, reason) in BAD.items()
    }
    for e in excluded.values():
        assert e.detail
        assert not any(v in e.detail for v in ("-5", "e+308", "e-300", "0001", "9999", "2099", "1850"))
        assert len(e.detail) < 300  # the 100 kB unit is capped
        assert not any(c in e.detail for c in UNSAFE)
    rejected = {(r.resource_type, r.id) for r in facts.rejected}
    assert {("Observation", f"bad-1-{suffix}") for suffix in REJECTED} <= rejected

    # The good results still make trends, with the latest value where it belongs.
    labs = {lab.code: lab for lab in facts.labs}
    creatinine = labs["2160-0"]
    assert (creatinine.n, creatinine.latest.value, creatinine.direction) == (3, 1.6, "worsened")
    assert creatinine.latest.time == datetime(2025, 1, 10, 8, 0, tzinfo=UTC)
    assert {"VITD25", "FERR", "ODD"} <= set(labs)
    assert labs["VITD25"].unit == "ng/mL"
    assert len(labs["FERR"].display) <= 160
    assert labs["ODD"].display == ODD  # right-to-left letters, accents, emoji stay

    resources = await written(server, "bad-1")
    (report,) = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    DiagnosticReport.model_validate(report)
    for r in resources:
        if r["resourceType"] == "Observation":
            Observation.model_validate(r)
        dirty = [s[:80] for s in strings(r) if any(c in s for c in UNSAFE)]
        assert not dirty, (r["resourceType"], r.get("id"), dirty)
        assert "x" * 500 not in json.dumps(r)
    # Every excluded result is named in the report, with its reason.
    plain = base64.b64decode(report["presentedForm"][0]["data"]).decode("utf-8")
    for ref, e in excluded.items():
        line = f"{ref}{f' ({e.code})' if e.code else ''}: {e.detail}"
        assert line in report["conclusion"]
        assert line in plain
        assert str(ref) in report["text"]["div"]
    assert "Results up to 2025-01-10." in report["conclusion"]
    assert "2099" not in report["conclusion"]

    # The same record again: nothing new (the report's bytes are the same).
    (again,), _ = await summarize(server, ["bad-1"])
    assert again.status == "unchanged", again
    assert not again.created


async def test_a_year_one_result_in_the_middle_of_a_batch_stops_nothing(server: str) -> None:
    outcomes, states = await summarize(server, ["batch-a", "batch-b", "batch-c"])
    assert [(o.patient_id, o.status) for o in outcomes] == [
        ("batch-a", "written"),
        ("batch-b", "written"),
        ("batch-c", "written"),
    ]
    (year_one,) = states["batch-b"]["facts"].excluded
    assert (year_one.reference, year_one.reason.value) == ("Observation/batch-b-year1", "implausible-time")
