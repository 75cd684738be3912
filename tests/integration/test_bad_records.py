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

import bad_records
import httpx
import pytest
from bad_records import LOINC, NOW, changed, local_pair, mg_dl, observation, strings
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir_reads import search

from agent.context import RunContext
from agent.jobs.summarize import PatientOutcome, summarize_many
from agent.state import SummarizeState
from fhir_adapters import FhirClient
from tools.writeback import AIAST

pytestmark = pytest.mark.integration

AIAST_TOKEN = f"{AIAST['system']}|{AIAST['code']}"
LAB = "laboratory"
# Also NEL, zero-width space and byte-order mark.
UNSAFE = [*bad_records.UNSAFE, "\x85", "\u200b", "\ufeff"]
DIRTY = "Vit\x1b[31mamin\x07 D\x00 \u202e25-OH\u202c \u2066total\u2069\x1b]0;owned\x07"
HUGE = "Ferritin " + "x" * 1_000_000
ODD = (
    "\u05e4\u05e8\u05d9\u05d8\u05d9\u05df Ferritin\u0301\u0301\u0301 \U0001f9ea caf\u00e9 \u0645\u0635\u0644"
)


def good(p: str) -> list[dict[str, Any]]:
    return [
        *bad_records.good(p, DIRTY, category=LAB),
        *local_pair(p, "fe", "FERR", HUGE, "ng/mL", category=LAB),
        *local_pair(p, "od", "ODD", ODD, "U/L", category=LAB),
    ]


# id suffix -> (changes to a good creatinine result, the reason reported)
BAD: dict[str, tuple[dict[str, Any], str]] = bad_records.BAD | {
    "year1tz": ({"effectiveDateTime": "0001-01-01T00:00:00+05:00"}, "implausible-time"),
    # 9999-12-31T23:59:59-05:00 has no UTC time: the server itself fails on it (500).
    "year9999": ({"effectiveDateTime": "9999-12-31T12:00:00+00:00"}, "implausible-time"),
    "hugeunit": ({"valueQuantity": {"value": 1.2, "unit": "mg/dL" + "\u202e" * 10 + "y" * 100_000}}, "unit"),
    "esccode": ({"code": {"coding": [{"system": LOINC, "code": "2160\x1b-0"}]}}, "no-code"),
}  # fmt: skip
# Malformed beyond what the R4B models accept: reported by the client as rejected resources.
REJECTED: dict[str, dict[str, Any]] = {
    "textvalue": {"valueQuantity": {"value": "one point two", "unit": "mg/dL"}},
    "listvalue": {"valueQuantity": [mg_dl(1.2)]},
}


def bad(p: str) -> list[dict[str, Any]]:
    return changed(p, {suffix: change for suffix, (change, _) in BAD.items()} | REJECTED, category=LAB)


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
    corpus.append(observation("batch-b-year1", "batch-b", "0001-01-01", mg_dl(1.4), category=LAB))
    asyncio.run(put_all(base, corpus))
    return base


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
