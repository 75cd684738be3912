"""Approve and Reject of ChartAgent's AI results (tools.writeback.approval): the pure plan on
resources made by the real write-back code, and the retry after a lost race (a fault the real
server cannot be made to produce on cue, so a MockTransport plays it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from trend_samples import SUBJECT, lab_trend

from fhir_adapters import FhirClient
from tools.trends import Trend
from tools.writeback import build_patient_transaction
from tools.writeback.approval import (
    REASON_LIMIT,
    REVIEW_SYSTEM,
    ReviewConflict,
    ReviewRefused,
    apply_review,
    plan_review,
    review_tag,
)

NOW = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
REVIEWER = "Practitioner/dr-1"
PATIENT = SUBJECT.split("/")[1]


def stored(rtype: str, rid: str, *, version: str = "3") -> dict[str, Any]:
    """The resource of `rtype` that the trend write-back builds, as a server returns it."""
    trend: Trend = lab_trend("creatinine", [0.9, 1.1, 1.4])
    bundle = build_patient_transaction(
        subject=SUBJECT, trends=[trend], narrative="Creatinine rose.", issued=NOW
    )
    resource = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)
    return {
        **resource,
        "id": rid,
        "meta": {**resource["meta"], "versionId": version, "lastUpdated": "2026-07-01"},
    }


def plan(resource: dict[str, Any], action: Any = "approve", **kw: Any) -> Any:
    args: dict[str, Any] = {"patient_id": PATIENT, "action": action, "reviewer": REVIEWER, "now": NOW} | kw
    return plan_review(resource, **args)


def test_approve_is_one_transaction_of_a_versioned_put_and_a_review_provenance() -> None:
    report = stored("DiagnosticReport", "r1")
    p = plan(report)
    assert p.status == "final"
    assert p.bundle is not None
    Bundle.model_validate(p.bundle)  # valid R4B
    put, prov = p.bundle["entry"]
    assert put["request"] == {"method": "PUT", "url": "DiagnosticReport/r1", "ifMatch": 'W/"3"'}
    assert put["resource"]["status"] == "final"
    assert "versionId" not in put["resource"]["meta"]
    assert put["resource"]["meta"]["security"] == report["meta"]["security"]  # still AI-labelled
    assert {k: v for k, v in put["resource"].items() if k not in ("status", "meta")} == {
        k: v for k, v in report.items() if k not in ("status", "meta")
    }
    assert prov["request"] == {"method": "POST", "url": "Provenance", "ifNoneExist": f"_tag={p.tag}"}
    provenance = prov["resource"]
    assert provenance["target"] == [{"reference": "DiagnosticReport/r1/_history/3"}]
    assert provenance["recorded"] == NOW.isoformat()
    (agent,) = provenance["agent"]
    assert agent["who"] == {"reference": REVIEWER}
    assert agent["type"]["coding"][0]["code"] == "verifier"
    assert {"system": REVIEW_SYSTEM, "code": "approve"} in [
        {k: c[k] for k in ("system", "code")} for c in provenance["activity"]["coding"]
    ]
    assert "reason" not in provenance


def test_reject_records_the_reason_and_notes_it_on_an_observation() -> None:
    obs = stored("Observation", "o1")
    p = plan(obs, "reject", reason="Wrong\u202e unit\n on page 2")
    assert p.bundle is not None
    put, prov = p.bundle["entry"]
    assert put["resource"]["status"] == "entered-in-error"
    assert put["resource"]["note"][-1] == {"text": "Rejected by a reviewer: Wrong unit on page 2"}
    assert put["resource"]["note"][:-1] == obs["note"]
    assert prov["resource"]["reason"] == [{"text": "Wrong unit on page 2"}]
    # A DiagnosticReport has no note in R4: the reason is in the Provenance only.
    report_plan = plan(stored("DiagnosticReport", "r1"), "reject", reason="not useful")
    assert report_plan.bundle is not None
    assert "note" not in report_plan.bundle["entry"][0]["resource"]
    long = plan(obs, "reject", reason="x" * 5000)
    assert long.bundle is not None
    assert len(long.bundle["entry"][1]["resource"]["reason"][0]["text"]) == REASON_LIMIT


@pytest.mark.parametrize("reason", [None, "", "  \n\t "])
def test_a_rejection_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(ReviewConflict, match="needs a reason"):
        plan(stored("Observation", "o1"), "reject", reason=reason)


def test_the_target_status_already_reached_writes_nothing() -> None:
    approved = plan({**stored("DiagnosticReport", "r1"), "status": "final"})
    assert (approved.bundle, approved.status) == (None, "final")
    rejected = plan({**stored("Observation", "o1"), "status": "entered-in-error"}, "reject", reason="x")
    assert rejected.bundle is None


@pytest.mark.parametrize(
    ("status", "action"),
    [("final", "reject"), ("entered-in-error", "approve"), ("cancelled", "approve"), ("amended", "reject")],
)
def test_only_a_preliminary_result_is_reviewed(status: str, action: Any) -> None:
    with pytest.raises(ReviewConflict, match=f"is {status}"):
        plan({**stored("DiagnosticReport", "r1"), "status": status}, action, reason="x")


def test_another_patients_result_is_refused_as_such() -> None:
    with pytest.raises(ReviewRefused) as caught:
        plan(stored("Observation", "o1"), patient_id="p2")
    assert caught.value.other_patient
    assert "p2" not in str(caught.value)
    assert PATIENT not in str(caught.value)


@pytest.mark.parametrize(
    "change",
    [
        {"meta": {"versionId": "3"}},  # no AIAST label
        {"identifier": [{"system": "urn:lab", "value": "1"}]},  # not our identifier
        {"resourceType": "Condition"},
    ],
)
def test_only_chartagents_ai_output_is_reviewed(change: dict[str, Any]) -> None:
    with pytest.raises(ReviewRefused) as caught:
        plan({**stored("Observation", "o1"), **change})
    assert not caught.value.other_patient


def test_a_result_without_a_version_cannot_be_guarded() -> None:
    obs = stored("Observation", "o1")
    with pytest.raises(ReviewConflict, match="no version"):
        plan({**obs, "meta": {k: v for k, v in obs["meta"].items() if k != "versionId"}})


def test_the_review_tag_names_resource_and_action_only() -> None:
    obs = stored("Observation", "o1")
    first = plan(obs)
    later = plan(obs, reviewer="Practitioner/dr-2", now=NOW + timedelta(days=1))
    assert first.tag == later.tag == review_tag("Observation/o1", "approve")
    assert review_tag("Observation/o1", "reject") != first.tag
    assert review_tag("Observation/o2", "approve") != first.tag
    assert first.tag.startswith(f"{REVIEW_SYSTEM}|")


async def test_a_review_that_lost_the_race_to_the_same_review_answers_its_outcome() -> None:
    """The transaction fails with 412 (another reviewer approved first); the result read again is
    final: the other review's Provenance is answered and nothing more is written."""
    obs = stored("Observation", "o1")
    reads = [obs, {**obs, "status": "final", "meta": {**obs["meta"], "versionId": "4"}}]
    posts: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/Observation/o1"):
            return httpx.Response(200, json=reads.pop(0))
        if request.method == "POST":
            posts.append(json.loads(request.content))
            return httpx.Response(412, json={"resourceType": "OperationOutcome", "issue": []})
        assert request.url.path.endswith("/Provenance")
        assert request.url.params["_tag"] == review_tag("Observation/o1", "approve")
        entry = {"resource": {"resourceType": "Provenance", "id": "pv-9"}}
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [entry]})

    async with FhirClient("http://fhir.test/fhir", transport=httpx.MockTransport(handle)) as fhir:
        outcome = await apply_review(
            fhir, "Observation", "o1", patient_id=PATIENT, action="approve", reviewer=REVIEWER, now=NOW
        )
    assert outcome.model_dump() == {
        "reference": "Observation/o1",
        "action": "approve",
        "status": "final",
        "provenance": "Provenance/pv-9",
        "written": False,
    }
    assert len(posts) == 1


async def test_a_review_that_keeps_losing_is_a_conflict() -> None:
    obs = stored("Observation", "o1")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=obs)
        return httpx.Response(409, json={"resourceType": "OperationOutcome", "issue": []})

    async with FhirClient("http://fhir.test/fhir", transport=httpx.MockTransport(handle)) as fhir:
        with pytest.raises(ReviewConflict, match="changed while it was reviewed"):
            await apply_review(
                fhir, "Observation", "o1", patient_id=PATIENT, action="approve", reviewer=REVIEWER, now=NOW
            )
