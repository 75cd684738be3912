"""The write node: each pending write its own transaction, in a fixed order, each with its own
outcome; one failing or unknown write does not stop the others; a dry run sends nothing.

The server is simulated (httpx.MockTransport): the faults needed (a refusal of one transaction,
a lost answer with the server unreadable) cannot be produced on demand by a real one; the real
server runs in tests/integration (test_summarize, test_imaging_only_writes, test_reliability).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

from agent.jobs.summarize import outcome_of
from agent.nodes.write_back import post_writes
from agent.state import SummarizeState
from fhir_adapters import FhirClient, RetryPolicy
from tools.record import build_record
from tools.writeback import AI_OUTPUT_SYSTEM
from tools.writeback.pending import PendingWrite, WriteKind, WriteOutcome

BASE = "https://ehr.example/fhir"


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def entry(rtype: str, value: str) -> dict[str, Any]:
    mark = {"system": AI_OUTPUT_SYSTEM, "value": value}
    resource: dict[str, Any] = {"resourceType": rtype}
    if rtype == "Provenance":
        resource["meta"] = {"tag": [{"system": AI_OUTPUT_SYSTEM, "code": value}]}
        condition = f"_tag={AI_OUTPUT_SYSTEM}|{value}"
    else:
        resource["identifier"] = [mark]
        condition = f"identifier={AI_OUTPUT_SYSTEM}|{value}"
    return {
        "fullUrl": f"urn:uuid:{value[:8]}-0000-0000-0000-{value[8:20]}",
        "resource": resource,
        "request": {"method": "POST", "url": rtype, "ifNoneExist": condition},
    }


def pending(kind: WriteKind, name: str) -> PendingWrite:
    if kind is WriteKind.DOCUMENT_TRANSCRIPTION:
        entries = [entry("Observation", key(name + "/obs")), entry("Provenance", key(name))]
        inputs: tuple[str, ...] = (f"DocumentReference/{name}",)
    else:
        entries = [entry("Observation", key(name + "/obs")), entry("DiagnosticReport", key(name))]
        inputs = (f"ImagingStudy/{name}",) if kind is WriteKind.IMAGING_REPORT else ("Observation/o1",)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return PendingWrite.of(kind, bundle, reason=f"test {name}", inputs=inputs)


class Server:
    """A transactional store of conditional creates. ``faults`` per main identifier: "refuse" (422),
    "not-stored" (500 before any commit), "unknown" (commits, answers 500, reads fail)."""

    def __init__(self, faults: dict[str, str] | None = None) -> None:
        self.faults = faults or {}
        self.stored: dict[str, dict[str, Any]] = {}
        self.transactions: list[list[str]] = []  # per POST: the main identifiers of its entries
        self.requests = 0
        self.unreadable: set[str] = set()  # what an "unknown" transaction held: its read-back fails

    def _fault(self, values: list[str]) -> str | None:
        return next((self.faults[v] for v in values if v in self.faults), None)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if request.method == "GET":
            value = (request.url.params.get("identifier") or request.url.params["_tag"]).split("|", 1)[1]
            if value in self.unreadable:
                raise httpx.ConnectError("down")
            found = [{"resource": self.stored[value]}] if value in self.stored else []
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": found})
        entries = json.loads(request.content)["entry"]
        values = [m["value"] for e in entries for m in _marks(e["resource"])]
        self.transactions.append(values)
        fault = self._fault(values)
        if fault == "refuse":
            return httpx.Response(422, json={"resourceType": "OperationOutcome", "issue": []})
        if fault == "not-stored":
            return httpx.Response(500)
        answers = []
        for e, value in zip(entries, values, strict=True):
            created = value not in self.stored
            rtype = e["resource"]["resourceType"]
            self.stored.setdefault(value, {**e["resource"], "id": value[:10]})
            status = "201 Created" if created else "200 OK"
            answers.append({"response": {"status": status, "location": f"{rtype}/{value[:10]}/_history/1"}})
        if fault == "unknown":
            self.unreadable.update(values)
            return httpx.Response(500)
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
        )


def _marks(resource: dict[str, Any]) -> list[dict[str, str]]:
    tags = [{"value": t["code"]} for t in resource.get("meta", {}).get("tag", [])]
    return [*resource.get("identifier", []), *tags]


async def no_sleep(_: float) -> None:
    return None


async def post(server: Server, writes: list[PendingWrite], **kw: Any) -> list[WriteOutcome]:
    transport = httpx.MockTransport(server)
    async with FhirClient(
        BASE, transport=transport, retry=RetryPolicy(max_attempts=1), sleep=no_sleep
    ) as fhir:
        return await post_writes(fhir, writes, dry_run=kw.pop("dry_run", False), **kw)


SUMMARY = pending(WriteKind.LONGITUDINAL_SUMMARY, "summary")
IMAGING = sorted(
    [pending(WriteKind.IMAGING_REPORT, "ct"), pending(WriteKind.IMAGING_REPORT, "cxr")], key=lambda p: p.key
)
DOCUMENTS = sorted(
    [pending(WriteKind.DOCUMENT_TRANSCRIPTION, f"doc{n}") for n in range(3)], key=lambda p: p.key
)
EVERYTHING = [*DOCUMENTS, *IMAGING, SUMMARY]


async def test_each_write_is_its_own_transaction_in_a_fixed_order() -> None:
    server = Server()
    shuffled = [SUMMARY, IMAGING[1], DOCUMENTS[2], IMAGING[0], DOCUMENTS[0], DOCUMENTS[1]]
    outcomes = await post(server, shuffled)
    assert [o.key for o in outcomes] == [p.key for p in EVERYTHING]
    # One POST per pending write, holding exactly its own entries.
    assert server.transactions == [
        [m["value"] for e in p.bundle["entry"] for m in _marks(e["resource"])] for p in EVERYTHING
    ]
    assert all(o.status == "written" for o in outcomes)
    assert outcomes[-1].created == {"Observation": 1, "DiagnosticReport": 1}
    assert (
        outcomes[-1].references[SUMMARY.bundle["entry"][1]["fullUrl"]]
        == f"DiagnosticReport/{SUMMARY.key[:10]}"
    )

    again = await post(server, shuffled)
    assert [o.status for o in again] == ["written"] * len(EVERYTHING)
    assert all(
        not o.created and sum(o.existing.values()) == len(p.bundle["entry"])
        for o, p in zip(again, EVERYTHING, strict=True)
    )


async def test_a_write_already_posted_is_not_posted_again() -> None:
    server = Server()
    first = await post(server, DOCUMENTS)
    outcomes = await post(server, [*DOCUMENTS, SUMMARY, SUMMARY], done=first)
    assert [o.key for o in outcomes] == [SUMMARY.key]  # each key once
    assert len(server.transactions) == len(DOCUMENTS) + 1


@pytest.mark.parametrize(
    ("fault", "status", "read_back", "said"),
    [
        ("refuse", "failed", False, "refused the write (HTTP 422); nothing of it stored"),
        ("not-stored", "failed", True, "a read of the server shows nothing of it stored"),
        ("unknown", "unknown", True, "outcome is unknown"),
    ],
)
async def test_one_failing_write_does_not_stop_the_others(
    fault: str, status: str, read_back: bool, said: str
) -> None:
    broken = IMAGING[0]
    server = Server({broken.key: fault})
    outcomes = await post(server, EVERYTHING)
    by_key = {o.key: o for o in outcomes}
    bad = by_key.pop(broken.key)
    assert (bad.status, bad.read_back) == (status, read_back)
    assert bad.error is not None
    assert said in bad.error
    assert not bad.created
    assert {o.status for o in by_key.values()} == {"written"}
    assert SUMMARY.key in server.stored  # posted after the broken one
    assert (broken.key in server.stored) is (fault == "unknown")  # "unknown" was the true answer


async def test_a_dry_run_sends_nothing_and_lists_every_write() -> None:
    server = Server()
    outcomes = await post(server, [SUMMARY, *DOCUMENTS], dry_run=True)
    assert server.requests == 0
    assert [o.status for o in outcomes] == ["would-write"] * 4
    assert [o.kind for o in outcomes] == [WriteKind.DOCUMENT_TRANSCRIPTION] * 3 + [
        WriteKind.LONGITUDINAL_SUMMARY
    ]


def test_a_pending_write_names_its_main_resource_and_refuses_what_is_not_a_transaction() -> None:
    assert SUMMARY.key == key("summary")
    assert DOCUMENTS[0].key in {key(f"doc{n}") for n in range(3)}  # the Provenance's tag
    assert IMAGING[0].label.startswith("imaging report of ImagingStudy/")
    with pytest.raises(ValueError, match="DiagnosticReport or a Provenance"):
        PendingWrite.of(
            WriteKind.IMAGING_REPORT,
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry("Device", key("d"))]},
            reason="r",
            inputs=("ImagingStudy/x",),
        )
    with pytest.raises(ValueError, match="transaction"):
        SUMMARY.model_validate({**SUMMARY.model_dump(), "bundle": {**SUMMARY.bundle, "type": "batch"}})


def state(writes: list[WriteOutcome], *pending_writes: PendingWrite) -> SummarizeState:
    record = build_record("p1", [{"resourceType": "Patient", "id": "p1"}])
    return {"patient_id": "p1", "record": record, "pending": list(pending_writes), "writes": writes}


async def test_the_patient_outcome_comes_from_the_writes() -> None:
    # Imaging only (no lab series): its report is written, then a rerun is unchanged.
    server = Server()
    written = outcome_of("p1", state(await post(server, IMAGING), *IMAGING), dry_run=False)
    assert (written.status, written.series, written.created) == (
        "written",
        0,
        {"Observation": 2, "DiagnosticReport": 2},
    )
    rerun = outcome_of("p1", state(await post(server, IMAGING), *IMAGING), dry_run=False)
    assert (rerun.status, rerun.created, rerun.existing["DiagnosticReport"]) == ("unchanged", {}, 2)
    dry = outcome_of("p1", state(await post(server, IMAGING, dry_run=True), *IMAGING), dry_run=True)
    assert dry.status == "dry-run"
    # The summary fails, the imaging reports are written: failed, what was written counted.
    server = Server({SUMMARY.key: "not-stored"})
    writes = [*IMAGING, SUMMARY]
    failed = outcome_of("p1", state(await post(server, writes), *writes), dry_run=False)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.startswith("summary: the write failed (HTTP 500)")
    assert failed.created["DiagnosticReport"] == 2
    # Nothing to analyse: no lab series and no imaging report.
    assert outcome_of("p1", state([]), dry_run=False).status == "no-labs"
